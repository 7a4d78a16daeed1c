"""Every limit modeldiff applies to what it reads, in one place.

modeldiff reads files other people made (checkpoint folders, printed text, JSON). Each reader
checks its input against the limits below before it spends time or memory on it, and refuses
with a typed :mod:`modeldiff.errors` error that names the limit. The defaults sit far above
any real model; raise one when a genuine input needs it, for the whole process:

>>> import modeldiff.limits as limits
>>> limits.MAX_CONFIG_LAYERS
1024
>>> limits.MAX_CONFIG_LAYERS = 4096  # readers look the value up on every call

or for a block of code only:

>>> with limits.raised(MAX_CONFIG_LAYERS=8192):
...     limits.MAX_CONFIG_LAYERS
8192
>>> limits.MAX_CONFIG_LAYERS
4096
>>> limits.MAX_CONFIG_LAYERS = 1024

docs/security.md describes the threat model and what each limit guards against.
This module imports nothing from modeldiff.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

__all__ = [
    "DOT_TIMEOUT_SECONDS",
    "MAX_BIN_FILE_BYTES",
    "MAX_BIN_UNCOMPRESSED_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_HEADS",
    "MAX_CONFIG_LAYERS",
    "MAX_CONFIG_POSITIONS",
    "MAX_CONFIG_VOCAB",
    "MAX_CONFIG_WIDTH",
    "MAX_INDEX_BYTES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PRINTED_BYTES",
    "MAX_PRINTED_DEPTH",
    "MAX_PRINTED_MODULES",
    "MAX_SAFETENSORS_HEADER_BYTES",
    "MAX_WALK_DEPTH",
    "hint",
    "raised",
]

# -- checkpoint files ----------------------------------------------------------------------
#: A safetensors header (the JSON before the tensor data) larger than this is refused; the
#: safetensors library itself refuses headers over 100 MB.
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
#: ``config.json`` larger than this is refused (real ones are a few KB; a large id2label a
#: few MB).
MAX_CONFIG_BYTES = 16 * 2**20
#: ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json`` larger than this is
#: refused (an index of 100,000 tensors is about 10 MB).
MAX_INDEX_BYTES = 64 * 2**20
#: A pickled ``.bin`` written in torch's legacy (non-zip) format is read whole into memory;
#: larger ones are refused (re-save them with a current torch, or as safetensors).
MAX_BIN_FILE_BYTES = 4 * 2**30
#: A zip-format ``.bin`` whose compressed members would inflate past this is refused. torch
#: stores members uncompressed, so a real checkpoint never comes near it.
MAX_BIN_UNCOMPRESSED_BYTES = 2**30

# -- config.json values (checked before a model is built from them) --------------------------
#: Layers (``num_hidden_layers``, ``n_layer`` ...).
MAX_CONFIG_LAYERS = 1024
#: Widths (``hidden_size``, ``intermediate_size``, ``d_model`` ...).
MAX_CONFIG_WIDTH = 1_000_000
#: Attention heads (``num_attention_heads``, ``num_key_value_heads`` ...).
MAX_CONFIG_HEADS = 65_536
#: Vocabulary size.
MAX_CONFIG_VOCAB = 16_000_000
#: Positions (``max_position_embeddings``, ``n_positions`` ...).
MAX_CONFIG_POSITIONS = 100_000_000

# -- JSON (config, index, graph and result documents) ------------------------------------------
#: A graph or result JSON document larger than this is refused.
MAX_JSON_BYTES = 512 * 2**20
#: JSON nested deeper than this is refused (real documents nest a few levels); keeps every
#: reader clear of Python's recursion limit.
MAX_JSON_DEPTH = 64

# -- printed text (print(model)) --------------------------------------------------------------
#: Printed text longer than this (in characters) is refused.
MAX_PRINTED_BYTES = 256 * 2**20
#: Modules nested deeper than this in printed text are refused.
MAX_PRINTED_DEPTH = 200
#: Modules the text expands to, after ``(0-N): N+1 x`` repeat notation, at most.
MAX_PRINTED_MODULES = 1_000_000

# -- live modules and rendering -----------------------------------------------------------------
#: A live module tree nested deeper than this is refused by walk (no RecursionError either
#: way: walk raises the interpreter's recursion limit for its own frames as needed).
MAX_WALK_DEPTH = 5_000
#: Graphviz ``dot`` is stopped after this many seconds and a typed error raised.
DOT_TIMEOUT_SECONDS = 120.0


def hint(name: str) -> str:
    """The sentence an error ends with: which limit was hit and how to raise it.

    >>> hint("MAX_CONFIG_LAYERS")
    'limit modeldiff.limits.MAX_CONFIG_LAYERS = 1,024; raise it if the input is genuine'
    """
    value = getattr(sys.modules[__name__], name)
    shown = f"{value:,}" if isinstance(value, int) else f"{value}"
    return f"limit modeldiff.limits.{name} = {shown}; raise it if the input is genuine"


@contextlib.contextmanager
def raised(**values: float) -> Iterator[None]:
    """Set limits for the duration of a ``with`` block, then restore them.

    >>> import modeldiff.limits as limits
    >>> with limits.raised(MAX_PRINTED_DEPTH=1000):
    ...     limits.MAX_PRINTED_DEPTH
    1000
    >>> limits.MAX_PRINTED_DEPTH
    200
    """
    module = sys.modules[__name__]
    unknown = sorted(set(values) - set(__all__))
    if unknown or any(not k.isupper() for k in values):
        raise AttributeError(f"no such limit: {', '.join(unknown or values)}; "
                             f"the limits are {', '.join(n for n in __all__ if n.isupper())}")
    before = {k: getattr(module, k) for k in values}
    try:
        for k, v in values.items():
            setattr(module, k, v)
        yield
    finally:
        for k, v in before.items():
            setattr(module, k, v)
