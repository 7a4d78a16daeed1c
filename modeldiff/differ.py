"""The structural difference of two models, and what a task head adds to its base.

This module imports no torch unless weights are compared: graphs are plain data.

>>> import modeldiff
>>> d = modeldiff.diff("distilbert", modeldiff.walk("distilbert", task="sequence-classification"))
>>> [c.path for c in d.added]
['pre_classifier', 'classifier', 'dropout']
>>> print(d)  # doctest: +NORMALIZE_WHITESPACE
DistilBertModel -> DistilBertForSequenceClassification  (base aligned at distilbert)
+ pre_classifier  Linear(in_features=768, out_features=768)  590,592 params
+ classifier      Linear(in_features=768, out_features=2)      1,538 params
+ dropout         Dropout(p=0.2)
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modeldiff.errors import AlignmentError, InputTypeError
from modeldiff.graph import (
    VOLATILE_CONFIG_KEYS,
    AttrValue,
    ModelGraph,
    Node,
    StrEnum,
    Tensor,
    format_attrs,
    key_attrs,
)

if TYPE_CHECKING:
    from modeldiff.tensors import WeightDiff

__all__ = [
    "ABSENT",
    "Alignment",
    "AttrChange",
    "Change",
    "ConfigChange",
    "GraphDiff",
    "HeadDelta",
    "ModuleChange",
    "TensorChange",
    "TieChange",
    "align",
    "diff",
    "head_delta",
    "weight_diff",
]

# Config keys a structural diff does not compare: besides those that say where or when a
# config was written (already left out of HFInfo), the class that wrote it (the diff compares
# the root classes) and its dtype (dtype differences show on every tensor).
IGNORED_CONFIG_KEYS = VOLATILE_CONFIG_KEYS | {"architectures", "dtype", "torch_dtype"}


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class _Absent:
    """The value of an attribute or config key that one side does not have."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
Value = AttrValue | _Absent

_MAX_CONFIG_LINES = 12  # in str(); to_json() lists every key

_MARK = {Change.ADDED: "+", Change.REMOVED: "-", Change.CHANGED: "~"}


@dataclass(frozen=True, slots=True, kw_only=True)
class AttrChange:
    """``Dropout p 0.1 -> 0.2``. ``name`` is ``"class"`` or ``"kind"`` for those changes."""

    name: str
    before: Value
    after: Value

    def __str__(self) -> str:
        return f"{self.name} {_fmt(self.before)} -> {_fmt(self.after)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorChange:
    """A parameter or buffer added, removed, or changed in ``fields`` (shape, dtype,
    requires_grad, buffer, persistent)."""

    name: str
    change: Change
    before: Tensor | None
    after: Tensor | None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.change is Change.ADDED:
            assert self.after is not None
            return f"+{self.name} {_tensor_desc(self.after)}"
        if self.change is Change.REMOVED:
            assert self.before is not None
            return f"-{self.name} {_tensor_desc(self.before)}"
        assert self.before is not None
        assert self.after is not None
        parts = []
        for f in self.fields:
            b, a = getattr(self.before, f), getattr(self.after, f)
            parts.append(f"{self.name} {f} {_fmt(b)} -> {_fmt(a)}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleChange:
    """One module added, removed or changed.

    ``path`` is in the after-model's names for added and changed modules and in the
    before-model's names for removed ones. An added or removed module stands for its whole
    subtree (``subtree`` modules). A change repeated identically across a repeat group is
    one entry whose ``members`` lists every path it stands for.
    """

    path: str
    change: Change
    before: Node | None
    after: Node | None
    attrs: tuple[AttrChange, ...] = ()
    tensors: tuple[TensorChange, ...] = ()
    members: tuple[str, ...] = ()
    subtree: int = 1

    @property
    def count(self) -> int:
        return max(1, len(self.members))

    @property
    def node(self) -> Node:
        node = self.after if self.after is not None else self.before
        assert node is not None
        return node

    @property
    def label(self) -> str:
        """``transformer.layer.0-5.attention.dropout (x6)`` for a folded change."""
        if len(self.members) < 2:
            return self.path or "(root)"
        return f"{_range_label(self.members)} (x{len(self.members)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TieChange:
    """A tie gained (``ADDED``, after-model names) or lost (``REMOVED``, before-model names):
    ``target`` is an alias of ``source``."""

    change: Change
    source: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange:
    key: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.key} {_fmt(self.before)} -> {_fmt(self.after)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alignment:
    """Where the two compared roots sit: ``before`` in the first model, ``after`` in the
    second (``""`` is the root). ``how`` says how it was found: ``identity`` (path to path),
    ``base_model_prefix`` (transformers metadata), ``structure``, ``forced`` or ``none``."""

    before: str
    after: str
    how: str

    def describe(self) -> str:
        where = self.after or self.before
        if self.how == "base_model_prefix":
            return f"base aligned at {where}"
        if self.how == "structure":
            return f"aligned by structure at {where}"
        if self.how == "forced":
            if self.before and self.after:
                return f"aligned {self.before} <-> {self.after} (forced)"
            return f"aligned at {where or '(root)'} (forced)"
        return "path to path"

    def to_after(self, before_path: str) -> str | None:
        """The after-model path of a before-model path, or None outside the aligned part."""
        rel = _relative(before_path, self.before)
        return None if rel is None else _join(self.after, rel)

    def to_before(self, after_path: str) -> str | None:
        rel = _relative(after_path, self.after)
        return None if rel is None else _join(self.before, rel)


@dataclass(frozen=True, kw_only=True)
class GraphDiff:
    """What differs between two models. Falsy when nothing does.

    ``modules`` lists added, removed and changed modules (added and removed ones as subtree
    roots, repeated changes folded), ``ties`` the tie edges gained or lost, ``config`` the
    differing config keys (see ``IGNORED_CONFIG_KEYS``), ``not_compared`` the kinds of facts
    one side does not know (a printed model has no dtypes), ``weights`` the value comparison
    when asked for. Two diffs are equal when their findings are; ``before`` and ``after``
    (the graphs compared) do not take part.
    """

    before: ModelGraph = field(compare=False, repr=False)
    after: ModelGraph = field(compare=False, repr=False)
    alignment: Alignment
    modules: tuple[ModuleChange, ...] = ()
    ties: tuple[TieChange, ...] = ()
    config: tuple[ConfigChange, ...] = ()
    not_compared: tuple[str, ...] = ()
    weights: WeightDiff | None = None

    def __bool__(self) -> bool:
        return bool(self.modules or self.ties or self.config or self.weights)

    def __hash__(self) -> int:
        return hash((self.alignment, self.modules, self.ties, self.config, self.not_compared))

    @property
    def added(self) -> tuple[ModuleChange, ...]:
        return tuple(c for c in self.modules if c.change is Change.ADDED)

    @property
    def removed(self) -> tuple[ModuleChange, ...]:
        return tuple(c for c in self.modules if c.change is Change.REMOVED)

    @property
    def changed(self) -> tuple[ModuleChange, ...]:
        return tuple(c for c in self.modules if c.change is Change.CHANGED)

    def __str__(self) -> str:
        return _format(self)

    def __repr__(self) -> str:
        return (f"<GraphDiff {self.before.root.cls} -> {self.after.root.cls}: "
                f"+{len(self.added)} -{len(self.removed)} ~{len(self.changed)} modules, "
                f"{len(self.ties)} ties, {len(self.config)} config keys>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "modeldiff.diff",
            "version": 1,
            "before": {"cls": self.before.root.cls, "source": self.before.source},
            "after": {"cls": self.after.root.cls, "source": self.after.source},
            "alignment": {"before": self.alignment.before, "after": self.alignment.after,
                          "how": self.alignment.how},
            "modules": [_change_dict(c) for c in self.modules],
            "ties": [{"change": str(t.change), "source": t.source, "target": t.target}
                     for t in self.ties],
            "config": [{"key": c.key, "before": _jsonable(c.before), "after": _jsonable(c.after)}
                       for c in self.config],
            "not_compared": list(self.not_compared),
            "weights": self.weights.to_dict() if self.weights is not None else None,
            "different": bool(self),
        }

    def to_json(self, *, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from modeldiff.diagram import mimebundle

        return mimebundle(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadDelta:
    """What a task head adds on top of its base model.

    ``prefix``: where the base sits in the head. ``modules``: head-only module roots.
    ``new_parameters``: state-dict entries that loading a base checkpoint into the head
    newly initialises (transformers' ``missing_keys``); ``ignored_missing`` those of them the
    head class tells transformers to ignore. ``dropped``: base checkpoint entries the head
    does not use (transformers' ``unexpected_keys``), ``ignored_unexpected`` those the head
    class declares ignorable; ``dropped_modules``: the base modules behind them.
    """

    prefix: str
    modules: tuple[str, ...]
    new_parameters: tuple[str, ...]
    ignored_missing: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    ignored_unexpected: tuple[str, ...] = ()
    dropped_modules: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"head adds {len(self.modules)} module(s) around the base at "
                 f"{self.prefix or '(root)'}"]
        lines += [f"+ {m}" for m in self.modules]
        if self.new_parameters:
            lines.append(f"newly initialised: {', '.join(self.new_parameters)}")
        if self.ignored_missing:
            lines.append(f"newly initialised, ignored by transformers: "
                         f"{', '.join(self.ignored_missing)}")
        if self.dropped:
            lines.append(f"unused from the base: {', '.join(self.dropped)}")
        if self.ignored_unexpected:
            lines.append(f"unused, ignored by transformers: {', '.join(self.ignored_unexpected)}")
        return "\n".join(lines)


# -- entry points --------------------------------------------------------------------------
Task = str | None | tuple[str | None, str | None]


def _tasks(task: Task) -> tuple[str | None, str | None]:
    """``task=`` for both sides, or a ``(task_a, task_b)`` pair."""
    return task if isinstance(task, tuple) else (task, task)


def diff(a: Any, b: Any, *, align: str | tuple[str, str] | None = "auto", weights: bool = False,
         task: Task = None, ignore: Sequence[str] = ()) -> GraphDiff:
    """The structural difference of ``a`` and ``b`` (anything :func:`modeldiff.walk` reads).

    ``align``: ``"auto"`` finds where one model sits in the other (transformers'
    ``base_model_prefix``, else by structure); a path such as ``"distilbert"`` or a pair of
    paths forces it; ``None`` compares path to path. ``weights=True`` also compares values
    (models must have real weights: modules or checkpoint folders). ``task`` chooses the
    head when a side is built from a name or config (a ``(task_a, task_b)`` pair sets each
    side's). ``ignore``: glob patterns over module
    paths (either side's names) to leave out.

    >>> import modeldiff
    >>> d = modeldiff.diff(modeldiff.walk("distilbert", task="sequence-classification"),
    ...                    "distilbert")
    >>> [c.path for c in d.removed], bool(d)
    (['pre_classifier', 'classifier', 'dropout'], True)
    """
    ta, tb = _tasks(task)
    ga, gb = _graph(a, ta), _graph(b, tb)
    alignment = _align(ga, gb, align)
    result = _diff_graphs(ga, gb, alignment, ignore=tuple(ignore))
    if weights:
        from dataclasses import replace

        result = replace(result, weights=_weights(a, b, ga, gb, alignment, ignore=tuple(ignore)))
    return result


def weight_diff(a: Any, b: Any, *, align: str | tuple[str, str] | None = "auto",
                task: Task = None) -> WeightDiff:
    """How weight values moved between ``a`` and ``b`` (modules or checkpoint folders):
    per tensor bit-identity, max abs difference, relative change and cosine similarity, and
    a per-module summary ordered by how much moved."""
    ta, tb = _tasks(task)
    ga, gb = _graph(a, ta), _graph(b, tb)
    return _weights(a, b, ga, gb, _align(ga, gb, align), ignore=())


def align(a: Any, b: Any, *, how: str | tuple[str, str] | None = "auto",
          task: Task = None) -> Alignment:
    """Where ``a`` sits in ``b`` or ``b`` in ``a``; see :func:`diff`'s ``align``.

    >>> align("distilbert", "distilbert", how=None)
    Alignment(before='', after='', how='none')
    """
    ta, tb = _tasks(task)
    return _align(_graph(a, ta), _graph(b, tb), how)


def head_delta(base: Any, head: Any, *, task: str | None = None) -> HeadDelta:
    """What ``head`` adds on top of ``base``, answered as transformers' loading report would:
    ``HeadClass.from_pretrained(base_checkpoint, output_loading_info=True)``.

    >>> import modeldiff
    >>> d = head_delta("distilbert", modeldiff.walk("distilbert", task="sequence-classification"))
    >>> d.prefix, d.modules
    ('distilbert', ('pre_classifier', 'classifier', 'dropout'))
    >>> d.new_parameters
    ('pre_classifier.weight', 'pre_classifier.bias', 'classifier.weight', 'classifier.bias')
    """
    gb, gh = _graph(base, None), _graph(head, task)
    alignment = _align(gb, gh, "auto")
    if alignment.before:
        raise AlignmentError(
            f"{gh.root.cls} sits inside {gb.root.cls} (at {alignment.before!r}), not the other "
            "way round: call head_delta(base, head) with the base model first",
            candidates=(alignment.before,))
    return _head_delta(gb, gh, alignment.after)


# -- graphs and alignment --------------------------------------------------------------------
def _graph(obj: Any, task: str | None) -> ModelGraph:
    if isinstance(obj, ModelGraph):
        return obj
    from modeldiff.walker import walk  # torch only when a side is not a graph yet

    return walk(obj, task=task)


def _align(a: ModelGraph, b: ModelGraph, how: str | tuple[str, str] | None) -> Alignment:
    if how is None:
        return Alignment(before="", after="", how="none")
    if isinstance(how, tuple):
        pa, pb = how
        for g, p, side in ((a, pa, "first"), (b, pb, "second")):
            if p not in g:
                raise AlignmentError(f"alignment path {p!r} is not a module of the {side} model "
                                     f"({g.root.cls})", candidates=_candidates(a, b))
        return Alignment(before=pa, after=pb, how="forced")
    if not isinstance(how, str):
        raise InputTypeError("align", how, "'auto', a module path, a (path, path) pair or None")
    if how != "auto":
        in_a, in_b = how in a, how in b
        if in_b and (not in_a or b[how].cls == a.root.cls):
            return Alignment(before="", after=how, how="forced")
        if in_a:
            return Alignment(before=how, after="", how="forced")
        cands = _candidates(a, b)
        raise AlignmentError(
            f"cannot align at {how!r}: neither {a.root.cls} nor {b.root.cls} has a module "
            f"there. Candidates: {', '.join(cands) or 'none'}", candidates=cands)
    if a.root.cls == b.root.cls:
        return Alignment(before="", after="", how="identity")
    for x, y, flipped in ((a, b, False), (b, a, True)):
        prefix = y.hf.base_model_prefix if y.hf else ""
        if prefix and prefix in y and prefix not in x and y[prefix].path == prefix and \
                (x.hf is None or y.hf is None or x.hf.model_type == y.hf.model_type
                 or y[prefix].cls == x.root.cls):
            return Alignment(before=prefix if flipped else "", after="" if flipped else prefix,
                             how="base_model_prefix")
    found = _structural(a, b)
    if found is not None:
        return found
    return Alignment(before="", after="", how="identity")


def _candidates(a: ModelGraph, b: ModelGraph) -> tuple[str, ...]:
    """Paths worth aligning at: where one model's root class appears in the other, and the
    top-level children of both."""
    out: list[str] = []
    for x, y in ((a, b), (b, a)):
        out += [n.path for n in y.nodes[1:] if n.cls == x.root.cls]
    for g in (a, b):
        out += [child.path for _, child in g.children("")]
    return tuple(dict.fromkeys(out))


def _structural(a: ModelGraph, b: ModelGraph) -> Alignment | None:
    """Without metadata: the subtree of one model that best matches the other's root, by
    the share of (relative path, class) pairs they have in common."""
    best: tuple[float, Alignment] | None = None
    for x, y, flipped in ((a, b, False), (b, a, True)):
        want = {(n.path, n.cls) for n in x.nodes[1:]}
        if not want:
            continue
        root_kids = {name for name, _ in x.children("")}
        for cand in y.nodes[1:]:
            # Only plausible roots: the same class, or most of the same child names. This
            # keeps the search linear-ish on 80-layer models.
            if cand.cls != x.root.cls:
                kids = {name for name, _ in y.children(cand.path)}
                if not root_kids or len(kids & root_kids) * 2 < len(root_kids):
                    continue
            have = {(rel, n.cls) for n in y.nodes
                    if (rel := _relative(n.path, cand.path)) is not None and rel}
            if not have:
                continue
            score = len(want & have) / max(len(want), len(have))
            if score > 0.5 and (best is None or score > best[0]):
                al = Alignment(before=cand.path if flipped else "",
                               after="" if flipped else cand.path, how="structure")
                best = (score, al)
    return best[1] if best else None


# -- the diff ---------------------------------------------------------------------------------
def _facts(g: ModelGraph) -> frozenset[str]:
    """What kinds of facts a graph knows. A printed model knows modules, attributes and the
    shapes that follow from them; a walked one knows everything."""
    printed = g.source.startswith("printed") or any(t.derived for n in g.nodes for t in n.tensors)
    if printed:
        return frozenset({"modules", "attributes", "shapes"})
    facts = {"modules", "attributes", "shapes", "dtypes", "requires_grad", "buffers", "ties"}
    if g.hf is not None:
        facts.add("config")
    return frozenset(facts)


_ALL_FACTS = ("modules", "attributes", "shapes", "dtypes", "requires_grad", "buffers", "ties",
              "config")


def _ignored(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + ".*")
               for p in patterns)


def _diff_graphs(a: ModelGraph, b: ModelGraph, al: Alignment, *,
                 ignore: tuple[str, ...] = ()) -> GraphDiff:
    facts_a, facts_b = _facts(a), _facts(b)
    both = facts_a & facts_b
    not_compared = tuple(f for f in _ALL_FACTS if f in (facts_a | facts_b) and f not in both)
    wrappers_b = _ancestors(al.after)
    wrappers_a = _ancestors(al.before)
    changes: list[ModuleChange] = []
    # Added: after-model nodes with no counterpart, as subtree roots.
    added_roots: set[str] = set()
    for n in b.nodes:
        if n.path in wrappers_b or _ignored(n.path, ignore):
            continue
        counterpart = al.to_before(n.path)
        if counterpart is not None and counterpart in a and a[counterpart].path == counterpart:
            continue
        if _under_any(n.path, added_roots):
            added_roots.add(n.path)
            continue
        added_roots.add(n.path)
        changes.append(ModuleChange(path=n.path, change=Change.ADDED, before=None, after=n,
                                    subtree=_subtree_size(b, n.path)))
    removed_roots: set[str] = set()
    removed: list[ModuleChange] = []
    for n in a.nodes:
        if n.path in wrappers_a or _ignored(n.path, ignore):
            continue
        counterpart = al.to_after(n.path)
        if counterpart is not None and counterpart in b and b[counterpart].path == counterpart:
            continue
        if _under_any(n.path, removed_roots):
            removed_roots.add(n.path)
            continue
        removed_roots.add(n.path)
        removed.append(ModuleChange(path=n.path, change=Change.REMOVED, before=n, after=None,
                                    subtree=_subtree_size(a, n.path)))
    # Changed: pairs present on both sides.
    compare_tensors = "shapes" in both
    for nb in b.nodes:
        if (nb.path in wrappers_b and nb.path != al.after) or _ignored(nb.path, ignore):
            continue
        pa = al.to_before(nb.path)
        if pa is None or pa not in a:
            continue
        na = a[pa]
        if na.path != pa:
            continue
        attrs = _attr_changes(na, nb, "attributes" in both)
        tensors = _tensor_changes(na, nb, both) if compare_tensors else ()
        if attrs or tensors:
            changes.append(ModuleChange(path=nb.path, change=Change.CHANGED, before=na, after=nb,
                                        attrs=attrs, tensors=tensors))
    order_b = {n.path: i for i, n in enumerate(b.nodes)}
    changes.sort(key=lambda c: order_b[c.path])
    modules = tuple(_fold(changes, b, partner=a, to_partner=al.to_before)
                    + _fold(removed, a, partner=b, to_partner=al.to_after))
    ties = _tie_changes(a, b, al) if "ties" in both else ()
    config = _config_changes(a, b) if "config" in both else ()
    return GraphDiff(before=a, after=b, alignment=al, modules=modules, ties=ties, config=config,
                     not_compared=not_compared)


def _ancestors(path: str) -> set[str]:
    """The wrapper paths above an alignment point ("" and each proper prefix)."""
    if not path:
        return set()
    parts = path.split(".")
    return {".".join(parts[:i]) for i in range(len(parts))}


def _under_any(path: str, roots: set[str]) -> bool:
    while path:
        path = path.rpartition(".")[0]
        if path in roots:
            return True
    return False


def _subtree_size(g: ModelGraph, root: str) -> int:
    pre = f"{root}." if root else ""
    return sum(1 for n in g.nodes if n.path == root or n.path.startswith(pre))


def _attr_changes(a: Node, b: Node, compare_attrs: bool) -> tuple[AttrChange, ...]:
    out: list[AttrChange] = []
    if a.cls != b.cls:
        out.append(AttrChange(name="class", before=a.cls, after=b.cls))
    if a.kind != b.kind and a.cls == b.cls:
        out.append(AttrChange(name="kind", before=str(a.kind), after=str(b.kind)))
    if compare_attrs and a.attrs != b.attrs:
        da, db = dict(a.attrs), dict(b.attrs)
        for k in dict.fromkeys([*da, *db]):
            va, vb = da.get(k, ABSENT), db.get(k, ABSENT)
            if not _same_value(va, vb):
                out.append(AttrChange(name=k, before=va, after=vb))
    return tuple(out)


def _same_value(x: Value, y: Value) -> bool:
    """Python's == except that True and 1 differ (a flag is not a count); 1 and 1.0 agree."""
    if isinstance(x, bool) or isinstance(y, bool):
        return x is y
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_same_value(p, q) for p, q in zip(x, y, strict=False))
    return x == y


_TENSOR_FIELDS = (("shape", "shapes"), ("dtype", "dtypes"), ("requires_grad", "requires_grad"),
                  ("buffer", "buffers"), ("persistent", "buffers"))


def _tensor_changes(a: Node, b: Node, facts: frozenset[str]) -> tuple[TensorChange, ...]:
    if a.tensors == b.tensors:
        return ()
    printed = "dtypes" not in facts
    ta = {t.name: t for t in a.tensors if not (printed and t.buffer)}
    tb = {t.name: t for t in b.tensors if not (printed and t.buffer)}
    if printed and (not ta or not tb):
        return ()  # print shows no tensors for this class: nothing comparable
    out: list[TensorChange] = []
    for name in dict.fromkeys([*ta, *tb]):
        x, y = ta.get(name), tb.get(name)
        if x is None:
            out.append(TensorChange(name=name, change=Change.ADDED, before=None, after=y))
        elif y is None:
            out.append(TensorChange(name=name, change=Change.REMOVED, before=x, after=None))
        else:
            fields = tuple(f for f, fact in _TENSOR_FIELDS
                           if fact in facts and getattr(x, f) != getattr(y, f))
            if fields:
                out.append(TensorChange(name=name, change=Change.CHANGED, before=x, after=y,
                                        fields=fields))
    return tuple(out)


def _tie_changes(a: ModelGraph, b: ModelGraph, al: Alignment) -> tuple[TieChange, ...]:
    def in_after(name: str) -> str | None:
        module, _, tensor = name.rpartition(".")
        mapped = al.to_after(module)
        return None if mapped is None else _join(mapped, tensor)

    mapped_a = {}
    for t in a.ties:
        s, g = in_after(t.source), in_after(t.target)
        mapped_a[(s or f"<{t.source}>", g or f"<{t.target}>")] = t
    have_b = {(t.source, t.target): t for t in b.ties}
    out = [TieChange(change=Change.ADDED, source=s, target=g)
           for (s, g) in have_b if (s, g) not in mapped_a]
    out += [TieChange(change=Change.REMOVED, source=t.source, target=t.target)
            for key, t in mapped_a.items() if key not in have_b]
    return tuple(out)


def _config_changes(a: ModelGraph, b: ModelGraph) -> tuple[ConfigChange, ...]:
    assert a.hf is not None
    assert b.hf is not None
    if a.hf.config_json == b.hf.config_json:
        return ()
    ca, cb = a.hf.config, b.hf.config
    out = []
    for k in sorted(set(ca) | set(cb)):
        if k in IGNORED_CONFIG_KEYS:
            continue
        va, vb = ca.get(k, ABSENT), cb.get(k, ABSENT)
        if va != vb:
            out.append(ConfigChange(key=k, before=va, after=vb))
    return tuple(out)


def _fold(changes: list[ModuleChange], g: ModelGraph, *, partner: ModelGraph,
          to_partner: Any) -> list[ModuleChange]:
    """Fold a change that every member of a repeat group shows identically into one entry.

    A changed module folds only when its group is a group on both sides (the same members,
    mapped through the alignment), so that diff(b, a) folds exactly what diff(a, b) does.
    """
    if not g.repeats or not changes:
        return changes
    partner_groups = {r.paths for r in partner.repeats}
    member_of: dict[str, tuple[int, int]] = {}
    for gi, grp in enumerate(g.repeats):
        for mi, p in enumerate(grp.paths):
            member_of.setdefault(p, (gi, mi))
    buckets: dict[tuple[Any, ...], list[tuple[int, ModuleChange]]] = {}
    loose: list[ModuleChange] = []
    for c in changes:
        hit = None
        probe = c.path
        while probe:
            if probe in member_of:
                hit = (probe, member_of[probe])
            probe = probe.rpartition(".")[0]
        if hit is None:
            loose.append(c)
            continue
        member, (gi, mi) = hit
        rest = c.path[len(member):]
        key = (gi, rest, c.change, _change_sig(c))
        buckets.setdefault(key, []).append((mi, c))
    out = list(loose)
    for (gi, _rest, change, _sig), items in buckets.items():
        group = g.repeats[gi]
        foldable = len(items) == group.count and len(items) > 1
        if foldable and change is Change.CHANGED:
            foldable = tuple(to_partner(p) for p in group.paths) in partner_groups
        if foldable:
            items.sort(key=lambda x: x[0])
            first = items[0][1]
            out.append(ModuleChange(path=first.path, change=first.change, before=first.before,
                                    after=first.after, attrs=first.attrs, tensors=first.tensors,
                                    members=tuple(c.path for _, c in items),
                                    subtree=first.subtree))
        else:
            out.extend(c for _, c in items)
    order = {n.path: i for i, n in enumerate(g.nodes)}
    out.sort(key=lambda c: order.get(c.path, 0))
    return out


def _change_sig(c: ModuleChange) -> tuple[Any, ...]:
    node = c.node
    return (node.cls, node.attrs, tuple((t.name, t.shape, t.dtype) for t in node.tensors),
            c.attrs, tuple(str(t) for t in c.tensors), c.subtree)


# -- head delta -------------------------------------------------------------------------------
def _head_delta(base: ModelGraph, head: ModelGraph, prefix: str) -> HeadDelta:
    """transformers' loading rules (5.x, checked against its own report on 197 heads):

    - missing: the head's state-dict keys (parameters, persistent buffers) that the base
      checkpoint does not supply; the base prefix is added or stripped key by key;
    - a tied tensor counts as loaded when the other end of its tie was (in either direction),
      for ties the model declares and for tensors it actually shares;
    - unexpected: checkpoint keys the head has no place for, in the checkpoint's names;
    - keys matching the head's ``_keys_to_ignore_on_load_*`` patterns (and, for unexpected
      keys, transformers' own ``rotary_emb.inv_freq`` / ``position_ids`` patterns when the
      head has such buffers) are reported apart, as transformers leaves them out.
    """
    al = Alignment(before="", after=prefix, how="base_model_prefix")
    d = _diff_graphs(base, head, al)
    # What a base checkpoint holds: its state dict, one copy of each tied tensor.
    checkpoint = _checkpoint_keys(base)
    head_keys = _checkpoint_keys(head, with_tied=True)
    head_set = set(head_keys)

    def in_head(key: str) -> str | None:
        for candidate in (key, _join(prefix, key)):
            if candidate in head_set:
                return candidate
        if prefix and key.startswith(prefix + "."):
            stripped = key[len(prefix) + 1:]
            if stripped in head_set:
                return stripped
        return None

    loaded: set[str] = set()
    unexpected: list[str] = []
    for k in checkpoint:
        target = in_head(k)
        if target is None:
            unexpected.append(k)
        else:
            loaded.add(target)
    ties = {(t.target, t.source) for t in head.ties}
    if head.hf is not None:
        ties |= {(t, s) for t, s in head.hf.tied_weights if s}
    changed = True
    while changed:  # a tie may lead to a tensor that is itself tied
        changed = False
        for target, source in ties:
            for x, y in ((target, source), (source, target)):
                if y in loaded and x in head_set and x not in loaded:
                    loaded.add(x)
                    changed = True
    missing = [k for k in head_keys if k not in loaded]
    missing = list(dict.fromkeys(missing))
    ign_m = head.hf.ignore_missing if head.hf else ()
    ign_u = (*(head.hf.ignore_unexpected if head.hf else ()), *_auto_unexpected_patterns(head))
    return HeadDelta(
        prefix=prefix,
        modules=tuple(c.path for c in d.added),
        new_parameters=tuple(k for k in missing if not _matches_any(k, ign_m)),
        ignored_missing=tuple(k for k in missing if _matches_any(k, ign_m)),
        dropped=tuple(k for k in unexpected if not _matches_any(k, ign_u)),
        ignored_unexpected=tuple(k for k in unexpected if _matches_any(k, ign_u)),
        dropped_modules=tuple(c.path for c in d.removed),
    )


def _auto_unexpected_patterns(head: ModelGraph) -> tuple[str, ...]:
    """Patterns transformers adds to a head's ignored unexpected keys by itself, when the
    head has such buffers."""
    names = {f"{n.path}.{t.name}" for n in head.nodes for t in n.tensors if t.buffer}
    out = []
    if any(k.endswith("rotary_emb.inv_freq") for k in names):
        out.append(r"rotary_emb\.inv_freq")
    if any(k == "position_ids" or k.endswith(".position_ids") for k in names):
        out.append(r"(^|\.)position_ids$")
    return tuple(out)


def _checkpoint_keys(g: ModelGraph, *, with_tied: bool = False) -> tuple[str, ...]:
    """State-dict keys (parameters and persistent buffers, every alias path), without the
    aliases of tied tensors unless ``with_tied``."""
    keys: list[str] = []
    for n in g.nodes:
        for p in (n.path, *n.aliases):
            pre = f"{p}." if p else ""
            keys.extend(pre + t.name for t in n.tensors
                        if (not t.buffer or t.persistent) and (with_tied or t.tied_to is None))
    return tuple(keys)


def _matches_any(key: str, patterns: Iterable[str]) -> bool:
    import re

    return any(re.search(p, key) for p in patterns)


# -- weights ----------------------------------------------------------------------------------
def _weights(a: Any, b: Any, ga: ModelGraph, gb: ModelGraph, al: Alignment, *,
             ignore: tuple[str, ...]) -> WeightDiff:
    from modeldiff.tensors import compare_weights

    pairs: list[tuple[str, str]] = []
    for name, node, t in ga.tensors():
        if t.tied_to is not None or (t.buffer and not t.persistent) or _ignored(node.path, ignore):
            continue
        mapped = al.to_after(node.path)
        if mapped is None or mapped not in gb:
            continue
        other = {x.name: x for x in gb[mapped].tensors}.get(t.name)
        if other is None or other.tied_to is not None:
            continue
        pairs.append((name, _join(gb[mapped].path, t.name)))
    src_a, src_b = _weight_source(a), _weight_source(b)
    key_a, key_b = _key_resolver(src_a, ga), _key_resolver(src_b, gb)
    return compare_weights(src_a, src_b, [(key_a(x), key_b(y)) for x, y in pairs])


def _key_resolver(source: Any, g: ModelGraph) -> Any:
    """Module-space tensor names -> the keys a checkpoint folder really holds: a base model's
    checkpoint lacks the head's ``base_model_prefix``, a head's checkpoint read as its base
    has it."""
    import os

    if not isinstance(source, (str, os.PathLike)):
        return lambda name: name
    from modeldiff.checkpoint import read_tensor_index

    keys = read_tensor_index(source)
    prefix = g.hf.base_model_prefix if g.hf else ""

    def resolve(name: str) -> str:
        if name in keys or not prefix:
            return name
        if name.startswith(prefix + ".") and name[len(prefix) + 1:] in keys:
            return name[len(prefix) + 1:]
        if f"{prefix}.{name}" in keys:
            return f"{prefix}.{name}"
        return name

    return resolve


def _weight_source(obj: Any) -> Any:
    import os

    from modeldiff.errors import NotMaterializedError

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


# -- text -------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is ABSENT:
        return "(absent)"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _tensor_desc(t: Tensor) -> str:
    return f"{list(t.shape)} {t.dtype}" + (" buffer" if t.buffer else "")


def _signature(n: Node) -> str:
    return f"{n.cls}({format_attrs(key_attrs(n.attrs))})"


def _change_detail(c: ModuleChange) -> str:
    bits: list[str] = [str(a) for a in c.attrs]
    bits += [str(t) for t in c.tensors]
    return "; ".join(bits)


def _format(d: GraphDiff) -> str:
    head = f"{d.before.root.cls} -> {d.after.root.cls}  ({d.alignment.describe()})"
    rows: list[tuple[str, str, str, str]] = []
    for c in d.modules:
        node = c.node
        if c.change is Change.CHANGED:
            rows.append((_MARK[c.change], c.label, node.cls, _change_detail(c)))
        else:
            params = node.totals.params * c.count
            extra = f"{params:,} params" if params else ""
            if c.subtree > 1:
                extra = (extra + "  " if extra else "") + f"({c.subtree - 1} submodules)"
            rows.append((_MARK[c.change], c.label, _signature(node), extra))
    lines = [head]
    if rows:
        w_path = max(len(r[1]) for r in rows)
        w_sig = max(len(r[2]) for r in rows if r[0] != "~") if any(r[0] != "~" for r in rows) else 0
        w_num = max((len(r[3].split("  ")[0]) for r in rows if r[0] != "~" and r[3]), default=0)
        for mark, path, sig, extra in rows:
            if mark == "~":
                lines.append(f"{mark} {path:<{w_path}}  {sig}  {extra}".rstrip())
            else:
                num, _, rest = extra.partition("  ")
                if num.startswith("("):
                    num, rest = "", extra
                cell = f"{num:>{w_num}}" if num else ""
                line = f"{mark} {path:<{w_path}}  {sig:<{w_sig}}  {cell}"
                if rest:
                    line += "  " + rest
                lines.append(line.rstrip())
    for t in d.ties:
        lines.append(f"{_MARK[t.change]} tie {t.target} -> {t.source}")
    shown = d.config if len(d.config) <= _MAX_CONFIG_LINES else d.config[:_MAX_CONFIG_LINES - 1]
    lines += [f"~ config {c}" for c in shown]
    if len(shown) < len(d.config):
        lines.append(f"~ config ... {len(d.config) - len(shown)} more keys differ (see to_json())")
    if d.weights is not None:
        lines.append(str(d.weights))
    if d.not_compared:
        lines.append(f"(not compared: {', '.join(d.not_compared)}: "
                     "one side does not record them)")
    if len(lines) == 1:
        lines.append("no differences")
    return "\n".join(lines)


def _change_dict(c: ModuleChange) -> dict[str, Any]:
    return {
        "path": c.path,
        "change": str(c.change),
        "members": list(c.members),
        "subtree": c.subtree,
        "before": c.before.to_dict() if c.before else None,
        "after": c.after.to_dict() if c.after else None,
        "attrs": [{"name": a.name, "before": _jsonable(a.before), "after": _jsonable(a.after)}
                  for a in c.attrs],
        "tensors": [{"name": t.name, "change": str(t.change), "fields": list(t.fields),
                     "before": t.before.to_dict() if t.before else None,
                     "after": t.after.to_dict() if t.after else None} for t in c.tensors],
    }


def _jsonable(v: Any) -> Any:
    if v is ABSENT:
        return {"absent": True}
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def _range_label(paths: tuple[str, ...]) -> str:
    """``a.0.x``, ``a.1.x`` ... -> ``a.0-5.x``: the one component that differs, as a range."""
    split = [p.split(".") for p in paths]
    first, last = split[0], split[-1]
    if all(len(s) == len(first) for s in split):
        diffs = [i for i in range(len(first)) if first[i] != last[i]]
        if len(diffs) == 1:
            i = diffs[0]
            return ".".join([*first[:i], f"{first[i]}-{last[i]}", *first[i + 1:]])
    return f"{paths[0]} .. {paths[-1]}"


def _relative(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    if path == prefix:
        return ""
    if path.startswith(prefix + "."):
        return path[len(prefix) + 1:]
    return None


def _join(prefix: str, rel: str) -> str:
    if not prefix:
        return rel
    return f"{prefix}.{rel}" if rel else prefix
