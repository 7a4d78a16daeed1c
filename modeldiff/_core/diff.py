"""The structural difference of two model graphs: modules added, removed and changed,
tensors, ties and config, folded by repeat group. Plain data, no torch.

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
from dataclasses import dataclass, field
from typing import Any

from modeldiff._core.align import Alignment, join
from modeldiff._core.compare import IGNORED_CONFIG_KEYS, ValueChange, compare_mappings, fmt_value
from modeldiff._core.graph import QUIET_ATTRS, ModelGraph, Node, StrEnum, Tensor
from modeldiff._core.report import Report, register
from modeldiff._core.weights import WeightDiff

__all__ = [
    "Change",
    "GraphDiff",
    "ModuleChange",
    "TensorChange",
    "TieChange",
    "diff_graphs",
    "fold",
]


@register
class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@register
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
            return f"+{self.name} {tensor_desc(self.after)}"
        if self.change is Change.REMOVED:
            assert self.before is not None
            return f"-{self.name} {tensor_desc(self.before)}"
        assert self.before is not None
        assert self.after is not None
        parts = []
        for f in self.fields:
            b, a = getattr(self.before, f), getattr(self.after, f)
            parts.append(f"{self.name} {f} {fmt_value(b)} -> {fmt_value(a)}")
        return "; ".join(parts)


@register
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
    attrs: tuple[ValueChange, ...] = ()
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
        return f"{range_label(self.members)} (x{len(self.members)})"


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TieChange:
    """A tie gained (``ADDED``, after-model names) or lost (``REMOVED``, before-model names):
    ``target`` is an alias of ``source``."""

    change: Change
    source: str
    target: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GraphDiff(Report):
    """What differs between two models. Falsy when nothing does (the result protocol: its
    findings are modules, ties, config keys and, when compared, changed weights).

    ``modules`` lists added, removed and changed modules (added and removed ones as subtree
    roots, repeated changes folded), ``ties`` the tie edges gained or lost, ``config`` the
    differing config keys (``ignored_config`` names the keys present but left out, see
    :data:`~modeldiff._core.compare.IGNORED_CONFIG_KEYS`), ``not_compared`` the kinds of
    facts one side does not know (a printed model has no dtypes; ``"values"`` when neither
    weight values were compared), ``drift`` the differences that come from how a model was
    printed or from a library renaming a class (they do not make a diff truthy),
    ``weights`` the value comparison when asked for. Two diffs are equal when their
    findings are; ``before`` and ``after`` (the graphs compared) do not take part.
    """

    SCHEMA = "modeldiff.diff"
    VERSION = 2

    before: ModelGraph = field(compare=False)
    after: ModelGraph = field(compare=False)
    alignment: Alignment
    modules: tuple[ModuleChange, ...] = ()
    ties: tuple[TieChange, ...] = ()
    config: tuple[ValueChange, ...] = ()
    ignored_config: tuple[str, ...] = ()
    not_compared: tuple[str, ...] = ()
    drift: tuple[ModuleChange, ...] = ()
    weights: WeightDiff | None = None

    def _findings(self) -> int:
        return (len(self.modules) + len(self.ties) + len(self.config)
                + (self.weights.findings if self.weights is not None else 0))

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

    def headline(self) -> str:
        return (f"{self.before.root.cls} -> {self.after.root.cls}: "
                f"+{len(self.added)} -{len(self.removed)} ~{len(self.changed)} modules, "
                f"{len(self.ties)} ties, {len(self.config)} config keys"
                + (f", {len(self.weights.changed)} tensors changed" if self.weights else ""))

    def __str__(self) -> str:
        from modeldiff._core.format import format_diff

        return format_diff(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # The renderer is torch-free; imported on first display, not with the core.
        from modeldiff._render import mimebundle

        return mimebundle(self)


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


def ignored_path(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + ".*")
               for p in patterns)


def diff_graphs(a: ModelGraph, b: ModelGraph, al: Alignment, *,
                 ignore: tuple[str, ...] = ()) -> GraphDiff:
    facts_a, facts_b = _facts(a), _facts(b)
    both = facts_a & facts_b
    not_compared = tuple(f for f in _ALL_FACTS if f in (facts_a | facts_b) and f not in both)
    wrappers_b = _ancestors(al.after)
    # Added: after-model nodes with no counterpart; removed: the reverse. As subtree roots.
    changes = _unmatched(b, a, _ancestors(al.after), al.to_before, Change.ADDED, ignore)
    removed = _unmatched(a, b, _ancestors(al.before), al.to_after, Change.REMOVED, ignore)
    # Changed: pairs present on both sides.
    compare_tensors = "shapes" in both
    printed = "dtypes" not in both  # one side is a print: compare what a print shows
    drift: list[ModuleChange] = []
    for nb in b.nodes:
        if (nb.path in wrappers_b and nb.path != al.after) or ignored_path(nb.path, ignore):
            continue
        pa = al.to_before(nb.path)
        if pa is None or pa not in a:
            continue
        na = a[pa]
        if na.path != pa:
            continue
        attrs = _attr_changes(na, nb, "attributes" in both, printed=printed)
        tensors = _tensor_changes(na, nb, both) if compare_tensors else ()
        if attrs or tensors:
            change = ModuleChange(path=nb.path, change=Change.CHANGED, before=na, after=nb,
                                  attrs=attrs, tensors=tensors)
            (drift if not tensors and is_drift(attrs, na, nb, printed=printed)
             else changes).append(change)
    order_b = {n.path: i for i, n in enumerate(b.nodes)}
    changes.sort(key=lambda c: order_b[c.path])
    modules = tuple(fold(changes, b, partner=a, to_partner=al.to_before)
                    + fold(removed, a, partner=b, to_partner=al.to_after))
    ties = _tie_changes(a, b, al) if "ties" in both else ()
    config, ignored = _config_changes(a, b) if "config" in both else ((), ())
    return GraphDiff(before=a, after=b, alignment=al, modules=modules, ties=ties, config=config,
                     ignored_config=ignored, not_compared=not_compared,
                     drift=tuple(fold(drift, b, partner=a, to_partner=al.to_before)))


def _unmatched(g: ModelGraph, other: ModelGraph, wrappers: set[str], to_other: Any,
               change: Change, ignore: tuple[str, ...]) -> list[ModuleChange]:
    """Nodes of ``g`` with no counterpart in ``other``, as subtree roots."""
    roots: set[str] = set()
    out: list[ModuleChange] = []
    for n in g.nodes:
        if n.path in wrappers or ignored_path(n.path, ignore):
            continue
        counterpart = to_other(n.path)
        if counterpart is not None and counterpart in other and \
                other[counterpart].path == counterpart:
            continue
        under = _under_any(n.path, roots)
        roots.add(n.path)
        if under:
            continue
        before, after = (None, n) if change is Change.ADDED else (n, None)
        out.append(ModuleChange(path=n.path, change=change, before=before, after=after,
                                subtree=_subtree_size(g, n.path)))
    return out


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


def _attr_changes(a: Node, b: Node, compare_attrs: bool, *, printed: bool = False
                  ) -> tuple[ValueChange, ...]:
    out: list[ValueChange] = []
    if a.cls != b.cls:
        out.append(ValueChange(key="class", before=a.cls, after=b.cls))
    # A print's kinds are modeldiff's guesses from class names: not facts to compare.
    if a.kind != b.kind and a.cls == b.cls and not printed:
        out.append(ValueChange(key="kind", before=str(a.kind), after=str(b.kind)))
    if compare_attrs and a.attrs != b.attrs:
        for c in compare_mappings(dict(a.attrs), dict(b.attrs))[0]:
            # A print made by another torch may leave out an attribute it did not print
            # yet (LayerNorm's bias=True): absent on one side and the default on the other
            # is how the print was made, not a difference.
            value = c.after if c.added else c.before if c.removed else None
            if printed and (c.added or c.removed) and (c.key, value) in QUIET_ATTRS:
                continue
            out.append(c)
    return tuple(out)


# Classes libraries renamed without changing what they compute: a class change between
# these (either way) is drift, not a difference.
RENAMED_CLASSES = frozenset({
    frozenset({"MultiHeadSelfAttention", "DistilBertSelfAttention"}),
    frozenset({"DistilBertSdpaAttention", "DistilBertSelfAttention"}),
    frozenset({"MultiHeadSelfAttention", "DistilBertSdpaAttention"}),
    frozenset({"StableDropout", "Dropout"}),
    frozenset({"SiLU", "SiLUActivation"}),
    frozenset({"GELU", "GELUActivation"}),
})


def is_drift(attrs: tuple[ValueChange, ...], a: Node, b: Node, *, printed: bool) -> bool:
    """A class change and nothing else, between names a library renamed: a known rename, or
    (when one side is a print of another library version) one name inside the other of the
    same kind (``SiLU`` / ``SiLUActivation``), or attention classes with the same children."""
    if [c.key for c in attrs] != ["class"]:
        return False
    pair = frozenset({a.cls, b.cls})
    if pair in RENAMED_CLASSES:
        return True
    if not printed:
        return False
    same_kind = a.kind == b.kind or "attention" in (str(a.kind), str(b.kind))
    return same_kind and (a.cls in b.cls or b.cls in a.cls)


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
        return None if mapped is None else join(mapped, tensor)

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


def _config_changes(a: ModelGraph, b: ModelGraph) -> tuple[tuple[ValueChange, ...], tuple[str, ...]]:
    assert a.hf is not None
    assert b.hf is not None
    if a.hf.config_json == b.hf.config_json:
        return (), ()
    return compare_mappings(a.hf.config, b.hf.config, ignore=IGNORED_CONFIG_KEYS)


def fold(changes: list[ModuleChange], g: ModelGraph, *, partner: ModelGraph,
          to_partner: Any) -> list[ModuleChange]:
    """Fold a change that a run of consecutive repeat-group members shows identically into
    one entry (``layers.32-79 (x48)``).

    Runs, not whole groups: a 12- and a 6-layer model share layers 0-5, so the changes
    there fold as ``layer.0-5`` and the extra layers as ``layer.6-11``. A changed run folds
    only when it maps onto a run of one repeat group on the other side too, so that
    ``diff(b, a)`` folds exactly what ``diff(a, b)`` does.
    """
    if not g.repeats or not changes:
        return changes
    member_of = _members(g)
    partner_of = _members(partner)
    buckets: dict[tuple[Any, ...], list[tuple[int, ModuleChange]]] = {}
    loose: list[ModuleChange] = []
    for c in changes:
        # The outermost repeat-group member above the change; for a changed module, one
        # whose counterpart is a member on the other side too, so both directions pick
        # the same level (the mirror property).
        hit = None
        probe = c.path
        while probe:
            if probe in member_of and (c.change is not Change.CHANGED
                                       or (to_partner(probe) or "") in partner_of):
                hit = (probe, member_of[probe])
            probe = probe.rpartition(".")[0]
        if hit is None:
            loose.append(c)
            continue
        member, (gi, mi) = hit
        rest = c.path[len(member):]
        key = (gi, rest, c.change, change_sig(c))
        buckets.setdefault(key, []).append((mi, c))
    out = list(loose)
    for (gi, _rest, change, _sig), items in buckets.items():
        group = g.repeats[gi]
        items.sort(key=lambda x: x[0])
        for run in _runs(items):
            foldable = len(run) > 1
            if foldable and change is Change.CHANGED:
                found = [partner_of.get(to_partner(group.paths[mi]) or "") for mi, _ in run]
                mapped = [m for m in found if m is not None]
                foldable = len(mapped) == len(run) and \
                    all(m[0] == mapped[0][0] for m in mapped) and \
                    [m[1] for m in mapped] == list(range(mapped[0][1], mapped[0][1] + len(run)))
            if foldable:
                first = run[0][1]
                out.append(ModuleChange(path=first.path, change=first.change,
                                        before=first.before, after=first.after,
                                        attrs=first.attrs, tensors=first.tensors,
                                        members=tuple(c.path for _, c in run),
                                        subtree=first.subtree))
            else:
                out.extend(c for _, c in run)
    order = {n.path: i for i, n in enumerate(g.nodes)}
    out.sort(key=lambda c: order.get(c.path, 0))
    return out


def _members(g: ModelGraph) -> dict[str, tuple[int, int]]:
    """Repeat-group member path -> (group index, index in the group)."""
    out: dict[str, tuple[int, int]] = {}
    for gi, grp in enumerate(g.repeats):
        for mi, p in enumerate(grp.paths):
            out.setdefault(p, (gi, mi))
    return out


def _runs(items: list[tuple[int, ModuleChange]]) -> list[list[tuple[int, ModuleChange]]]:
    """Split (member index, change) pairs, sorted by index, into consecutive runs."""
    runs: list[list[tuple[int, ModuleChange]]] = []
    for item in items:
        if runs and item[0] == runs[-1][-1][0] + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def change_sig(c: ModuleChange) -> tuple[Any, ...]:
    node = c.node
    return (node.cls, node.attrs, tuple((t.name, t.shape, t.dtype) for t in node.tensors),
            c.attrs, tuple(str(t) for t in c.tensors), c.subtree)



def tensor_desc(t: Tensor) -> str:
    return f"{list(t.shape)} {t.dtype}" + (" buffer" if t.buffer else "")


def range_label(paths: tuple[str, ...]) -> str:
    """``a.0.x``, ``a.1.x`` ... -> ``a.0-5.x``: the one component that differs, as a range."""
    split = [p.split(".") for p in paths]
    first, last = split[0], split[-1]
    if all(len(s) == len(first) for s in split):
        diffs = [i for i in range(len(first)) if first[i] != last[i]]
        if len(diffs) == 1:
            i = diffs[0]
            return ".".join([*first[:i], f"{first[i]}-{last[i]}", *first[i + 1:]])
    return f"{paths[0]} .. {paths[-1]}"
