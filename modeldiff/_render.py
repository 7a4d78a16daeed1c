"""Graphviz diagrams of a :class:`~modeldiff._core.graph.ModelGraph` or a ``GraphDiff``.

Containers (modules with children) become clusters, leaf modules become boxes that show
their name, class, key attributes and parameter count. Repeated identical layers are folded
into one cluster labelled like ``TransformerBlock x6``; tied weights are dashed edges.
A diff draws the union of both models with the delta in colour and the unchanged part
collapsed to single boxes.

>>> from modeldiff._core.graph import Kind, ModelGraph, Node, Totals
>>> g = ModelGraph(nodes=(
...     Node(path="", cls="Net", qualname="m.Net", kind=Kind.BLOCK,
...          totals=Totals(params=6)),
...     Node(path="fc", cls="Linear", qualname="torch.nn.Linear", kind=Kind.LINEAR,
...          attrs=(("in_features", 2), ("out_features", 2), ("bias", True)),
...          totals=Totals(params=6)),
... ), contains=(("", "fc", "fc"),))
>>> dot = render(g)
>>> print(dot.source.splitlines()[0])
digraph modeldiff {
>>> "Linear · 2 -&gt; 2" in dot.source and 'class="module linear"' in dot.source
True

The DOT source needs no binary; SVG, PNG and PDF need Graphviz's ``dot`` (see :func:`save`).
Output is deterministic: the same model gives byte-identical DOT, nodes and edges in
definition order.

This module never imports torch: graphs are plain data.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

try:
    import graphviz
except ImportError as _e:  # installed with --no-deps, or graphviz removed
    from modeldiff.errors import MissingDependencyError

    raise MissingDependencyError(
        "the graphviz Python package", purpose="modeldiff.render (diagrams)",
        install="pip install graphviz (SVG/PNG output also needs Graphviz's dot program: "
                "apt-get install graphviz / brew install graphviz)") from _e

from modeldiff import limits
from modeldiff._core.graph import Kind, ModelGraph, Node, RepeatGroup, recursion_room
from modeldiff.errors import GraphvizNotFoundError, InvalidArgumentError, ModelDiffError

if TYPE_CHECKING:
    from modeldiff._compare import GraphDiff

__all__ = ["FORMATS", "WEIGHT_SCALE", "mimebundle", "pipe", "render", "save", "weight_fill",
           "write_atomic"]

Renderable = Union[ModelGraph, "GraphDiff"]

# File extension -> Graphviz output format. ".dot" / ".gv" need no binary.
FORMATS: Mapping[str, str] = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png",
                              ".pdf": "pdf"}

# Fills by kind: Paul Tol's "pale"/"light" schemes, chosen to stay distinguishable with the
# common colour-vision deficiencies and to keep black text readable. Kinds that carry no
# weights stay grey or white so the eye goes to the layers that do.
KIND_FILL: Mapping[Kind, str] = {
    Kind.LINEAR: "#BBCCEE",  # pale blue
    Kind.CONV: "#99DDFF",  # light cyan
    Kind.EMBEDDING: "#EEDD88",  # light yellow
    Kind.NORM: "#CCDDAA",  # pale green
    Kind.ATTENTION: "#DDCCEE",  # pale purple
    Kind.RECURRENT: "#DDCCEE",
    Kind.POOLING: "#CCEEFF",  # pale cyan
    Kind.ACTIVATION: "#FFCCCC",  # pale red
    Kind.DROPOUT: "#E8E8E8",  # grey
    Kind.IDENTITY: "#FFFFFF",
    Kind.LOSS: "#FFFFFF",
    Kind.OTHER: "#FFFFFF",
}
CLUSTER_FILL: Mapping[Kind, str] = {
    Kind.MODEL: "#FCFCFC",
    Kind.CONTAINER: "#FFFFFF",
    Kind.ATTENTION: "#F7F3FA",
}
CLUSTER_FILL_DEFAULT = "#F7F7F7"
GROUP_FILL = "#EEF3FA"  # a folded repeat group

# Diff colours: Okabe-Ito bluish green / vermillion / orange for borders (told apart by
# deuteranopes and protanopes, and by lightness in greyscale), pale tints as fills. The
# marker in the label (+, -, ~) carries the same meaning without colour.
CHANGE_STYLE: Mapping[str, tuple[str, str, str, str]] = {
    # change: (border, fill, marker, border style)
    "added": ("#009E73", "#D4F0E4", "+", "solid"),
    "removed": ("#D55E00", "#F8DCCB", "\u2212", "dashed"),
    "changed": ("#E69F00", "#FCEBC4", "~", "solid"),
}
UNCHANGED_FILL = "#FFFFFF"
# Weights that moved (a diff with weights): fill by relative change ||dW|| / ||W||, a
# sequential yellow-orange-brown scale (ColorBrewer YlOrBr: ordered by lightness, so it
# reads in greyscale and with colour-vision deficiencies), one step per decade.
WEIGHT_SCALE: tuple[tuple[float, str], ...] = (
    (1e-4, "#FFF7BC"), (1e-3, "#FEE391"), (1e-2, "#FEC44F"), (1e-1, "#FE9929"),
    (float("inf"), "#EC7014"))
WEIGHT_BORDER = "#993404"
MUTED = "#555555"
FONT = "Helvetica,Arial,sans-serif"

# Leaf siblings sit side by side, this many to a row; rows and clusters stack top to bottom
# in definition order (invisible edges), which keeps 80-layer models on one screen.
ROW_WIDTH = 4


# -- the view tree: what will be drawn --------------------------------------------------------
@dataclass
class _Item:
    """One box (no children) or cluster (children) of the diagram."""

    id: str  # DOT node id (the module path) or cluster suffix
    name: str
    node: Node
    kind: Kind
    params: int  # what the label states
    detail: str = ""  # extra line, e.g. "12 modules inside" or "x6: 42,527,232 params"
    change: str | None = None  # "added" / "removed" / "changed" / None
    change_lines: tuple[str, ...] = ()
    group: RepeatGroup | None = None
    collapsed: bool = False  # a subtree drawn as one box
    children: list[_Item] = field(default_factory=list)
    path: str = ""  # module path the item stands for (tooltip)
    weight_fill: str | None = None  # weights moved: the colour of their relative change


@dataclass(frozen=True)
class _Tie:
    tail: str
    head: str
    ltail: str | None
    lhead: str | None
    tooltip: str


def render(obj: Renderable, *, depth: int | None = None, fold_repeats: bool = True,
           fold_unchanged: bool = True, direction: str = "TB",
           title: str | None = None) -> graphviz.Digraph:
    """Draw a model graph or a diff as a ``graphviz.Digraph``. ``obj`` is a diff, a graph,
    or anything :func:`modeldiff.walk` reads (``render(model)`` walks it first).

    ``depth`` cuts the module tree (a cut container becomes one box with its subtree totals;
    ``depth=1`` shows only the root's children). ``fold_repeats`` draws each group of
    identical numbered layers once, labelled ``TransformerBlock x6``. For a diff,
    ``fold_unchanged`` collapses every subtree without changes into one box, so the delta
    stands out. ``direction`` is Graphviz's ``rankdir`` (``"TB"`` or ``"LR"``); ``title``
    replaces the caption under the diagram.

    Compose with the Digraph API or :func:`save`:
    ``render(g).source`` is DOT, ``save(g, "model.svg")`` writes a picture.

    >>> from modeldiff._core.graph import Kind, ModelGraph, Node, Totals
    >>> g = ModelGraph(nodes=(Node(path="", cls="Dropout", qualname="torch.nn.Dropout",
    ...                            kind=Kind.DROPOUT, attrs=(("p", 0.1),)),))
    >>> "p=0.1" in render(g).source
    True
    """
    if direction not in ("TB", "LR", "BT", "RL"):
        raise InvalidArgumentError("render(direction=...)", direction,
                                   "'TB', 'LR', 'BT' or 'RL'")
    if depth is not None and (not isinstance(depth, int) or depth < 0):
        raise InvalidArgumentError("render(depth=...)", depth, "a non-negative int or None")
    if type(obj).__name__ == "Trace":  # a traced model: its graph plus data-flow arrows
        return _render_trace(obj, depth=depth, fold_repeats=fold_repeats, direction=direction,
                             title=title)
    obj = _weights_as_diff(obj)
    if not isinstance(obj, ModelGraph) and not _is_diff(obj):
        # Anything walk reads (a module, a config, a model_type, a folder, printed text)
        from modeldiff._inputs import as_graph

        obj = as_graph(obj)
    # The views recurse once per nesting level; a 2,000-deep module tree needs room.
    with recursion_room(limits.MAX_WALK_DEPTH):
        if isinstance(obj, ModelGraph):
            root = _ModelView(obj, depth=depth, fold_repeats=fold_repeats).build()
            caption = title if title is not None else _model_caption(obj)
            ties: list[_Tie] = _ModelView.tie_edges(obj, root)
        elif _is_diff(obj):
            view = _DiffView(obj, depth=depth, fold_repeats=fold_repeats,
                             fold_unchanged=fold_unchanged)
            root = view.build()
            caption = title if title is not None else view.caption()
            ties = []
        else:
            from modeldiff.errors import InputTypeError

            raise InputTypeError("render(obj)", obj, "a ModelGraph (from walk) or a GraphDiff "
                                 "(from diff)")
        return _emit(root, caption=caption, ties=ties, direction=direction,
                     diff=not isinstance(obj, ModelGraph))


def _weights_as_diff(obj: Any) -> Any:
    """A WeightDiff is drawn as the structural diff of the graphs it compared, with the
    modules whose weights moved coloured by how much."""
    from modeldiff._core.weights import WeightDiff

    if not isinstance(obj, WeightDiff):
        return obj
    if obj.before is None or obj.after is None or obj.alignment is None:
        from modeldiff.errors import InputTypeError

        raise InputTypeError("render(obj)", obj, "a WeightDiff from modeldiff.weight_diff or "
                             "diff(weights=True) (one read back from JSON has no graphs: "
                             "compute it again to draw it)")
    from dataclasses import replace

    from modeldiff._core.diff import diff_graphs

    return replace(diff_graphs(obj.before, obj.after, obj.alignment), weights=obj)


def weight_fill(rel: float) -> str:
    """The fill for a module whose weights moved by ``rel`` (relative change).

    >>> weight_fill(0.003), weight_fill(float("nan"))
    ('#FEC44F', '#EC7014')
    """
    for bound, colour in WEIGHT_SCALE:
        if rel < bound:
            return colour
    return WEIGHT_SCALE[-1][1]  # NaN (a value became NaN): the strongest colour


def _is_diff(obj: object) -> bool:
    return all(hasattr(obj, a) for a in ("before", "after", "alignment", "modules"))


# -- model graphs -----------------------------------------------------------------------------
class _ModelView:
    def __init__(self, g: ModelGraph, *, depth: int | None, fold_repeats: bool) -> None:
        self.g = g
        self.depth = depth
        self.groups: dict[str, RepeatGroup] = (
            {r.paths[0]: r for r in g.repeats} if fold_repeats else {})
        self.hidden: set[str] = set()
        for r in self.groups.values():
            self.hidden.update(r.paths[1:])
        self.kids: dict[str, list[Node]] = {}
        for parent, name, child in g.contains:
            if child != _join(parent, name):
                continue  # a module shared at a second path: drawn at its first path only
            self.kids.setdefault(parent, []).append(g[child])

    def build(self) -> _Item:
        return self.item(self.g.root, 0)

    def item(self, node: Node, level: int, group: RepeatGroup | None = None) -> _Item:
        kids = [k for k in self.kids.get(node.path, ()) if k.path not in self.hidden]
        name = node.name or "(root)"
        params = node.totals.params
        detail = ""
        if group is not None:
            name = _group_name(group)
            detail = f"{params * group.count:,} in all"
        # A list whose only children are one repeat group is drawn as that group.
        if (len(kids) == 1 and kids[0].path in self.groups and node.kind == Kind.CONTAINER
                and self.groups[kids[0].path].count == len(self.kids.get(node.path, ()))):
            return self.item(kids[0], level, self.groups[kids[0].path])
        it = _Item(id=_dot_id(node.path) or "(root)", name=name, node=node, kind=node.kind,
                   params=params, detail=detail, group=group, path=node.path)
        if not kids:
            return it
        if self.depth is not None and level >= self.depth:
            it.collapsed = True
            inside = _count_below(self.g, node.path)
            it.detail = (detail + "; " if detail else "") + f"{inside} modules inside"
            return it
        for k in kids:
            it.children.append(self.item(k, level + 1, self.groups.get(k.path)))
        return it

    @staticmethod
    def tie_edges(g: ModelGraph, root: _Item) -> list[_Tie]:
        """Dashed edges for tied weights, between whatever shows the two modules."""
        shown = _shown_paths(root)
        out: dict[tuple[tuple[str, str | None], tuple[str, str | None]], list[str]] = {}
        for tie in g.ties:
            u = _visible(g, tie.target_module, shown)
            v = _visible(g, tie.source_module, shown)
            if u is None or v is None or u == v:
                continue
            out.setdefault((u, v), []).append(f"{tie.target} is {tie.source}")
        return [_Tie(u[0], v[0], u[1], v[1], "; ".join(t)) for (u, v), t in out.items()]


def _group_name(group: RepeatGroup) -> str:
    """``layer.0-5`` for members ``...transformer.layer.0`` .. ``.5``."""
    parent_name = group.parent.rpartition(".")[2]
    span = group.label.rpartition(".")[2]
    return f"{parent_name}.{span}" if parent_name else span


def _count_below(g: ModelGraph, path: str) -> int:
    pre = f"{path}." if path else ""
    return sum(1 for n in g.nodes if n.path.startswith(pre) and n.path != path)


def _shown_paths(root: _Item) -> dict[str, tuple[str, str | None]]:
    """Module path -> (DOT node id, cluster name or None) of everything drawn; members
    1.. of a folded group map to member 0."""
    shown: dict[str, tuple[str, str | None]] = {}
    stack = [root]
    while stack:
        it = stack.pop()
        here = (_top(it), f"cluster:{it.id}") if it.children else (it.id, None)
        shown[it.path] = here
        if it.group is not None:
            for p in it.group.paths[1:]:
                shown[p] = here
        stack.extend(it.children)
    return shown


def _visible(g: ModelGraph, path: str, shown: Mapping[str, tuple[str, str | None]]
             ) -> tuple[str, str | None] | None:
    """What stands for module ``path`` in the drawing: itself, its twin in the first member
    of a folded group, or its nearest drawn ancestor."""
    if path in g:
        path = g[path].path
    p = path
    while True:
        if p in shown:
            return shown[p]
        for r in g.repeats:  # inside folded member k: drawn as member 0's matching module
            for m in r.paths[1:]:
                if p.startswith(m + "."):
                    twin = r.paths[0] + p[len(m):]
                    if twin in shown:
                        return shown[twin]
        if not p:
            return None
        p = p.rpartition(".")[0]


def _model_caption(g: ModelGraph) -> str:
    t = g.totals
    return (f"{g.root.cls} · {len(g.nodes):,} modules · {t.params:,} params"
            + (f" ({len(g.ties)} tied)" if g.ties else ""))


# -- diffs ------------------------------------------------------------------------------------
class _DiffView:
    """The union of ``before`` and ``after``, drawn once.

    The bigger side (the one whose root holds the other at a prefix, e.g. a head model around
    its base) is the skeleton; the other side's paths are mapped into its names. Modules only
    the other side has are inserted beside their siblings. Only the duck-typed attributes
    ``before``, ``after``, ``alignment.before/after`` and ``modules``
    (``path, change, before, after, attrs, tensors, count, members``) are used.
    """

    def __init__(self, d: Any, *, depth: int | None, fold_repeats: bool,
                 fold_unchanged: bool) -> None:
        self.d = d
        self.depth = depth
        self.fold_unchanged = fold_unchanged
        a_pre = d.alignment.before or ""
        b_pre = d.alignment.after or ""
        self.s_pre: str  # declared: the branches below would otherwise pin Literal['']
        self.o_pre: str
        if a_pre and not b_pre:  # before wraps after: before is the skeleton
            self.skel, self.other, self.s_pre, self.o_pre = d.before, d.after, a_pre, b_pre
            self.skel_side = "before"
        else:
            self.skel, self.other, self.s_pre, self.o_pre = d.after, d.before, b_pre, a_pre
            self.skel_side = "after"
        # change per skeleton-named path; ids keep the change's own path (its side's names)
        self.changes: dict[str, Any] = {}
        self.ids: dict[str, str] = {}
        for mc in d.modules:
            side = "before" if str(mc.change) == "removed" else "after"
            for p in (mc.path, *tuple(getattr(mc, "members", ()) or ())):
                sp = p if side == self.skel_side else self.to_skel(p)
                self.changes.setdefault(sp, mc)
                self.ids.setdefault(sp, p or "(root)")
        # modules whose weights moved, skeleton-named -> relative change (a folded row's
        # when repeated layers fold); they and their ancestors are never "unchanged"
        self.moved: dict[str, float] = {}
        self.moved_below: dict[str, float] = {}
        self.weights = getattr(d, "weights", None)
        if self.weights is not None:
            row_of = {p: m for m in self.weights.folded if m.changed for p in m.members}
            for m in self.weights.modules:
                if not m.changed:
                    continue
                sp = self._weight_path(m.path)
                row = row_of.get(m.path) if fold_repeats else None
                self.moved[sp] = row.rel_change if row is not None else m.rel_change
        self.dirty: set[str] = set()
        for sp in (*self.changes, *self.moved):
            p = sp
            while True:
                self.dirty.add(p)
                if not p:
                    break
                p = p.rpartition(".")[0]
        self.model = _ModelView(self.skel, depth=None, fold_repeats=fold_repeats)
        self.other_view = _ModelView(self.other, depth=None, fold_repeats=False)
        # modules only the other side has, under their skeleton-named parent
        self.extra: dict[str, list[tuple[int, Node]]] = {}
        order = {n.path: i for i, n in enumerate(self.other.nodes)}
        for n in self.other.nodes:
            sp = self.to_skel(n.path)
            if not n.path or sp in self.skel or sp not in self.changes:
                continue
            parent = sp.rpartition(".")[0]
            if parent in self.skel:
                self.extra.setdefault(parent, []).append((order[n.path], n))

    def _weight_path(self, p: str) -> str:
        """A weight diff's module path (b's checkpoint names) in skeleton names."""
        if self.skel_side == "before":
            p = self.to_skel(p)
        for cand in (p, _join(self.s_pre, p) if self.s_pre else p):
            if cand in self.skel:
                return cand
        return p

    def to_skel(self, p: str) -> str:
        o = self.o_pre
        if not o or p == o or p.startswith(o + "."):
            rest = p[len(o):].lstrip(".") if o else p
            return _join(self.s_pre, rest) if rest else self.s_pre
        return p

    def build(self) -> _Item:
        return self.item(self.skel.root, 0, None, None)

    def item(self, node: Node, level: int, group: RepeatGroup | None,
             inherited: str | None) -> _Item:
        """A skeleton module; ``inherited`` is the change of an added/removed ancestor."""
        sp = node.path
        kids = self.children(sp)
        if (group is None and node.kind == Kind.CONTAINER and len(kids) == 1
                and isinstance(kids[0][0], Node) and kids[0][1] is not None
                and kids[0][1].count == len(self.model.kids.get(sp, ()))
                and sp not in self.changes):
            return self.item(kids[0][0], level, kids[0][1], inherited)  # list == its group
        mc = self.changes.get(sp)
        it = _Item(id=_dot_id(self.ids.get(sp, sp or "(root)")), name=node.name or "(root)", node=node,
                   kind=node.kind, params=node.totals.params, path=sp, change=inherited)
        if group is not None:
            it.group = group
            it.name = _group_name(group)
            it.detail = f"{node.totals.params * group.count:,} in all"
        if mc is not None:
            self._mark(it, mc)
        self._mark_weights(it, sp, subtree=False)
        whole = it.change if it.change in ("added", "removed") else None
        if not kids:
            return it
        unchanged = sp not in self.dirty and whole is None
        if ((unchanged or whole) and self.fold_unchanged) or (
                self.depth is not None and level >= self.depth):
            it.collapsed = True
            inside = f"{_count_below(self.skel, sp)} modules inside"
            if unchanged and sp == self.s_pre and self.s_pre:
                it.detail = f"aligned base, unchanged, {inside}"
            else:
                tag = "unchanged, " if unchanged else ""
                it.detail = (it.detail + "; " if it.detail else "") + tag + inside
            if it.weight_fill is None:
                self._mark_weights(it, sp, subtree=True)
            return it
        for k, kgroup in kids:
            if isinstance(k, Node):
                it.children.append(self.item(k, level + 1, kgroup, whole))
            else:  # a module only the other side has
                it.children.append(self.other_item(k[1], sp, None))
        return it

    def children(self, sp: str) -> list[tuple[Any, RepeatGroup | None]]:
        """Skeleton children (folded groups as their first member), with the other side's
        own modules inserted after the sibling that precedes them on that side."""
        view = self.model
        out: list[tuple[Any, RepeatGroup | None]] = []
        keys: list[str] = []
        for k in view.kids.get(sp, ()):
            split = self._group_split(k.path)
            if k.path in view.hidden and not split:
                continue
            out.append((k, None if split else view.groups.get(k.path)))
            keys.append(k.path)
        for order, n in self.extra.get(sp, ()):
            siblings = self.other_view.kids.get(n.path.rpartition(".")[0], [])
            before = [self.to_skel(m.path) for m in siblings[:siblings.index(n)]]
            pos = 0
            for prev in reversed(before):
                if prev in keys:
                    pos = keys.index(prev) + 1
                    break
            out.insert(pos, ((order, n), None))
            keys.insert(pos, self.to_skel(n.path))
        return out

    def _group_split(self, path: str) -> bool:
        """A repeat group is unfolded when its members differ in what changed."""
        for r in self.skel.repeats:
            if path in r.paths:
                marks = [tuple(sorted(c[len(m):] for c in (*self.changes, *self.moved)
                                      if c == m or c.startswith(m + "."))) for m in r.paths]
                return any(x != marks[0] for x in marks)
        return False

    def other_item(self, n: Node, parent_sp: str, inherited: str | None) -> _Item:
        """A module (and its subtree) that only the non-skeleton side has."""
        sp = _join(parent_sp, n.name)
        mc = self.changes.get(sp)
        it = _Item(id=_dot_id(self.ids.get(sp, n.path)), name=n.name, node=n, kind=n.kind,
                   params=n.totals.params, path=sp, change=inherited)
        if mc is not None:
            self._mark(it, mc)
        kids = self.other_view.kids.get(n.path, ())
        if kids and self.fold_unchanged:
            it.collapsed = True
            it.detail = f"{_count_below(self.other, n.path)} modules inside"
            return it
        for k in kids:
            it.children.append(self.other_item(k, sp, it.change))
        return it

    def _mark_weights(self, it: _Item, sp: str, *, subtree: bool) -> None:
        """Colour a module whose weights moved (with ``subtree``, a box that stands for a
        subtree whose weights moved) by the largest relative change."""
        if not self.moved:
            return
        rel = self.moved.get(sp)
        if rel is None:
            if not subtree:
                return
            below = [r for p, r in self.moved.items() if not sp or p.startswith(sp + ".")]
            if not below:
                return
            rel = max(below, key=lambda r: float("inf") if r != r else r)
            what = "weights moved inside: max rel change"
        else:
            what = "weights moved: rel change"
        it.weight_fill = weight_fill(rel)
        note = f"{what} {rel:.3g}"
        it.detail = f"{it.detail}; {note}" if it.detail else note

    def _mark(self, it: _Item, mc: Any) -> None:
        change = str(mc.change)
        it.change = change
        if change == "changed":
            it.change_lines = tuple(_change_lines(mc))
            b, a = mc.before, mc.after
            if b is not None and a is not None and b.totals.params != a.totals.params:
                it.change_lines += (f"params {b.totals.params:,} -> {a.totals.params:,}",)
            if a is not None:
                it.node = a
        if mc.count > 1 and it.group is None:
            it.detail = f"same change in {mc.count} places"

    def caption(self) -> str:
        d = self.d
        counts = {"added": 0, "removed": 0, "changed": 0}
        for mc in d.modules:
            counts[str(mc.change)] = counts.get(str(mc.change), 0) + 1
        b, a = d.before.totals.params, d.after.totals.params
        found = ", ".join(f"{CHANGE_STYLE[k][2]}{n} {k}" for k, n in counts.items() if n)
        text = (f"{d.before.root.cls} -> {d.after.root.cls} · {found or 'no module changes'}"
                f" · params {b:,} -> {a:,}")
        if self.weights is not None:
            v = self.weights.verdict
            text += (f" · weights: {sum(1 for m in self.weights.modules if m.changed)} modules "
                     "moved" + (f" ({v.pattern})" if v is not None else "")
                     + "; fill = relative change <1e-4, <1e-3, <1e-2, <0.1, >=0.1")
        return text


def _change_lines(mc: Any) -> Iterable[str]:
    """``p 0.1 -> 0.2``, ``weight shape (2, 768) -> (3, 768)``: the differ's own wording."""
    for ac in mc.attrs:
        yield str(ac)
    for tc in mc.tensors:
        yield str(tc)


def _fmt(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 1:
        return str(v[0])
    return str(v)


# -- labels -----------------------------------------------------------------------------------
def _short_attrs(node: Node) -> str:
    """The attributes worth a glance, by kind: ``768 -> 3072``, ``30522 x 768``, ``p=0.1``.

    >>> from modeldiff._core.graph import Kind, Node
    >>> _short_attrs(Node(path="e", cls="Embedding", qualname="", kind=Kind.EMBEDDING,
    ...                attrs=(("num_embeddings", 30522), ("embedding_dim", 768))))
    '30522 x 768'
    """
    a = dict(node.attrs)
    k = node.kind
    if k == Kind.LINEAR and "in_features" in a and "out_features" in a:
        return f"{a['in_features']} -> {a['out_features']}"
    if k == Kind.CONV and "in_channels" in a:
        out = f"{a['in_channels']} -> {a.get('out_channels', '?')}"
        if "kernel_size" in a:
            out += f", k={_fmt(a['kernel_size'])}"
        if "stride" in a and _fmt(a["stride"]) != "1":
            out += f", s={_fmt(a['stride'])}"
        return out
    if k == Kind.EMBEDDING and "num_embeddings" in a:
        return f"{a['num_embeddings']} x {a.get('embedding_dim', '?')}"
    if k == Kind.NORM:
        parts = []
        for dim_key in ("normalized_shape", "num_features", "num_channels"):
            if dim_key in a:
                parts.append(_fmt(a[dim_key]))
                break
        if "eps" in a:
            parts.append(f"eps={a['eps']}")
        return ", ".join(parts)
    if k == Kind.DROPOUT and "p" in a:
        return f"p={a['p']}"
    if k == Kind.RECURRENT and "input_size" in a:
        return f"{a['input_size']} -> {a.get('hidden_size', '?')}"
    if k in (Kind.ACTIVATION, Kind.IDENTITY):
        return ""
    shown = [f"{n}={_fmt(v)}" for n, v in node.attrs[:2]]
    return ", ".join(shown)


def _box_label(it: _Item) -> str:
    name = html.escape(it.name)
    marker = CHANGE_STYLE[it.change][2] + " " if it.change else ""
    lines = [f"<b>{html.escape(marker)}{name}</b>"]
    sub = it.node.cls
    # a changed module lists its changes instead (after-values would repeat them)
    attrs = _short_attrs(it.node) if not it.collapsed and not it.change_lines else ""
    if it.group is not None:
        sub += f" x{it.group.count}"
    if attrs:
        sub += f" · {attrs}"
    lines.append(f'<font point-size="10">{html.escape(sub)}</font>')
    for c in it.change_lines:
        lines.append(f'<font point-size="10">{html.escape(c)}</font>')
    stats = []
    if it.params and not any(c.startswith("params ") for c in it.change_lines):
        stats.append(f"{it.params:,} params" + (" each" if it.group is not None else ""))
    if it.detail:
        stats.append(it.detail)
    for s in stats:
        lines.append(f'<font point-size="9" color="{MUTED}">{html.escape(s)}</font>')
    return "<" + "<br/>".join(lines) + ">"


def _cluster_label(it: _Item) -> str:
    marker = CHANGE_STYLE[it.change][2] + " " if it.change else ""
    head = (f"<b>{html.escape(marker + it.name)}</b>  " if it.path or it.change else ""
            ) + html.escape(it.node.cls)
    if it.group is not None:
        head += f"<b> x{it.group.count}</b>"
    bits = []
    if it.params:
        bits.append(f"{it.params:,} params" + (" each" if it.group is not None else ""))
    if it.detail:
        bits.append(it.detail)
    lines = [head]
    lines.extend(html.escape(c) for c in it.change_lines)
    if bits:
        lines.append(f'<font point-size="9" color="{MUTED}">{html.escape(" · ".join(bits))}'
                     "</font>")
    return "<" + '<br align="left"/>'.join(lines) + '<br align="left"/>>'


def _classes(it: _Item) -> str:
    cls = ["module", str(it.kind)]
    if it.group is not None:
        cls.append("repeat")
    if it.collapsed:
        cls.append("collapsed")
    if it.change:
        cls.append(it.change)
    if it.weight_fill:
        cls.append("moved")
    return " ".join(cls)


# -- DOT --------------------------------------------------------------------------------------
def _top(it: _Item) -> str:
    """The box a layout edge enters ``it`` at (its first box)."""
    while it.children:
        it = it.children[0]
    return it.id


def _bottom(it: _Item) -> str:
    """The box a layout edge leaves ``it`` from (the first box of its last row)."""
    while it.children:
        it = _rows(it)[-1][0]
    return it.id


def _rows(it: _Item) -> list[list[_Item]]:
    """Consecutive leaf children share a row (ROW_WIDTH at most); each cluster is a row."""
    rows: list[list[_Item]] = []
    for c in it.children:
        if c.children or not rows or rows[-1][0].children or len(rows[-1]) >= ROW_WIDTH:
            rows.append([c])
        else:
            rows[-1].append(c)
    return rows


# graphviz.quoting.ID: the identifiers DOT takes unquoted
_DOT_ID = graphviz.quoting.ID


class DotWriter:
    """DOT statements written as text, byte for byte what the ``graphviz`` package writes.

    Building a big diagram through ``Digraph.node``/``edge``/``subgraph`` spent about 70% of
    its time in the package's argument wrappers and in re-quoting the same few attribute
    values thousands of times. This writes the same lines directly (tab indentation, label
    first then the other attributes sorted by name, as ``graphviz.quoting.attr_list`` does
    for keyword arguments) and quotes each distinct string once through the package's own
    :func:`graphviz.quoting.quote`, so quoting and escaping rules stay the package's.
    ``tests/test_diagram.py`` checks the output against the package's on several graphs.

    >>> w = DotWriter()
    >>> w.node("a b", 'say "hi"', color="red")
    >>> w.edge("a b", "c", style="invis")
    >>> print("".join(w.lines).expandtabs(4), end="")
        "a b" [label="say \\"hi\\"" color=red]
        "a b" -> c [style=invis]
    """

    __slots__ = ("_indent", "_quoted", "lines")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._indent = "\t"
        self._quoted: dict[str, str] = {}

    def quote(self, s: str) -> str:
        q = self._quoted.get(s)
        if q is None:
            q = self._quoted[s] = self._quote_new(s)
        return q

    @staticmethod
    def _quote_new(s: str) -> str:
        # The common cases of graphviz.quoting.quote without its wrappers and regex
        # substitutions: an HTML label passes as is; a string with no quote or backslash is
        # either a valid ID (kept) or wrapped in quotes. Anything else goes to the package.
        if type(s) is str and s[:1] == "<" and s[-1:] == ">":
            return s
        if '"' in s or "\\" in s or s[:1] == "<" or type(s) is not str:
            return graphviz.quoting.quote(s)
        if _DOT_ID.match(s) and s.lower() not in graphviz.quoting.KEYWORDS:
            return s
        return f'"{s}"'

    def _end(self, s: str) -> str:
        if ":" not in s:
            return self.quote(s)
        return graphviz.quoting.quote_edge(s)  # node:port:compass, as Digraph.edge reads it

    def _alist(self, label: str | None, attrs: Mapping[str, str]) -> str:
        q = self.quote
        parts = [f"label={q(label)}"] if label is not None else []
        parts += [f"{q(k)}={q(v)}" for k, v in sorted(attrs.items()) if v is not None]
        return " ".join(parts)

    def node(self, name: str, label: str | None = None, **attrs: str) -> None:
        a = self._alist(label, attrs)
        self.lines.append(f"{self._indent}{self.quote(name)}{f' [{a}]' if a else ''}\n")

    def edge(self, tail: str, head: str, label: str | None = None, **attrs: str) -> None:
        a = self._alist(label, attrs)
        self.lines.append(f"{self._indent}{self._end(tail)} -> {self._end(head)}"
                          f"{f' [{a}]' if a else ''}\n")

    def attr(self, **attrs: str) -> None:
        """Graph attributes inside the current (sub)graph: ``Digraph.attr(**attrs)``."""
        if attrs:
            self.lines.append(f"{self._indent}{self._alist(None, attrs)}\n")

    @contextlib.contextmanager
    def subgraph(self, name: str | None = None) -> Iterator[DotWriter]:
        """``with Digraph.subgraph(name=...)``: the lines inside are indented one more tab."""
        outer = self._indent
        head = f"subgraph {self.quote(name)} " if name else ""
        self.lines.append(f"{outer}{head}{{\n")
        self._indent = outer + "\t"
        try:
            yield self
        finally:
            self._indent = outer
            self.lines.append(f"{outer}}}\n")


def _emit(root: _Item, *, caption: str, ties: Sequence[_Tie], direction: str,
          diff: bool) -> graphviz.Digraph:
    out = DotWriter()
    edges: list[tuple[str, str]] = []

    def fill(it: _Item) -> dict[str, str]:
        if it.change:
            border, tint, _, style = CHANGE_STYLE[it.change]
            return {"fillcolor": tint, "color": border, "penwidth": "2",
                    "style": f"rounded,filled,{style}" if style != "solid" else "rounded,filled"}
        if it.weight_fill:
            return {"fillcolor": it.weight_fill, "color": WEIGHT_BORDER, "penwidth": "1.6"}
        if diff:
            return {"fillcolor": UNCHANGED_FILL}
        return {"fillcolor": KIND_FILL.get(it.kind, CLUSTER_FILL_DEFAULT)}

    def node(g: DotWriter, it: _Item) -> None:
        attrs = {"class": _classes(it), **fill(it), "tooltip": _dot_text(it.path) or "(root)"}
        if it.collapsed or it.group is not None:
            attrs["peripheries"] = "2"
        g.node(it.id, _box_label(it), **attrs)

    def cluster(g: DotWriter, it: _Item) -> None:
        with g.subgraph(name=f"cluster:{it.id}") as sub:
            if it.change:
                border, tint, _, style = CHANGE_STYLE[it.change]
                look = {"fillcolor": tint, "color": border, "penwidth": "2",
                        "style": "rounded,filled" + (",dashed" if style == "dashed" else "")}
            elif it.weight_fill:
                look = {"fillcolor": it.weight_fill, "color": WEIGHT_BORDER, "penwidth": "1.6",
                        "style": "rounded,filled"}
            elif it.group is not None:
                look = {"fillcolor": GROUP_FILL, "color": "#4477AA", "penwidth": "1.6",
                        "style": "rounded,filled"}
            else:
                look = {"fillcolor": CLUSTER_FILL.get(it.kind, CLUSTER_FILL_DEFAULT),
                        "color": "#999999", "penwidth": "0.8", "style": "rounded,filled"}
            sub.attr(label=_cluster_label(it), labeljust="l", labelloc="t", fontsize="11",
                     margin="10", tooltip=_dot_text(it.path) or "(root)", **{"class": _classes(it)}, **look)
            rows = _rows(it)
            for upper, lower in itertools.pairwise(rows):
                # one edge per pair of rows: the rest of a row follows by rank=same
                edges.append((_bottom(upper[0]), _top(lower[0])))
            for row in rows:
                if row[0].children:
                    cluster(sub, row[0])
                elif len(row) == 1:
                    node(sub, row[0])
                else:  # side by side, in definition order
                    with sub.subgraph() as same:
                        same.attr(rank="same")
                        for c in row:
                            node(same, c)
                        for a, b in itertools.pairwise(row):
                            same.edge(a.id, b.id, style="invis")

    if root.children:
        cluster(out, root)
    else:
        node(out, root)
    seen: set[tuple[str, str]] = set()
    for u, v in edges:
        if (u, v) not in seen:
            seen.add((u, v))
            out.edge(u, v, style="invis")
    for t in ties:
        ends = {k: v for k, v in (("ltail", t.ltail), ("lhead", t.lhead)) if v}
        out.edge(t.tail, t.head, style="dashed", constraint="false", color="#AA3377",
                 penwidth="1.2", label="tied", fontsize="9", fontcolor="#AA3377",
                 tooltip=t.tooltip, dir="none", **ends)
    return graphviz.Digraph(
        "modeldiff",
        graph_attr={"rankdir": direction, "newrank": "true", "compound": "true",
                    "fontname": FONT, "fontsize": "11", "nodesep": "0.18", "ranksep": "0.22",
                    "label": caption, "labelloc": "b", "labeljust": "l", "margin": "0.1",
                    "tooltip": caption},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": FONT,
                   "fontsize": "11", "margin": "0.1,0.04", "penwidth": "0.8",
                   "color": "#666666"},
        edge_attr={"arrowsize": "0.6", "color": "#888888", "fontname": FONT},
        body=out.lines,
    )


# -- files and notebooks ----------------------------------------------------------------------
def save(obj: Renderable | graphviz.Digraph, path: str | os.PathLike[str],
         **render_options: Any) -> Path:
    """Write a diagram to ``path``; the extension picks the format (.dot, .gv, .svg, .png,
    .pdf). ``obj`` is a graph, a diff, or a Digraph from :func:`render`; ``render_options``
    go to :func:`render`. The file is written atomically: on any error nothing is left
    half-written. Returns the path.

    >>> import tempfile, pathlib
    >>> from modeldiff._core.graph import Kind, ModelGraph, Node
    >>> g = ModelGraph(nodes=(Node(path="", cls="ReLU", qualname="torch.nn.ReLU",
    ...                            kind=Kind.ACTIVATION),))
    >>> out = save(g, pathlib.Path(tempfile.mkdtemp()) / "relu.dot")
    >>> out.read_text().startswith("digraph modeldiff {")
    True
    """
    target = Path(path)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InvalidArgumentError("save(path)", str(target), "a file name ending in one of "
                                   f"{', '.join(FORMATS)} (the extension picks the format)")
    if isinstance(obj, graphviz.Digraph):
        if render_options:
            raise InvalidArgumentError("save(**render_options)", render_options,
                                       "empty when saving a ready Digraph (render it with the "
                                       "options instead)")
        dot = obj
    else:
        dot = render(obj, **render_options)
    data = dot.source.encode() if fmt == "dot" else _pipe(dot, fmt)
    _write_atomic(target, data)
    return target


def _pipe(dot: graphviz.Digraph, fmt: str) -> bytes:
    """``dot -T<fmt>`` on the diagram's source, stopped after
    :data:`modeldiff.limits.DOT_TIMEOUT_SECONDS` (graphviz's own pipe() has no time limit)."""
    import shutil
    import subprocess

    from modeldiff import limits
    from modeldiff.errors import GraphvizTimeoutError

    exe = shutil.which(getattr(dot, "engine", None) or "dot")
    if exe is None:
        raise GraphvizNotFoundError(fmt)
    seconds = float(limits.DOT_TIMEOUT_SECONDS)
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot.source.encode(), capture_output=True,
                              timeout=seconds, check=False)
    except subprocess.TimeoutExpired as e:
        raise GraphvizTimeoutError(fmt, seconds) from e
    except OSError as e:
        raise GraphvizNotFoundError(fmt) from e
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise ModelDiffError(f"Graphviz's dot failed to lay out the diagram as {fmt} "
                             f"(exit {proc.returncode}): {stderr[:2000] or 'no message'}")
    return proc.stdout


def _write_atomic(target: Path, data: bytes) -> None:
    from modeldiff._inputs import output_file
    from modeldiff.errors import OutputError

    output_file(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}", path=target) from e
    try:
        # mkstemp makes the file private (0600); give it the mode open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {e.strerror or e} (is the disk full or "
                          "read-only?); nothing was left behind", path=target) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mimebundle(obj: Renderable, **render_options: Any) -> dict[str, str]:
    """What Jupyter shows for a graph or diff: SVG when Graphviz's ``dot`` is installed,
    otherwise the text summary. Used by ``_repr_mimebundle_``.

    >>> from modeldiff._core.graph import Kind, ModelGraph, Node
    >>> g = ModelGraph(nodes=(Node(path="", cls="ReLU", qualname="torch.nn.ReLU",
    ...                            kind=Kind.ACTIVATION),))
    >>> sorted(mimebundle(g))  # doctest: +SKIP
    ['image/svg+xml', 'text/plain']
    >>> "text/plain" in mimebundle(g)
    True
    """
    text = obj.summary() if isinstance(obj, ModelGraph) else str(obj)
    bundle = {"text/plain": text}
    with contextlib.suppress(GraphvizNotFoundError):  # no dot: text only
        bundle["image/svg+xml"] = _pipe(render(obj, **render_options), "svg").decode()
    return bundle


# Shared with the HTML report (modeldiff._report): piping DOT through Graphviz with typed
# errors, and writing a file atomically.
pipe = _pipe
write_atomic = _write_atomic


def _dot_id(path: str) -> str:
    """A module path as a DOT node id, one to one: a backslash (which would escape the
    closing quote), a double quote and a colon (which edges read as a port) are spelled
    %5C, %22 and %3A, and % itself %25. Real paths have none of them and stay as they are."""
    if not any(c in path for c in '\\":%'):
        return path
    return (path.replace("%", "%25").replace("\\", "%5C").replace('"', "%22")
            .replace(":", "%3A"))


def _dot_text(text: str) -> str:
    """Free text for a DOT attribute (tooltip): backslashes doubled, so that one at the
    end cannot escape the closing quote."""
    return text.replace("\\", "\\\\")


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name



# -- traces -----------------------------------------------------------------------------------
def _render_trace(t: Any, *, depth: int | None, fold_repeats: bool, direction: str,
                  title: str | None) -> graphviz.Digraph:
    """The model diagram of ``t.graph`` with the trace's data flow drawn as labelled arrows
    between whatever shows each end. Only flow between modules side by side is drawn: an
    edge into or out of an enclosing module (a block's input or output) would point at the
    cluster that holds it. Inside a folded repeat group the arrows of member 0 stand for
    all; flow from one member to the next stays inside the group's box."""
    from modeldiff._core.trace import human_flops

    g = t.graph
    root = _ModelView(g, depth=depth, fold_repeats=fold_repeats).build()
    caption = title if title is not None else \
        f"{_model_caption(g)} · {human_flops(t.flops)}FLOPs"
    dot = _emit(root, caption=caption, ties=_ModelView.tie_edges(g, root),
                direction=direction, diff=False)
    shown = _shown_paths(root)
    seen: set[tuple[str, str, str]] = set()
    for e in t.edges:
        if e.src == "" or e.dst == "" or e.dst.startswith(e.src + ".") or \
                e.src.startswith(e.dst + "."):
            continue
        u, v = _visible(g, e.src, shown), _visible(g, e.dst, shown)
        if u is None or v is None or u == v or (u[0], v[0], e.label) in seen:
            continue
        seen.add((u[0], v[0], e.label))
        ends = {k: c for k, c in (("ltail", u[1]), ("lhead", v[1])) if c}
        dot.edge(u[0], v[0], label=e.label, fontsize="9", color="#228833",
                 fontcolor="#228833", penwidth="1.2", tooltip=f"{e.src} -> {e.dst}", **ends)
    return dot
