"""What ``from_pretrained`` will report, predicted from checkpoint keys and shapes alone.

transformers 5 prints a LOAD REPORT on every load with four statuses: MISSING (newly
initialised), UNEXPECTED (in the file, unused), MISMATCH (same key, other shape:
re-initialised with ``ignore_mismatched_sizes=True``, an error without it) and CONVERSION.
:func:`predict_load` runs transformers' loading rules (``core_model_loading.py``
``convert_and_load_state_dict_in_model``, ``modeling_utils.py`` ``tie_weights`` and
``_adjust_missing_and_unexpected_keys``, 5.x) on a table of checkpoint keys and a
:class:`LoadTarget`, and adds what transformers cannot show: the new modules (parameterless
ones too) and a verdict per group with its reason.

>>> target = LoadTarget(cls="TinyForClassification", prefix="body",
...                     keys={"body.layers.0.w": (4, 4), "body.layers.1.w": (4, 4),
...                           "classifier.weight": (2, 4)},
...                     modules=("", "body", "body.layers", "body.layers.0", "body.layers.1",
...                              "dropout", "classifier"))
>>> r = predict_load({"layers.0.w": (4, 4), "layers.1.w": (4, 4)}, target)
>>> r.missing, r.new_modules, r.ok
(('classifier.weight',), ('dropout', 'classifier'), True)
>>> print(r.groups[0])
MISSING classifier.weight: new head for the task: expected, train it
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from modeldiff._core.align import join
from modeldiff._core.graph import ModelGraph, StrEnum
from modeldiff._core.report import Report, register

__all__ = [
    "HEAD_NAMES",
    "KeyGroup",
    "LoadReport",
    "LoadTarget",
    "Mismatch",
    "Rename",
    "Status",
    "Verdict",
    "fold_keys",
    "graph_checkpoint",
    "graph_target",
    "natural_key",
    "predict_load",
]

Shape = tuple[int, ...]


@register
class Status(StrEnum):
    """transformers' four statuses, spelled as its report spells them."""

    MISSING = "MISSING"
    UNEXPECTED = "UNEXPECTED"
    MISMATCH = "MISMATCH"
    CONVERSION = "CONVERSION"


@register
class Verdict(StrEnum):
    """Whether a group of keys is what a user should expect, with the reason."""

    NEW_HEAD = "new head for the task: expected, train it"
    UNUSED_HEAD = "part of the checkpoint this class has no use for: expected when " \
                  "loading from another task"
    BASE_MISSING = "encoder weights missing: this checkpoint does not fit this class"
    BASE_UNUSED = "weights of a loaded module left unused: this checkpoint does not fit " \
                  "this class"
    NOTHING_FITS = "no weight of the checkpoint fits this class: wrong checkpoint or wrong class"
    RESIZED = "shape differs from the checkpoint: re-initialised with " \
              "ignore_mismatched_sizes=True, an error without it"
    RENAMED = "older key layout: transformers renames it on load, nothing is lost"
    IGNORED = "the class declares these keys ignorable: transformers does not report them"

    @property
    def expected(self) -> bool:
        """Whether a load with only this kind of group is fine as it is."""
        return self in (Verdict.NEW_HEAD, Verdict.UNUSED_HEAD, Verdict.RENAMED, Verdict.IGNORED)


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    """A key the checkpoint has in another shape than the model (``MISMATCH``)."""

    key: str
    checkpoint_shape: Shape
    model_shape: Shape


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Rename:
    """A checkpoint key transformers renames on load (``CONVERSION``), with the rule.

    ``checkpoint_key``: as in the file; ``key``: the model's name; ``rule``: the source
    and target patterns of transformers' ``WeightRenaming`` or ``WeightConverter``;
    ``converted``: a ``WeightConverter`` (tensors merged or split on load: experts, fused
    projections), whose shapes change on the way and are not compared.
    """

    checkpoint_key: str
    key: str
    rule: str
    converted: bool = False


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class KeyGroup:
    """Keys of one status and one verdict, with the module roots they sit under."""

    status: Status
    modules: tuple[str, ...]
    keys: tuple[str, ...]
    verdict: Verdict

    @property
    def expected(self) -> bool:
        return self.verdict.expected

    def __str__(self) -> str:
        return f"{self.status} {', '.join(fold_keys(self.keys))}: {self.verdict}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadTarget:
    """What loading needs to know about the class being loaded, torch-free.

    ``keys``: its state-dict keys (parameters and persistent buffers, under every name)
    and shapes; ``modules``: every module path in ``named_modules()`` order, root ``""``;
    ``ties``: ``all_tied_weights_keys`` as ``(target, source)`` pairs in order;
    ``ignore_missing`` / ``ignore_unexpected``: the regexes transformers applies (for
    unexpected keys including its own ``rotary_emb.inv_freq`` / ``position_ids``).
    """

    cls: str
    prefix: str = ""
    keys: Mapping[str, Shape] = field(default_factory=dict)
    modules: tuple[str, ...] = ()
    ties: tuple[tuple[str, str], ...] = ()
    ignore_missing: tuple[str, ...] = ()
    ignore_unexpected: tuple[str, ...] = ()


# Module names that, inside the base model, are a head part a task class adds (a pooler the
# base was built without), not the encoder.
HEAD_NAMES = frozenset({"pooler", "classifier", "head", "heads", "lm_head", "score", "cls",
                        "qa_outputs", "projector", "projection", "dropout"})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class LoadReport(Report):
    """What ``from_pretrained(checkpoint)`` into ``target`` will report, before loading.

    ``missing``, ``unexpected``, ``mismatched``: transformers' ``missing_keys``,
    ``unexpected_keys`` and ``mismatched_keys`` (after its ignore patterns; the keys those
    patterns hide are in ``ignored_missing`` / ``ignored_unexpected``). ``renamed``: keys
    transformers renames from an older layout (CONVERSION). ``new_modules``: roots of the
    target's modules that get nothing from the checkpoint, parameterless ones included.
    ``groups``: the keys by status and module, each with a verdict.

    Findings (the result protocol): every key that does not load as it is (missing,
    unexpected, mismatched, renamed); a checkpoint that fits its class exactly is falsy.
    ``ok`` is True when everything loads or only an expected new head is missing (what
    the CLI exits 0 on); ``raises`` when transformers raises without
    ``ignore_mismatched_sizes=True``.
    """

    SCHEMA: ClassVar[str] = "modeldiff.load_report"

    checkpoint: str
    target: str
    prefix: str = ""
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    renamed: tuple[Rename, ...] = ()
    ignored_missing: tuple[str, ...] = ()
    ignored_unexpected: tuple[str, ...] = ()
    new_modules: tuple[str, ...] = ()
    groups: tuple[KeyGroup, ...] = ()
    loaded: int = 0

    def _findings(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched) + len(self.renamed)

    @property
    def ok(self) -> bool:
        """Everything loads, or only what a user expects (a new head, an unused head of
        another task, renamed keys, ignorable keys) is reported."""
        return all(g.expected for g in self.groups)

    @property
    def raises(self) -> bool:
        """transformers raises on this load unless ``ignore_mismatched_sizes=True``."""
        return bool(self.mismatched)

    @property
    def error(self) -> str | None:
        """The RuntimeError message transformers raises without ``ignore_mismatched_sizes``."""
        if not self.mismatched:
            return None
        return ("You set `ignore_mismatched_sizes` to `False`, thus raising an error. For "
                "details look at the above report!")

    def _extra_json(self) -> dict[str, object]:
        return {"ok": self.ok, "raises": self.raises}

    def headline(self) -> str:
        parts = [f"{self.checkpoint} -> {self.target}:"]
        counts = [(len(self.missing), "missing"), (len(self.unexpected), "unexpected"),
                  (len(self.mismatched), "mismatched"), (len(self.renamed), "renamed")]
        said = [f"{n} {what}" for n, what in counts if n]
        parts.append(", ".join(said) if said else "every key loads")
        parts.append("(ok)" if self.ok else "(does not fit)")
        return " ".join(parts)

    def table(self) -> str:
        """transformers' own table: folded keys, status, details."""
        rows: list[tuple[str, str, str]] = []
        rows += [(k, "UNEXPECTED", "") for k in fold_keys(self.unexpected)]
        rows += [(k, "MISSING", "") for k in fold_keys(self.missing)]
        by_shape: dict[tuple[Shape, Shape], list[str]] = defaultdict(list)
        for m in self.mismatched:
            by_shape[(m.checkpoint_shape, m.model_shape)].append(m.key)
        for (a, b), keys in by_shape.items():
            detail = f"Reinit due to size mismatch - ckpt: {list(a)} vs model:{list(b)}"
            rows += [(k, "MISMATCH", detail) for k in fold_keys(keys)]
        by_rule: dict[str, list[str]] = defaultdict(list)
        for r in self.renamed:
            by_rule[r.rule].append(r.key)
        for rule, keys in by_rule.items():
            rows += [(k, "CONVERSION", rule) for k in fold_keys(keys)]
        if not rows:
            return ""
        w0 = max(len("Key"), *(len(r[0]) for r in rows))
        w1 = max(len("Status"), *(len(r[1]) for r in rows))
        lines = [f"{'Key':<{w0}} | {'Status':<{w1}} | Details", f"{'-' * w0}-+-{'-' * w1}-+-{'-' * 7}"]
        lines += [f"{a:<{w0}} | {b:<{w1}} | {c}".rstrip() for a, b, c in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        lines = [f"{self.target} LOAD REPORT from: {self.checkpoint} (predicted from headers)"]
        table = self.table()
        lines.append(table if table else "every key loads as it is")
        if self.new_modules:
            lines.append(f"new modules (initialised, not loaded): {', '.join(self.new_modules)}")
        if self.ignored_missing or self.ignored_unexpected:
            hidden = fold_keys((*self.ignored_missing, *self.ignored_unexpected))
            lines.append(f"not reported (the class's ignore patterns): {', '.join(hidden)}")
        if self.groups:
            lines.append("verdict:")
            lines += [f"  {'ok ' if g.expected else 'BAD'} {g}" for g in self.groups]
        if self.raises:
            lines.append(f"without ignore_mismatched_sizes=True transformers raises "
                         f"RuntimeError: {self.error}")
        return "\n".join(lines)


# -- the rules ---------------------------------------------------------------------------------
RenameFn = Callable[[str], "tuple[str, Rename | None, tuple[str, ...]]"]


def predict_load(checkpoint: Mapping[str, Shape | None], target: LoadTarget, *,
                 rename: RenameFn | None = None, checkpoint_name: str = "checkpoint"
                 ) -> LoadReport:
    """transformers' loading rules, run on key and shape tables.

    ``checkpoint``: ``{key: shape}`` as the file names them (shape ``None`` when unknown).
    ``rename``: ``key -> (renamed, rule or None, converter targets)`` from transformers'
    conversion mapping for the target class (``rename_source_key`` without the prefix
    step); ``None`` when the class has none.

    The steps, in transformers' order: (1) each checkpoint key, in natural order, is
    renamed, then gets the ``base_model_prefix`` stripped or added when that names a model
    key; if the renamed key is not in the model but the original is, the original is used;
    (2) a key the model has loads (another shape: mismatched, not missing); a converter's
    key the model lacks is unexpected under each of its target names; any other key is
    unexpected, spelled as renamed; (3) ties: a tied target is not missing when its source
    loaded, and the other way round; (4) the ignore patterns (``re.search``) hide keys.
    """
    keys = target.keys
    prefix = target.prefix
    loaded: dict[str, str] = {}
    unexpected: list[str] = []
    mismatched: list[Mismatch] = []
    renamed_rows: list[Rename] = []
    for original in sorted(checkpoint, key=natural_key):
        new, rule, targets = rename(original) if rename else (original, None, ())
        renamed = _with_prefix(new, prefix, keys)
        if renamed not in keys and original in keys:
            new, rule, targets = original, None, ()
            renamed = _with_prefix(original, prefix, keys)
        if renamed in keys:
            converted = rule is not None and rule.converted
            if renamed in loaded and converted:
                continue  # another expert of the same fused tensor
            loaded[renamed] = original
            for t in targets[1:]:  # a split: every target the converter writes is loaded
                other = renamed.replace(targets[0], t)
                if other in keys:
                    loaded.setdefault(other, original)
            if rule is not None:
                renamed_rows.append(Rename(checkpoint_key=original, key=renamed, rule=rule.rule,
                                           converted=converted))
            shape = checkpoint.get(original)
            if not converted and shape is not None and tuple(shape) != tuple(keys[renamed]):
                mismatched.append(Mismatch(key=renamed, checkpoint_shape=tuple(shape),
                                           model_shape=tuple(keys[renamed])))
        elif rule is not None and rule.converted and targets:
            for t in targets:
                k = renamed.replace(targets[0], t)
                if k not in unexpected:
                    unexpected.append(k)
        else:
            unexpected.append(renamed)
    # transformers walks the checkpoint in natural order (which matters for converters) and
    # returns sets; the report lists unexpected keys in the checkpoint's own order
    # (``weight`` before ``bias``), as a reader of the file sees them.
    position = {k: i for i, k in enumerate(checkpoint)}
    source: dict[str, int] = {}
    for original in checkpoint:
        new, _, _ = rename(original) if rename else (original, None, ())
        source.setdefault(new, position[original])
    unexpected.sort(key=lambda k: source.get(k, len(position)))
    missing = {k: None for k in keys if k not in loaded}
    _tie(missing, target.ties)
    ign_m = _compile(target.ignore_missing)
    ign_u = _compile(target.ignore_unexpected)
    miss = list(missing)
    report_missing = tuple(k for k in miss if not (ign_m and ign_m.search(k)))
    report_unexpected = tuple(k for k in unexpected if not (ign_u and ign_u.search(k)))
    ignored_missing = tuple(k for k in miss if ign_m and ign_m.search(k))
    ignored_unexpected = tuple(k for k in unexpected if ign_u and ign_u.search(k))
    present = set(keys) - set(missing)
    new_modules = _new_modules(target, present)
    groups = _groups(target, set(loaded), report_missing, report_unexpected, mismatched,
                     renamed_rows, checkpoint)
    return LoadReport(
        checkpoint=checkpoint_name, target=target.cls, prefix=prefix,
        missing=report_missing, unexpected=report_unexpected, mismatched=tuple(mismatched),
        renamed=tuple(renamed_rows), ignored_missing=ignored_missing,
        ignored_unexpected=ignored_unexpected, new_modules=new_modules, groups=groups,
        loaded=len(loaded),
    )


def _with_prefix(key: str, prefix: str, keys: Mapping[str, object]) -> str:
    """``rename_source_key``'s prefix step, as written there: the stripped form wins when
    both exist, and the pattern is a regex (its ``.`` matches any character)."""
    if not prefix:
        return key
    if key.startswith(prefix):
        stripped = re.sub(f"^{prefix}.", "", key, count=1)
        if stripped in keys:
            return stripped
    if f"{prefix}.{key}" in keys:
        return f"{prefix}.{key}"
    return key


def _tie(missing: dict[str, None], ties: Iterable[tuple[str, str]]) -> None:
    """``tie_weights(missing_keys=...)``: symmetric; with both ends missing, a later pair
    with the same source whose target loaded stands in for the source."""
    pairs = list(ties)
    for i, (target, source) in enumerate(pairs):
        source_there, target_there = source not in missing, target not in missing
        if source_there and target_there:
            continue
        remove = True
        if not source_there and target_there:
            target, source = source, target
        elif not source_there and not target_there:
            for backup_target, backup_source in pairs[i + 1:]:
                if backup_source == source and backup_target not in missing:
                    break
            else:
                remove = False
        if remove:
            missing.pop(target, None)


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    pats = [p for p in patterns if p]
    return re.compile("|".join(f"({p})" for p in pats)) if pats else None


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _module_of(key: str, modules: frozenset[str]) -> str:
    m = _parent(key)
    while m and m not in modules:
        m = _parent(m)
    return m


def _new_modules(target: LoadTarget, present: set[str]) -> tuple[str, ...]:
    """Roots of modules nothing is loaded into: a module with tensors none of which loaded,
    or a parameterless module whose parent is new or that hangs off the root next to the
    base model (a head's dropout) when the checkpoint filled nothing there. A parameterless
    module inside a loaded module (a layer's dropout) was in the checkpoint's model too, as
    far as headers can tell."""
    modules = frozenset(target.modules)
    has_tensors: set[str] = set()
    has_loaded: set[str] = set()
    for k in target.keys:
        m = _module_of(k, modules)
        while True:
            has_tensors.add(m)
            if k in present:
                has_loaded.add(m)
            if not m:
                break
            m = _parent(m)
    if not has_loaded:
        return ()
    # A checkpoint that filled something next to the base (a head checkpoint) came from a
    # class with the same head: its parameterless parts (dropout) were there too.
    prefix = target.prefix
    head_loaded = any(k.split(".", 1)[0] != prefix for k in present) if prefix else True
    new: set[str] = set()
    for m in target.modules:
        if not m or m in has_loaded:
            continue
        parent = _module_of(m, modules) if "." in m else ""
        if m in has_tensors or parent in new or (parent == "" and prefix and m != prefix
                                                 and not head_loaded):
            new.add(m)
    return tuple(m for m in target.modules if m in new and
                 (_module_of(m, modules) if "." in m else "") not in new)


def _groups(target: LoadTarget, present: set[str], missing: tuple[str, ...],
            unexpected: tuple[str, ...], mismatched: list[Mismatch], renamed: list[Rename],
            checkpoint: Mapping[str, object]) -> tuple[KeyGroup, ...]:
    """``present``: keys loaded from the checkpoint itself. A key filled by a tie (an MLM
    decoder tied to the embeddings) does not make its module a loaded one: the rest of
    that head is still new."""
    modules = frozenset(target.modules)
    # the base model inside the target: the prefix module of a head class, else (a base
    # class, or no prefix) the whole model
    base_root = target.prefix if target.prefix and target.prefix in modules else ""
    out: list[KeyGroup] = []
    nothing = not present and bool(target.keys)
    loaded_modules: set[str] = set()
    for k in present:
        m = _module_of(k, modules)
        while m:
            loaded_modules.add(m)
            m = _parent(m)

    def root_of_new(m: str) -> str:
        while m and _parent(m) and _parent(m) not in loaded_modules:
            m = _parent(m)
        return m

    by: dict[tuple[str, Verdict], list[str]] = defaultdict(list)
    for k in missing:
        m = _module_of(k, modules)
        if nothing:
            verdict = Verdict.NOTHING_FITS
            root = m.split(".")[0]
        elif m in loaded_modules:
            verdict, root = Verdict.BASE_MISSING, m
        else:
            root = root_of_new(m)
            inside = not base_root or root == base_root or root.startswith(base_root + ".")
            head_like = not inside or root.rsplit(".", 1)[-1] in HEAD_NAMES
            verdict = Verdict.NEW_HEAD if head_like else Verdict.BASE_MISSING
        by[(root, verdict)].append(k)
    out += _merged(Status.MISSING, by)

    # unexpected keys, in the checkpoint's names: a checkpoint module of which some keys
    # loaded and some did not does not fit; one that loaded nothing is another task's part
    ck_loaded: set[str] = set()
    unexpected_set = set(unexpected)
    for k in checkpoint:
        if k in unexpected_set:
            continue
        m = _parent(k)
        while m:
            ck_loaded.add(m)
            m = _parent(m)
    by = defaultdict(list)
    for k in unexpected:
        m = _parent(k)
        if nothing:
            verdict, root = Verdict.NOTHING_FITS, m.split(".")[0]
        elif m in ck_loaded:
            verdict, root = Verdict.BASE_UNUSED, m
        else:
            root = m
            while _parent(root) and _parent(root) not in ck_loaded:
                root = _parent(root)
            verdict = Verdict.UNUSED_HEAD
        by[(root, verdict)].append(k)
    out += _merged(Status.UNEXPECTED, by)
    if mismatched:
        by_m: dict[str, list[str]] = defaultdict(list)
        for mm in mismatched:
            by_m[_module_of(mm.key, modules)].append(mm.key)
        out.append(KeyGroup(status=Status.MISMATCH, modules=tuple(by_m),
                            keys=tuple(k for ks in by_m.values() for k in ks),
                            verdict=Verdict.RESIZED))
    if renamed:
        out.append(KeyGroup(status=Status.CONVERSION,
                            modules=tuple(dict.fromkeys(_module_of(r.key, modules)
                                                        for r in renamed)),
                            keys=tuple(r.key for r in renamed), verdict=Verdict.RENAMED))
    return tuple(out)


def _merged(status: Status, by: Mapping[tuple[str, Verdict], list[str]]) -> list[KeyGroup]:
    """One group per verdict, its module roots in order of first appearance."""
    roots: dict[Verdict, list[str]] = defaultdict(list)
    keys: dict[Verdict, list[str]] = defaultdict(list)
    for (root, verdict), ks in by.items():
        roots[verdict].append(root)
        keys[verdict] += ks
    return [KeyGroup(status=status, modules=tuple(dict.fromkeys(roots[v])),
                     keys=tuple(keys[v]), verdict=v) for v in roots]


# -- graphs as tables ----------------------------------------------------------------------------
def graph_checkpoint(g: ModelGraph) -> dict[str, Shape | None]:
    """The keys and shapes ``save_pretrained`` writes for the model ``g`` was walked from,
    in the model's own layout: state-dict keys, one copy of each tied tensor."""
    keys = _saved_names(g)
    tied = {t for t, s in g.hf.tied_weights if s} if g.hf else set()
    shapes = {f"{n.path}.{t.name}" if n.path else t.name: t.shape
              for n in g.nodes for t in n.tensors}
    return {k: shapes.get(k) for k in keys if k not in tied}


def graph_target(g: ModelGraph, *, prefix: str | None = None) -> LoadTarget:
    """What loading needs to know about the class ``g`` was walked from. ``prefix``: the
    base model's place, for a graph without transformers' facts (a printed model)."""
    keys: dict[str, Shape] = {}
    for n in g.nodes:
        for p in (n.path, *n.aliases):
            pre = f"{p}." if p else ""
            for t in n.tensors:
                if not t.buffer or t.persistent:
                    keys[pre + t.name] = t.shape
    buffers = [f"{n.path}.{t.name}" for n in g.nodes for t in n.tensors if t.buffer]
    hf = g.hf
    unexpected = set(hf.ignore_unexpected if hf else ())
    if any(b.endswith("rotary_emb.inv_freq") for b in buffers):
        unexpected.add(r"rotary_emb\.inv_freq")
    if any(b.endswith("position_ids") for b in buffers):
        unexpected.add(r"(^|\.)position_ids$")
    modules = [n.path for n in g.nodes]
    for n in g.nodes:
        modules += list(n.aliases)
    return LoadTarget(
        cls=g.root.cls, prefix=hf.base_model_prefix if hf else (prefix or ""), keys=keys,
        modules=tuple(modules),
        ties=tuple(dict.fromkeys(
            [(t, s) for t, s in (hf.tied_weights if hf else ()) if s]
            # tensors the model really shares count as tied, declared or not (transformers
            # 4.x gives T5's and BART's encoder/decoder the `shared` embedding module itself)
            + [(t.target, t.source) for t in g.ties]
            + [(f"{a}.{t.name}", join(n.path, t.name)) for n in g.nodes for a in n.aliases
               for t in n.tensors if not t.buffer or t.persistent])),
        ignore_missing=tuple(sorted(hf.ignore_missing if hf else ())),
        ignore_unexpected=tuple(sorted(unexpected)),
    )


def _saved_names(g: ModelGraph) -> list[str]:
    keys: list[str] = []
    for n in g.nodes:
        for p in (n.path, *n.aliases):
            pre = f"{p}." if p else ""
            keys.extend(pre + t.name for t in n.tensors
                        if (not t.buffer or t.persistent) and t.tied_to is None)
    return keys


# -- transformers' vocabulary: index folding ----------------------------------------------------
_DIGITS = re.compile(r"(?<=\.)(\d+)(?=\.|$)")


def natural_key(key: str) -> tuple[tuple[int, int | str], ...]:
    """transformers' ``dot_natural_key``: ``layers.2`` before ``layers.10``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in key.split("."))


def fold_keys(keys: Iterable[str]) -> list[str]:
    """Fold numbered keys the way transformers' report does (``update_key_name``):
    ``layers.{0, 1}.w`` for a few indices, ``layers.{0...11}.w`` for more than ten, one
    index as itself.

    >>> fold_keys([f"layers.{i}.w" for i in range(12)] + ["layers.0.b", "head.w"])
    ['layers.{0...11}.w', 'layers.0.b', 'head.w']
    >>> fold_keys(["a.0.w", "a.1.w"])
    ['a.{0, 1}.w']
    """
    buckets: dict[str, list[set[int]]] = {}
    for key in keys:
        digits = _DIGITS.findall(key)
        pattern = _DIGITS.sub("*", key)
        sets = buckets.setdefault(pattern, [])
        for i, d in enumerate(digits):
            if len(sets) <= i:
                sets.append(set())
            sets[i].add(int(d))
    out = []
    for pattern, sets in buckets.items():
        parts = pattern.split("*")
        text = parts[0]
        for i in range(1, len(parts)):
            values = sorted(sets[i - 1])
            if len(values) == 1:
                text += str(values[0])
            elif len(values) > 10:
                text += "{" + f"{values[0]}...{values[-1]}" + "}"
            else:
                text += "{" + ", ".join(map(str, values)) + "}"
            text += parts[i]
        out.append(text)
    return out
