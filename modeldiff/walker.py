"""Any model into a :class:`~modeldiff.graph.ModelGraph`: an ``nn.Module``, a transformers
config, a ``model_type`` string, a checkpoint folder, or a hub id.

>>> import torch.nn as nn
>>> g = walk(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
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
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from modeldiff.checkpoint import read_config_json, read_tensor_index
from modeldiff.errors import (
    ConfigError,
    HubUnavailableError,
    InputTypeError,
    UnknownModelTypeError,
    UnsupportedTaskError,
)
from modeldiff.graph import (
    VOLATILE_CONFIG_KEYS,
    HFInfo,
    ModelGraph,
    RepeatGroup,
    Tensor,
    Tie,
    Totals,
    _make_node,
    repeat_groups,
)
from modeldiff.kinds import KindSpec, lookup, parse_attrs, suggest

__all__ = ["TASKS", "build_model", "walk"]

# task= -> the transformers auto class that builds it.
TASKS: Mapping[str, str] = {
    "base": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "multiple-choice": "AutoModelForMultipleChoice",
    "pretraining": "AutoModelForPreTraining",
}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def walk(obj: Any, *, task: str | None = None) -> ModelGraph:
    """Walk ``obj`` into a typed graph.

    ``obj`` may be an ``nn.Module`` (a ``PreTrainedModel`` also records its HF facts), a
    ``ModelGraph`` (returned as is), a transformers config object, a ``model_type`` string
    such as ``"distilbert"`` (its default config), a local checkpoint folder, or a hub id.
    When walk builds the model itself it does so on the meta device (no weight memory),
    with the auto class that ``task`` names (see :data:`TASKS`; default: the base model,
    or for a folder the class in its ``config.json`` ``architectures``). For a folder, dtypes
    and shapes come from the safetensors headers; no tensor is loaded.

    >>> g = walk("distilbert", task="sequence-classification")
    >>> g["classifier"].signature()
    'Linear(in_features=768, out_features=2, bias=True)'
    >>> g.totals.params
    66955010
    """
    if isinstance(obj, ModelGraph):
        return obj
    if isinstance(obj, nn.Module):
        return walk_module(obj)
    if _is_config(obj):
        return _walk_config(obj, task=task, source=f"{type(obj).__name__} (built on meta)")
    if isinstance(obj, (str, os.PathLike)):
        return _walk_name(obj, task=task)
    raise InputTypeError("walk(obj)", obj, "an nn.Module, a transformers config, a model_type "
                         "string, a checkpoint folder, a hub id or a ModelGraph")


# -- names: folders, model types, hub ids ----------------------------------------------------
def _walk_name(obj: str | os.PathLike[str], *, task: str | None) -> ModelGraph:
    text = os.fspath(obj)
    if isinstance(obj, str) and ("\n" in text or len(text) > 4096 or text.endswith(")")):
        from modeldiff.reprtext import looks_like_repr, parse_repr

        if looks_like_repr(text):  # the text print(model) writes, pasted in
            return parse_repr(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _walk_folder(path, task=task)
    if path.is_file():
        if path.name == "config.json":
            return _walk_folder(path.parent, task=task)
        if path.suffix == ".txt":
            from modeldiff.reprtext import parse_repr

            try:
                printed = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                from modeldiff.errors import CheckpointError

                raise CheckpointError(f"cannot read printed model {path}: {e}", path=path) from e
            graph = parse_repr(printed)
            from dataclasses import replace

            return replace(graph, source=f"printed model {path}")
        from modeldiff.errors import CheckpointError

        raise CheckpointError(f"{path} is a file; walk reads a checkpoint folder (the folder "
                              "save_pretrained wrote, with config.json), its config.json, or a "
                              ".txt file of print(model) output", path=path)
    known = _model_types()
    if text in known:
        from transformers import AutoConfig

        return _walk_config(AutoConfig.for_model(text), task=task,
                            source=f"{text} default config (built on meta)")
    if isinstance(obj, os.PathLike) or text.startswith((".", "/", "~")) or (os.sep in text and \
            text.count("/") > 1):
        from modeldiff.errors import CheckpointError

        raise CheckpointError(f"no such folder: {path}", path=path)
    close = suggest(text, known)
    if "/" not in text and close and _close_enough(text, close[0]):
        raise UnknownModelTypeError(text, suggestions=close)
    if not _HUB_ID.match(text):
        raise UnknownModelTypeError(text, suggestions=close)
    return _walk_hub(text, task=task)


def _close_enough(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def _model_types() -> tuple[str, ...]:
    from transformers import CONFIG_MAPPING

    return tuple(CONFIG_MAPPING.keys())


def _walk_hub(model_id: str, *, task: str | None) -> ModelGraph:
    from transformers import AutoConfig

    try:
        # trust_remote_code is never turned on for the user: a repo that needs it fails here.
        config = AutoConfig.from_pretrained(model_id)
    except OSError as e:
        raise HubUnavailableError(model_id, str(e).splitlines()[0]) from e
    except ValueError as e:
        raise ConfigError(f"config of {model_id!r} cannot be used: {e}") from e
    return _walk_config(config, task=task, source=f"{model_id} (hub config, built on meta)")


def _walk_folder(folder: Path, *, task: str | None) -> ModelGraph:
    raw = read_config_json(folder)  # validates existence and JSON before transformers sees it
    model_type = raw.get("model_type")
    cfg_path = folder / "config.json"
    if not isinstance(model_type, str):
        raise ConfigError(f"{cfg_path} has no \"model_type\" field; transformers needs it to "
                          "choose the model class", path=cfg_path)
    known = _model_types()
    if model_type not in known:
        raise UnknownModelTypeError(model_type, suggestions=suggest(model_type, known),
                                    path=cfg_path)
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type, **{k: v for k, v in raw.items()
                                                       if k != "model_type"})
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{cfg_path} cannot be read by transformers: {e}", path=cfg_path) from e
    arch = None
    if task is None:
        archs = raw.get("architectures") or ()
        arch = archs[0] if archs and isinstance(archs[0], str) else None
    model = build_model(config, task=task, architecture=arch)
    overlay = read_tensor_index(folder)
    return walk_module(model, source=f"{folder} (built on meta)", overlay=overlay)


# -- configs ---------------------------------------------------------------------------------
def _is_config(obj: object) -> bool:
    tf = sys.modules.get("transformers")
    if tf is None:
        return False
    return isinstance(obj, tf.PretrainedConfig)


def _walk_config(config: Any, *, task: str | None, source: str) -> ModelGraph:
    return walk_module(build_model(config, task=task), source=source)


def build_model(config: Any, *, task: str | None = None, architecture: str | None = None,
                device: str = "meta") -> nn.Module:
    """Build a transformers model from ``config`` on ``device`` (meta: no weight memory).

    The config is copied first: transformers writes into the config it builds from.
    ``architecture`` (a class name such as ``"BertForMaskedLM"``) wins over ``task``.

    >>> from transformers import DistilBertConfig
    >>> build_model(DistilBertConfig(), task="masked-lm").__class__.__name__
    'DistilBertForMaskedLM'
    """
    import transformers

    config = copy.deepcopy(config)
    cls: Any = None
    if architecture is not None:
        cls = getattr(transformers, architecture, None)
    if cls is None:
        name = task or "base"
        if name not in TASKS:
            raise UnsupportedTaskError(
                f"unknown task {name!r}; choose one of {', '.join(TASKS)}",
                task=name, choices=tuple(TASKS))
        cls = getattr(transformers, TASKS[name])
    try:
        with torch.device(device):
            if hasattr(cls, "from_config"):
                return cls.from_config(config)
            return cls(config)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            offered = _tasks_for(config)
            raise UnsupportedTaskError(
                f"{type(config).__name__} ({config.model_type}) has no {task or 'base'} model "
                f"in transformers; it offers: {', '.join(offered) or 'none of the mapped tasks'}",
                task=task or "base", choices=offered) from e
        raise ConfigError(f"cannot build a {config.model_type} model from this config: {e}") from e


def _tasks_for(config: Any) -> tuple[str, ...]:
    import transformers

    out = []
    for task, auto in TASKS.items():
        mapping = getattr(transformers, auto)._model_mapping
        if type(config) in mapping:
            out.append(task)
    return tuple(out)


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


_spec_cache: dict[tuple[type, bool], tuple[str, str, KindSpec, int]] = {}


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
        walker = _Walker(model, overlay)
        walker.visit(model, "")
        order = {p: i for i, p in enumerate(walker.paths)} if walker.repeats else {}
        walker.repeats.sort(key=lambda r: order[r.paths[0]])
        return ModelGraph(nodes=tuple(walker.nodes), contains=tuple(walker.contains),
                          ties=tuple(walker.ties), repeats=tuple(walker.repeats),
                          hf=_hf_info(model),
                          source=source or f"{type(model).__name__} ({_where(model)})")
    finally:
        if gc_was_enabled:
            gc.enable()


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
        prefix = getattr(model, "base_model_prefix", "") or ""
        if len(_totals_cache) > 100_000 or len(_attrs_cache) > 100_000:  # bound memory
            _totals_cache.clear()
            _attrs_cache.clear()
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
                t = Tensor(name=t.name, shape=hit[1], dtype=hit[0], device=t.device,
                           requires_grad=t.requires_grad, buffer=t.buffer,
                           persistent=t.persistent, tied_to=t.tied_to)
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

        def visit(mod: nn.Module, path: str) -> tuple[int, tuple[int, int, int, int]]:
            """Returns (subtree signature id, subtree sums)."""
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
                    contains.append((path, name, cpath))
                    slot = len(paths)
                    kid_sig, (kp, kt, kb, ky) = visit(child, cpath)
                    kid_sigs.append(kid_sig)
                    params += kp
                    trainable += kt
                    buffers += kb
                    nbytes += ky
                    if name.isdecimal():  # numbered, as graph.repeat_groups reads them
                        numbered.append((cpath, kid_sig, nodes[slot].cls))
                else:
                    contains.append((path, name, paths[j]))
                    add_aliases(child, cpath, set())
            cls = type(mod)
            cs = spec_cache.get((cls, bool(submods)))
            if cs is None:
                cs = _class_spec(cls, bool(submods))
            cname, qual, spec, has_extra = cs
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
            nodes[idx] = _make_node(path, cname, qual, spec.kind, attrs, tuple(own), (), totals)
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
    for p in model.parameters():
        return str(p.device)
    return "no parameters"


def _hf_info(model: nn.Module) -> HFInfo | None:
    tf = sys.modules.get("transformers")
    if tf is None or not isinstance(model, tf.PreTrainedModel):
        return None
    config = model.config
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None:
        tied = getattr(model, "_tied_weights_keys", None)
    if isinstance(tied, Mapping):
        pairs = tuple(sorted((str(k), str(v)) for k, v in tied.items()))
    else:
        pairs = tuple((str(k), "") for k in (tied or ()))
    return HFInfo(
        model_type=str(getattr(config, "model_type", "")),
        architecture=type(model).__name__,
        base_model_prefix=str(getattr(model, "base_model_prefix", "") or ""),
        tied_weights=pairs,
        ignore_missing=tuple(getattr(model, "_keys_to_ignore_on_load_missing", None) or ()),
        ignore_unexpected=tuple(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()),
        config_json=_config_json(config),
    )


# id(config) -> (type, deep snapshot of its __dict__, canonical JSON). to_dict() deep-copies the
# config, a tenth of a small model's walk; the snapshot check finds any later change to the
# config, in place or nested, and a reused id of another config (different snapshot).
_config_cache: dict[int, tuple[type, dict[str, Any], str]] = {}


def _config_json(config: Any) -> str:
    from modeldiff.graph import canonical_json

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
