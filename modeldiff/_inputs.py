"""The input layer: everything a user passes (module, config, model_type, folder, file,
printed text, hub id, graph) becomes a graph or a loaded model here, and only here.

Third-party failures (transformers, huggingface_hub, safetensors, the OS) are mapped to
:mod:`modeldiff.errors` at this edge; the CLI, the pipeline and roundtrip call this layer
instead of loading things themselves. ``trust_remote_code=False`` is passed explicitly on
every path that reaches transformers.

``task`` means one thing everywhere: a single value applies to each side built from a
name, a config or a folder (a module or a graph already is what it is); a pair sets each
side of a comparison.

>>> task_pair("masked-lm"), task_pair(("base", "masked-lm"))
(('masked-lm', 'masked-lm'), ('base', 'masked-lm'))
"""

from __future__ import annotations

import copy
import os
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modeldiff import limits
from modeldiff._compat import fill_config, tie_built_model
from modeldiff._core.graph import ModelGraph
from modeldiff.errors import (
    CheckpointError,
    ConfigError,
    HubUnavailableError,
    InputTypeError,
    InvalidArgumentError,
    ModelDiffError,
    NotMaterializedError,
    RemoteCodeError,
    UnknownModelTypeError,
    UnsupportedTaskError,
)
from modeldiff.kinds import suggest

__all__ = ["TASKS", "Task", "as_graph", "build_model", "check_config_values", "folder_config",
           "load_model", "load_tokenizer", "model_class", "output_file", "output_folder",
           "task_pair", "walk", "weight_source"]

Task = str | None | tuple[str | None, str | None]


def task_pair(task: Task) -> tuple[str | None, str | None]:
    """``task=`` for both sides of a comparison: one value for each side, or a pair."""
    if isinstance(task, tuple):
        if len(task) != 2:
            raise InvalidArgumentError("task", task, "a task name, None, or a (task_a, task_b) pair")
        return task[0], task[1]
    if task is not None and not isinstance(task, str):
        raise InputTypeError("task", task, "a task name, None, or a (task_a, task_b) pair")
    return task, task


def as_graph(obj: Any, *, task: str | None = None) -> ModelGraph:
    """``obj`` as a graph: a ModelGraph as it is, anything else through :func:`walk`."""
    if isinstance(obj, ModelGraph):
        return obj
    return walk(obj, task=task)


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
    "next-sentence-prediction": "AutoModelForNextSentencePrediction",
    "image-classification": "AutoModelForImageClassification",
    "semantic-segmentation": "AutoModelForSemanticSegmentation",
    "object-detection": "AutoModelForObjectDetection",
    "backbone": "AutoBackbone",
    "image-text-to-text": "AutoModelForImageTextToText",
    "audio-classification": "AutoModelForAudioClassification",
    "ctc": "AutoModelForCTC",
    "speech-seq2seq": "AutoModelForSpeechSeq2Seq",
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
    if _is_module(obj):
        from modeldiff._walk.walker import walk_module

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
    if isinstance(obj, str) and ("\n" in text or "<br" in text or len(text) > 4096
                                 or text.endswith(")")):
        from modeldiff._core.pasted import find_prints
        from modeldiff._core.printed import looks_like_repr, parse_repr

        if looks_like_repr(text) or find_prints(text):  # print(model) output, pasted in
            return parse_repr(text)
        if "\n" in text or len(text) > 4096:  # text, not a name or a path
            from modeldiff.errors import ReprParseError

            raise ReprParseError("walk() got text that holds no print(model) output (a class "
                                 "name, '(', its children, and the closing ')')", line=1,
                                 column=1, excerpt=text[:60])
    path = Path(text).expanduser()
    if path.is_dir():
        return _walk_folder(path, task=task)
    if path.is_file():
        if path.name == "config.json":
            return _walk_folder(path.parent, task=task)
        if path.suffix == ".txt":
            from modeldiff._core.printed import parse_repr
            from modeldiff._walk.checkpoint import read_limited

            data = read_limited(path, "MAX_PRINTED_BYTES", "printed model")  # capped, regular
            try:
                printed = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CheckpointError(f"cannot read printed model {path}: not UTF-8 text ({e})",
                                      path=path) from e
            graph = parse_repr(printed)
            from dataclasses import replace

            return replace(graph, source=f"printed model {path}")
        raise CheckpointError(f"{path} is a file; walk reads a checkpoint folder (the folder "
                              "save_pretrained wrote, with config.json), its config.json, or a "
                              ".txt file of print(model) output", path=path)
    known = model_types()
    if text in known:
        from transformers import AutoConfig

        return _walk_config(AutoConfig.for_model(text), task=task,
                            source=f"{text} default config (built on meta)")
    if isinstance(obj, os.PathLike) or text.startswith((".", "/", "~")) or (os.sep in text and \
            text.count("/") > 1):
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


def model_types() -> tuple[str, ...]:
    from transformers import CONFIG_MAPPING

    return tuple(CONFIG_MAPPING.keys())


def _walk_hub(model_id: str, *, task: str | None) -> ModelGraph:
    from transformers import AutoConfig

    _hub_reachable(model_id)
    try:
        # trust_remote_code is never turned on for the user: a repo that needs it fails here.
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=False)
    except OSError as e:
        raise HubUnavailableError(model_id, (str(e).splitlines() or [""])[0]) from e
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise RemoteCodeError(repr(model_id)) from e
        raise ConfigError(f"config of {model_id!r} cannot be used: {e}") from e
    check_config_values(config.to_dict(), where=repr(model_id))
    return _walk_config(config, task=task, source=f"{model_id} (hub config, built on meta)")


def _walk_folder(folder: Path, *, task: str | None) -> ModelGraph:
    config, arch = folder_config(folder, task=task)
    model = _meta_model(config, task, arch)
    from modeldiff._walk.checkpoint import read_tensor_index
    from modeldiff._walk.walker import walk_module

    overlay = read_tensor_index(folder)
    return walk_module(model, source=f"{folder} (built on meta)", overlay=overlay)


# Folders walked with the same config build the same meta model: the last few are kept, so
# the two sides of a comparison (or a test suite walking one folder again and again) build
# it once. Building is most of a folder walk (12 of 14 ms for DistilBERT). The models are
# never handed out, only walked, and a walk does not change a module.
_META_MODELS: dict[str, Any] = {}
_META_MODELS_KEPT = 4
_META_LOCK = threading.Lock()


def _meta_model(config: Any, task: str | None, arch: str | None) -> Any:
    import json

    import transformers

    key = json.dumps([config.to_json_string(use_diff=False), task, arch,
                      transformers.__version__])
    with _META_LOCK:
        model = _META_MODELS.pop(key, None)
        if model is not None:
            _META_MODELS[key] = model  # most recently used last
            return model
    model = build_model(config, task=task, architecture=arch)
    with _META_LOCK:
        _META_MODELS[key] = model
        while len(_META_MODELS) > _META_MODELS_KEPT:
            _META_MODELS.pop(next(iter(_META_MODELS)))
    return model


def folder_config(folder: Path, *, task: str | None) -> tuple[Any, str | None]:
    """(config object, architecture name or None) of a checkpoint folder, from a validated
    ``config.json``: nothing of it reaches transformers before its values are checked."""
    from modeldiff._walk.checkpoint import read_config_json

    raw = read_config_json(folder)  # a regular file, size- and depth-capped JSON object
    cfg_path = folder / "config.json"
    model_type = raw.get("model_type")
    if not isinstance(model_type, str):
        if "auto_map" in raw:
            raise RemoteCodeError(str(cfg_path), path=cfg_path)
        raise ConfigError(f"{cfg_path} has no \"model_type\" field; transformers needs it to "
                          "choose the model class", path=cfg_path)
    known = model_types()
    if model_type not in known:
        if "auto_map" in raw:
            raise RemoteCodeError(str(cfg_path), path=cfg_path)
        raise UnknownModelTypeError(model_type[:200], suggestions=suggest(model_type, known),
                                    path=cfg_path)
    check_config_values(raw, where=str(cfg_path), path=cfg_path)
    archs = raw.get("architectures")
    if archs is not None and (not isinstance(archs, list) or
                              not all(isinstance(a, str) for a in archs)):
        raise ConfigError(f"{cfg_path}: \"architectures\" must be a list of class names, got "
                          f"{str(archs)[:80]}", path=cfg_path)
    arch = None
    if task is None and archs:
        arch = archs[0]
        model_class(arch, where=str(cfg_path))  # refuse anything but a model class at once
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type, **{k: v for k, v in _special_floats(raw).items()
                                                       if k != "model_type"})
    except ModelDiffError:
        raise
    except Exception as e:  # whatever transformers' own validation raises, it is the file's
        raise ConfigError(f"{cfg_path} cannot be read by transformers: {type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0][:500]}", path=cfg_path) from e
    return config, arch


# config.json keys that size a model, by the limit that bounds them. Keys are matched at
# every nesting level (text_config, vision_config, encoder ...).
_SIZE_KEYS: Mapping[str, str] = {
    **dict.fromkeys(("num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers",
                     "decoder_layers", "num_encoder_layers", "num_decoder_layers",
                     "decoder_num_layers", "num_hidden_groups"), "MAX_CONFIG_LAYERS"),
    **dict.fromkeys(("hidden_size", "intermediate_size", "d_model", "n_embd", "dim",
                     "hidden_dim", "d_ff", "n_inner", "encoder_ffn_dim", "decoder_ffn_dim",
                     "embedding_size", "d_kv", "head_dim", "ffn_dim", "projection_dim",
                     "moe_intermediate_size", "num_experts", "num_local_experts",
                     "word_embed_proj_dim"), "MAX_CONFIG_WIDTH"),
    **dict.fromkeys(("num_attention_heads", "n_head", "n_heads", "num_heads",
                     "num_key_value_heads", "encoder_attention_heads",
                     "decoder_attention_heads"), "MAX_CONFIG_HEADS"),
    **dict.fromkeys(("vocab_size",), "MAX_CONFIG_VOCAB"),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "n_ctx",
                     "max_seq_len"), "MAX_CONFIG_POSITIONS"),
}
# Layer counts may be 0 (an encoder-decoder config with no decoder layers); other sizes not.
_MAY_BE_ZERO = frozenset(k for k, v in _SIZE_KEYS.items() if v == "MAX_CONFIG_LAYERS")


def check_config_values(raw: Mapping[str, Any], *, where: str,
                        path: Path | str | None = None) -> None:
    """Refuse a config dict whose sizes are not integers within :mod:`modeldiff.limits`
    (``num_hidden_layers``, ``hidden_size``, ``vocab_size`` ...), before any model is built:
    a 200-byte ``config.json`` asking for 200,000 layers is a :class:`ConfigError`, not a
    machine brought to its knees. ``null`` is allowed (transformers fills in a default).

    >>> check_config_values({"num_hidden_layers": 12, "hidden_size": 768}, where="config.json")
    >>> check_config_values({"num_hidden_layers": 200_000}, where="config.json")
    Traceback (most recent call last):
    ...
    modeldiff.errors.ConfigError: config.json: num_hidden_layers = 200,000 is more than ...
    """
    stack: list[tuple[Mapping[str, Any], str]] = [(raw, "")]
    while stack:
        mapping, prefix = stack.pop()
        for key, value in mapping.items():
            limit = _SIZE_KEYS.get(key)
            if isinstance(value, Mapping) and limit is None:
                stack.append((value, f"{prefix}{key}."))
                continue
            if limit is None or value is None:
                continue
            name = f"{prefix}{key}"
            # a per-stage model (SegFormer, PVT) gives widths and heads per stage: a list of
            # them; a layer count is one number, or one per component (LXMERT:
            # {"language": 9, "vision": 5, "cross_encoder": 5})
            per_stage = isinstance(value, list) and value and limit != "MAX_CONFIG_LAYERS"
            per_component = isinstance(value, Mapping) and value and limit == "MAX_CONFIG_LAYERS"
            values = list(value.values()) if per_component else value if per_stage else [value]
            for v in values:
                _check_size(v, name, key, limit, where=where, path=path)


def _check_size(value: Any, name: str, key: str, limit: str, *, where: str,
                path: Path | str | None) -> None:
    if type(value) is not int:
        raise ConfigError(f"{where}: {name} must be an integer (or a list of them), got "
                          f"{type(value).__name__} {str(value)[:40]}", path=path)
    low = 0 if key in _MAY_BE_ZERO else 1
    cap = getattr(limits, limit)
    if value < low:
        raise ConfigError(f"{where}: {name} = {value:,} must be at least {low}", path=path)
    if value > cap:
        raise ConfigError(f"{where}: {name} = {value:,} is more than any real model needs "
                          f"({limits.hint(limit)})", path=path)


def _special_floats(obj: Any) -> Any:
    """transformers 5 writes a non-finite float in config.json as ``{"__float__": "Infinity"}``
    (its ``to_json_string``) and reads it back as the float; so does the input layer."""
    if isinstance(obj, dict):
        if set(obj) == {"__float__"} and obj["__float__"] in ("NaN", "Infinity", "-Infinity"):
            return float(obj["__float__"].replace("Infinity", "inf"))
        return {k: _special_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_special_floats(v) for v in obj]
    return obj


def model_class(name: str, *, where: str) -> Any:
    """The transformers model class ``name`` names (``"BertForMaskedLM"``), or None when
    transformers has no such name (a custom architecture: the task's auto class is used).
    Any other attribute of transformers (a function, a tokenizer, an auto class) is a
    :class:`ConfigError`: ``architectures`` never reaches anything but a model class."""
    import transformers

    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ConfigError(f"{where}: architectures names {str(name)[:80]!r}, which is not a "
                          "class name")
    try:
        obj = getattr(transformers, name, None)
    except Exception:  # a lazy attribute whose import fails (a missing optional backend)
        obj = None
    if obj is None:
        return None
    if not (isinstance(obj, type) and issubclass(obj, transformers.PreTrainedModel)):
        raise ConfigError(f"{where}: architectures names {name!r}, which is not a model class "
                          "of transformers (a PreTrainedModel subclass); fix the config or "
                          "pass task=")
    return obj


# -- configs ---------------------------------------------------------------------------------
def _is_config(obj: object) -> bool:
    tf = sys.modules.get("transformers")
    if tf is None:
        return False
    return isinstance(obj, tf.PretrainedConfig)


def _walk_config(config: Any, *, task: str | None, source: str) -> ModelGraph:
    from modeldiff._walk.walker import walk_module

    return walk_module(build_model(config, task=task), source=source)


def build_model(config: Any, *, task: str | None = None, architecture: str | None = None,
                device: str = "meta") -> Any:
    """Build a transformers model from ``config`` on ``device`` (meta: no weight memory).

    The config is copied first: transformers writes into the config it builds from.
    ``architecture`` (a class name such as ``"BertForMaskedLM"``) wins over ``task``.

    >>> from transformers import DistilBertConfig
    >>> build_model(DistilBertConfig(), task="masked-lm").__class__.__name__
    'DistilBertForMaskedLM'
    """
    import torch
    import transformers

    config = fill_config(copy.deepcopy(config))
    cls: Any = None
    if architecture is not None:
        cls = model_class(architecture, where="build_model(architecture)")
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
                model = cls.from_config(config, trust_remote_code=False) \
                    if cls.__name__.startswith("Auto") else cls.from_config(config)
            else:
                model = cls(config)
            return tie_built_model(model)
    except ModelDiffError:
        raise
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise RemoteCodeError(f"a {type(config).__name__}") from e
        if "Unrecognized configuration class" in str(e):
            offered = _tasks_for(config)
            raise UnsupportedTaskError(
                f"{type(config).__name__} ({config.model_type}) has no {task or 'base'} model "
                f"in transformers; it offers: {', '.join(offered) or 'none of the mapped tasks'}",
                task=task or "base", choices=offered) from e
        raise ConfigError(f"cannot build a {config.model_type} model from this config: {e}") from e
    except (TypeError, KeyError, AttributeError, IndexError, ZeroDivisionError,
            AssertionError, OverflowError, RuntimeError, NotImplementedError) as e:
        # the config's values broke the model's own constructor (heads that do not divide the
        # width, a size of the wrong type): the config is at fault, say so
        raise ConfigError(f"cannot build a {getattr(config, 'model_type', '?')} model from this "
                          f"config: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
                          ) from e


def _tasks_for(config: Any) -> tuple[str, ...]:
    import transformers

    out = []
    for task, auto in TASKS.items():
        mapping = getattr(transformers, auto)._model_mapping
        if type(config) in mapping:
            out.append(task)
    return tuple(out)

def _is_module(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def weight_source(obj: Any) -> Any:
    if isinstance(obj, ModelGraph):
        raise NotMaterializedError(
            "weights=True needs values, and a ModelGraph holds none: pass the model itself "
            "(an nn.Module with real weights) or a checkpoint folder")
    if isinstance(obj, (str, os.PathLike)) and os.path.isdir(obj):
        return obj
    if isinstance(obj, (str, os.PathLike)) or type(obj).__name__.endswith("Config"):
        raise NotMaterializedError(
            f"weights=True needs real weights, but {obj!r} is only a name or config: walk "
            "builds such models on the meta device, where no values exist. Pass an nn.Module "
            "or a checkpoint folder")
    return obj



# -- loaded models (the CLI, the pipeline and roundtrip load through here) --------------------
def load_model(source: str | os.PathLike[str], *, task: str | None = None,
               auto_class: str | None = None, instead: str | None = None
               ) -> tuple[Any, dict[str, Any]]:
    """A model with real weights from a checkpoint folder or a hub id, and transformers'
    loading info (``missing_keys`` ...).

    The class is ``auto_class`` (an auto class name such as
    ``"AutoModelForSequenceClassification"``), else the one ``task`` names, else the one
    the folder's ``config.json`` names in ``architectures`` (only classes transformers
    defines), else the base model. The folder's config and weight headers are validated
    before transformers sees them; every failure is a modeldiff error naming the folder.
    ``instead`` is the advice a hub failure gives (what to pass instead).
    """
    hub_advice = {"instead": instead} if instead else {}
    import transformers

    from modeldiff._walk.checkpoint import read_tensor_index

    text = os.fspath(source)
    folder = Path(text).expanduser()
    arch: str | None = None
    if folder.is_dir():
        # config.json validated (values, architectures) and weight headers read before
        # transformers sees the folder: corrupt or truncated weights are a CheckpointError here
        _, arch = folder_config(folder, task=task if task or auto_class else None)
        read_tensor_index(folder)
        where = str(folder)
    elif _looks_like_path(text) or folder.exists():
        raise CheckpointError(f"no such folder: {folder}; pass a checkpoint folder (the one "
                              "save_pretrained wrote) or a hub id", path=folder)
    else:
        where = text
        _hub_reachable(text, **hub_advice)
    cls: Any = None
    if auto_class is not None:
        cls = getattr(transformers, auto_class)
    elif task is not None:
        if task not in TASKS:
            raise UnsupportedTaskError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}",
                                       task=task, choices=tuple(TASKS))
        cls = getattr(transformers, TASKS[task])
    else:
        named = model_class(arch, where=str(folder / "config.json")) if arch else None
        cls = named if named is not None else transformers.AutoModel
    try:
        model, info = cls.from_pretrained(where, output_loading_info=True,
                                          trust_remote_code=False)
    except (OSError, ImportError) as e:
        if folder.is_dir():
            raise CheckpointError(f"cannot load a model from {folder}: "
                                  f"{str(e).splitlines()[0]}", path=folder) from e
        raise HubUnavailableError(text, str(e).splitlines()[0], **hub_advice) from e
    except ValueError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "trust_remote_code" in str(e):
            raise RemoteCodeError(where, path=folder if folder.is_dir() else None) from e
        if "Unrecognized configuration class" in str(e):
            raise UnsupportedTaskError(f"{where} holds a model type with no {task or auto_class} "
                                       f"head in transformers: {first}",
                                       task=task or str(auto_class)) from e
        raise ConfigError(f"cannot load a model from {where}: {first}", path=where) from e
    except Exception as e:  # safetensors' own errors, and whatever transformers raises
        raise CheckpointError(f"cannot load a model from {where}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}", path=where) from e
    return model, dict(info)


def load_tokenizer(source: str | os.PathLike[str], *, instead: str | None = None) -> Any:
    """The tokenizer saved in a checkpoint folder (or a hub id). A folder without tokenizer
    files is a :class:`~modeldiff.errors.CheckpointError` that says to pass ``tokenizer=``:
    modeldiff never makes one up."""

    text = os.fspath(source)
    folder = Path(text).expanduser()
    if folder.is_dir():
        names = {p.name for p in folder.iterdir()}
        if not names & {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                        "spiece.model", "tokenizer.model", "sentencepiece.bpe.model"}:
            raise CheckpointError(
                f"no tokenizer files in {folder} (it was saved without its tokenizer); pass "
                "tokenizer= (a tokenizer object or a folder holding one), or save the "
                "tokenizer next to the model with tokenizer.save_pretrained(folder)",
                path=folder)
    hub_advice = {"instead": instead} if instead else {}
    if not folder.is_dir():
        _hub_reachable(text, **hub_advice)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(text, trust_remote_code=False)
    except (OSError, ValueError, ImportError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "trust_remote_code" in str(e):
            raise RemoteCodeError(text, path=folder if folder.is_dir() else None) from e
        if folder.is_dir():
            raise CheckpointError(f"cannot load the tokenizer in {folder}: {first}; pass "
                                  "tokenizer= explicitly", path=folder) from e
        raise HubUnavailableError(text, first, **hub_advice) from e


def _looks_like_path(text: str) -> bool:
    return (text.startswith((".", "/", "~")) or text.count("/") > 1
            or (os.sep != "/" and os.sep in text))


def _hub_reachable(model_id: str, **advice: str) -> None:
    """Fail at once, rather than after the hub client's retries, when a hub id cannot be
    fetched: offline mode is set, or the hub's host does not even resolve (no network), and
    the id is not in the local cache."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # an id the cache cannot even name: let the real call say why
        cached = None
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise HubUnavailableError(model_id, "HF_HUB_OFFLINE is set and it is not in the cache",
                                  **advice)
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise HubUnavailableError(model_id, f"no network: {host} does not resolve ({e})",
                                  **advice) from e


# -- outputs ---------------------------------------------------------------------------------
def output_file(path: str | os.PathLike[str], *, argument: str = "output") -> Path:
    """Check a file path modeldiff is about to write: its folder exists and is writable, and
    the path is not a folder. Returns it as a Path."""
    from modeldiff.errors import OutputError

    target = Path(path).expanduser()
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"{argument} {target} is a folder; name a file to write", path=target)
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: folder {parent} does not exist; create it "
                          "first", path=target)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: folder {parent} is not writable",
                          path=target)
    return target


def output_folder(path: str | os.PathLike[str], *, argument: str = "output") -> Path:
    """Check a folder modeldiff is about to create or fill: not an existing file, and its
    parent exists and is writable."""
    from modeldiff.errors import OutputError

    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputError(f"{argument} {target} is a file, not a folder; name a folder",
                          path=target)
    parent = target if target.is_dir() else target.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create {target}: folder {parent} does not exist; create it "
                          "first", path=target)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {parent}: it is not writable", path=target)
    return target
