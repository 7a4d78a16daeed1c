"""What did fine-tuning change? A tiny DistilBERT classifier, embeddings frozen, a few AdamW
steps, then the weight diff, and the assertion a test suite would make.

Runs offline in seconds:  HF_HUB_OFFLINE=1 python examples/finetune_weight_diff.py
"""

from __future__ import annotations

import copy

import torch
from transformers import DistilBertForSequenceClassification

import modeldiff
from modeldiff._tiny import tiny_config
from modeldiff.testing import assert_weights_changed


def finetune(*, freeze_embeddings: bool = True, steps: int = 3, seed: int = 0):
    """Train a tiny classifier on random tokens; return (before, after)."""
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(tiny_config("distilbert", num_labels=2))
    if freeze_embeddings:
        model.distilbert.embeddings.requires_grad_(False)
    before = copy.deepcopy(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (4, 12))
        labels = torch.randint(0, 2, (4,))
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return before, model


def main() -> None:
    before, after = finetune()
    print(modeldiff.weight_diff(before, after))
    assert_weights_changed(before, after, changed=["classifier.*"],
                           frozen=["distilbert.embeddings.*"])
    print("ok: the classifier trained, the embeddings stayed frozen")


if __name__ == "__main__":
    main()
