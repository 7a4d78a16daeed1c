"""Module class -> kind and typed attributes; the registry third-party packages extend.

Attributes are read from a module's ``extra_repr()`` text, the same text ``print(model)``
shows, so a live model and a printed one give the same typed attributes:

>>> spec = lookup("Linear")
>>> spec.kind
<Kind.LINEAR: 'linear'>
>>> parse_attrs(spec, "in_features=768, out_features=2, bias=True")
(('in_features', 768), ('out_features', 2), ('bias', True))
>>> parse_attrs(lookup("Embedding"), "30522, 768, padding_idx=0")
(('num_embeddings', 30522), ('embedding_dim', 768), ('padding_idx', 0))

Plugins: a distribution declares an entry point in the group ``modeldiff.kinds`` whose object
is a function taking the :class:`KindRegistry`; it is called once, on first use::

    # pyproject.toml of your package
    [project.entry-points."modeldiff.kinds"]
    mylib = "mylib.modeldiff_kinds:register"

    # mylib/modeldiff_kinds.py
    def register(registry):
        registry.register("MyGatedMLP", "block")
        registry.register("FancyNorm", "norm", positional=("normalized_shape",))

>>> registry.register("FancyNorm", "norm", positional=("normalized_shape",))
>>> parse_attrs(lookup("FancyNorm"), "(64,), eps=1e-05")
(('normalized_shape', (64,)), ('eps', 1e-05))
"""

from __future__ import annotations

import ast
import difflib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from modeldiff._core.graph import AttrValue, Kind, key_attrs

__all__ = ["KindRegistry", "KindSpec", "key_attrs", "lookup", "parse_attrs", "registry", "tensor_shapes"]

log = logging.getLogger(__name__)

ShapeRule = Callable[[dict[str, AttrValue]], tuple[tuple[str, tuple[int, ...]], ...]]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """How to read one class: its kind, names for positional values in its ``extra_repr``,
    and optionally which parameter shapes follow from its attributes (for printed models)."""

    kind: Kind
    positional: tuple[str, ...] = ()
    shapes: ShapeRule | None = None
    registered: bool = True  # False when the kind was guessed from the class name


class KindRegistry:
    """Class name -> :class:`KindSpec`. Names are plain class names (``"Linear"``) as
    ``print(model)`` shows them; for live modules the class's MRO is searched too, so a
    subclass of ``nn.Linear`` is a linear layer."""

    def __init__(self) -> None:
        self._specs: dict[str, KindSpec] = {}
        self._plugins_loaded = False
        # Bumped by every registration: whoever caches what lookups return (the walker's
        # class -> spec table) compares it to know its cache is stale.
        self.version = 0

    def register(self, name: str, kind: Kind | str, *, positional: tuple[str, ...] = (),
                 shapes: ShapeRule | None = None) -> None:
        """Declare how modules of class ``name`` are classified."""
        self._specs[name] = KindSpec(Kind(kind), tuple(positional), shapes)
        self.version += 1
        # Cached lookups made before this registration must not outlive it.
        for cached in ("_guess", "_parse_cached"):
            fn = globals().get(cached)
            if fn is not None:
                fn.cache_clear()

    def get(self, name: str) -> KindSpec | None:
        self._load_plugins()
        return self._specs.get(name)

    def names(self) -> tuple[str, ...]:
        self._load_plugins()
        return tuple(self._specs)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="modeldiff.kinds"):
            try:
                ep.load()(self)
            except Exception as e:  # a broken plugin must not break walking every model
                log.warning("modeldiff.kinds plugin %r failed to load: %s", ep.name, e)


registry = KindRegistry()


# -- shapes that follow from attributes (used for printed models) ---------------------------
def _linear(a: dict[str, AttrValue]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    i, o = a.get("in_features"), a.get("out_features")
    if not isinstance(i, int) or not isinstance(o, int):
        return ()
    return (("weight", (o, i)), *((("bias", (o,)),) if a.get("bias", True) else ()))


def _embedding(a: dict[str, AttrValue]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    n, d = a.get("num_embeddings"), a.get("embedding_dim")
    if not isinstance(n, int) or not isinstance(d, int):
        return ()
    return (("weight", (n, d)),)


def _layernorm(a: dict[str, AttrValue]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    shape = a.get("normalized_shape")
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(x, int) for x in shape):
        return ()
    if a.get("elementwise_affine", True) is False:
        return ()
    dims: tuple[int, ...] = tuple(x for x in shape if isinstance(x, int))
    return (("weight", dims), *((("bias", dims),) if a.get("bias", True) else ()))


def _rmsnorm(a: dict[str, AttrValue]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    shape = a.get("normalized_shape")
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(x, int) for x in shape):
        return ()
    if a.get("elementwise_affine", True) is False:  # nn.RMSNorm(..., elementwise_affine=False)
        return ()
    return (("weight", tuple(x for x in shape if isinstance(x, int))),)


def _conv1d(a: dict[str, AttrValue]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """transformers' GPT-2 ``Conv1D(nf=..., nx=...)``: a linear layer with its weight
    stored transposed, (nx, nf)."""
    nf, nx = a.get("nf"), a.get("nx")
    if not isinstance(nf, int) or not isinstance(nx, int):
        return ()
    return (("weight", (nx, nf)), ("bias", (nf,)))


def _only(rule: ShapeRule, keys: str) -> ShapeRule:
    """``rule``, applied only when the attributes are exactly the kind the rule was written
    for (no key outside ``keys``). Classes known only by their name ("LlamaRMSNorm") get
    shapes when they print what the torch class prints, and none when they print more."""
    allowed = frozenset(keys.split())

    def checked(a: dict[str, AttrValue]) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return rule(a) if a and allowed.issuperset(a) else ()

    checked.__name__ = checked.__qualname__ = f"{rule.__name__}_only"
    return checked


_R = registry.register
for _n in ("ModuleList", "ModuleDict", "Sequential", "ParameterList", "ParameterDict"):
    _R(_n, Kind.CONTAINER)
_R("Linear", Kind.LINEAR, shapes=_linear)
_R("LazyLinear", Kind.LINEAR)
_R("Bilinear", Kind.LINEAR, positional=("in1_features", "in2_features", "out_features"))
_R("Identity", Kind.IDENTITY)
for _n in ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"):
    _R(_n, Kind.CONV, positional=("in_channels", "out_channels"))
_R("Embedding", Kind.EMBEDDING, positional=("num_embeddings", "embedding_dim"), shapes=_embedding)
_R("EmbeddingBag", Kind.EMBEDDING, positional=("num_embeddings", "embedding_dim"))
_R("LayerNorm", Kind.NORM, positional=("normalized_shape",), shapes=_layernorm)
_R("RMSNorm", Kind.NORM, positional=("normalized_shape",), shapes=_rmsnorm)
_R("GroupNorm", Kind.NORM, positional=("num_groups", "num_channels"))
for _n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "SyncBatchNorm"):
    _R(_n, Kind.NORM, positional=("num_features",))
for _n in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"):
    _R(_n, Kind.DROPOUT)
for _n in ("ReLU", "ReLU6", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "ELU",
           "LeakyReLU", "Mish", "Softplus", "Hardswish", "Hardsigmoid", "PReLU", "GLU", "SELU",
           "CELU", "Softsign", "Tanhshrink", "Threshold", "Hardtanh", "LogSigmoid"):
    _R(_n, Kind.ACTIVATION)
_R("MultiheadAttention", Kind.ATTENTION)
for _n in ("RNN", "LSTM", "GRU"):
    _R(_n, Kind.RECURRENT, positional=("input_size", "hidden_size"))
for _n in ("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
           "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d"):
    _R(_n, Kind.POOLING)
for _n in ("CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "NLLLoss", "L1Loss", "BCELoss"):
    _R(_n, Kind.LOSS)
del _n


# Heuristics for classes nobody registered, from the class name alone, so they work on
# printed text too. Order matters: "SelfAttentionDropout" is a dropout, not an attention.
_NAME_RULES: tuple[tuple[re.Pattern[str], Kind, tuple[str, ...]], ...] = (
    (re.compile(r"Loss$"), Kind.LOSS, ()),
    (re.compile(r"Dropout$|DropPath$"), Kind.DROPOUT, ()),
    (re.compile(r"(Activation|GELU|SiLU|ReLU|Swish|Tanh|Sigmoid|Softmax|Act)$"), Kind.ACTIVATION, ()),
    (re.compile(r"(RMSNorm|RmsNorm|LayerNorm|Norm)(\d*d)?$"), Kind.NORM, ("normalized_shape",)),
    # Rotary/sinusoidal position "embeddings" compute, they hold no lookup table.
    (re.compile(r"(Rotary|Sinusoidal)\w*Embedding(s)?$"), Kind.OTHER, ()),
    (re.compile(r"Embedding(s)?$"), Kind.EMBEDDING, ("num_embeddings", "embedding_dim")),
    (re.compile(r"(Attention|Attn|SelfAttention)$"), Kind.ATTENTION, ()),
    (re.compile(r"Pool(er|ing)?(\d*d)?$"), Kind.POOLING, ()),
    (re.compile(r"(Linear|Conv1D|Dense)$"), Kind.LINEAR, ()),
)


# Parameter shapes for leaves known only by their class name, so that a printed model's
# subclasses of nn.Linear / nn.Embedding / nn.LayerNorm and HF's RMSNorms get derived shapes
# (walk reads the real tensors, it never uses these). First match wins.
_NAME_SHAPES: tuple[tuple[re.Pattern[str], ShapeRule], ...] = (
    (re.compile(r"Conv1D$"), _only(_conv1d, "nf nx")),
    (re.compile(r"Linear$"), _only(_linear, "in_features out_features bias")),
    (re.compile(r"Embedding$"), _only(_embedding, "num_embeddings embedding_dim padding_idx "
                                                  "max_norm norm_type scale_grad_by_freq sparse")),
    (re.compile(r"(RMSNorm|RmsNorm)$"), _only(_rmsnorm, "normalized_shape eps elementwise_affine")),
    (re.compile(r"LayerNorm$"), _only(_layernorm, "normalized_shape eps elementwise_affine bias")),
)


@lru_cache(maxsize=4096)
def _guess(name: str, has_children: bool) -> KindSpec:
    for pattern, kind, positional in _NAME_RULES:
        if pattern.search(name):
            # A multi-layer "Embeddings" or "Pooler" module is a block around leaves; only
            # leaves get the leaf kinds that imply their own weights (embedding, norm).
            if has_children and kind in (Kind.EMBEDDING, Kind.NORM, Kind.LINEAR):
                break
            shapes = None
            if not has_children:
                shapes = next((rule for p, rule in _NAME_SHAPES if p.search(name)), None)
            return KindSpec(kind, positional, shapes, registered=False)
    return KindSpec(Kind.BLOCK if has_children else Kind.OTHER, registered=False)


def lookup(name: str, *, mro: tuple[str, ...] = (), has_children: bool = False,
           is_model: bool = False) -> KindSpec:
    """The spec for class ``name``: registered, else its nearest registered base class
    (``mro``, live modules only), else a guess from the name.

    >>> lookup("DistilBertSelfAttention", has_children=True).kind
    <Kind.ATTENTION: 'attention'>
    >>> lookup("TransformerBlock", has_children=True).kind
    <Kind.BLOCK: 'block'>
    """
    spec = registry.get(name)
    if spec is not None:
        return spec
    for base in mro:
        spec = registry.get(base)
        if spec is not None:
            return spec
    if is_model:
        return KindSpec(Kind.MODEL, registered=False)
    return _guess(name, has_children)


# -- extra_repr text -> typed attributes ---------------------------------------------------
_KEY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\Z", re.S)


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside brackets or quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


# extra_repr text longer than this is kept as one "extra_repr" attribute, unparsed.
_MAX_PARSED_TEXT = 100_000
# literal_eval builds an AST several times the text's size: longer values stay text.
_MAX_LITERAL = 10_000

_VALUE_SHORTCUTS: dict[str, AttrValue] = {"True": True, "False": False, "None": None}


def _value(text: str) -> AttrValue:
    if text in _VALUE_SHORTCUTS:
        return _VALUE_SHORTCUTS[text]
    if len(text) > _MAX_LITERAL:
        return text
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _freeze(v, text)


def _freeze(v: object, text: str) -> AttrValue:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return tuple(_freeze(x, text) for x in v)
    return text


@lru_cache(maxsize=8192)
def _parse_cached(spec: KindSpec, text: str) -> tuple[tuple[str, AttrValue], ...]:
    out: list[tuple[str, AttrValue]] = []
    seen: set[str] = set()
    for i, item in enumerate(_split_top(text)):
        m = _KEY.match(item)
        if m:
            key, value = m.group(1), _value(m.group(2).strip())
        else:
            key = spec.positional[i] if i < len(spec.positional) else f"arg{i}"
            value = _value(item)
        if key in seen:  # never silently drop a repeated key
            key = f"{key}_{i}"
        seen.add(key)
        out.append((key, value))
    return tuple(out)


def parse_attrs(spec: KindSpec, text: str) -> tuple[tuple[str, AttrValue], ...]:
    """Typed attributes from ``extra_repr()`` text: ``key=value`` items keep their key,
    positional ones take the spec's names (else ``arg0``, ``arg1`` ...). Values that are not
    Python literals are kept as their text.
    """
    text = text.strip()
    if not text:
        return ()
    if len(text) > _MAX_PARSED_TEXT:
        # Far longer than any real extra_repr: kept whole, not split into (possibly millions
        # of) attributes or handed to literal_eval, so time and memory stay linear.
        return (("extra_repr", text),)
    if len(text) > 4096:  # not cached: the cache would hold on to large texts
        return _parse_cached.__wrapped__(spec, text)
    return _parse_cached(spec, text)


def tensor_shapes(spec: KindSpec,
                  attrs: tuple[tuple[str, AttrValue], ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Parameter shapes implied by the attributes, where the class defines them.

    >>> tensor_shapes(lookup("Linear"), (("in_features", 4), ("out_features", 2), ("bias", True)))
    (('weight', (2, 4)), ('bias', (2,)))
    """
    if spec.shapes is None:
        return ()
    return spec.shapes(dict(attrs))


def suggest(word: str, choices: tuple[str, ...] | list[str], n: int = 3) -> tuple[str, ...]:
    """Close matches for error messages."""
    return tuple(difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6))

