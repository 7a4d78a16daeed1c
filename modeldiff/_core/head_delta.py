"""What a task head adds to its base, in transformers' own loading terms.

>>> import modeldiff
>>> d = modeldiff.head_delta("distilbert", "distilbert", task=(None, "sequence-classification"))
>>> d.modules, bool(d)
(('pre_classifier', 'classifier', 'dropout'), True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from modeldiff._core.align import Alignment, join
from modeldiff._core.diff import diff_graphs
from modeldiff._core.graph import ModelGraph
from modeldiff._core.report import Report

__all__ = ["HeadDelta", "checkpoint_keys", "head_delta_of"]


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


def head_delta_of(base: ModelGraph, head: ModelGraph, prefix: str) -> HeadDelta:
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
    d = diff_graphs(base, head, al)
    # What a base checkpoint holds: its state dict, one copy of each tied tensor.
    checkpoint = checkpoint_keys(base)
    head_keys = checkpoint_keys(head, with_tied=True)
    head_set = set(head_keys)

    def in_head(key: str) -> str | None:
        for candidate in (key, join(prefix, key)):
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
    # a module shared under several names holds one tensor under each of them
    ties |= {(join(a, t.name), join(n.path, t.name)) for n in head.nodes for a in n.aliases
             for t in n.tensors}
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


def checkpoint_keys(g: ModelGraph, *, with_tied: bool = False) -> tuple[str, ...]:
    """State-dict keys (parameters and persistent buffers, every alias path), without the
    aliases of tied tensors unless ``with_tied``."""
    keys: list[str] = []
    # A module shared under several names (transformers 4.x builds T5's encoder/decoder
    # embed_tokens as the `shared` module itself) is saved once: save_pretrained leaves out
    # the alias names the model declares tied.
    declared = {t for t, s in g.hf.tied_weights if s} if g.hf is not None and not with_tied \
        else set()
    for n in g.nodes:
        for p in (n.path, *n.aliases):
            pre = f"{p}." if p else ""
            keys.extend(pre + t.name for t in n.tensors
                        if (not t.buffer or t.persistent) and (with_tied or t.tied_to is None)
                        and (p == n.path or pre + t.name not in declared))
    return tuple(keys)


def _matches_any(key: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, key) for p in patterns)
