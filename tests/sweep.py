"""The oracle for ``head_delta``: transformers' own loading report.

``loading_report(model_type, task)`` builds the tiny base model of ``model_type`` (seeded,
CPU, real initialisation), saves it with ``save_pretrained`` and loads the task's head class
from that folder with ``from_pretrained(folder, output_loading_info=True)``. What transformers
says it did is the answer ``head_delta`` must give without loading anything.

What transformers 5.24 counts (read in ``modeling_utils.py`` and ``core_model_loading.py``,
and checked on every case of :data:`SWEEP_CASES` by ``tests/test_head_delta_sweep.py``):

1. ``missing_keys`` starts as every key of the head's ``model.state_dict()``: parameters and
   *persistent* buffers, under every name (a tied parameter is listed once per name). Keys
   the checkpoint fills are removed. Non-persistent buffers (``position_ids``, rotary
   ``inv_freq``) are never in ``state_dict()``, so they are never missing, and the saved
   checkpoint does not hold them, so never unexpected either. A persistent buffer is
   counted like a parameter (``final_logits_bias`` of the seq2seq LM heads).
2. A tied weight is not missing *when its source was loaded*. After loading,
   ``tie_weights(missing_keys=...)`` walks ``model.all_tied_weights_keys`` ({target:
   source}) and discards the target from ``missing_keys`` (the MLM decoder weight tied to
   the word embeddings of a base checkpoint). Tying is symmetric: if only the target was
   loaded, the source is tied to it and the *source* key is discarded. If neither was
   loaded, both stay missing: BERT's ``cls.predictions.decoder.bias`` is tied to
   ``cls.predictions.bias`` and both are reported. A head weight with no tie declared is
   missing even when it could be tied (``LukeForMaskedLM``'s ``lm_head.decoder.weight``,
   ``EuroBertForMaskedLM``'s ``lm_head.weight``).
3. ``base_model_prefix`` is added or stripped per key, never for the whole checkpoint
   (``rename_source_key``): a key starting with ``prefix`` loses ``prefix.`` when the
   stripped key is in the model; otherwise ``k`` becomes ``f"{prefix}.{k}"`` when that is
   in the model, *even when ``k`` itself is too*. So a ``DistilBertModel`` checkpoint fills
   ``distilbert.*`` of ``DistilBertForSequenceClassification``, and a ``PixioModel``
   checkpoint's ``layernorm.weight`` fills ``pixio.layernorm.weight`` of ``PixioBackbone``,
   whose own root ``layernorm`` stays missing (an earlier version of this note had the
   order the other way round). Missing keys are spelled as the *head*
   names them (with the prefix): a head whose inner base has more than the saved base is
   missing those parts under the prefix (``gte.pooler.dense.weight``,
   ``nomic_bert.pooler.dense.weight``: their base models are built without a pooler).
4. ``unexpected_keys`` are the checkpoint keys that matched nothing, spelled as the
   *checkpoint* names them (after the conversions of 6), i.e. *without* the head's prefix:
   the pooler a token-classification head has no use for is ``pooler.dense.weight``, not
   ``bert.pooler.dense.weight``. When the head's inner base class differs from the saved
   base class (``FunnelForSequenceClassification`` wraps ``FunnelBaseModel``, which has no
   decoder; ``*T5ForTokenClassification`` wraps ``*T5EncoderModel`` under ``transformer``),
   the extra parts are unexpected under their base-model names (``decoder.layers.0...``,
   ``decoder.block.0...``) while the rest still loads under the prefix.
5. ``_keys_to_ignore_on_load_missing`` / ``_keys_to_ignore_on_load_unexpected`` are regexes
   (``re.search``, unanchored) collected in ``post_init`` from the head and every child
   ``PreTrainedModel`` (without the child's name). Matching keys are *already removed*
   from the lists ``from_pretrained`` returns (``_adjust_missing_and_unexpected_keys``).
   Two unexpected patterns are added by transformers itself whenever the head has such a
   buffer: ``rotary_emb\\.inv_freq`` and ``(^|\\.)position_ids$`` (old checkpoints saved
   them). :class:`LoadingReport` keeps the full pattern sets and both lists as they were
   *before* that filtering (``raw_missing``, ``raw_unexpected``, read by wrapping that one
   method during the load), so ``ignored_missing`` / ``ignored_unexpected`` are exact.
   Seen here: ``T5ForTokenClassification`` ignores ``decoder`` (28 keys), while
   ``MT5``/``UMT5ForTokenClassification`` do not (their decoder is unexpected);
   ``BartForConditionalGeneration`` ignores a missing ``final_logits_bias``, while
   ``MvpForConditionalGeneration`` lists that pattern under *unexpected*, so its
   ``final_logits_bias`` is reported missing.
6. Checkpoint layout conversions (``conversion_mapping.py``): ``save_pretrained`` writes
   the original (hub) layout and ``from_pretrained`` converts it back, so every name in the
   report is the *model's* name, never the file's. Mixture-of-experts models keep experts
   fused (``mlp.experts.gate_up_proj``, ``mlp.experts.down_proj``: one 3-D tensor each);
   the saved file holds per-expert ``block_sparse_moe.experts.0.w1.weight`` (mixtral) or
   ``mlp.experts.0.gate_proj.weight`` (qwen2_moe), merged again on load, and none of it
   shows up as missing or unexpected. ESM saves LayerNorms as ``gamma``/``beta``, GTE its
   original ``qkv_proj`` layout; same story. ``save_pretrained`` also leaves out tied
   copies (bart's ``encoder.embed_tokens.weight``), which the head ties back (rule 2).
7. ``mismatched_keys`` (same key, other shape) stay empty here: head and base come from
   the same tiny config.

The tiny models use the same seed, so runs are reproducible; nothing is downloaded.
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modeldiff._tiny import TINY_MODEL_TYPES, tiny_config

__all__ = ["SWEEP_CASES", "SWEEP_TASKS", "LoadingReport", "head_class_for", "loading_report",
           "oracle", "saved"]

SWEEP_TASKS = ("sequence-classification", "token-classification", "masked-lm")


@dataclass(frozen=True, slots=True)
class LoadingReport:
    """What ``HeadClass.from_pretrained(base_folder, output_loading_info=True)`` reported.

    ``missing`` / ``unexpected``: the lists as returned (ignore patterns applied).
    ``raw_missing`` / ``raw_unexpected``: the same lists just before transformers removed
    the keys matching ``ignored_missing_patterns`` / ``ignored_unexpected_patterns``.
    ``mismatched``: (key, checkpoint shape, model shape) triples.
    ``saved_keys``: the keys in the saved base checkpoint file, in its own (hub) layout.
    """

    model_type: str
    task: str
    missing: frozenset[str]
    unexpected: frozenset[str]
    mismatched: frozenset[tuple[str, tuple[int, ...], tuple[int, ...]]]
    raw_missing: frozenset[str]
    raw_unexpected: frozenset[str]
    ignored_missing_patterns: frozenset[str]
    ignored_unexpected_patterns: frozenset[str]
    base_class: str
    head_class: str
    base_model_prefix: str
    saved_keys: frozenset[str]

    @property
    def ignored_missing(self) -> frozenset[str]:
        """Missing keys transformers dropped from its report because of an ignore pattern."""
        return self.raw_missing - self.missing

    @property
    def ignored_unexpected(self) -> frozenset[str]:
        """Unexpected keys transformers dropped from its report because of a pattern."""
        return self.raw_unexpected - self.unexpected


def _mapping(task: str) -> dict[str, Any]:
    from transformers.models.auto import modeling_auto as auto

    return {
        "sequence-classification": auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "token-classification": auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
        "masked-lm": auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    }[task]


def _cases() -> list[tuple[str, str]]:
    return [(t, task) for t in TINY_MODEL_TYPES for task in SWEEP_TASKS if t in _mapping(task)]


SWEEP_CASES: list[tuple[str, str]] = _cases()


def head_class_for(model_type: str, task: str) -> type:
    """The class ``from_pretrained`` builds for ``task`` from a ``model_type`` checkpoint."""
    import transformers

    from modeldiff._inputs import TASKS

    auto = getattr(transformers, TASKS[task])
    return auto._model_mapping[type(tiny_config(model_type))]  # type: ignore[no-any-return]


@contextmanager
def _recording(cls: type, into: dict[str, frozenset[str]]) -> Iterator[None]:
    """Record the loading report's lists before and after the ignore patterns."""
    if hasattr(cls, "_adjust_missing_and_unexpected_keys"):
        with _recording_5x(cls, into):
            yield
    else:
        with _recording_4x(cls, into):
            yield


@contextmanager
def _recording_4x(cls: type, into: dict[str, frozenset[str]]) -> Iterator[None]:
    """transformers 4.x: the patterns are applied at the end of the module function
    ``_find_missing_and_unexpected_keys``, to the class's own pattern lists (no child
    models', no automatic ``position_ids`` pattern). Call it once more with the patterns
    switched off to see the raw lists; the real call's result is the one returned."""
    from transformers import modeling_utils as mu

    real = mu._find_missing_and_unexpected_keys

    def find(klass: Any, *args: Any, **kwargs: Any) -> tuple[list[str], list[str]]:
        saved = (klass._keys_to_ignore_on_load_missing, klass._keys_to_ignore_on_load_unexpected)
        klass._keys_to_ignore_on_load_missing = klass._keys_to_ignore_on_load_unexpected = None
        try:
            raw_missing, raw_unexpected = real(klass, *args, **kwargs)
        finally:
            klass._keys_to_ignore_on_load_missing, klass._keys_to_ignore_on_load_unexpected = saved
        into["missing"], into["unexpected"] = frozenset(raw_missing), frozenset(raw_unexpected)
        into["ignore_missing"] = frozenset(saved[0] or ())
        into["ignore_unexpected"] = frozenset(saved[1] or ())
        return real(klass, *args, **kwargs)  # type: ignore[no-any-return]

    mu._find_missing_and_unexpected_keys = find
    try:
        yield
    finally:
        mu._find_missing_and_unexpected_keys = real


@contextmanager
def _recording_5x(cls: type, into: dict[str, frozenset[str]]) -> Iterator[None]:
    """Record ``loading_info`` as it enters ``_adjust_missing_and_unexpected_keys``, the one
    step that applies the ignore patterns. The real method still runs: the report returned
    is transformers' own."""
    real = cls._adjust_missing_and_unexpected_keys  # type: ignore[attr-defined]
    had_own = "_adjust_missing_and_unexpected_keys" in vars(cls)

    def adjust(self: Any, *args: Any) -> Any:
        # 4.57: (missing, unexpected, from_base); 5.0: (missing, unexpected) -> the adjusted
        # pair; later 5.x: (loading_info)
        missing, unexpected_keys = ((args[0].missing_keys, args[0].unexpected_keys)
                                    if len(args) == 1 else args[:2])
        if len(args) == 3 and args[2]:
            # 4.57 compares prefixed keys and strips the prefix from the unexpected ones only
            # after the patterns: record them as the report spells them
            unexpected_keys = [k.removeprefix(f"{self.base_model_prefix}.")
                               for k in unexpected_keys]
        into["missing"] = frozenset(missing)
        into["unexpected"] = frozenset(unexpected_keys)
        into["ignore_missing"] = frozenset(self._keys_to_ignore_on_load_missing or ())
        unexpected = set(self._keys_to_ignore_on_load_unexpected or ())
        # the patterns transformers adds on its own, with its own test (modeling_utils.py)
        buffers = [name for name, _ in self.named_buffers()]
        if any(b.endswith("rotary_emb.inv_freq") for b in buffers):
            unexpected.add(r"rotary_emb\.inv_freq")
        if any(b.endswith("position_ids") for b in buffers):
            unexpected.add(r"(^|\.)position_ids$")
        into["ignore_unexpected"] = frozenset(unexpected)
        return real(self, *args)

    cls._adjust_missing_and_unexpected_keys = adjust  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had_own:
            cls._adjust_missing_and_unexpected_keys = real  # type: ignore[attr-defined]
        else:
            del cls._adjust_missing_and_unexpected_keys  # type: ignore[attr-defined]


@contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars from save/load in test output; the previous setting comes back."""
    from transformers.utils import logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tf_logging.enable_progress_bar()


@functools.cache
def _workdir() -> str:
    """One folder per test session for every saved tiny checkpoint (removed at exit)."""
    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix="modeldiff-sweep-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def saved(model_type: str, task: str = "base") -> str:
    """The folder ``save_pretrained`` writes for the tiny ``task`` model of ``model_type``
    (seeded, CPU, real initialisation), saved once per session."""
    import os

    import torch

    from modeldiff._inputs import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config(model_type), task=task, device="cpu")
    folder = os.path.join(_workdir(), f"{model_type}--{task}")
    with _quiet():
        model.save_pretrained(folder)
    return folder


def auto_class(task: str) -> Any:
    import transformers

    from modeldiff._inputs import TASKS

    return getattr(transformers, TASKS[task])


def target_class(folder: str, task: str) -> Any:
    """The class ``AutoClass(task).from_pretrained(folder)`` builds, chosen the way the auto
    class chooses it (config class -> model class; by ``architectures`` where a config maps
    to several). ``from_pretrained`` is then called on that class directly: AutoBackbone's
    own ``from_pretrained`` asks the hub whether a local folder is a repo, which fails
    offline."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    found = auto_class(task)._model_mapping[type(config)]
    if isinstance(found, (tuple, list)):
        archs = config.architectures or ()
        named = [c for c in found if c.__name__ in archs]
        found = named[0] if named else found[0]
    return found


@functools.cache
def oracle(model_type: str, checkpoint_task: str, target_task: str, **kwargs: Any
           ) -> LoadingReport:
    """What ``AutoClass(target_task).from_pretrained(folder, output_loading_info=True)``
    reports for the saved tiny ``checkpoint_task`` model of ``model_type``."""
    import torch
    from safetensors import safe_open

    folder = saved(model_type, checkpoint_task)
    target_cls = target_class(folder, target_task)
    seen: dict[str, frozenset[str]] = {}
    torch.manual_seed(0)
    with _recording(target_cls, seen), _quiet():
        model, info = target_cls.from_pretrained(folder, output_loading_info=True, **kwargs)
    keys: set[str] = set()
    import glob

    for f in glob.glob(f"{folder}/*.safetensors"):
        with safe_open(f, framework="pt") as fh:
            keys |= set(fh.keys())
    return LoadingReport(
        model_type=model_type,
        task=target_task,
        missing=frozenset(info["missing_keys"]),
        unexpected=frozenset(info["unexpected_keys"]),
        mismatched=frozenset(_mismatched(info["mismatched_keys"])),
        raw_missing=seen.get("missing", frozenset(info["missing_keys"])),
        raw_unexpected=seen.get("unexpected", frozenset(info["unexpected_keys"])),
        ignored_missing_patterns=seen.get("ignore_missing", frozenset()),
        ignored_unexpected_patterns=seen.get("ignore_unexpected", frozenset()),
        base_class=type(model).__name__ if checkpoint_task == target_task else "",
        head_class=type(model).__name__,
        base_model_prefix=type(model).base_model_prefix,
        saved_keys=frozenset(keys),
    )


def loading_report(model_type: str, task: str) -> LoadingReport:
    """Save the tiny base model of ``model_type``, load ``task``'s head from it, and return
    what transformers reported. Cached per case for the session."""
    import dataclasses

    from modeldiff._inputs import build_model

    report = oracle(model_type, "base", task)
    base_cls = type(build_model(tiny_config(model_type), task="base", device="meta")).__name__
    return dataclasses.replace(report, base_class=base_cls)


def _mismatched(entries: Any) -> Iterator[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    for entry in entries:
        key, *shapes = entry if isinstance(entry, tuple) else (entry,)
        a, b = (tuple(s) for s in shapes) if len(shapes) == 2 else ((), ())
        yield str(key), a, b


def matches_any(key: str, patterns: frozenset[str]) -> bool:
    """Whether transformers' ignore patterns (regexes, searched) cover ``key``."""
    return any(re.search(p, key) for p in patterns)


def discover(max_base: int = 1_000_000, max_head: int = 2_000_000) -> dict[str, list[str]]:
    """The cases of ``tests/sweep_cases.py``: every model type transformers knows whose tiny
    config builds a base model of at most ``max_base`` parameters (on meta), with every head
    family of ``TASKS`` whose tiny head builds with at most ``max_head`` and which
    transformers can load from the saved base checkpoint. Whether load_report agrees plays
    no part in the choice. Minutes: run by hand (``python -m tests.sweep``), not in CI."""
    import logging

    import transformers

    from modeldiff._inputs import TASKS, build_model, model_types

    logging.disable(logging.WARNING)
    out: dict[str, list[str]] = {}
    for model_type in model_types():
        try:
            config = tiny_config(model_type)
            base = build_model(config, task="base", device="meta")
        except Exception:  # no tiny config, or no base class: not sweepable
            continue
        if sum(p.numel() for p in base.parameters()) > max_base:
            continue
        heads = []
        for task, auto in TASKS.items():
            if task == "base" or type(config) not in getattr(transformers, auto)._model_mapping:
                continue
            try:
                head = build_model(config, task=task, device="meta")
                if sum(p.numel() for p in head.parameters()) > max_head:
                    continue
                oracle(model_type, "base", task)
            except Exception:  # transformers cannot build or load it: not a case
                continue
            heads.append(task)
        if heads:
            out[model_type] = heads
    return out


if __name__ == "__main__":  # pragma: no cover - the generator of tests/sweep_cases.py
    for model_type, heads in discover().items():
        print(f"    {model_type!r}: {tuple(heads)!r},")
