"""The typed model graph: frozen values on a networkx.DiGraph, lossless JSON, a readable summary.

This module never imports torch: graphs load from JSON and compare without it.

>>> g = ModelGraph(nodes=(
...     Node(path="", cls="Net", qualname="m.Net", kind=Kind.BLOCK,
...          totals=Totals(params=6, trainable=6, buffers=0, bytes=24)),
...     Node(path="fc", cls="Linear", qualname="torch.nn.modules.linear.Linear", kind=Kind.LINEAR,
...          attrs=(("in_features", 2), ("out_features", 2), ("bias", True)),
...          tensors=(Tensor(name="weight", shape=(2, 2), dtype="float32"),
...                   Tensor(name="bias", shape=(2,), dtype="float32")),
...          totals=Totals(params=6, trainable=6, buffers=0, bytes=24)),
... ), contains=(("", "fc", "fc"),))
>>> g["fc"].attributes["out_features"]
2
>>> ModelGraph.from_json(g.to_json()) == g
True
>>> sorted(g.nx.successors(""))
['fc']
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Union

from modeldiff.errors import SchemaError

if TYPE_CHECKING:
    import networkx

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10
    from enum import Enum

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


__all__ = [
    "SCHEMA_VERSION",
    "VOLATILE_CONFIG_KEYS",
    "AttrValue",
    "HFInfo",
    "Kind",
    "ModelGraph",
    "Node",
    "RepeatGroup",
    "Tensor",
    "Tie",
    "Totals",
    "recursion_room",
    "repeat_groups",
]

SCHEMA_VERSION = 1

# A recursive alias: the "X | Y" spelling cannot name itself at runtime on Python 3.10.
AttrValue = Union[int, float, bool, str, None, tuple["AttrValue", ...]]  # noqa: UP007

# Bytes per element, by the dtype names torch and safetensors use (torch's str(dtype) minus "torch.").
DTYPE_BYTES: Mapping[str, float] = MappingProxyType(
    {
        "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
        "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
        "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "uint16": 2, "uint32": 4,
        "uint64": 8, "bool": 1, "complex64": 8, "complex128": 16, "float4_e2m1fn_x2": 1,
    }
)


class Kind(StrEnum):
    """What a module is, in a small vocabulary shared by summaries, diffs and diagrams."""

    MODEL = "model"  # a transformers PreTrainedModel
    BLOCK = "block"  # a composite module with children (TransformerBlock, FFN ...)
    CONTAINER = "container"  # ModuleList, ModuleDict, Sequential
    LINEAR = "linear"
    CONV = "conv"
    EMBEDDING = "embedding"
    NORM = "norm"
    DROPOUT = "dropout"
    ACTIVATION = "activation"
    ATTENTION = "attention"
    POOLING = "pooling"
    RECURRENT = "recurrent"
    LOSS = "loss"
    IDENTITY = "identity"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tensor:
    """A parameter or buffer owned directly by a module.

    ``tied_to`` is the full dotted name of the first place the same tensor object appears
    (in ``named_parameters()`` order) when this one is an alias of it; its size is then
    counted there only. ``derived`` marks shapes inferred from attributes (printed models).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    device: str = "cpu"
    requires_grad: bool = True
    buffer: bool = False
    persistent: bool = True
    tied_to: str | None = None
    derived: bool = False

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return int(self.numel * DTYPE_BYTES.get(self.dtype, 4))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                             "device": self.device, "requires_grad": self.requires_grad}
        if self.buffer:
            d["buffer"] = True
        if not self.persistent:
            d["persistent"] = False
        if self.tied_to is not None:
            d["tied_to"] = self.tied_to
        if self.derived:
            d["derived"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tensor:
        return cls(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"],
                   device=d.get("device", "cpu"), requires_grad=d.get("requires_grad", True),
                   buffer=d.get("buffer", False), persistent=d.get("persistent", True),
                   tied_to=d.get("tied_to"), derived=d.get("derived", False))


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Subtree totals. Tied tensors count once, where they first appear."""

    params: int = 0
    trainable: int = 0
    buffers: int = 0  # elements in buffers
    bytes: int = 0  # parameters and buffers

    def __add__(self, other: Totals) -> Totals:
        return Totals(params=self.params + other.params, trainable=self.trainable + other.trainable,
                      buffers=self.buffers + other.buffers, bytes=self.bytes + other.bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One module, keyed by its dotted path (the root is ``""``)."""

    path: str
    cls: str
    qualname: str
    kind: Kind
    attrs: tuple[tuple[str, AttrValue], ...] = ()
    tensors: tuple[Tensor, ...] = ()
    aliases: tuple[str, ...] = ()
    totals: Totals = field(default_factory=Totals)

    @property
    def name(self) -> str:
        """The last component of the path (``""`` for the root)."""
        return self.path.rpartition(".")[2]

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1

    @property
    def attributes(self) -> Mapping[str, AttrValue]:
        return MappingProxyType(dict(self.attrs))

    @property
    def params(self) -> tuple[Tensor, ...]:
        return tuple(t for t in self.tensors if not t.buffer)

    @property
    def buffers(self) -> tuple[Tensor, ...]:
        return tuple(t for t in self.tensors if t.buffer)

    def signature(self) -> str:
        """``Linear(in_features=768, out_features=2, bias=True)``: class and attributes."""
        return f"{self.cls}({format_attrs(self.attrs)})"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "cls": self.cls, "qualname": self.qualname,
                             "kind": str(self.kind)}
        if self.attrs:
            d["attrs"] = [[k, _attr_to_json(v)] for k, v in self.attrs]
        if self.tensors:
            d["tensors"] = [t.to_dict() for t in self.tensors]
        if self.aliases:
            d["aliases"] = list(self.aliases)
        t = self.totals
        d["totals"] = [t.params, t.trainable, t.buffers, t.bytes]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Node:
        p, tr, b, by = d.get("totals", (0, 0, 0, 0))
        return cls(path=d["path"], cls=d["cls"], qualname=d.get("qualname", d["cls"]),
                   kind=Kind(d["kind"]),
                   attrs=tuple((k, _attr_from_json(v)) for k, v in d.get("attrs", ())),
                   tensors=tuple(Tensor.from_dict(t) for t in d.get("tensors", ())),
                   aliases=tuple(d.get("aliases", ())),
                   totals=Totals(params=p, trainable=tr, buffers=b, bytes=by))


_NODE_SETTERS = tuple(Node.__dict__[f].__set__ for f in (
    "path", "cls", "qualname", "kind", "attrs", "tensors", "aliases", "totals"))


def make_node(path: str, cls: str, qualname: str, kind: Kind,
               attrs: tuple[tuple[str, AttrValue], ...], tensors: tuple[Tensor, ...],
               aliases: tuple[str, ...], totals: Totals) -> Node:
    """Node(...) without the frozen-dataclass __init__ (half the cost); walk builds
    thousands. The values are exactly those the public constructor would store."""
    n = object.__new__(Node)
    s0, s1, s2, s3, s4, s5, s6, s7 = _NODE_SETTERS
    s0(n, path)
    s1(n, cls)
    s2(n, qualname)
    s3(n, kind)
    s4(n, attrs)
    s5(n, tensors)
    s6(n, aliases)
    s7(n, totals)
    return n


@dataclass(frozen=True, slots=True, kw_only=True)
class Tie:
    """Two names of one tensor object: ``target`` is an alias of ``source`` (full names)."""

    source: str
    target: str

    @property
    def source_module(self) -> str:
        return self.source.rpartition(".")[0]

    @property
    def target_module(self) -> str:
        return self.target.rpartition(".")[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class RepeatGroup:
    """Consecutive numbered siblings with identical subtrees (``transformer.layer.0-5``)."""

    parent: str
    paths: tuple[str, ...]
    cls: str

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def label(self) -> str:
        """``transformer.layer.0-5``."""
        first = self.paths[0].rpartition(".")[2]
        last = self.paths[-1].rpartition(".")[2]
        prefix = f"{self.parent}." if self.parent else ""
        return f"{prefix}{first}-{last}"


def repeat_groups(parent: str, numbered: Iterable[tuple[str, int, str]]) -> list[RepeatGroup]:
    """Runs of consecutively numbered siblings with equal subtree signatures: the one rule
    walk and parse_repr share, so printed and live graphs fold alike.

    ``numbered`` holds ``(path, signature, class name)`` of a module's numbered children in
    definition order; equal signatures mean equal subtrees.

    >>> [g.label for g in repeat_groups("layer", [("layer.0", 7, "Block"), ("layer.1", 7, "Block"),
    ...                                           ("layer.2", 8, "Block")])]
    ['layer.0-1']
    """
    out: list[RepeatGroup] = []
    run: list[str] = []
    cls = ""
    prev: tuple[int, int] | None = None
    for path, sig, name in numbered:
        index = _child_index(path.rpartition(".")[2])
        if run and index is not None and prev is not None and (index, sig) == (prev[0] + 1,
                                                                                prev[1]):
            run.append(path)
        else:
            if len(run) > 1:
                out.append(RepeatGroup(parent=parent, paths=tuple(run), cls=cls))
            run = [path] if index is not None else []
            cls = name
        prev = None if index is None else (index, sig)
    if len(run) > 1:
        out.append(RepeatGroup(parent=parent, paths=tuple(run), cls=cls))
    return out


@contextlib.contextmanager
def recursion_room(levels: int) -> Iterator[None]:
    """Raise Python's recursion limit, for the ``with`` block, so that code recursing once
    per module nesting level has room for ``levels`` more levels (two frames each) above
    the current stack. Python-to-Python calls use no C stack (3.11+), so this is safe."""
    old = sys.getrecursionlimit()
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    need = depth + 2 * levels + 200
    if need > old:
        sys.setrecursionlimit(need)
    try:
        yield
    finally:
        if need > old:
            sys.setrecursionlimit(old)


def _child_index(name: str) -> int | None:
    """The number of a numbered child (``"3"``); None for other names, and for digits that
    are not decimal numbers (``"²".isdigit()`` is true, ``int("²")`` fails)."""
    if not name.isdecimal() or len(name) > 18:  # past 18 digits: not an index (int limit)
        return None
    return int(name)


# Config keys that say where, when or from where a config was written, not what the model is;
# HFInfo.config_json leaves them out.
VOLATILE_CONFIG_KEYS = frozenset({"transformers_version", "_name_or_path", "_commit_hash"})


@dataclass(frozen=True, slots=True, kw_only=True)
class HFInfo:
    """What a transformers ``PreTrainedModel`` says about itself."""

    model_type: str
    architecture: str
    base_model_prefix: str
    tied_weights: tuple[tuple[str, str], ...] = ()  # declared (target, source) pairs
    ignore_missing: tuple[str, ...] = ()  # _keys_to_ignore_on_load_missing patterns
    ignore_unexpected: tuple[str, ...] = ()  # _keys_to_ignore_on_load_unexpected patterns
    config_json: str = "{}"  # canonical JSON of config.to_dict(), VOLATILE_CONFIG_KEYS left out

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.config_json))

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "architecture": self.architecture,
                "base_model_prefix": self.base_model_prefix,
                "tied_weights": [list(p) for p in self.tied_weights],
                "ignore_missing": list(self.ignore_missing),
                "ignore_unexpected": list(self.ignore_unexpected),
                "config": json.loads(self.config_json)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HFInfo:
        return cls(model_type=d["model_type"], architecture=d["architecture"],
                   base_model_prefix=d["base_model_prefix"],
                   tied_weights=tuple((a, b) for a, b in d.get("tied_weights", ())),
                   ignore_missing=tuple(d.get("ignore_missing", ())),
                   ignore_unexpected=tuple(d.get("ignore_unexpected", ())),
                   config_json=canonical_json(d.get("config", {})))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, eq=True, kw_only=True)
class ModelGraph:
    """A model as a typed graph.

    ``nodes`` are in definition order (``named_modules()`` order); ``contains`` holds
    ``(parent_path, child_name, child_path)`` edges in definition order, including the extra
    edge of a module reachable at two paths; ``ties`` lists tensors shared between modules;
    ``repeats`` lists identical numbered siblings. ``nx`` is a frozen ``networkx.DiGraph``
    with a node per module (data: ``node`` -> :class:`Node`, ``kind``) and edges whose
    ``kind`` is ``"contains"`` (with ``name``, ``order``, and ``names`` when one parent holds
    the child under several names) or ``"tied"`` (with ``tensors``).

    Two graphs are equal when every node, edge, tie, repeat group and HF fact is equal;
    ``source`` (where the graph came from) does not take part.
    """

    nodes: tuple[Node, ...]
    contains: tuple[tuple[str, str, str], ...] = ()
    ties: tuple[Tie, ...] = ()
    repeats: tuple[RepeatGroup, ...] = ()
    hf: HFInfo | None = None
    source: str = field(default="", compare=False)
    _index: dict[str, Node] = field(default_factory=dict, init=False, repr=False, compare=False)
    _nx: Any = field(default=None, init=False, repr=False, compare=False)
    _kids: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = self._index
        for n in self.nodes:
            index[n.path] = n
        for n in self.nodes:
            for a in n.aliases:
                index.setdefault(a, n)
        if self.nodes and self.nodes[0].path != "":
            raise SchemaError(f"the first node must be the root (path ''), got {self.nodes[0].path!r}")

    # -- lookups -------------------------------------------------------------------------
    def __getitem__(self, path: str) -> Node:
        try:
            return self._index[path]
        except KeyError:
            raise KeyError(f"no module at path {path!r}") from None

    def __contains__(self, path: object) -> bool:
        return path in self._index

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __hash__(self) -> int:
        return hash((self.nodes, self.contains, self.ties, self.repeats, self.hf))

    def __repr__(self) -> str:
        return (f"<ModelGraph {self.root.cls}: {len(self.nodes)} modules, "
                f"{self.totals.params:,} params>")

    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def totals(self) -> Totals:
        return self.root.totals

    def children(self, path: str) -> tuple[tuple[str, Node], ...]:
        """``(name, node)`` of the direct children of ``path``, in definition order."""
        owner = self[path].path
        kids = self._kids
        if kids is None:  # one pass over the edges, not one per call: summaries stay linear
            kids = {}
            for parent, name, child in self.contains:
                kids.setdefault(parent, []).append((name, self._index[child]))
            kids = {k: tuple(v) for k, v in kids.items()}
            object.__setattr__(self, "_kids", kids)
        return kids.get(owner, ())

    def tensors(self) -> Iterator[tuple[str, Node, Tensor]]:
        """``(full_name, node, tensor)`` for every tensor at its primary path."""
        for n in self.nodes:
            for t in n.tensors:
                yield (f"{n.path}.{t.name}" if n.path else t.name), n, t

    def state_dict_keys(self) -> tuple[str, ...]:
        """The keys ``model.state_dict()`` would have: parameters and persistent buffers at
        every path a module is reachable at (tied and shared ones under each name)."""
        keys: list[str] = []
        for n in self.nodes:
            for p in (n.path, *n.aliases):
                pre = f"{p}." if p else ""
                keys.extend(pre + t.name for t in n.tensors if not t.buffer or t.persistent)
        return tuple(keys)

    def repeat_of(self, path: str) -> RepeatGroup | None:
        """The repeat group ``path`` is a member of, if any."""
        for g in self.repeats:
            if path in g.paths:
                return g
        return None

    # -- networkx ------------------------------------------------------------------------
    @property
    def nx(self) -> networkx.DiGraph:
        """The graph as a frozen ``networkx.DiGraph`` (built on first use, then cached)."""
        if self._nx is None:
            # Imported here: `import modeldiff` (and the pytest plugin) stay light.
            import networkx as nx

            g = nx.DiGraph(root="", hf=self.hf)
            g.add_nodes_from((n.path, {"node": n, "kind": str(n.kind)}) for n in self.nodes)
            order: dict[str, int] = {}
            for parent, name, child in self.contains:
                i = order.get(parent, 0)
                order[parent] = i + 1
                if g.has_edge(parent, child):  # one module held twice by the same parent
                    data = g.edges[parent, child]
                    data["names"] = (*data["names"], name)
                else:
                    g.add_edge(parent, child, kind="contains", name=name, names=(name,), order=i)
            for tie in self.ties:
                u, v = tie.target_module, tie.source_module
                if u in self._index and v in self._index:
                    u, v = self._index[u].path, self._index[v].path
                    if g.has_edge(u, v):
                        data = g.edges[u, v]
                        data["tensors"] = (*data.get("tensors", ()), (tie.target, tie.source))
                    else:
                        g.add_edge(u, v, kind="tied", tensors=((tie.target, tie.source),))
            object.__setattr__(self, "_nx", nx.freeze(g))
        return self._nx

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "modeldiff._core.graph",
            "version": SCHEMA_VERSION,
            "source": self.source,
            "hf": self.hf.to_dict() if self.hf else None,
            "nodes": [n.to_dict() for n in self.nodes],
            "contains": [list(e) for e in self.contains],
            "ties": [[t.source, t.target] for t in self.ties],
            "repeats": [{"parent": r.parent, "paths": list(r.paths), "cls": r.cls}
                        for r in self.repeats],
        }

    def to_json(self, *, indent: int | None = 1) -> str:
        """Lossless, deterministic JSON (``ModelGraph.from_json`` reads it back)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelGraph:
        """Read what :meth:`to_dict` wrote, validated against the schema: every field's
        type, unique paths, exactly one root and it first, edges between existing modules,
        every module inside the root, totals of non-negative integers. Anything else is
        a :class:`~modeldiff.errors.SchemaError` naming the field (``nodes[3].totals``).
        Totals are checked for type and sign, not summed: graphs made by hand (or by
        :func:`modeldiff.strategies.graphs`) may carry any totals."""
        if not isinstance(d, Mapping) or d.get("schema") != "modeldiff._core.graph":
            raise SchemaError("not a modeldiff graph: expected an object with "
                              "\"schema\": \"modeldiff._core.graph\" (written by ModelGraph.to_json)")
        version = d.get("version")
        if type(version) is not int or version != SCHEMA_VERSION:
            raise SchemaError(f"modeldiff graph schema version {version!r:.40} is not supported "
                              f"(this modeldiff reads version {SCHEMA_VERSION}); re-create the "
                              "JSON with this modeldiff's walk(...).to_json()")
        return _GraphReader(d).read(cls)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelGraph:
        """Read what :meth:`to_json` wrote (size- and depth-capped, then validated as
        :meth:`from_dict` says)."""
        from modeldiff._core.report import loads

        return cls.from_dict(loads(text, what="modeldiff graph JSON"))

    # -- text ----------------------------------------------------------------------------
    def summary(self, depth: int | None = None, *, fold: bool = True) -> str:
        """A readable table: module path, class, key attributes (torch defaults such as
        ``bias=True`` left out; JSON keeps them), parameters.

        ``depth`` cuts the tree (parameter counts are subtree totals); ``fold`` shows a repeat
        group once, as ``layer.0-5 (x6)``. The last line gives the totals; with tied weights
        counted once its parameter count equals transformers' ``model.num_parameters()``.
        """
        return _summary(self, depth=depth, fold=fold)

    def __str__(self) -> str:
        return self.summary(depth=3)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Jupyter shows the folded diagram (SVG; the text summary when Graphviz's dot is
        missing). graphviz is imported here, on first display, not with this module."""
        from modeldiff._render import mimebundle

        return mimebundle(self)



class _GraphReader:
    """Graph JSON -> values, checking each field as it goes; errors name the JSON path."""

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.d = d

    @staticmethod
    def fail(where: str, expected: str, got: Any) -> SchemaError:
        shown = json.dumps(got, default=str)[:60] if not isinstance(got, str) else repr(got[:60])
        return SchemaError(f"malformed modeldiff graph JSON: {where} must be {expected}, "
                           f"got {shown}")

    def text(self, v: Any, where: str) -> str:
        if not isinstance(v, str):
            raise self.fail(where, "a string", v)
        return v

    def flag(self, v: Any, where: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(where, "true or false", v)
        return v

    def count(self, v: Any, where: str) -> int:
        if type(v) is not int or v < 0:
            raise self.fail(where, "a non-negative integer", v)
        return v

    def items(self, v: Any, where: str) -> list[Any]:
        if not isinstance(v, list):
            raise self.fail(where, "a list", v)
        return v

    def obj(self, v: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise self.fail(where, "an object", v)
        return v

    def attr(self, v: Any, where: str) -> AttrValue:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, Mapping) and set(v) == {"tuple"}:
            v = v["tuple"]
        if isinstance(v, list):  # a hand-written list reads as a tuple too
            return tuple(self.attr(x, f"{where}[{i}]") for i, x in enumerate(v))
        raise self.fail(where, "a number, string, bool, null or {\"tuple\": [...]}", v)

    def tensor(self, v: Any, where: str) -> Tensor:
        t = self.obj(v, where)
        tied = t.get("tied_to")
        return Tensor(
            name=self.text(t.get("name"), f"{where}.name"),
            shape=tuple(self.count(x, f"{where}.shape[{i}]")
                        for i, x in enumerate(self.items(t.get("shape"), f"{where}.shape"))),
            dtype=self.text(t.get("dtype"), f"{where}.dtype"),
            device=self.text(t.get("device", "cpu"), f"{where}.device"),
            requires_grad=self.flag(t.get("requires_grad", True), f"{where}.requires_grad"),
            buffer=self.flag(t.get("buffer", False), f"{where}.buffer"),
            persistent=self.flag(t.get("persistent", True), f"{where}.persistent"),
            tied_to=None if tied is None else self.text(tied, f"{where}.tied_to"),
            derived=self.flag(t.get("derived", False), f"{where}.derived"))

    def node(self, v: Any, where: str) -> Node:
        n = self.obj(v, where)
        cls_name = self.text(n.get("cls"), f"{where}.cls")
        kind = self.text(n.get("kind"), f"{where}.kind")
        if kind not in _KINDS:
            raise self.fail(f"{where}.kind", f"one of {', '.join(sorted(_KINDS))}", kind)
        attrs = []
        for i, pair in enumerate(self.items(n.get("attrs", []), f"{where}.attrs")):
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(f"{where}.attrs[{i}]", "a [name, value] pair", pair)
            attrs.append((self.text(pair[0], f"{where}.attrs[{i}][0]"),
                          self.attr(pair[1], f"{where}.attrs[{i}][1]")))
        totals = self.items(n.get("totals", [0, 0, 0, 0]), f"{where}.totals")
        if len(totals) != 4:
            raise self.fail(f"{where}.totals", "[params, trainable, buffers, bytes]", totals)
        p, tr, b, by = (self.count(x, f"{where}.totals[{i}]") for i, x in enumerate(totals))
        if tr > p:
            raise self.fail(f"{where}.totals", "trainable <= params", totals)
        return Node(
            path=self.text(n.get("path"), f"{where}.path"), cls=cls_name,
            qualname=self.text(n.get("qualname", cls_name), f"{where}.qualname"),
            kind=Kind(kind), attrs=tuple(attrs),
            tensors=tuple(self.tensor(t, f"{where}.tensors[{i}]")
                          for i, t in enumerate(self.items(n.get("tensors", []),
                                                           f"{where}.tensors"))),
            aliases=tuple(self.text(a, f"{where}.aliases[{i}]")
                          for i, a in enumerate(self.items(n.get("aliases", []),
                                                           f"{where}.aliases"))),
            totals=Totals(params=p, trainable=tr, buffers=b, bytes=by))

    def strings(self, v: Any, where: str, n: int) -> tuple[str, ...]:
        if not isinstance(v, list) or len(v) != n:
            raise self.fail(where, f"a list of {n} strings", v)
        return tuple(self.text(x, f"{where}[{i}]") for i, x in enumerate(v))

    def hf(self, v: Any) -> HFInfo | None:
        if v is None:
            return None
        h = self.obj(v, "hf")
        config = self.obj(h.get("config", {}), "hf.config")
        return HFInfo(
            model_type=self.text(h.get("model_type"), "hf.model_type"),
            architecture=self.text(h.get("architecture"), "hf.architecture"),
            base_model_prefix=self.text(h.get("base_model_prefix"), "hf.base_model_prefix"),
            tied_weights=tuple(self.strings(p, f"hf.tied_weights[{i}]", 2)  # type: ignore[misc]
                               for i, p in enumerate(self.items(h.get("tied_weights", []),
                                                                "hf.tied_weights"))),
            ignore_missing=tuple(self.text(x, f"hf.ignore_missing[{i}]") for i, x in
                                 enumerate(self.items(h.get("ignore_missing", []),
                                                      "hf.ignore_missing"))),
            ignore_unexpected=tuple(self.text(x, f"hf.ignore_unexpected[{i}]") for i, x in
                                    enumerate(self.items(h.get("ignore_unexpected", []),
                                                         "hf.ignore_unexpected"))),
            config_json=canonical_json(config))

    def read(self, cls: type[ModelGraph]) -> ModelGraph:
        d = self.d
        raw_nodes = self.items(d.get("nodes"), "nodes")
        if not raw_nodes:
            raise self.fail("nodes", "a non-empty list (the root module first)", raw_nodes)
        nodes = [self.node(n, f"nodes[{i}]") for i, n in enumerate(raw_nodes)]
        index: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for p in (n.path, *n.aliases):
                if p in index:
                    raise SchemaError(f"malformed modeldiff graph JSON: nodes[{i}]: the path "
                                      f"{p[:100]!r} is already taken by nodes[{index[p]}]")
                index[p] = i
        if nodes[0].path != "":
            raise SchemaError("malformed modeldiff graph JSON: nodes[0] must be the root "
                              f"(path ''), got {nodes[0].path[:100]!r}")
        contains = []
        shared: list[tuple[int, int, int]] = []
        parent_of: dict[int, int] = {}
        for i, e in enumerate(self.items(d.get("contains", []), "contains")):
            parent, name, child = self.strings(e, f"contains[{i}]", 3)
            for end, p in (("parent", parent), ("child", child)):
                if p not in index:
                    raise SchemaError(f"malformed modeldiff graph JSON: contains[{i}]: the "
                                      f"{end} {p[:100]!r} is not a module of this graph")
            pi, ci = index[parent], index[child]
            if nodes[pi].path != parent:
                raise SchemaError(f"malformed modeldiff graph JSON: contains[{i}]: parent "
                                  f"{parent[:100]!r} must be a module's primary path")
            if nodes[ci].path == _join(parent, name):  # the edge that defines the child
                if ci in parent_of or ci == 0:
                    raise SchemaError(f"malformed modeldiff graph JSON: contains[{i}]: "
                                      f"{child[:100]!r} has a second defining parent")
                parent_of[ci] = pi
            else:
                shared.append((i, pi, ci))
            contains.append((parent, name, child))
        for i, pi, ci in shared:  # a module held at a second path must not be its own ancestor
            at: int | None = pi
            while at is not None:
                if at == ci:
                    raise SchemaError(f"malformed modeldiff graph JSON: contains[{i}] makes "
                                      f"{nodes[ci].path[:100] or '(root)'!r} a child of its own "
                                      "descendant (a cycle)")
                at = parent_of.get(at)
        orphans = [nodes[i].path for i in range(1, len(nodes)) if i not in parent_of]
        if orphans:
            raise SchemaError(f"malformed modeldiff graph JSON: {len(orphans)} module(s) have no "
                              f"parent edge in contains, e.g. {orphans[0][:100]!r}: a graph has "
                              "one root and every other module is inside it")
        ties = tuple(Tie(source=s, target=t) for s, t in
                     (self.strings(e, f"ties[{i}]", 2)
                      for i, e in enumerate(self.items(d.get("ties", []), "ties"))))
        repeats = []
        for i, r in enumerate(self.items(d.get("repeats", []), "repeats")):
            r = self.obj(r, f"repeats[{i}]")
            paths = tuple(self.text(p, f"repeats[{i}].paths[{j}]")
                          for j, p in enumerate(self.items(r.get("paths"), f"repeats[{i}].paths")))
            if len(paths) < 2 or any(p not in index for p in paths):
                raise self.fail(f"repeats[{i}].paths", "two or more paths of this graph", paths)
            repeats.append(RepeatGroup(parent=self.text(r.get("parent"), f"repeats[{i}].parent"),
                                       paths=paths, cls=self.text(r.get("cls"), f"repeats[{i}].cls")))
        return cls(nodes=tuple(nodes), contains=tuple(contains), ties=ties,
                   repeats=tuple(repeats), hf=self.hf(d.get("hf")),
                   source=self.text(d.get("source", ""), "source"))


_KINDS = frozenset(k.value for k in Kind)

def format_attrs(attrs: tuple[tuple[str, AttrValue], ...], *, limit: int | None = None) -> str:
    parts = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in attrs]
    if limit is not None and len(parts) > limit:
        parts = [*parts[:limit], "..."]
    return ", ".join(parts)


# Attribute values that are torch's defaults and say little on their own; summaries, diffs and
# diagrams leave them out ("Linear(in_features=768, out_features=2)"), JSON keeps everything.
QUIET_ATTRS: frozenset[tuple[str, AttrValue]] = frozenset({
    ("bias", True), ("inplace", False), ("elementwise_affine", True), ("affine", True),
    ("track_running_stats", True), ("approximate", "none"), ("batch_first", False),
})


def key_attrs(attrs: tuple[tuple[str, AttrValue], ...]) -> tuple[tuple[str, AttrValue], ...]:
    """The attributes worth showing: defaults such as ``bias=True`` left out.

    >>> key_attrs((("in_features", 768), ("out_features", 2), ("bias", True)))
    (('in_features', 768), ('out_features', 2))
    >>> key_attrs((("p", 0.2), ("inplace", False)))
    (('p', 0.2),)
    """
    return tuple((k, v) for k, v in attrs if (k, v) not in QUIET_ATTRS)


def _attr_to_json(v: AttrValue) -> Any:
    if isinstance(v, tuple):
        return {"tuple": [_attr_to_json(x) for x in v]}
    return v


def _attr_from_json(v: Any) -> AttrValue:
    if isinstance(v, dict) and "tuple" in v:
        return tuple(_attr_from_json(x) for x in v["tuple"])
    if isinstance(v, list):  # tolerate hand-written JSON
        return tuple(_attr_from_json(x) for x in v)
    return v


def _summary(g: ModelGraph, *, depth: int | None, fold: bool) -> str:
    # A printed model's numbers follow from printed attributes (Linear's in/out features):
    # estimates, marked "~", never passed off as counts.
    est = "~" if any(t.derived for n in g.nodes for t in n.tensors) else ""
    folded: dict[str, RepeatGroup] = {}
    if fold:
        for r in g.repeats:
            folded.setdefault(r.paths[0], r)
    hidden: set[str] = set()
    rows: list[tuple[str, str, str, str]] = []
    # depth-first with an explicit stack: a 2,000-level module tree is fine
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        path, indent = stack.pop()
        if path in hidden:  # folded into its group, whose first member came before it
            continue
        node = g[path]
        group = folded.get(path)
        if group is not None:
            hidden.update(group.paths[1:])
            label = f"{group.label.rpartition('.')[2]} (x{group.count})"
            count = f"{est}{node.totals.params * group.count:,}"
        else:
            label = node.name if path else "(root)"
            count = f"{est}{node.totals.params:,}"
        rows.append(("  " * indent + label, node.cls, format_attrs(key_attrs(node.attrs), limit=4),
                     count))
        if depth is not None and indent >= depth:
            continue
        kids = [child.path for name, child in g.children(path)
                if child.path == _join(path, name)]  # an alias is shown at its first path
        stack.extend((k, indent + 1) for k in reversed(kids))  # pop in definition order

    t = g.totals
    header = ("module", "class", "attributes", "params")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    widths[2] = min(widths[2], 56)
    lines = [
        f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  "
        f"{header[3]:>{widths[3]}}",
        "  ".join("-" * w for w in widths),
    ]
    for name, cls, attrs, count in rows:
        if len(attrs) > widths[2]:
            attrs = attrs[: widths[2] - 3] + "..."
        lines.append(f"{name:<{widths[0]}}  {cls:<{widths[1]}}  {attrs:<{widths[2]}}  "
                     f"{count:>{widths[3]}}")
    lines.append("  ".join("-" * w for w in widths))
    if est:
        lines.append(f"Total params: ~{t.params:,} (estimated from the printed attributes; "
                     "a print has no dtypes, buffers or trainable flags, and modules that "
                     "print no sizes count 0)")
    else:
        lines.append(f"Total params: {t.params:,}   Trainable: {t.trainable:,}   "
                     f"Buffers: {t.buffers:,} elements   Size: {human_bytes(t.bytes)}")
    if g.ties:
        lines.append("Tied: " + ", ".join(f"{x.target} -> {x.source}" for x in g.ties[:4])
                     + (f" (+{len(g.ties) - 4} more)" if len(g.ties) > 4 else ""))
    return "\n".join(line.rstrip() for line in lines)


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def human_bytes(n: float, digits: int = 1) -> str:
    """``267.8 MB``: decimal units (as accelerate and the hub print sizes), ``digits``
    decimals.

    >>> human_bytes(999), human_bytes(267_800_000), human_bytes(1_500_000_000, digits=2)
    ('999 B', '267.8 MB', '1.50 GB')
    """
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.{digits}f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.{digits}f} TB"  # pragma: no cover
