"""What a weight comparison found, as data: per-tensor statistics, per-module summaries.

Torch-free: the numbers are computed in :mod:`modeldiff._walk.tensors`; the types, their
aggregation and their text live here so that diffs and reports can carry them without torch.

>>> s = TensorStats(name="b", shape_a=(2,), shape_b=(2,), dtype_a="float32",
...                 dtype_b="float32", numel=2, equal=False, n_changed=2, max_abs=0.5,
...                 rel_change=1.0, cosine=0.0, note="a was all zeros: change relative to b",
...                 norm_a=0.0, norm_b=0.5, norm_diff=0.5)
>>> print(s)
b: 2 of 2 values changed, max |b-a| 0.5, rel change 1, cosine 0.000000 (a was all zeros: change relative to b)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modeldiff._core.graph import StrEnum
from modeldiff._core.report import Report, register

__all__ = ["ENERGY_K", "ModuleSummary", "Pattern", "TensorStats", "Verdict", "WeightDiff",
           "by_block", "by_module", "fmt_stat", "fold_modules", "frozen_parts",
           "make_weight_diff", "split_block", "summarize", "verdict_of"]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TensorStats:
    """How tensor ``b`` differs from tensor ``a``.

    ``equal`` means bit-identical bytes, dtype and shape: NaN equals NaN with the same bits,
    and ``-0.0`` differs from ``0.0``. The statistics are computed in float64 over the values
    (in the wider dtype when dtypes differ; ``note`` then says so):

    - ``n_changed``: elements whose value differs (NaN vs NaN counts as unchanged);
    - ``max_abs``: the largest ``|b - a|``;
    - ``rel_change``: ``||b - a|| / ||a||`` (Frobenius norms); ``0.0`` when no value changed.
      When ``a`` is all zeros (a zero-initialised bias, a LoRA ``B``) and ``b`` is not, the
      change is measured against ``b`` instead, ``||b - a|| / ||b|| = 1.0``, and ``note``
      says so: infinity would rank every zero-initialised tensor first and say nothing;
    - ``cosine``: cosine similarity of ``a`` and ``b`` flattened; ``1.0`` when both are all
      zeros (they point the same way, nowhere), ``0.0`` when exactly one of them is.

    A shape mismatch leaves the three statistics ``None`` (nothing to compare element-wise).

    ``rounding`` is True when the dtypes differ and every value moved by no more than the
    narrower dtype's rounding (a cast, not training). For a changed 2-D tensor the low-rank
    analysis of ``dW = b - a`` fills ``rank`` (its numerical rank: singular values above
    ``1e-3`` of the largest, counted among the top ``svd_k``; ``rank == svd_k`` means "at
    least") and ``top_energy``, the share of ``||dW||^2`` held by its top
    :data:`ENERGY_K` singular values (``1.0`` for a merged LoRA of rank <= 8).
    """

    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    numel: int
    equal: bool
    n_changed: int | None = None
    max_abs: float | None = None
    rel_change: float | None = None
    cosine: float | None = None
    note: str = ""
    norm_a: float | None = None  # ||a||, ||b|| and ||b - a|| where values were compared;
    norm_b: float | None = None  # module summaries add them up across tensors
    norm_diff: float | None = None
    rounding: bool = False
    rank: int | None = None
    svd_k: int | None = None
    top_energy: float | None = None

    @property
    def moved(self) -> bool:
        """True when values changed beyond a dtype cast's rounding."""
        return not self.equal and not self.rounding and self.n_changed != 0

    @property
    def comparable(self) -> bool:
        """True when the shapes match, so values were compared element by element."""
        return self.shape_a == self.shape_b


    def __str__(self) -> str:
        if self.equal:
            return f"{self.name}: identical"
        if not self.comparable:
            return f"{self.name}: {self.note}"
        note = f" ({self.note})" if self.note else ""
        if self.rounding:
            return f"{self.name}: cast, values within rounding{note}"
        if self.n_changed is None:
            return f"{self.name}: bytes differ{note}"
        if self.n_changed == 0:
            return f"{self.name}: same values, different bytes{note}"
        return (f"{self.name}: {self.n_changed:,} of {self.numel:,} values changed, "
                f"max |b-a| {fmt_stat(self.max_abs)}, rel change {fmt_stat(self.rel_change)}, "
                f"cosine {fmt_stat(self.cosine, cos=True)}"
                + (f", rank {self.rank_text()}" if self.rank is not None else "") + note)

    def rank_text(self) -> str:
        """``8``, or ``>=32`` when the rank reached the number of singular values computed."""
        if self.rank is None:
            return "-"
        return f">={self.rank}" if self.rank == self.svd_k else str(self.rank)


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleSummary:
    """How much the tensors directly owned by one module (a path in ``b``'s names) moved; or,
    for a folded row or a block, the tensors of all its ``members`` taken together.

    ``changed == 0`` means the module is untouched: a frozen layer stayed frozen. ``cast``
    counts tensors that only changed dtype (values within rounding): they are not
    ``changed``. ``rank`` is the largest rank of a changed 2-D weight's ``dW``.
    A folded row reads ``encoder.layer.0-5.attention.self.query`` with ``count == 6``.
    """

    path: str
    tensors: int
    changed: int
    numel: int
    max_rel_change: float
    max_abs: float
    min_cosine: float
    rel_change: float = 0.0  # ||b - a|| / ||a|| over the changed tensors taken together
    cosine: float = 1.0  # cosine similarity of the changed tensors taken together
    cast: int = 0
    rank: int | None = None
    count: int = 1
    members: tuple[str, ...] = ()
    rank_at_least: bool = False  # the rank reached the singular values computed: ">= rank"

    @property
    def rank_text(self) -> str:
        """``8``, ``>=32`` or ``-`` (no changed 2-D weight)."""
        if self.rank is None:
            return "-"
        return f">={self.rank}" if self.rank_at_least else str(self.rank)

    @property
    def label(self) -> str:
        """The path as shown: ``(root)`` for the root, ``(x6)`` after a folded row."""
        return (self.path or "(root)") + (f" (x{self.count})" if self.count > 1 else "")


# Singular values whose share of ||dW||^2 ``TensorStats.top_energy`` reports.
ENERGY_K = 8


class Pattern(StrEnum):
    """What kind of change a weight diff shows, from the most to the least specific."""

    IDENTICAL = "identical"
    DTYPE_CAST = "dtype cast"
    HEAD_ONLY = "head only"
    LORA_LIKE = "LoRA-like"
    TARGETED = "targeted"
    FULL_FINE_TUNE = "full fine-tune"
    ARCHITECTURE_CHANGE = "architecture change"


register(Pattern)


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The pattern of a weight change with its evidence: ``modules`` moved (folded names),
    ``frozen`` the largest parts that did not move while others did, ``rank`` the LoRA rank
    found (LoRA-like only)."""

    pattern: Pattern
    evidence: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()
    rank: int | None = None

    def __str__(self) -> str:
        lines = [f"verdict: {self.pattern}"]
        lines += [f"  - {e}" for e in self.evidence]
        if self.frozen:
            lines.append(f"  frozen: {', '.join(self.frozen)}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class WeightDiff(Report):
    """Per-tensor statistics, per-module summaries and a verdict for two sets of weights.

    ``tensors[i]`` compares ``pairs[i] = (name_in_a, name_in_b)``; its ``name`` is the name in
    ``b``. ``modules`` is ordered by how much moved (largest relative change first), so the top
    of the list answers "what did fine-tuning change" and ``unchanged_modules`` "are the frozen
    layers still frozen". ``folded`` holds the same rows with repeated layers folded
    (``encoder.layer.0-5.attention.self.query (x6)``), ``blocks`` one row per numbered block
    (``encoder.layer.3``). ``missing`` holds requested pairs whose tensor does not exist on
    one side. ``head`` names the modules outside the base model (for "head only");
    ``verdict`` says what kind of change this is. ``before``/``after``/``alignment`` are
    the graphs compared, when known (not in JSON): ``render(weight_diff)`` draws them.
    """

    SCHEMA = "modeldiff.weights"
    VERSION = 2

    pairs: tuple[tuple[str, str], ...] = ()
    tensors: tuple[TensorStats, ...] = ()
    modules: tuple[ModuleSummary, ...] = ()
    missing: tuple[tuple[str, str], ...] = ()
    folded: tuple[ModuleSummary, ...] = ()
    blocks: tuple[ModuleSummary, ...] = ()
    head: tuple[str, ...] = ()
    verdict: Verdict | None = None
    before: Any = field(default=None, compare=False, metadata={"json": False})
    after: Any = field(default=None, compare=False, metadata={"json": False})
    alignment: Any = field(default=None, compare=False, metadata={"json": False})

    @property
    def changed(self) -> tuple[TensorStats, ...]:
        """Tensors whose bytes differ (casts included)."""
        return tuple(s for s in self.tensors if not s.equal)

    @property
    def moved(self) -> tuple[TensorStats, ...]:
        """Tensors whose values moved beyond a dtype cast's rounding."""
        return tuple(s for s in self.tensors if s.moved)

    @property
    def unchanged_modules(self) -> tuple[str, ...]:
        return tuple(m.path for m in self.modules if m.changed == 0)

    def _findings(self) -> int:
        """Findings: the tensors whose bytes changed and the pairs missing on one side."""
        return len(self.changed) + len(self.missing)

    def headline(self) -> str:
        return self.summary()

    def summary(self) -> str:
        n = len(self.tensors)
        moved = sum(1 for m in self.modules if m.changed)
        cast = sum(1 for s in self.tensors if s.rounding)
        return (f"{n} tensors compared, {n - len(self.changed)} identical, "
                f"{len(self.changed) - cast} changed"
                + (f", {cast} cast within rounding" if cast else "")
                + f"; {moved} of {len(self.modules)} modules changed"
                + (f"; {len(self.missing)} pairs missing" if self.missing else "")
                + (f"; verdict: {self.verdict.pattern}" if self.verdict else ""))

    def table(self, *, top: int | None = 20) -> str:
        """The changed modules (``top`` rows, ``None`` for all), a count of the unchanged
        ones, and the per-block aggregates folded like the structure."""
        moved = [m for m in self.modules if m.changed]
        shown = moved if top is None else moved[:top]
        lines = []
        if self.verdict is not None:
            lines += [str(self.verdict), ""]
        lines.append(_table(shown, "module"))
        if len(shown) < len(moved):
            lines.append(f"... {len(moved) - len(shown)} more changed modules (--all shows "
                         "every row)")
        unchanged = len(self.modules) - len(moved)
        lines.append(f"{unchanged} modules unchanged"
                     + (f" ({', '.join(self.verdict.frozen)} frozen)"
                        if self.verdict and self.verdict.frozen else ""))
        folded = [m for m in self.folded if m.changed]
        if folded and len(folded) < len(moved):
            lines += ["", "repeated layers, folded:", _table(folded, "modules")]
        blocks = list(self.blocks)
        if blocks:
            lines += ["", "per block:", _table(blocks, "block")]
        lines += [f"missing: {a} -> {b}" for a, b in self.missing]
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table(top=None)


def _table(rows: Sequence[ModuleSummary], first: str) -> str:
    out = [(first, "changed", "rel change", "max |b-a|", "cosine", "rank")]
    for m in rows:
        out.append((m.label, f"{m.changed}/{m.tensors}" + (f" +{m.cast} cast" if m.cast else ""),
                    fmt_stat(m.rel_change), fmt_stat(m.max_abs), fmt_stat(m.cosine, cos=True),
                    m.rank_text))
    widths = [max(len(r[i]) for r in out) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in out)


def summarize(path: str, items: Sequence[TensorStats], *, count: int = 1,
              members: tuple[str, ...] = ()) -> ModuleSummary:
    """One summary row over ``items`` taken together (a module, a folded row, a block)."""
    rels = [math.inf if s.rel_change is None else s.rel_change for s in items if s.moved]
    abss = [math.inf if s.max_abs is None else s.max_abs for s in items if s.moved]
    coss = [-1.0 if s.cosine is None else s.cosine for s in items if s.moved]
    ranks = [s.rank for s in items if s.moved and s.rank is not None]
    top = max(ranks) if ranks else None
    return ModuleSummary(
        path=path, tensors=len(items), changed=sum(1 for s in items if s.moved),
        numel=sum(s.numel for s in items), max_rel_change=_nanmax(rels or [0.0]),
        max_abs=_nanmax(abss or [0.0]), min_cosine=_nanmin(coss or [1.0]),
        rel_change=_module_rel(items), cosine=_module_cos(items),
        cast=sum(1 for s in items if s.rounding), rank=top, count=count, members=members,
        rank_at_least=any(s.moved and s.rank == top and s.rank == s.svd_k for s in items))


def _order(rows: list[ModuleSummary]) -> tuple[ModuleSummary, ...]:
    # Most moved first; NaN (a value became NaN) sorts to the very top, it is the worst news.
    # The module-level figure orders them: a zero-initialised bias that moved has a large
    # relative change of its own, which would put every trained layer first alike.
    rows.sort(key=lambda m: (-(math.inf if math.isnan(m.rel_change) else m.rel_change),
                             -m.changed, m.path))
    return tuple(rows)


def by_module(stats: Sequence[TensorStats]) -> tuple[ModuleSummary, ...]:
    """One row per module (the tensors it owns directly), most moved first.

    >>> t = TensorStats(name="l.0.w", shape_a=(1,), shape_b=(1,), dtype_a="float32",
    ...                 dtype_b="float32", numel=1, equal=True)
    >>> [m.path for m in by_module([t])]
    ['l.0']
    """
    groups: dict[str, list[TensorStats]] = {}
    for s in stats:
        groups.setdefault(s.name.rpartition(".")[0], []).append(s)
    return _order([summarize(p, items) for p, items in groups.items()])


def split_block(path: str) -> tuple[str, int, str] | None:
    """``encoder.layer.3.attention.q`` -> ``("encoder.layer", 3, "attention.q")``: the first
    numbered component splits a path into its list, its index and the module type.

    >>> split_block("model.layers.12.self_attn.q_proj"), split_block("classifier")
    (('model.layers', 12, 'self_attn.q_proj'), None)
    """
    parts = path.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:i]), int(p), ".".join(parts[i + 1:])
    return None


def fold_modules(stats: Sequence[TensorStats]) -> tuple[ModuleSummary, ...]:
    """Module rows with repeated layers folded, like the structure folds them: modules of
    one type in consecutive blocks that all moved (or all stayed) become one row
    ``encoder.layer.0-5.attention.self.query (x6)`` over their tensors taken together."""
    groups: dict[str, list[TensorStats]] = {}
    for s in stats:
        groups.setdefault(s.name.rpartition(".")[0], []).append(s)
    runs: dict[tuple[str, str], list[tuple[int, str]]] = {}
    rows: list[ModuleSummary] = []
    for path, items in groups.items():
        sb = split_block(path)
        if sb is None:
            rows.append(summarize(path, items))
        else:
            runs.setdefault((sb[0], sb[2]), []).append((sb[1], path))
    for (lst, rest), members in runs.items():
        members.sort()
        run: list[tuple[int, str]] = []
        for idx, path in [*members, (-2, "")]:
            moved = any(s.moved for s in groups.get(path, ()))
            if run and (idx != run[-1][0] + 1 or moved != any(
                    s.moved for s in groups[run[-1][1]])):
                lo, hi = run[0][0], run[-1][0]
                name = f"{lst}.{lo}" + (f"-{hi}" if hi != lo else "") + (f".{rest}" if rest else "")
                items = [s for _, p in run for s in groups[p]]
                rows.append(summarize(name, items, count=len(run),
                                      members=tuple(p for _, p in run)))
                run = []
            if path:
                run.append((idx, path))
    return _order(rows)


def by_block(stats: Sequence[TensorStats]) -> tuple[ModuleSummary, ...]:
    """One row per numbered block (``encoder.layer.3``) in block order: the per-layer line."""
    groups: dict[tuple[str, int], list[TensorStats]] = {}
    for s in stats:
        sb = split_block(s.name.rpartition(".")[0])
        if sb is not None:
            groups.setdefault(sb[:2], []).append(s)
    return tuple(summarize(f"{lst}.{i}", items, members=tuple(dict.fromkeys(
        s.name.rpartition(".")[0] for s in items))) for (lst, i), items in sorted(groups.items()))


def frozen_parts(stats: Sequence[TensorStats]) -> tuple[str, ...]:
    """The largest module subtrees none of whose tensors moved, while something else did;
    numbered siblings folded (``encoder.layer.0-1``)."""
    if not any(s.moved for s in stats):
        return ()
    moved_below: dict[str, bool] = {}
    for s in stats:
        parts = s.name.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            p = ".".join(parts[:i])
            moved_below[p] = moved_below.get(p, False) or s.moved
    tops = [p for p, m in moved_below.items() if not m
            and not (p.rpartition(".")[0] and not moved_below[p.rpartition(".")[0]])]
    return _fold_names(tops)


def _fold_names(paths: Sequence[str]) -> tuple[str, ...]:
    """``["a.0.q", "a.1.q", "b"]`` -> ``("a.0-1.q", "b")``: consecutive numbered siblings."""
    runs: dict[tuple[str, str], list[int]] = {}
    out: list[str] = []
    for p in paths:
        sb = split_block(p)
        if sb is None:
            out.append(p)
        else:
            runs.setdefault((sb[0], sb[2]), []).append(sb[1])
    for (lst, rest), idx in runs.items():
        idx.sort()
        start = prev = idx[0]
        for i in [*idx[1:], None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            out.append(f"{lst}.{start}" + (f"-{prev}" if prev != start else "")
                       + (f".{rest}" if rest else ""))
            if i is not None:
                start = prev = i
    return tuple(sorted(out, key=_natural))


def _natural(p: str) -> list[Any]:
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.replace("-", ".").split(".")]


# A changed 2-D weight counts as low rank (LoRA-like) at this rank or below, and when the rank
# is at most this share of its smaller dimension: LoRA ranks are 4-64 on dims of 512+.
LORA_MAX_RANK = 64
LORA_MAX_SHARE = 0.25
# At most this share of the modules moved: a targeted change, not a fine-tune of everything.
TARGETED_SHARE = 0.2


def verdict_of(stats: Sequence[TensorStats], *, head: Sequence[str] = (),
               structure: Sequence[str] = ()) -> Verdict:
    """Name the pattern of a weight change, with the evidence.

    ``head`` lists the modules outside the base model; ``structure`` the structural
    differences found (any makes it an architecture change).

    >>> t = TensorStats(name="fc.weight", shape_a=(2,), shape_b=(2,), dtype_a="float32",
    ...                 dtype_b="float32", numel=2, equal=True)
    >>> verdict_of([t]).pattern
    <Pattern.IDENTICAL: 'identical'>
    """
    moved = [s for s in stats if s.moved]
    modules = {s.name.rpartition(".")[0] for s in stats}
    moved_mods = sorted({s.name.rpartition(".")[0] for s in moved}, key=_natural)
    frozen = frozen_parts(stats)
    names = _fold_names(moved_mods)
    n_mod = f"{len(moved_mods)} of {len(modules)} modules moved"
    if structure:
        return Verdict(pattern=Pattern.ARCHITECTURE_CHANGE, modules=names, frozen=frozen,
                       evidence=(f"structural differences: {', '.join(structure[:5])}"
                                 + (f" and {len(structure) - 5} more" if len(structure) > 5
                                    else ""), n_mod))
    if not moved:
        cast = [s for s in stats if s.rounding]
        if cast:
            pairs = sorted({f"{s.dtype_a} -> {s.dtype_b}" for s in cast})
            return Verdict(pattern=Pattern.DTYPE_CAST, evidence=(
                f"{len(cast)} of {len(stats)} tensors cast {', '.join(pairs)}; every value "
                "within the target dtype's rounding", "no value moved beyond rounding"))
        same = sum(1 for s in stats if s.equal)
        return Verdict(pattern=Pattern.IDENTICAL, evidence=(
            f"{same} of {len(stats)} tensors bit-identical"
            + ("" if same == len(stats) else f", {len(stats) - same} with other bytes "
               "but the same values"),))
    in_head = [m for m in moved_mods if any(m == h or m.startswith(h + ".") for h in head)]
    if head and len(in_head) == len(moved_mods):
        return Verdict(pattern=Pattern.HEAD_ONLY, modules=names, frozen=frozen, evidence=(
            f"only head modules moved: {', '.join(names)}",
            f"the base model ({len(modules) - len(moved_mods)} modules) is bit-identical"))
    ranks = [s.rank for s in moved]
    two_d = all(len(s.shape_b) == 2 and s.rank is not None for s in moved)
    if two_d and all(r is not None and r <= LORA_MAX_RANK and r < (s.svd_k or 0)
                     and r <= LORA_MAX_SHARE * min(s.shape_b) for s, r in zip(moved, ranks,
                                                                               strict=True)):
        rank = max(r for r in ranks if r is not None)
        leaves = sorted({m.rpartition(".")[2] for m in moved_mods})
        energy = min((s.top_energy for s in moved if s.top_energy is not None), default=None)
        return Verdict(pattern=Pattern.LORA_LIKE, modules=names, frozen=frozen, rank=rank,
                       evidence=(f"low-rank changes (rank {rank}) confined to "
                                 f"{', '.join(leaves)}: {n_mod}",
                                 *((f"top-{ENERGY_K} singular values hold at least "
                                    f"{energy:.1%} of every change",) if energy is not None
                                   else ()),
                                 "only 2-D weights moved; biases and norms are bit-identical"))
    if len(moved_mods) <= TARGETED_SHARE * len(modules):
        return Verdict(pattern=Pattern.TARGETED, modules=names, frozen=frozen,
                       evidence=(f"{n_mod}: {', '.join(names[:8])}"
                                 + (" ..." if len(names) > 8 else ""),))
    with_rank = sorted((s for s in moved if s.rank is not None), key=lambda s: s.rank or 0)
    spread: tuple[str, ...] = ()
    if with_rank:
        lo, hi = with_rank[0].rank_text(), with_rank[-1].rank_text()
        spread = (f"changes are not low rank: rank {lo if lo == hi else f'{lo} to {hi}'} on "
                  "the 2-D weights",)
    return Verdict(pattern=Pattern.FULL_FINE_TUNE, modules=names, frozen=frozen,
                   evidence=(n_mod, *spread))


def make_weight_diff(stats: Sequence[TensorStats], *, pairs: Sequence[tuple[str, str]] = (),
                     missing: Sequence[tuple[str, str]] = (), head: Sequence[str] = (),
                     structure: Sequence[str] = (), before: Any = None, after: Any = None,
                     alignment: Any = None) -> WeightDiff:
    """A :class:`WeightDiff` with its summaries, folded rows, blocks and verdict."""
    return WeightDiff(pairs=tuple(pairs), tensors=tuple(stats), modules=by_module(stats),
                      missing=tuple(missing), folded=fold_modules(stats),
                      blocks=by_block(stats), head=tuple(head),
                      verdict=verdict_of(stats, head=head, structure=structure),
                      before=before, after=after, alignment=alignment)


def _module_rel(items: Sequence[TensorStats]) -> float:
    """||b - a|| / ||a|| over a module's moved tensors, as one vector (against ||b|| when
    they were all zeros in ``a``, as for one tensor)."""
    changed = [s for s in items if s.moved]
    if not changed:
        return 0.0
    if any(s.norm_a is None or s.norm_diff is None for s in changed):
        return math.inf  # a shape change, or values that could not be compared
    da = sum(s.norm_a ** 2 for s in changed if s.norm_a is not None)
    dd = sum(s.norm_diff ** 2 for s in changed if s.norm_diff is not None)
    db = sum((s.norm_b or 0.0) ** 2 for s in changed)
    if math.isnan(da) or math.isnan(dd):
        return math.nan
    if dd == 0.0:
        return 0.0
    if da == 0.0:
        return math.sqrt(dd) / math.sqrt(db) if db else math.inf
    return math.sqrt(dd) / math.sqrt(da)


def _module_cos(items: Sequence[TensorStats]) -> float:
    """Cosine similarity of a module's moved tensors, as one vector."""
    changed = [s for s in items if s.moved]
    if not changed:
        return 1.0
    if any(s.norm_a is None or s.norm_b is None or s.cosine is None for s in changed):
        return math.nan
    dot = sum((s.cosine or 0.0) * (s.norm_a or 0.0) * (s.norm_b or 0.0) for s in changed)
    na = math.sqrt(sum((s.norm_a or 0.0) ** 2 for s in changed))
    nb = math.sqrt(sum((s.norm_b or 0.0) ** 2 for s in changed))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return max(-1.0, min(1.0, dot / (na * nb)))


def _nanmax(xs: Sequence[float]) -> float:
    return math.nan if any(math.isnan(x) for x in xs) else max(xs)


def _nanmin(xs: Sequence[float]) -> float:
    return math.nan if any(math.isnan(x) for x in xs) else min(xs)


def _json_float(x: float | None) -> float | str | None:
    """JSON has no NaN or infinity: those become the strings "nan", "inf", "-inf"."""
    if x is None or math.isfinite(x):
        return x
    return str(x)


def fmt_stat(x: float | None, *, cos: bool = False) -> str:
    if x is None:
        return "-"
    if cos and math.isfinite(x):
        # Cosines that matter sit near 1: fixed decimals show 0.999998, where %g says 1.
        return "1" if x == 1.0 else f"{x:.6f}"
    return f"{x:.3g}"
