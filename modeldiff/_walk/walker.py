"""A live ``nn.Module`` into a :class:`~modeldiff._core.graph.ModelGraph`. Everything else a
user passes (configs, names, folders, printed text) reaches here through the input layer,
:mod:`modeldiff._inputs`, which builds the module first.

>>> import torch.nn as nn
>>> g = walk_module(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
>>> [n.path for n in g]
['', '0', '1', '2']
>>> g["0"].attributes["out_features"], g.totals.params
(8, 58)

walk only reads: it registers no hooks, calls no forward, changes no flag, and never
materialises a model that lives on the meta device.
"""

from __future__ import annotations

import copy
import gc
import sys
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from modeldiff import limits
from modeldiff._compat import tied_weight_pairs
from modeldiff._core.graph import (
    VOLATILE_CONFIG_KEYS,
    HFInfo,
    ModelGraph,
    RepeatGroup,
    Tensor,
    Tie,
    Totals,
    make_node,
    recursion_room,
    repeat_groups,
)
from modeldiff.errors import ModuleWalkError
from modeldiff.kinds import KindSpec, lookup, parse_attrs
from modeldiff.kinds import registry as kind_registry

__all__ = ["walk_module"]

# -- the walk itself -------------------------------------------------------------------------
_dtype_names: dict[torch.dtype, str] = {}
_device_names: dict[torch.device, str] = {}
_class_info: dict[type, tuple[str, str, tuple[str, ...], bool, int]] = {}
_BASE_EXTRA_REPR = nn.Module.extra_repr
_BASE_REPR = nn.Module.__repr__
# Where a class's attributes come from: nowhere, its extra_repr(), or (leaves only) the text
# inside its own __repr__'s parentheses.
_ATTRS_NONE, _ATTRS_EXTRA_REPR, _ATTRS_OWN_REPR = 0, 1, 2


def _info(cls: type) -> tuple[str, str, tuple[str, ...], bool, int]:
    """(name, qualified name, MRO names, is a PreTrainedModel, where its attributes print:
    one of the _ATTRS_* modes)."""
    info = _class_info.get(cls)
    if info is None:
        tf = sys.modules.get("transformers")
        is_model = bool(tf is not None and issubclass(cls, tf.PreTrainedModel))
        mro = tuple(c.__name__ for c in cls.__mro__[1:] if c is not nn.Module and c is not object)
        if getattr(cls, "extra_repr", _BASE_EXTRA_REPR) is not _BASE_EXTRA_REPR:
            mode = _ATTRS_EXTRA_REPR
        elif cls.__repr__ is not _BASE_REPR:
            mode = _ATTRS_OWN_REPR
        else:
            mode = _ATTRS_NONE
        info = (cls.__name__, f"{cls.__module__}.{cls.__qualname__}", mro, is_model, mode)
        _class_info[cls] = info
    return info


# Class -> (name, qualified name, KindSpec, attribute mode). The specs are the kind
# registry's answers: the table is dropped whenever the registry's version moves on (a kind
# registered after a walk applies to the next walk).
_spec_cache: dict[tuple[type, bool], tuple[str, str, KindSpec, int]] = {}
_spec_version = [-1]


def _class_spec(cls: type, has_children: bool) -> tuple[str, str, KindSpec, int]:
    """(class name, qualified name, KindSpec, where its attributes print: one of the
    _ATTRS_* modes), cached per class."""
    hit = _spec_cache.get((cls, has_children))
    if hit is None:
        cname, qual, mro, is_model, has_extra = _info(cls)
        spec = lookup(cname, mro=mro, has_children=has_children, is_model=is_model)
        hit = _spec_cache[(cls, has_children)] = (cname, qual, spec, has_extra)
    return hit


def walk_module(model: nn.Module, *, source: str | None = None,
                overlay: Mapping[str, tuple[str, tuple[int, ...]]] | None = None) -> ModelGraph:
    """Walk a live module. ``overlay`` maps checkpoint keys to (dtype, shape) read from a
    checkpoint folder's headers; they replace what the meta-built model says."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a walk allocates thousands of small objects: no collector pauses mid-walk
    try:
        # visit recurses once per nesting level (pure Python frames, no C stack): make room
        # for limits.MAX_WALK_DEPTH levels for the walk's duration.
        with recursion_room(limits.MAX_WALK_DEPTH):
            walker = _Walker(model, overlay)
            try:
                walker.visit(model, "", 0)
            except ModuleWalkError:
                raise
            except (AttributeError, TypeError) as e:
                # a module that skipped nn.Module.__init__, a non-tensor in _parameters ...
                where = walker.paths[-1] if walker.paths else ""
                raise ModuleWalkError(
                    f"cannot walk {type(model).__name__}: the module at {where or '(root)'!r} "
                    f"is not a well-formed nn.Module ({type(e).__name__}: {e})",
                    path=where) from e
        order = {p: i for i, p in enumerate(walker.paths)} if walker.repeats else {}
        walker.repeats.sort(key=lambda r: order[r.paths[0]])
        return ModelGraph(nodes=tuple(walker.nodes), contains=tuple(walker.contains),
                          ties=tuple(walker.ties), repeats=tuple(walker.repeats),
                          hf=_hf_info(model),
                          source=source or f"{type(model).__name__} ({_where(model)})")
    finally:
        if gc_was_enabled:
            gc.enable()


def _patterns(value: Any) -> tuple[str, ...]:
    """A class's ignore patterns as a tuple. Some classes set one pattern as a bare string
    (transformers 4.x DebertaV2ForMaskedLM: ``r"mask_predictions.*"``), which must not be read
    as one pattern per character."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(p) for p in value or ())


def _safe_getattr(obj: Any, name: str, default: Any) -> Any:
    """getattr that survives a ``__getattr__`` raising something other than AttributeError."""
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


_totals_cache: dict[tuple[int, int, int, int], Totals] = {}
_attrs_cache: dict[tuple[Any, str], Any] = {}


class _Walker:
    """One depth-first pass in ``named_modules()`` order. Nodes get their pre-order slot on
    the way down and are built on the way up, when their subtree's totals and signature
    (for repeat groups) are known. This is walk's hot loop: state lives in closure cells
    rather than attributes, and it avoids per-tensor Python properties, generator
    expressions and a second pass."""

    def __init__(self, model: nn.Module, overlay: Mapping[str, tuple[str, tuple[int, ...]]] | None
                 ) -> None:
        paths: list[str] = []
        nodes: list[Any] = []
        contains: list[tuple[str, str, str]] = []
        ties: list[Tie] = []
        repeats: list[RepeatGroup] = []
        seen_mod: dict[int, int] = {}
        seen_tensor: dict[int, str] = {}
        interned: dict[tuple[Any, ...], Tensor] = {}
        sizes: dict[int, tuple[int, int, int, int]] = {}
        sig_table: dict[tuple[Any, ...], int] = {}
        linear_cache: dict[tuple[int, int, bool], Any] = {}
        resolved: dict[str, Tensor] = {}
        overlaid: dict[tuple[Any, ...], Tensor] = {}
        prefix = _safe_getattr(model, "base_model_prefix", "") or ""
        if not isinstance(prefix, str):
            prefix = ""
        if len(_totals_cache) > 100_000 or len(_attrs_cache) > 100_000:  # bound memory
            _totals_cache.clear()
            _attrs_cache.clear()
        if _spec_version[0] != kind_registry.version:
            _spec_cache.clear()
            _spec_version[0] = kind_registry.version
        totals_cache, attrs_cache, spec_cache = _totals_cache, _attrs_cache, _spec_cache
        linear = nn.Linear
        plain_cache: dict[tuple[Any, ...], Any] = {}
        plain_cache_classes = _PLAIN_KEYS
        self.paths, self.nodes, self.contains, self.ties, self.repeats = (
            paths, nodes, contains, ties, repeats)

        def apply_overlay(full: str, t: Tensor) -> Tensor:
            """What the checkpoint's headers say about ``full``. Checkpoint keys may carry or
            lack the base model prefix (a base checkpoint under a head class, or the
            reverse), so both spellings are tried; a tensor the checkpoint does not hold
            (tied weights, fresh heads) keeps the built values, a tied one its source's."""
            assert overlay is not None
            hit = overlay.get(full)
            if hit is None and prefix:
                if full.startswith(prefix + "."):
                    hit = overlay.get(full[len(prefix) + 1:])
                else:
                    hit = overlay.get(f"{prefix}.{full}")
            if hit is None and t.tied_to is not None and t.tied_to in resolved:
                src = resolved[t.tied_to]
                hit = (src.dtype, src.shape)
            if hit is not None and (hit[0] != t.dtype or hit[1] != t.shape):
                # Interned like every other Tensor: the repeat-group signature compares
                # tensors by identity, so equal overlaid tensors must be the same object
                # (a bf16 folder folds exactly like the fp32 one).
                okey = (t.name, hit[1], hit[0], t.device, t.requires_grad, t.buffer,
                        t.persistent, t.tied_to)
                t = overlaid.get(okey) or overlaid.setdefault(okey, Tensor(
                    name=t.name, shape=hit[1], dtype=hit[0], device=t.device,
                    requires_grad=t.requires_grad, buffer=t.buffer, persistent=t.persistent,
                    tied_to=t.tied_to))
            resolved[full] = t
            return t

        def tensor(name: str, full: str, t: torch.Tensor, buffer: bool, persistent: bool
                   ) -> Tensor:
            first = seen_tensor.get(id(t))
            if first is None:
                seen_tensor[id(t)] = full
            else:
                ties.append(Tie(source=first, target=full))
            requires_grad, shape, dtype, device = t.requires_grad, t.shape, t.dtype, t.device
            key = (name, shape, dtype, device, requires_grad, buffer, persistent)
            out = interned.get(key) if first is None else None
            if out is None:
                dt = _dtype_names.get(dtype)
                if dt is None:
                    dt = _dtype_names[dtype] = str(dtype).removeprefix("torch.")
                dev = _device_names.get(device)
                if dev is None:
                    dev = _device_names[device] = str(device)
                out = Tensor(name=name, shape=tuple(shape), dtype=dt, device=dev,
                             requires_grad=requires_grad, buffer=buffer, persistent=persistent,
                             tied_to=first)
                if first is None:
                    interned[key] = out
            if overlay is not None:
                out = apply_overlay(full, out)
            return out

        def add_aliases(mod: nn.Module, alias: str, guard: set[int]) -> None:
            i = seen_mod.get(id(mod))
            if i is None or id(mod) in guard:
                return
            guard.add(id(mod))
            node = nodes[i]
            object.__setattr__(node, "aliases", (*node.aliases, alias))
            for name, child in mod._modules.items():
                if child is not None:
                    add_aliases(child, f"{alias}.{name}", guard)

        max_depth = limits.MAX_WALK_DEPTH
        module_type = nn.Module

        def visit(mod: nn.Module, path: str, depth: int) -> tuple[int, tuple[int, int, int, int]]:
            """Returns (subtree signature id, subtree sums)."""
            if depth > max_depth:
                raise ModuleWalkError(
                    f"modules are nested more than {max_depth:,} deep (at {path[:200]!r}...); "
                    f"walk stops there ({limits.hint('MAX_WALK_DEPTH')})", path=path[:1000])
            idx = len(paths)
            seen_mod[id(mod)] = idx
            paths.append(path)
            nodes.append(None)
            pre = f"{path}." if path else ""
            own: list[Tensor] = []
            for name, p in mod._parameters.items():
                if p is not None:
                    own.append(tensor(name, pre + name, p, False, True))
            if mod._buffers:
                non_persistent = mod._non_persistent_buffers_set
                for name, b in mod._buffers.items():
                    if b is not None:
                        own.append(tensor(name, pre + name, b, True, name not in non_persistent))
            params = trainable = buffers = nbytes = 0
            for t in own:
                sz = sizes.get(id(t))
                if sz is None:
                    sz = sizes[id(t)] = _share(t)
                params += sz[0]
                trainable += sz[1]
                buffers += sz[2]
                nbytes += sz[3]
            submods = mod._modules
            kid_sigs: list[int] = []
            numbered: list[tuple[str, int, str]] = []
            for name, child in submods.items():
                if child is None:
                    continue
                cpath = pre + name
                j = seen_mod.get(id(child))
                if j is None:
                    if not isinstance(child, module_type):
                        raise ModuleWalkError(
                            f"{cpath!r} in _modules of {type(mod).__name__} is a "
                            f"{type(child).__name__}, not an nn.Module; only modules may be "
                            "registered as submodules", path=cpath)
                    contains.append((path, name, cpath))
                    slot = len(paths)
                    kid_sig, (kp, kt, kb, ky) = visit(child, cpath, depth + 1)
                    kid_sigs.append(kid_sig)
                    params += kp
                    trainable += kt
                    buffers += kb
                    nbytes += ky
                    if name.isdecimal():  # numbered, as graph.repeat_groups reads them
                        numbered.append((cpath, kid_sig, nodes[slot].cls))
                else:
                    if nodes[j] is None:  # still being built: an ancestor of this module
                        raise ModuleWalkError(
                            f"{cpath[:200]!r} is the module at {paths[j][:200] or '(root)'!r}, "
                            "one of its own ancestors: the module tree has a cycle "
                            "(print(model) and state_dict() would recurse forever)", path=cpath)
                    contains.append((path, name, paths[j]))
                    add_aliases(child, cpath, set())
            cls = type(mod)
            cs = spec_cache.get((cls, bool(submods)))
            if cs is None:
                cs = _class_spec(cls, bool(submods))
            cname, qual, spec, has_extra = cs
            try:
                if cls is linear:  # the most common class: key on what its extra_repr prints
                    lin = cast(nn.Linear, mod)
                    lkey = (lin.in_features, lin.out_features, mod._parameters.get("bias") is not None)
                    attrs = linear_cache.get(lkey)
                    if attrs is None:
                        attrs = linear_cache[lkey] = parse_attrs(spec, mod.extra_repr())
                elif cls in plain_cache_classes:
                    # Dropout, LayerNorm, Embedding: key on the fields their extra_repr prints
                    pkey = _plain_key(mod)
                    attrs = plain_cache.get(pkey)
                    if attrs is None:
                        attrs = plain_cache[pkey] = parse_attrs(spec, mod.extra_repr())
                elif has_extra:
                    text = mod.extra_repr() if has_extra == _ATTRS_EXTRA_REPR else _own_repr_text(mod)
                    akey = (spec, text)
                    attrs = attrs_cache.get(akey)
                    if attrs is None:
                        attrs = attrs_cache[akey] = parse_attrs(spec, text)
                else:
                    attrs = ()
            except Exception:
                # extra_repr() raised or returned a non-string, or a field it prints is
                # gone: print(model) would fail too. The walk goes on, attributes unknown.
                attrs = ()
            sums = (params, trainable, buffers, nbytes)
            totals = totals_cache.get(sums)
            if totals is None:
                totals = totals_cache[sums] = Totals(params=params, trainable=trainable,
                                                     buffers=buffers, bytes=nbytes)
            # Equal signatures <=> equal subtrees: interned Tensor objects are equal exactly
            # when they are the same object, and the children's signatures are known.
            sig_key = (qual, attrs, tuple(map(id, own)), tuple(submods), tuple(kid_sigs))
            sig = sig_table.get(sig_key)
            if sig is None:
                sig = sig_table[sig_key] = len(sig_table)
            nodes[idx] = make_node(path, cname, qual, spec.kind, attrs, tuple(own), (), totals)
            if len(numbered) > 1:
                repeats.extend(repeat_groups(path, numbered))
            return sig, sums

        self.visit = visit


def _own_repr_text(mod: nn.Module) -> str:
    """For a leaf class that overrides ``__repr__`` instead of ``extra_repr`` (GPT-2's
    ``Conv1D(nf=.., nx=..)``): the text its repr puts inside ``Name(...)``, as print shows."""
    if mod._modules:
        return ""
    try:
        text = repr(mod)  # a custom repr may compute on values, which fails on meta
    except Exception:
        return ""
    name = type(mod).__name__
    if text.startswith(name + "(") and text.endswith(")") and "\n" not in text:
        return text[len(name) + 1:-1]
    return ""


# Exact classes whose extra_repr() is a function of a few plain fields, so walk can cache
# the parsed attributes on those fields instead of formatting and parsing text per module.
# Subclasses are not included: they may print differently.
_PLAIN_KEYS: dict[type, Any] = {
    nn.Dropout: lambda m: (m.p, m.inplace),
    nn.LayerNorm: lambda m: (m.normalized_shape, m.eps, m.elementwise_affine,
                             m._parameters.get("bias") is not None),
    nn.Embedding: lambda m: (m.num_embeddings, m.embedding_dim, m.padding_idx, m.max_norm,
                             m.norm_type, m.scale_grad_by_freq, m.sparse),
}


def _plain_key(mod: nn.Module) -> tuple[Any, ...]:
    cls = type(mod)
    return (cls, *_PLAIN_KEYS[cls](mod))


def _share(t: Tensor) -> tuple[int, int, int, int]:
    """(params, trainable, buffer elements, bytes) that ``t`` adds to its module's totals."""
    if t.tied_to is not None:
        return (0, 0, 0, 0)
    size = t.numel
    if t.buffer:
        return (0, 0, size, t.nbytes)
    return (size, size if t.requires_grad else 0, 0, t.nbytes)


def _where(model: nn.Module) -> str:
    try:
        for p in model.parameters():
            return str(p.device)
    except Exception:  # a parameters() of the model's own that raises
        return "device unknown"
    return "no parameters"


def _hf_info(model: nn.Module) -> HFInfo | None:
    tf = sys.modules.get("transformers")
    if tf is None or not isinstance(model, tf.PreTrainedModel):
        return None
    config = model.config
    try:
        pairs = tied_weight_pairs(model)
    except Exception:  # a module whose attributes raise: no declared ties to report
        pairs = ()
    return HFInfo(
        model_type=str(_safe_getattr(config, "model_type", "")),
        architecture=type(model).__name__,
        base_model_prefix=str(_safe_getattr(model, "base_model_prefix", "") or ""),
        tied_weights=pairs,
        ignore_missing=_patterns(_safe_getattr(model, "_keys_to_ignore_on_load_missing", None)),
        ignore_unexpected=_patterns(_safe_getattr(model, "_keys_to_ignore_on_load_unexpected",
                                                  None)),
        config_json=_config_json(config),
    )


# id(config) -> (type, deep snapshot of its __dict__, canonical JSON). to_dict() deep-copies the
# config, a tenth of a small model's walk; the snapshot check finds any later change to the
# config, in place or nested, and a reused id of another config (different snapshot).
_config_cache: dict[int, tuple[type, dict[str, Any], str]] = {}


def _config_json(config: Any) -> str:
    from modeldiff._core.graph import canonical_json

    hit = _config_cache.get(id(config))
    if hit is not None and hit[0] is type(config):
        try:
            if hit[1] == config.__dict__:
                return hit[2]
        except Exception:  # a value that cannot be compared (a tensor): recompute
            pass
    cfg = {k: v for k, v in config.to_dict().items() if k not in VOLATILE_CONFIG_KEYS}
    text = canonical_json(cfg)
    try:
        snapshot = copy.deepcopy(config.__dict__)
    except Exception:
        return text
    if len(_config_cache) > 256:
        _config_cache.clear()
    _config_cache[id(config)] = (type(config), snapshot, text)
    return text
