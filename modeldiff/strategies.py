"""Hypothesis strategies for models, configs and graphs, for property tests in any project.

>>> from hypothesis import given, settings
>>> import modeldiff
>>> @settings(max_examples=5, deadline=None)
... @given(modules())
... def test_json_round_trip(module):
...     g = modeldiff.walk(module)
...     assert modeldiff.ModelGraph.from_json(g.to_json()) == g
>>> test_json_round_trip()
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from modeldiff._core.graph import (
    HFInfo,
    Kind,
    ModelGraph,
    Node,
    RepeatGroup,
    Tensor,
    Tie,
    Totals,
    canonical_json,
)

__all__ = ["configs", "graphs", "modules"]


# -- nn.Module trees -------------------------------------------------------------------------
@st.composite
def _leaf(draw: st.DrawFn, dim: int) -> Any:
    from torch import nn

    choice = draw(st.sampled_from(["linear", "embedding", "layernorm", "dropout", "act", "buffer"]))
    if choice == "linear":
        return nn.Linear(dim, dim, bias=draw(st.booleans()))
    if choice == "embedding":
        return nn.Embedding(draw(st.integers(2, 12)), dim,
                            padding_idx=draw(st.sampled_from([None, 0])))
    if choice == "layernorm":
        return nn.LayerNorm(dim, eps=draw(st.sampled_from([1e-5, 1e-6, 1e-12])),
                            elementwise_affine=draw(st.booleans()))
    if choice == "dropout":
        return nn.Dropout(draw(st.sampled_from([0.0, 0.1, 0.2, 0.5])))
    if choice == "act":
        return draw(st.sampled_from([nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh]))()
    module = nn.Module()
    module.register_buffer("stat", __import__("torch").zeros(dim),
                           persistent=draw(st.booleans()))
    return module


@st.composite
def _tree(draw: st.DrawFn, depth: int, dim: int) -> Any:
    from torch import nn

    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(_leaf(dim))
    n = draw(st.integers(1, 4))
    kids = [draw(_tree(depth - 1, dim)) for _ in range(n)]
    container = draw(st.sampled_from(["sequential", "list", "dict", "plain"]))
    if container == "sequential":
        return nn.Sequential(*kids)
    if container == "list":
        if draw(st.booleans()):  # identical repeats, as in a transformer stack
            import copy

            return nn.ModuleList([kids[0]] + [copy.deepcopy(kids[0]) for _ in range(n)])
        return nn.ModuleList(kids)
    if container == "dict":
        # not a name nn.ModuleDict already has ("to", "eval"): ModuleDict refuses those
        names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
                              .filter(lambda s: not hasattr(nn.ModuleDict, s)),
                              min_size=n, max_size=n, unique=True))
        return nn.ModuleDict(dict(zip(names, kids, strict=False)))
    plain = nn.Module()
    for i, k in enumerate(kids):
        plain.add_module(f"m{i}", k)
    return plain


@st.composite
def modules(draw: st.DrawFn, *, max_depth: int = 3) -> Any:
    """Random ``nn.Module`` trees: nested Sequential/ModuleList/ModuleDict; Linear, Embedding,
    LayerNorm, Dropout, activations and buffers as leaves; sometimes a submodule shared at
    two paths and a parameter tied between two layers. Tiny (CPU, a few thousand weights)."""
    import torch
    from torch import nn

    dim = draw(st.integers(1, 8))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    root = nn.Module()
    root.add_module("body", draw(_tree(max_depth, dim)))
    if draw(st.booleans()):
        shared = nn.Linear(dim, dim)
        root.add_module("left", shared)
        root.add_module("right", shared)
    if draw(st.booleans()):
        enc, dec = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        dec.weight = enc.weight
        root.add_module("enc", enc)
        root.add_module("dec", dec)
    if draw(st.booleans()):
        root.body.requires_grad_(False)
    return root


# -- graphs without torch --------------------------------------------------------------------
_names = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
_attr_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=4)


@st.composite
def graphs(draw: st.DrawFn, *, max_nodes: int = 12) -> ModelGraph:
    """Random, internally consistent ModelGraphs built without torch: a tree of nodes with
    attributes, tensors (some tied, some buffers), repeat groups and optional HF facts."""
    n = draw(st.integers(1, max_nodes))
    paths = [""]
    parents: list[tuple[str, str, str]] = []
    for _ in range(n - 1):
        parent = draw(st.sampled_from(paths))
        name = draw(_names)
        path = f"{parent}.{name}" if parent else name
        if path in paths:
            continue
        paths.append(path)
        parents.append((parent, name, path))
    kinds = list(Kind)
    tensors_of: dict[str, tuple[Tensor, ...]] = {}
    for p in paths:
        ts = draw(st.lists(st.builds(
            Tensor, name=_names, shape=st.lists(st.integers(0, 64), max_size=3).map(tuple),
            dtype=st.sampled_from(["float32", "float16", "bfloat16", "int64"]),
            device=st.sampled_from(["cpu", "meta"]), requires_grad=st.booleans(),
            buffer=st.booleans(), persistent=st.booleans()), max_size=3,
            unique_by=lambda t: t.name))
        tensors_of[p] = tuple(ts)
    ties: list[Tie] = []
    flat = [(p, t) for p in paths for t in tensors_of[p] if not t.buffer]
    if len(flat) >= 2 and draw(st.booleans()):
        (sp, st_), (tp, tt) = flat[0], flat[-1]
        if (sp, st_.name) != (tp, tt.name):
            source = f"{sp}.{st_.name}" if sp else st_.name
            target = f"{tp}.{tt.name}" if tp else tt.name
            ties.append(Tie(source=source, target=target))
            tensors_of[tp] = tuple(
                Tensor(name=t.name, shape=t.shape, dtype=t.dtype, device=t.device,
                       requires_grad=t.requires_grad, tied_to=source) if t is tt else t
                for t in tensors_of[tp])
    nodes = tuple(
        Node(path=p, cls=draw(st.sampled_from(["Linear", "Block", "ModuleList", "X"])),
             qualname="pkg.X", kind=draw(st.sampled_from(kinds)),
             attrs=tuple(draw(st.dictionaries(_names, _attr_values, max_size=3)).items()),
             tensors=tensors_of[p],
             totals=Totals(params=draw(st.integers(0, 10**9)), trainable=0, buffers=0, bytes=0))
        for p in paths)
    hf = None
    if draw(st.booleans()):
        hf = HFInfo(model_type="x", architecture="XModel", base_model_prefix="x",
                    tied_weights=tuple((t.target, t.source) for t in ties),
                    config_json=canonical_json(draw(st.dictionaries(
                        _names, st.integers() | st.text(max_size=5), max_size=4))))
    repeats: tuple[RepeatGroup, ...] = ()
    return ModelGraph(nodes=nodes, contains=tuple(parents), ties=tuple(ties), repeats=repeats,
                      hf=hf, source="hypothesis")


# -- transformers configs -------------------------------------------------------------------
def configs(model_type: str) -> st.SearchStrategy[Any]:
    """Tiny valid transformers configs of ``model_type`` (at least distilbert, bert, roberta,
    gpt2, llama and t5), varied in the sizes that change the architecture: layers, heads,
    hidden size, vocabulary, labels, dropout.

    Each is :func:`modeldiff._tiny.tiny_config` with overrides, so the config class validates
    it and special-token ids are clamped into the drawn vocabulary.

    >>> from hypothesis import find
    >>> cfg = find(configs("llama"), lambda c: c.num_hidden_layers == 3 and c.num_labels == 4)
    >>> cfg.hidden_size == cfg.num_attention_heads * cfg.head_dim
    True
    """
    from modeldiff._tiny import tiny_config

    keys = frozenset(tiny_config(model_type).to_dict())  # fails early on an unknown type
    return st.builds(
        lambda **sizes: tiny_config(model_type, **_overrides(keys, **sizes)),
        layers=st.integers(1, 3), heads=st.sampled_from([2, 4]), head_size=st.sampled_from([4, 8]),
        vocab=st.sampled_from([64, 256]), labels=st.integers(1, 4),
        drop=st.sampled_from([0.0, 0.1, 0.2]))


# Config-key families, by what they size. Only keys the config class really has are set.
_LAYER_KEYS = ("num_hidden_layers", "n_layers", "n_layer", "num_layers", "num_decoder_layers")
_HIDDEN_KEYS = ("hidden_size", "d_model", "n_embd", "dim")
_HEAD_KEYS = ("num_attention_heads", "n_heads", "n_head", "num_heads")
_HEAD_SIZE_KEYS = ("head_dim", "d_kv")
_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout", "resid_pdrop", "dropout_rate")


def _overrides(keys: frozenset[str], *, layers: int, heads: int, head_size: int, vocab: int,
               labels: int, drop: float) -> dict[str, Any]:
    out: dict[str, Any] = {k: layers for k in _LAYER_KEYS if k in keys}
    # hidden = heads x head size, so every attention splits evenly; 2 key/value heads divide
    # both head counts.
    out.update({k: heads * head_size for k in _HIDDEN_KEYS if k in keys})
    out.update({k: heads for k in _HEAD_KEYS if k in keys})
    out.update({k: head_size for k in _HEAD_SIZE_KEYS if k in keys})
    if "num_key_value_heads" in keys:
        out["num_key_value_heads"] = 2
    if "vocab_size" in keys:
        out["vocab_size"] = vocab
    out.update({k: drop for k in _DROPOUT_KEYS if k in keys})
    out["num_labels"] = labels
    return out
