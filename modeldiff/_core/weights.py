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
from dataclasses import dataclass

from modeldiff._core.report import Report, register

__all__ = ["ModuleSummary", "TensorStats", "WeightDiff", "by_module", "fmt_stat"]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TensorStats:
    """How tensor ``b`` differs from tensor ``a``.

    ``equal`` means bit-identical bytes, dtype and shape: NaN equals NaN with the same bits,
    and ``-0.0`` differs from ``0.0``. The statistics are computed in float64 over the values
    (in the wider dtype when dtypes differ; ``note`` then says so):

    - ``n_changed``: elements whose value differs (NaN vs NaN counts as unchanged);
    - ``max_abs``: the largest ``|b - a|``;
    - ``rel_change``: ``||b - a|| / ||a||`` (Frobenius norms); ``0.0`` when no value changed,
      ``inf`` when ``a`` is all zeros and ``b`` is not;
    - ``cosine``: cosine similarity of ``a`` and ``b`` flattened; ``1.0`` when both are all
      zeros (they point the same way, nowhere), ``0.0`` when exactly one of them is.

    A shape mismatch leaves the three statistics ``None`` (nothing to compare element-wise).
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
        if self.n_changed is None:
            return f"{self.name}: bytes differ{note}"
        if self.n_changed == 0:
            return f"{self.name}: same values, different bytes{note}"
        return (f"{self.name}: {self.n_changed:,} of {self.numel:,} values changed, "
                f"max |b-a| {fmt_stat(self.max_abs)}, rel change {fmt_stat(self.rel_change)}, "
                f"cosine {fmt_stat(self.cosine, cos=True)}{note}")


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleSummary:
    """How much the tensors directly owned by one module (a path in ``b``'s names) moved.

    ``changed == 0`` means the module is untouched: a frozen layer stayed frozen.
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


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class WeightDiff(Report):
    """Per-tensor statistics and a per-module summary of two sets of weights.

    ``tensors[i]`` compares ``pairs[i] = (name_in_a, name_in_b)``; its ``name`` is the name in
    ``b``. ``modules`` is ordered by how much moved (largest relative change first), so the top
    of the list answers "what did fine-tuning change" and ``unchanged_modules`` "are the frozen
    layers still frozen". ``missing`` holds requested pairs whose tensor does not exist on one
    side (``in_a`` / ``in_b`` say which).
    """

    SCHEMA = "modeldiff.weights"

    pairs: tuple[tuple[str, str], ...] = ()
    tensors: tuple[TensorStats, ...] = ()
    modules: tuple[ModuleSummary, ...] = ()
    missing: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> tuple[TensorStats, ...]:
        return tuple(s for s in self.tensors if not s.equal)

    @property
    def unchanged_modules(self) -> tuple[str, ...]:
        return tuple(m.path for m in self.modules if m.changed == 0)

    def _findings(self) -> int:
        """Findings: the tensors whose values changed and the pairs missing on one side."""
        return len(self.changed) + len(self.missing)

    def headline(self) -> str:
        return self.summary()

    def summary(self) -> str:
        n = len(self.tensors)
        moved = sum(1 for m in self.modules if m.changed)
        return (f"{n} tensors compared, {n - len(self.changed)} identical, "
                f"{len(self.changed)} changed; {moved} of {len(self.modules)} modules changed"
                + (f"; {len(self.missing)} pairs missing" if self.missing else ""))

    def __str__(self) -> str:
        rows = [("module", "changed", "rel change", "max |b-a|", "cosine")]
        for m in self.modules:
            rows.append((m.path or "(root)", f"{m.changed}/{m.tensors}", fmt_stat(m.rel_change),
                         fmt_stat(m.max_abs), fmt_stat(m.cosine, cos=True)))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                 for r in rows]
        lines += [f"missing: {a} -> {b}" for a, b in self.missing]
        lines.append(self.summary())
        return "\n".join(lines)


def by_module(stats: Sequence[TensorStats]) -> tuple[ModuleSummary, ...]:
    groups: dict[str, list[TensorStats]] = {}
    for s in stats:
        groups.setdefault(s.name.rpartition(".")[0], []).append(s)
    out = []
    for path, items in groups.items():
        rels = [math.inf if s.rel_change is None else s.rel_change for s in items]
        abss = [math.inf if s.max_abs is None else s.max_abs for s in items]
        coss = [-1.0 if s.cosine is None else s.cosine for s in items]
        out.append(ModuleSummary(
            path=path, tensors=len(items), changed=sum(1 for s in items if not s.equal),
            numel=sum(s.numel for s in items), max_rel_change=_nanmax(rels),
            max_abs=_nanmax(abss), min_cosine=_nanmin(coss), rel_change=_module_rel(items),
            cosine=_module_cos(items)))
    # Most moved first; NaN (a value became NaN) sorts to the very top, it is the worst news.
    # The module-level figure orders them: a zero-initialised bias that moved has an infinite
    # relative change of its own, which would put every trained layer first alike.
    out.sort(key=lambda m: (-(math.inf if math.isnan(m.rel_change) else m.rel_change),
                            -m.changed, m.path))
    return tuple(out)


def _module_rel(items: Sequence[TensorStats]) -> float:
    """||b - a|| / ||a|| over a module's changed tensors, as one vector."""
    changed = [s for s in items if not s.equal]
    if not changed:
        return 0.0
    if any(s.norm_a is None or s.norm_diff is None for s in changed):
        return math.inf  # a shape change, or values that could not be compared
    da = sum(s.norm_a ** 2 for s in changed if s.norm_a is not None)
    dd = sum(s.norm_diff ** 2 for s in changed if s.norm_diff is not None)
    if math.isnan(da) or math.isnan(dd):
        return math.nan
    if dd == 0.0:
        return 0.0
    return math.inf if da == 0.0 else math.sqrt(dd) / math.sqrt(da)


def _module_cos(items: Sequence[TensorStats]) -> float:
    """Cosine similarity of a module's changed tensors, as one vector."""
    changed = [s for s in items if not s.equal]
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
