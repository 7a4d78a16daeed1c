"""Every difference between the transformers versions modeldiff supports, in one place.

modeldiff supports transformers 4.56 through the newest 5.x it is tested with (see
pyproject.toml; CI runs the suite on the oldest 4.x, the oldest 5.x and the newest). Each
difference below is named for what changed and the version it belongs to, so that the rest
of the package asks a question ("which keyword takes the dtype?") instead of comparing version
numbers itself, and the day a floor moves the dead branch is easy to find.

>>> transformers_version() >= (4, 56)
True
>>> dtype_kwarg() in ("dtype", "torch_dtype")
True

This module imports transformers only inside the functions that need a live model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any

__all__ = [
    "CONFIG_WITHOUT_PAD_TOKEN_ID",
    "DTYPE_KWARG_SINCE",
    "LEGACY_LAYERNORM_NAMES",
    "META_BUILT_UNTIED",
    "MIN_TRANSFORMERS",
    "SDPA_CLASS_NAMES_UNTIL",
    "T5_EMBEDDINGS_ARE_MODULE_ALIASES_UNTIL",
    "TOKENIZER_PROBE_IMPORT_ERROR_UNTIL",
    "UNEXPECTED_KEYS_PREFIXED_UNTIL",
    "dtype_kwarg",
    "fill_config",
    "legacy_layernorm_names",
    "saved_layernorm_name",
    "tie_built_model",
    "tied_weight_pairs",
    "transformers_version",
    "unexpected_key",
]

# The oldest transformers modeldiff is tested with (pyproject.toml says the same).
MIN_TRANSFORMERS = (4, 56, 2)

# 4.56: from_pretrained takes ``dtype=``; before it only ``torch_dtype=`` (still accepted,
# with a deprecation warning, until 5.0 removed it).
DTYPE_KWARG_SINCE = (4, 56)

# 5.0.x: a model built inside ``torch.device("meta")`` comes out with its tied weights as two
# separate parameters (DistilBertForMaskedLM: 90.4M instead of 67.0M); ``tie_weights()``
# ties them. 4.56, 4.57 and 5.24 tie while building. Measured on 5.0.0 only: the upper end
# (5.1) is where to look first if a 5.1 - 5.23 user sees untied totals.
META_BUILT_UNTIED = ((5, 0), (5, 1))

# Checkpoints of some models (ESM, old BERT-family files on the hub) hold LayerNorms as
# ``gamma``/``beta``; ``from_pretrained`` renames them to weight/bias. Which transformers
# writes them varies: measured here, 5.0.0 saves a tiny ESM as weight/bias, 5.24 as
# gamma/beta (its conversion mapping writes the original hub layout back); the issue
# report saw them through 5.5.4. Readers therefore accept both spellings on every version.
LEGACY_LAYERNORM_NAMES = {"gamma": "weight", "beta": "bias"}

# 4.x: attention classes are chosen per implementation and printed as such
# (``DistilBertSdpaAttention``, ``BertSdpaSelfAttention``); 5.0 has one class per model that
# dispatches on ``config._attn_implementation``.
SDPA_CLASS_NAMES_UNTIL = (5, 0)

# 5.0.x: PhiConfig and StableLmConfig have no ``pad_token_id`` attribute, which their
# sequence- and token-classification heads read while building (AttributeError); 4.56, 4.57
# and 5.24 define it (None by default). Measured on 5.0.0; the upper end as above.
CONFIG_WITHOUT_PAD_TOKEN_ID = ((5, 0), (5, 1))

# 4.x: ``AutoTokenizer.from_pretrained`` on a folder without tokenizer files falls through to
# the slow sentencepiece converters and raises ImportError (protobuf) instead of OSError; the
# CLI's roundtrip treats both as "no tokenizer here".
TOKENIZER_PROBE_IMPORT_ERROR_UNTIL = (5, 0)

# 4.56: a base checkpoint loaded into a head gets the head's ``base_model_prefix`` put in
# front of every key before the comparison, so ``unexpected_keys`` carry it
# (``albert.pooler.bias``); from 4.57 on (and in 5.x) they are reported as the checkpoint names
# them (``pooler.bias``). Measured on 4.56.2 and 4.57.6.
UNEXPECTED_KEYS_PREFIXED_UNTIL = (4, 57)

# 4.x: the T5 family (t5, mt5, umt5) hands its ``shared`` embedding *module* to encoder and
# decoder, so ``encoder.embed_tokens`` / ``decoder.embed_tokens`` are aliases of one module;
# 5.x builds separate modules whose weights are tied to ``shared.weight``. Either way
# ``save_pretrained`` writes ``shared.weight`` once, so ``decoder.embed_tokens.weight`` is not in
# the checkpoint and a token-classification head (encoder only) does not report it unused
# (4.57 was seen to disagree with modeldiff there before aliases counted as ties).
T5_EMBEDDINGS_ARE_MODULE_ALIASES_UNTIL = (5, 0)


@cache
def transformers_version() -> tuple[int, ...]:
    """The installed transformers' (major, minor, patch), read from its metadata (no import).

    >>> len(transformers_version()) == 3
    True
    """
    text = metadata.version("transformers")
    parts = [int(m.group()) for m in (re.match(r"\d+", p) for p in text.split(".")[:3]) if m]
    return tuple(parts + [0] * (3 - len(parts)))


def _in(span: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
    return span[0] <= transformers_version() < span[1]


def dtype_kwarg() -> str:
    """The ``from_pretrained`` keyword that takes a dtype on this transformers.

    >>> dtype_kwarg()
    'dtype'
    """
    return "dtype" if transformers_version() >= DTYPE_KWARG_SINCE else "torch_dtype"


def fill_config(config: Any) -> Any:
    """Give a config (a copy the caller owns) the attributes this transformers' model classes
    read but its config class may lack (5.0.x: ``pad_token_id``); returns it.

    >>> from transformers import PhiConfig
    >>> fill_config(PhiConfig()).pad_token_id is None
    True
    """
    if _in(CONFIG_WITHOUT_PAD_TOKEN_ID) and not hasattr(config, "pad_token_id"):
        config.pad_token_id = None
    return config


def tie_built_model(model: Any) -> Any:
    """Tie the weights of a model just built from a config (5.0.x leaves meta-built models
    untied); returns the model. A no-op on versions that tie while building.

    >>> import torch
    >>> from transformers import DistilBertConfig, DistilBertForMaskedLM
    >>> with torch.device("meta"):
    ...     m = tie_built_model(DistilBertForMaskedLM(DistilBertConfig()))
    >>> m.vocab_projector.weight is m.distilbert.embeddings.word_embeddings.weight
    True
    """
    if _in(META_BUILT_UNTIED) and hasattr(model, "tie_weights"):
        model.tie_weights()
    return model


def tied_weight_pairs(model: Any) -> tuple[tuple[str, str], ...]:
    """The weights a transformers model declares tied, as sorted ``(target, source)`` pairs.

    5.x declares ``all_tied_weights_keys = {target: source}``. 4.x declares only the targets
    (``_tied_weights_keys``, a list, on the head class); the source is the parameter the
    target shares its tensor with, found here, and a declared target that is not tied (a
    config with ``tie_word_embeddings=False``) is left out, as 5.x leaves it out.

    >>> import torch
    >>> from transformers import DistilBertConfig, DistilBertForMaskedLM
    >>> with torch.device("meta"):
    ...     m = tie_built_model(DistilBertForMaskedLM(DistilBertConfig()))
    >>> tied_weight_pairs(m)
    (('vocab_projector.weight', 'distilbert.embeddings.word_embeddings.weight'),)
    """
    tied = getattr(model, "all_tied_weights_keys", None)
    if isinstance(tied, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in tied.items()))
    targets = getattr(model, "_tied_weights_keys", None) or ()
    if isinstance(targets, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in targets.items()))
    first: dict[int, str] = {}
    name_of: dict[str, int] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        first.setdefault(id(p), name)
        name_of[name] = id(p)
    pairs = []
    for t in targets:
        pid = name_of.get(str(t))
        if pid is None:
            continue
        source = first[pid]
        if source != t:
            pairs.append((str(t), source))
    return tuple(sorted(pairs))


def unexpected_key(key: str, prefix: str) -> str:
    """How this transformers spells an unused base checkpoint key in a head's loading report.

    >>> unexpected_key("pooler.bias", "albert") in ("pooler.bias", "albert.pooler.bias")
    True
    """
    if prefix and transformers_version() < UNEXPECTED_KEYS_PREFIXED_UNTIL:
        return f"{prefix}.{key}"
    return key


def legacy_layernorm_names(names: Any) -> dict[str, str]:
    """For the names of a checkpoint written by transformers 5.0 - 5.5.4, ``{saved name:
    model name}`` of the LayerNorm tensors saved as ``gamma``/``beta``.

    >>> legacy_layernorm_names(["esm.encoder.emb_layer_norm_after.gamma", "lm_head.bias"])
    {'esm.encoder.emb_layer_norm_after.gamma': 'esm.encoder.emb_layer_norm_after.weight'}
    """
    out = {}
    for n in names:
        head, _, last = str(n).rpartition(".")
        if head and last in LEGACY_LAYERNORM_NAMES:
            out[str(n)] = f"{head}.{LEGACY_LAYERNORM_NAMES[last]}"
    return out


def saved_layernorm_name(name: str) -> str:
    """The ``gamma``/``beta`` spelling of a LayerNorm tensor name (other names unchanged).

    >>> saved_layernorm_name("encoder.LayerNorm.weight"), saved_layernorm_name("dense.bias")
    ('encoder.LayerNorm.gamma', 'dense.beta')
    """
    head, _, last = name.rpartition(".")
    back = {v: k for k, v in LEGACY_LAYERNORM_NAMES.items()}
    return f"{head}.{back[last]}" if head and last in back else name
