"""Tiny hand-made modules with the awkward features real models have."""

from __future__ import annotations

import torch
from torch import nn


class Tied(nn.Module):
    """An embedding and an output projection sharing one weight (like an MLM decoder)."""

    def __init__(self, vocab: int = 11, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.body = nn.Linear(dim, dim)
        self.decoder = nn.Linear(dim, vocab, bias=False)
        self.decoder.weight = self.embed.weight


class Shared(nn.Module):
    """One submodule object reachable at two paths."""

    def __init__(self) -> None:
        super().__init__()
        block = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
        self.first = block
        self.second = block
        self.out = nn.Linear(3, 1)


class WithDict(nn.Module):
    """A ModuleDict of heads."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 5)
        self.heads = nn.ModuleDict({"a": nn.Linear(5, 2), "b": nn.Linear(5, 3)})


class WithBuffers(nn.Module):
    """Persistent and non-persistent buffers, and a frozen parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(4)  # running_mean, running_var, num_batches_tracked
        self.register_buffer("scale", torch.ones(4))
        self.register_buffer("cache", torch.zeros(2, 4), persistent=False)
        self.frozen = nn.Linear(4, 4)
        self.frozen.weight.requires_grad_(False)


class Stack(nn.Module):
    """Repeated identical blocks, then one that differs."""

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Dropout(0.1)) for _ in range(n)]
            + [nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Dropout(0.3))]
        )
