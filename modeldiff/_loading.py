"""``load_report``: what ``from_pretrained`` will say, before anything is loaded.

The checkpoint is read as a table of keys and shapes (safetensors headers, never weights;
or the state dict a model or graph would save), the target class is built on the meta
device from the checkpoint's own config (as ``from_pretrained`` builds it), and the core
(:mod:`modeldiff._core.load_report`) runs transformers' loading rules on the two. Key
renames come from transformers' own conversion mapping for the target class, applied with
its own ``rename_source_key``, so a checkpoint in an older layout is predicted as
transformers renames it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from modeldiff._core.graph import ModelGraph
from modeldiff._core.load_report import (
    LoadReport,
    LoadTarget,
    Rename,
    Shape,
    graph_checkpoint,
    graph_target,
    predict_load,
)
from modeldiff._inputs import TASKS, build_model, model_types
from modeldiff.errors import InputTypeError, UnsupportedTaskError

__all__ = ["load_report", "load_target"]


def load_report(checkpoint: Any, target: Any, *, task: str | None = None) -> LoadReport:
    """What ``from_pretrained(checkpoint)`` into ``target`` will report, from headers only.

    ``checkpoint``: a checkpoint folder (its safetensors headers and config.json are read;
    no tensor is), an ``nn.Module`` or a :class:`~modeldiff.ModelGraph` (what it would
    save). ``target``: a model class (``BertForQuestionAnswering``), a task
    (``"question-answering"``, see :data:`modeldiff._inputs.TASKS`), a ``model_type``, a
    model or a graph. A class or task is built on the meta device from the checkpoint's
    config, as ``from_pretrained`` would; ``task`` picks the head when ``target`` is a
    ``model_type``.

    >>> import modeldiff
    >>> base = modeldiff.walk("distilbert")
    >>> r = modeldiff.load_report(base, "sequence-classification")
    >>> r.missing
    ('pre_classifier.weight', 'pre_classifier.bias', 'classifier.weight', 'classifier.bias')
    >>> r.new_modules, r.ok
    (('pre_classifier', 'classifier', 'dropout'), True)
    """
    ckpt, config, name, source_model = _checkpoint(checkpoint)
    model_or_graph = _target_model(target, task=task, config=config)
    if isinstance(model_or_graph, ModelGraph):
        spec, rename = graph_target(model_or_graph), _rename_for_graph(model_or_graph)
    else:
        spec, rename = load_target(model_or_graph), _renamer(model_or_graph)
    if source_model is not None:
        ckpt = _saved_keys(source_model)
    return predict_load(ckpt, spec, rename=rename, checkpoint_name=name)


# -- the checkpoint side -----------------------------------------------------------------------
def _checkpoint(obj: Any) -> tuple[dict[str, Shape | None], Any, str, Any]:
    """``(key -> shape, config or None, display name, module or None)``."""
    if isinstance(obj, ModelGraph):
        config = _graph_config(obj)
        rebuilt = _rebuilt(obj, config)
        if rebuilt is not None:  # its saved layout differs from its modules: save as it would
            return {}, config, obj.root.cls, rebuilt
        return graph_checkpoint(obj), config, obj.root.cls, None
    if _is_module(obj):
        return {}, getattr(obj, "config", None), type(obj).__name__, obj
    if isinstance(obj, (str, os.PathLike)) and os.path.isdir(obj):
        from pathlib import Path

        from modeldiff._inputs import folder_config
        from modeldiff._walk.checkpoint import read_tensor_index

        index = read_tensor_index(obj)
        # the input layer's reading: config.json validated, never the checkpoint's own code
        config, _ = folder_config(Path(obj), task=None)
        return {k: v[1] for k, v in index.items()}, config, os.fspath(obj), None
    if isinstance(obj, (str, os.PathLike)):
        from modeldiff.errors import CheckpointError

        raise CheckpointError(
            f"load_report(checkpoint): no such folder: {os.fspath(obj)} (a checkpoint is the "
            "folder save_pretrained wrote, a model or a graph; hub ids are not fetched)",
            path=os.fspath(obj))
    raise InputTypeError("load_report(checkpoint)", obj,
                         "a checkpoint folder, an nn.Module or a ModelGraph")


def _rebuilt(g: ModelGraph, config: Any) -> Any:
    """The model behind ``g`` rebuilt on meta, when transformers has a key conversion for
    one of its classes (then the saved key names differ from the module structure);
    otherwise None, and the graph's own names are the checkpoint's."""
    if g.hf is None or config is None or not _has_conversions(g):
        return None
    try:
        return _meta_build(config, architecture=g.hf.architecture)
    except Exception:  # a class that no longer builds from this config: use the graph
        return None


def _has_conversions(g: ModelGraph) -> bool:
    from modeldiff._core.graph import Kind

    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # transformers 4: no conversion mapping
        return False
    names = {n.cls for n in g.nodes if n.kind == Kind.MODEL}
    assert g.hf is not None
    names |= set(_model_types(g.hf.config))
    return any(get_checkpoint_conversion_mapping(n) for n in names)


def _model_types(cfg: Any) -> list[str]:
    out = []
    if isinstance(cfg, dict):
        if isinstance(cfg.get("model_type"), str):
            out.append(cfg["model_type"])
        for v in cfg.values():
            out += _model_types(v)
    return out


def _saved_keys(model: Any) -> dict[str, Shape | None]:
    """What ``model.save_pretrained`` would write: tied copies left out, the hub layout
    restored (transformers' own ``revert_weight_conversion``), shapes kept."""
    sd = model.state_dict()
    tf = _transformers()
    if tf is not None and isinstance(model, tf.PreTrainedModel):
        from transformers.modeling_utils import remove_tied_weights_from_state_dict

        # a model whose tie declarations do not match its tensors keeps them all
        with contextlib.suppress(Exception):
            sd = remove_tied_weights_from_state_dict(sd, model)
        try:
            from transformers.core_model_loading import revert_weight_conversion

            sd = revert_weight_conversion(model, sd)
        except Exception:  # an op without a meta-device path: keep the model's names
            pass
    return {k: tuple(v.shape) for k, v in sd.items()}


def _graph_config(g: ModelGraph) -> Any:
    if g.hf is None:
        return None
    from transformers import AutoConfig

    cfg = g.hf.config
    model_type = cfg.pop("model_type", g.hf.model_type)
    try:
        return AutoConfig.for_model(model_type, **cfg)
    except Exception:  # a config transformers no longer reads as written
        return None


# -- the target side ---------------------------------------------------------------------------
def _target_model(target: Any, *, task: str | None, config: Any) -> Any:
    """The target as a model on meta (or a graph as it is)."""
    if isinstance(target, ModelGraph) or _is_module(target):
        return target
    if isinstance(target, type):
        if config is None:
            raise InputTypeError("load_report(target)", target,
                                 "a model or graph when the checkpoint has no config")
        name: str = getattr(target, "__name__", "")
        if getattr(_transformers(), name, None) is target:
            return _meta_build(config, architecture=name)
        return _build_class(target, config)
    if isinstance(target, str):
        if target in TASKS:
            if config is None:
                raise InputTypeError("load_report(target)", target,
                                     "a model or graph when the checkpoint has no config")
            return _meta_build(config, task=target)
        tf = _transformers()
        if tf is not None and hasattr(tf, target) and isinstance(getattr(tf, target), type):
            return _target_model(getattr(tf, target), task=task, config=config)
        if target in model_types():
            if config is None or config.model_type != target:
                from transformers import AutoConfig

                config = AutoConfig.for_model(target)
            return _meta_build(config, task=task)
        raise UnsupportedTaskError(
            f"load_report(target={target!r}): not a task ({', '.join(TASKS)}), a "
            "transformers class name or a model_type", task=target, choices=tuple(TASKS))
    raise InputTypeError("load_report(target)", target,
                         "a model class, a task, a model_type, a model or a ModelGraph")


def _meta_build(config: Any, **kwargs: Any) -> Any:
    """build_model on meta without running the initialisers, as from_pretrained builds
    (transformers' own ``no_init_weights``): on meta they compute nothing, but for a
    405B-shaped model they cost two thirds of the build."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4
        return build_model(config, device="meta", **kwargs)
    with no_init_weights():
        return build_model(config, device="meta", **kwargs)


def _build_class(cls: type, config: Any) -> Any:
    import torch

    with torch.device("meta"):
        return cls(config)


def load_target(model: Any) -> LoadTarget:
    """What the core needs to know about ``model`` (a transformers model, built on meta or
    not): state-dict keys and shapes, modules, declared ties, ignore patterns."""
    sd = model.state_dict()
    buffers = [n for n, _ in model.named_buffers()]
    unexpected = set(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ())
    if any(b.endswith("rotary_emb.inv_freq") for b in buffers):
        unexpected.add(r"rotary_emb\.inv_freq")
    if any(b.endswith("position_ids") for b in buffers):
        unexpected.add(r"(^|\.)position_ids$")
    ties = getattr(model, "all_tied_weights_keys", None) or {}
    return LoadTarget(
        cls=type(model).__name__,
        prefix=str(getattr(model, "base_model_prefix", "") or ""),
        keys={k: tuple(v.shape) for k, v in sd.items()},
        modules=tuple(n for n, _ in model.named_modules()),
        ties=tuple((str(t), str(s)) for t, s in dict(ties).items()),
        ignore_missing=tuple(sorted(getattr(model, "_keys_to_ignore_on_load_missing", None)
                                    or ())),
        ignore_unexpected=tuple(sorted(unexpected)),
    )


def _rename_for_graph(g: ModelGraph) -> Any:
    """Rename rules of a graph's class: its own (the class rebuilt on meta from its config)
    when transformers has any for its classes, else the legacy ones every load applies."""
    model = _rebuilt(g, _graph_config(g)) if g.hf is not None else None
    if model is not None:
        return _renamer(model)
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:
        return None
    return _renamer_of(get_checkpoint_conversion_mapping("legacy") or [])


# -- transformers' rename rules ------------------------------------------------------------------
def _renamer(model: Any) -> Any:
    """``key -> (renamed, Rename or None, converter targets)`` with transformers' own
    conversion mapping and ``rename_source_key`` (the prefix step is the core's)."""
    tf = _transformers()
    if tf is None or not isinstance(model, tf.PreTrainedModel):
        return None
    from transformers.conversion_mapping import get_model_conversion_mapping

    return _renamer_of(get_model_conversion_mapping(model))


def _renamer_of(mapping: Any) -> Any:
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    if not renamings and not converters:
        return None
    by_pattern = {p: c for c in converters for p in c.source_patterns}

    def rename(key: str) -> tuple[str, Rename | None, tuple[str, ...]]:
        new, pattern = rename_source_key(key, renamings, converters)
        if new == key and pattern is None:
            return key, None, ()
        rules = []
        current = key
        for r in renamings:
            # each rule on its own, to name the ones that fired (5.0 has no apply_renamings)
            after, _ = r.rename_source_key(current)
            if after != current:
                rules.append(_rule_text(r))
                current = after
        targets: tuple[str, ...] = ()
        if pattern is not None:
            conv = by_pattern[pattern]
            targets = tuple(conv.target_patterns)
            rules.append(_rule_text(conv))
        rule = Rename(checkpoint_key=key, key=new, rule="; ".join(rules) or "renamed",
                      converted=pattern is not None)
        return new, rule, targets

    return rename


def _rule_text(t: Any) -> str:
    def pats(p: Any) -> str:
        ps = [_plain_pattern(x) for x in (p if isinstance(p, (list, tuple)) else [p])]
        return ps[0] if len(ps) == 1 else "[" + ", ".join(ps) + "]"

    return f"{pats(t.source_patterns)} -> {pats(t.target_patterns)}"


def _plain_pattern(p: str) -> str:
    """A rename pattern as a reader writes it: ``\\.`` as ``.``; other escapes stay."""
    return p.replace("\\.", ".")


def _transformers() -> Any:
    import transformers

    return transformers


def _is_module(obj: object) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)
