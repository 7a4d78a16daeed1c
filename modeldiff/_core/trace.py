"""What one traced forward says about a model: shapes, FLOPs, activation bytes, data flow,
memory. Torch-free values (the tracer that fills them is ``modeldiff._trace``), so a trace
read back from JSON summarises and compares without torch.

>>> m = ModuleTrace(path="", cls="Net", outputs=(TensorInfo(shape=(1, 2), dtype="float32"),),
...                 flops=8, params=6)
>>> m.output_shape, human_flops(12_300_000_000)
('[1, 2]', '12.30 G')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from modeldiff._core.graph import ModelGraph, RepeatGroup
from modeldiff._core.graph import human_bytes as graph_human_bytes
from modeldiff._core.report import Report, register

__all__ = ["Assumption", "DataEdge", "FlowChange", "MemoryRow", "ModuleTrace", "TensorInfo",
           "Trace", "TraceDiff", "human_bytes", "human_flops"]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    """The shape and dtype of one activation tensor."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __str__(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleTrace:
    """One module in one forward.

    ``flops`` counts the module and everything it called (torch's FlopCounterMode rules:
    matmuls, convolutions, attention), over all ``calls``; ``ops`` splits them by aten
    operator. ``inputs``/``outputs`` are the tensors of the first call, in argument order
    (nested tuples and ModelOutputs flattened); ``activation_bytes`` is what those outputs
    occupy. ``params`` counts the subtree's parameters (tied ones once).
    """

    path: str
    cls: str
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    flops: int = 0
    ops: tuple[tuple[str, int], ...] = ()
    activation_bytes: int = 0
    calls: int = 1
    params: int = 0

    @property
    def output_shape(self) -> str:
        """The first output's shape (``[1, 128, 768]``), ``-`` when there is none."""
        return str(self.outputs[0]) if self.outputs else "-"


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class DataEdge:
    """A tensor flowing from ``src`` to ``dst`` (dotted module paths).

    Between siblings it is plain data flow. When ``src`` encloses ``dst`` the tensor is the
    input of ``src`` flowing to a module inside it (a residual add shows as such an edge to
    the module after the add); when ``dst`` encloses ``src`` it is ``src``'s tensor leaving as
    ``dst``'s output.
    """

    src: str
    dst: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def label(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Assumption:
    """A value the meta device could not compute, and what the trace assumed instead."""

    site: str  # the function that asked, e.g. "masking_utils._ignore_causal_mask_sdpa"
    module: str  # the module running at the time
    assumed: str  # e.g. "True (dense, unpadded input: no padding, no packed sequences)"


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryRow:
    """accelerate ``estimate-memory``'s row for one dtype (bytes); ``training_adam`` is None
    where accelerate prints N/A (int8, int4)."""

    dtype: str
    largest_layer: int
    total: int
    training_adam: int | None


def human_flops(n: float) -> str:
    """``12.30 G``: decimal prefixes, as FLOP counts are usually quoted."""
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000 or unit == "P":
            return f"{n:.0f}" if unit == "" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} P"  # pragma: no cover


def human_bytes(n: float) -> str:
    """``1.50 GB``: the graph's byte format with two decimals, as accelerate prints them."""
    return graph_human_bytes(n, digits=2)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Trace(Report):
    """Shapes, FLOPs, activation bytes and data flow of one forward, and memory estimates.

    ``graph`` is the walked model (containment, ties, repeat groups); ``modules`` holds one
    :class:`ModuleTrace` per module that ran, in call order; ``edges`` the data flow
    (:class:`DataEdge`); ``inputs`` the tensors fed to the model. ``parameter_bytes`` is
    parameters and buffers by dtype as the model holds them; ``memory`` accelerate's
    estimate-memory table; ``activation_peak`` the most activation bytes alive at once
    during the forward (an inference estimate; parameters not included).

    Findings are the ``assumptions``: values the meta device could not compute, which the
    trace assumed (a dense, unpadded batch). A trace with none is falsy.

    >>> import modeldiff
    >>> t = modeldiff.trace(modeldiff.tiny_config("llama"), task="causal-lm", seq=16)
    >>> t["lm_head"].output_shape, t.flops, bool(t)
    ('[1, 16, 256]', 917504, True)
    >>> t.assumptions[0].site
    'masking_utils.find_packed_sequence_indices'
    >>> type(t).from_json(t.to_json()).to_json() == t.to_json()
    True
    """

    SCHEMA: ClassVar[str] = "modeldiff.trace"

    graph: ModelGraph
    modules: tuple[ModuleTrace, ...]
    edges: tuple[DataEdge, ...] = ()
    inputs: tuple[tuple[str, TensorInfo], ...] = ()
    device: str = "meta"
    parameter_bytes: tuple[tuple[str, int], ...] = ()
    memory: tuple[MemoryRow, ...] = ()
    activation_peak: int = 0
    assumptions: tuple[Assumption, ...] = ()
    _index: dict[str, ModuleTrace] = field(default_factory=dict, init=False, repr=False,
                                           compare=False, metadata={"json": False})

    def __post_init__(self) -> None:
        for m in self.modules:
            self._index.setdefault(m.path, m)

    def _findings(self) -> int:
        return len(self.assumptions)

    # -- lookups ---------------------------------------------------------------------------
    def __getitem__(self, path: str) -> ModuleTrace:
        try:
            return self._index[path]
        except KeyError:
            raise KeyError(f"module {path!r} did not run in this trace") from None

    def __contains__(self, path: object) -> bool:
        return path in self._index

    @property
    def flops(self) -> int:
        """FLOPs of the whole forward."""
        return self._index[""].flops if "" in self._index else 0

    def flops_by_op(self, path: str = "") -> dict[str, int]:
        """FLOPs of ``path`` (default: the whole model) by aten operator."""
        return dict(self[path].ops)

    def edges_from(self, path: str) -> tuple[DataEdge, ...]:
        return tuple(e for e in self.edges if e.src == path)

    def edges_to(self, path: str) -> tuple[DataEdge, ...]:
        return tuple(e for e in self.edges if e.dst == path)

    # -- text ------------------------------------------------------------------------------
    def headline(self) -> str:
        shapes = ", ".join(f"{k}{v}" for k, v in self.inputs)
        extra = f"; {len(self.assumptions)} assumption(s)" if self.assumptions else ""
        return (f"{self.graph.root.cls}({shapes}): {human_flops(self.flops)}FLOPs forward, "
                f"activations peak {human_bytes(self.activation_peak)}{extra}")

    def summary(self, depth: int | None = 3, *, fold: bool = True) -> str:
        """A torchinfo-like table: module, class, output shape, params, FLOPs. A folded
        repeat group shows one layer's FLOPs and, in ``total``, the group's."""
        return _summary(self, depth=depth, fold=fold)

    def memory_table(self) -> str:
        """accelerate ``estimate-memory``'s table: largest layer, total size, training with
        Adam, per dtype."""
        head = ("dtype", "Largest Layer", "Total Size", "Training using Adam")
        rows = [(r.dtype, human_bytes(r.largest_layer), human_bytes(r.total),
                 "N/A" if r.training_adam is None else human_bytes(r.training_adam))
                for r in self.memory]
        widths = [max(len(x[i]) for x in [head, *rows]) for i in range(4)]
        sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        out = [f"Memory usage of {self.graph.root.cls}", sep,
               "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |", sep]
        out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
                for r in rows]
        out.append(sep)
        return "\n".join(out)

    def __str__(self) -> str:
        lines = [self.headline(), "", self.summary()]
        if self.parameter_bytes:
            lines.append("Parameters and buffers: " + ", ".join(
                f"{human_bytes(b)} {d}" for d, b in self.parameter_bytes))
        for a in self.assumptions:
            lines.append(f"assumed {a.assumed} at {a.site} (in {a.module or '(root)'})")
        return "\n".join(lines)

    def diff(self, other: Trace) -> TraceDiff:
        """What changed in shapes and FLOPs from this trace to ``other``, module by module.
        The two models are aligned the way :func:`modeldiff.diff` aligns them (a base model
        sits at its head model's ``base_model_prefix``); a module that ran on one side only
        is listed too, under its own path."""
        from modeldiff._core.align import align_graphs, relative

        al = align_graphs(self.graph, other.graph, "auto")
        after: dict[str, ModuleTrace] = {}
        for b in other.modules:
            rel = relative(b.path, al.after)
            if rel is not None:
                after[rel] = b
        matched: set[str] = set()
        changes: list[FlowChange] = []
        for a in self.modules:
            rel = relative(a.path, al.before)
            match = after.get(rel) if rel is not None else None
            if match is None:
                changes.append(FlowChange(path=a.path, before_shape=a.output_shape,
                                          after_shape=None, before_flops=a.flops,
                                          after_flops=None))
                continue
            matched.add(match.path)
            if a.output_shape != match.output_shape or a.flops != match.flops:
                changes.append(FlowChange(path=match.path, before_shape=a.output_shape,
                                          after_shape=match.output_shape, before_flops=a.flops,
                                          after_flops=match.flops))
        for b in other.modules:
            if b.path not in matched:
                changes.append(FlowChange(path=b.path, before_shape=None,
                                          after_shape=b.output_shape, before_flops=None,
                                          after_flops=b.flops))
        return TraceDiff(before=self.graph.root.cls, after=other.graph.root.cls,
                         before_flops=self.flops, after_flops=other.flops,
                         changes=tuple(changes))


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class FlowChange:
    """One module whose output shape or FLOPs differ (None: it did not run on that side)."""

    path: str
    before_shape: str | None
    after_shape: str | None
    before_flops: int | None
    after_flops: int | None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class TraceDiff(Report):
    """Shape and FLOP changes between two traces; findings are the changed modules.

    >>> TraceDiff(before="A", after="B", before_flops=10, after_flops=12).headline()
    'A -> B: FLOPs 10 -> 12 (+2), 0 module(s) changed'
    """

    SCHEMA: ClassVar[str] = "modeldiff.trace_diff"

    before: str
    after: str
    before_flops: int
    after_flops: int
    changes: tuple[FlowChange, ...] = ()

    def _findings(self) -> int:
        return len(self.changes)

    def headline(self) -> str:
        delta = self.after_flops - self.before_flops
        return (f"{self.before} -> {self.after}: FLOPs {human_flops(self.before_flops)} -> "
                f"{human_flops(self.after_flops)} ({delta:+,}), {len(self.changes)} module(s) "
                "changed")

    def __str__(self) -> str:
        lines = [self.headline()]
        for c in self.changes:
            shape = (c.before_shape or "(absent)") if c.before_shape == c.after_shape else \
                f"{c.before_shape or '(absent)'} -> {c.after_shape or '(absent)'}"
            fl = "" if c.before_flops == c.after_flops else \
                f"  FLOPs {_opt(c.before_flops)} -> {_opt(c.after_flops)}"
            lines.append(f"  {c.path or '(root)'}: {shape}{fl}")
        return "\n".join(lines)


def _opt(n: int | None) -> str:
    return "(absent)" if n is None else human_flops(n)


def _summary(t: Trace, *, depth: int | None, fold: bool) -> str:
    g = t.graph
    folded: dict[str, RepeatGroup] = {}
    if fold:
        for r in g.repeats:
            folded.setdefault(r.paths[0], r)
    hidden: set[str] = set()
    rows: list[tuple[str, ...]] = []

    def flops_of(path: str) -> int:
        # A container that is never called itself (ModuleList) sums what its children did.
        m = t._index.get(path)
        if m is not None:
            return m.flops
        return sum(flops_of(c.path) for name, c in g.children(path)
                   if c.path == (f"{path}.{name}" if path else name))

    def visit(path: str, level: int) -> None:
        node = g[path]
        group = folded.get(path)
        m = t._index.get(path)
        flops = flops_of(path)
        shape = m.output_shape if m else "-"
        if group is not None:
            hidden.update(group.paths[1:])
            label = f"{group.label.rpartition('.')[2]} (x{group.count})"
            members = [flops_of(p) for p in group.paths]
            params = f"{node.totals.params * group.count:,}"
            each, total = human_flops(flops), human_flops(sum(members))
        else:
            label = node.name if path else "(root)"
            params = f"{node.totals.params:,}"
            each, total = human_flops(flops), ""
        rows.append(("  " * level + label, node.cls, shape, params, each, total))
        if depth is not None and level >= depth:
            return
        for name, child in g.children(path):
            full = f"{path}.{name}" if path else name
            if child.path in hidden or child.path != full:
                continue
            visit(child.path, level + 1)

    visit("", 0)
    head = ("module", "class", "output shape", "params", "FLOPs", "total")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(6)]
    right = (False, False, False, True, True, True)

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if ra else c.ljust(w)
                         for c, w, ra in zip(r, widths, right, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(head), rule, *(line(r) for r in rows), rule,
           f"Total params: {g.totals.params:,}   FLOPs: {t.flops:,} ({human_flops(t.flops)})   "
           f"Activation peak: {human_bytes(t.activation_peak)}"]
    return "\n".join(out)

