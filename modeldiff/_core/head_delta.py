"""What a task head adds to its base, in transformers' own loading terms.

>>> import modeldiff
>>> d = modeldiff.head_delta("distilbert", "distilbert", task=(None, "sequence-classification"))
>>> d.modules, bool(d)
(('pre_classifier', 'classifier', 'dropout'), True)
"""

from __future__ import annotations

from dataclasses import dataclass

from modeldiff._core.align import Alignment
from modeldiff._core.diff import diff_graphs
from modeldiff._core.graph import ModelGraph
from modeldiff._core.load_report import LoadReport, graph_checkpoint, graph_target, predict_load
from modeldiff._core.report import Report

__all__ = ["HeadDelta", "head_delta_of"]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class HeadDelta(Report):
    """What a task head adds on top of its base model.

    ``prefix``: where the base sits in the head. ``modules``: head-only module roots.
    ``new_parameters``: state-dict entries that loading a base checkpoint into the head
    newly initialises (transformers' ``missing_keys``); ``ignored_missing`` those of them the
    head class tells transformers to ignore. ``dropped``: base checkpoint entries the head
    does not use (transformers' ``unexpected_keys``), ``ignored_unexpected`` those the head
    class declares ignorable; ``dropped_modules``: the base modules behind them.

    Findings (the result protocol): the head's modules and the keys that are newly
    initialised or unused; a delta of a model with itself is falsy.
    """

    SCHEMA = "modeldiff.head_delta"

    prefix: str
    modules: tuple[str, ...]
    new_parameters: tuple[str, ...]
    ignored_missing: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    ignored_unexpected: tuple[str, ...] = ()
    dropped_modules: tuple[str, ...] = ()

    def _findings(self) -> int:
        return len(self.modules) + len(self.new_parameters) + len(self.dropped)

    def headline(self) -> str:
        return (f"head at {self.prefix or '(root)'}: {len(self.modules)} new modules, "
                f"{len(self.new_parameters)} newly initialised, {len(self.dropped)} unused")

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


def head_delta_of(base: ModelGraph, head: ModelGraph, prefix: str | Alignment,
                  load: LoadReport | None = None) -> HeadDelta:
    """The head's modules (a structural diff at the alignment) and, from ``load`` (what
    loading a checkpoint of ``base`` into ``head`` reports: see
    :mod:`modeldiff._core.load_report` for transformers' rules), the keys that are newly
    initialised or unused. Without ``load`` the rules run on the two graphs' own key names
    (no rename rules: those live in transformers).

    Checked against transformers' own report over every head family (tests/).
    """
    al = prefix if isinstance(prefix, Alignment) else \
        Alignment(before="", after=prefix, how="base_model_prefix")
    d = diff_graphs(base, head, al)
    if load is None:
        load = predict_load(graph_checkpoint(base), graph_target(head, prefix=al.after))
    return HeadDelta(
        prefix=al.after,
        modules=tuple(c.path for c in d.added),
        new_parameters=load.missing,
        ignored_missing=load.ignored_missing,
        dropped=load.unexpected,
        ignored_unexpected=load.ignored_unexpected,
        dropped_modules=tuple(c.path for c in d.removed),
    )
