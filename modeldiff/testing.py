"""Assertions for other projects' test suites: structure, head deltas, save/load, weights.

Every helper raises a plain ``AssertionError`` whose message is the relevant diff and nothing
more (no reprs of models or tensors), returns ``None`` on success, and hides itself from
pytest tracebacks. They work with or without pytest; the pytest plugin
(:mod:`modeldiff.pytest_plugin`) adds readable ``assert walk(a) == walk(b)`` failures and the
``model_snapshot`` fixture, whose logic (:class:`ModelSnapshot`) lives here.

>>> from torch import nn
>>> from modeldiff.testing import assert_same_structure
>>> assert_same_structure(nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2)))
>>> assert_same_structure(nn.Sequential(nn.Linear(2, 2)),
...                       nn.Sequential(nn.Linear(2, 2), nn.ReLU()), align=None)
Traceback (most recent call last):
...
AssertionError: Sequential -> Sequential  (path to path)
+ 1  ReLU()

This module imports torch only inside the helpers that compare tensors.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from modeldiff._core.compare import IGNORED_CONFIG_KEYS
from modeldiff._core.graph import ModelGraph

__all__ = [
    "ModelSnapshot",
    "assert_head_delta",
    "assert_loads",
    "assert_roundtrip",
    "assert_same_structure",
    "assert_weights_changed",
    "assert_weights_equal",
    "explain_compare",
    "read_snapshot",
    "snapshot_json",
]

# Longest list of tensors or diff lines a message shows; the rest is counted, not printed,
# so a failure on a 7B model stays a screenful.
MAX_LINES = 40


# -- structure -----------------------------------------------------------------------------
def assert_same_structure(a: Any, b: Any, *, align: str | tuple[str, str] | None = "auto",
                          ignore: Sequence[str] = ()) -> None:
    """Fail unless ``modeldiff.diff(a, b, align=align, ignore=ignore)`` is empty.

    ``a`` and ``b`` are anything :func:`modeldiff.walk` reads (modules, configs, names,
    checkpoint folders, graphs). The message is the diff tree.

    >>> from torch import nn
    >>> assert_same_structure(nn.Sequential(nn.Dropout(0.1)), nn.Sequential(nn.Dropout(0.3)))
    Traceback (most recent call last):
    ...
    AssertionError: Sequential -> Sequential  (path to path)
    ~ 0  Dropout  p 0.1 -> 0.3
    """
    __tracebackhide__ = True
    from modeldiff._compare import diff

    d = diff(a, b, align=align, ignore=ignore)
    if d:
        raise AssertionError(_clip(str(d)))


def assert_head_delta(base: Any, head: Any, *, modules: Iterable[str]) -> None:
    """Fail unless the module roots ``head`` adds on top of ``base`` are exactly ``modules``
    (``modeldiff.head_delta(base, head).modules``, compared as sets).

    The message names the missing and unexpected roots, then prints the diff tree.

    >>> import modeldiff
    >>> head = modeldiff.walk("distilbert", task="sequence-classification")
    >>> assert_head_delta("distilbert", head, modules={"pre_classifier", "classifier", "dropout"})
    >>> assert_head_delta("distilbert", head, modules={"classifier"})
    Traceback (most recent call last):
    ...
    AssertionError: head delta of DistilBertForSequenceClassification over DistilBertModel is not as expected
    unexpected (added by the head, not expected): pre_classifier, dropout
    DistilBertModel -> DistilBertForSequenceClassification  (base aligned at distilbert)
    + pre_classifier  Linear(in_features=768, out_features=768)  590,592 params
    + classifier      Linear(in_features=768, out_features=2)      1,538 params
    + dropout         Dropout(p=0.2)
    """
    __tracebackhide__ = True
    from modeldiff._compare import diff, head_delta

    expected = (modules,) if isinstance(modules, str) else tuple(modules)
    gb, gh = _graph(base), _graph(head)
    delta = head_delta(gb, gh)
    got = set(delta.modules)
    missing = [m for m in expected if m not in got]
    unexpected = [m for m in delta.modules if m not in set(expected)]
    if not missing and not unexpected:
        return
    lines = [f"head delta of {gh.root.cls} over {gb.root.cls} is not as expected"]
    if missing:
        lines.append(f"missing (expected, not added by the head): {', '.join(missing)}")
    if unexpected:
        lines.append(f"unexpected (added by the head, not expected): {', '.join(unexpected)}")
    lines.append(str(diff(gb, gh)))
    raise AssertionError(_clip("\n".join(lines)))


def assert_loads(checkpoint: Any, target: Any, *, task: str | None = None,
                 allow_new: bool | Sequence[str] = False, allow_unused: bool = False) -> None:
    """Fail unless ``from_pretrained(checkpoint)`` into ``target`` loads every weight, as
    :func:`modeldiff.load_report` predicts it from headers (nothing is loaded).

    ``allow_new``: ``True`` accepts what the report judges expected (a new head for the
    task: missing keys outside the encoder); a list of glob patterns accepts exactly the
    missing keys that match one (``["classifier.*"]``); ``False`` (default) accepts none.
    ``allow_unused``: accept checkpoint keys the class has no use for (another task's head).
    A shape mismatch always fails (transformers raises on it), and so does any key missing
    inside the encoder. Renamed keys (an older layout) load and pass.

    >>> import modeldiff
    >>> base = modeldiff.walk("distilbert")
    >>> assert_loads(base, "sequence-classification", allow_new=["*classifier.*"])
    >>> assert_loads(base, "sequence-classification")
    Traceback (most recent call last):
    ...
    AssertionError: DistilBertModel -> DistilBertForSequenceClassification: 4 missing (ok)
    MISSING (not allowed): pre_classifier.weight, pre_classifier.bias, classifier.weight, ...
    """
    __tracebackhide__ = True
    from modeldiff._core.load_report import Status, Verdict, fold_keys
    from modeldiff._loading import load_report

    report = load_report(checkpoint, target, task=task)
    problems: list[str] = []
    for g in report.groups:
        if g.status is Status.MISSING:
            if allow_new is True and g.expected:
                continue
            if allow_new is not True and allow_new is not False:
                left = [k for k in g.keys if not any(fnmatch.fnmatchcase(k, p)
                                                     for p in allow_new)]
                if not left:
                    continue
                problems.append(f"MISSING (not allowed): {', '.join(fold_keys(left))}")
                continue
            why = "not allowed" if g.expected else str(g.verdict)
            problems.append(f"MISSING ({why}): {', '.join(fold_keys(g.keys))}")
        elif g.status is Status.UNEXPECTED:
            if allow_unused and g.verdict is Verdict.UNUSED_HEAD:
                continue
            why = "not allowed" if g.expected else str(g.verdict)
            problems.append(f"UNEXPECTED ({why}): {', '.join(fold_keys(g.keys))}")
        elif g.status is Status.MISMATCH:
            problems += [f"MISMATCH {m.key}: checkpoint {list(m.checkpoint_shape)} vs model "
                         f"{list(m.model_shape)}" for m in report.mismatched]
    if not problems:
        return
    lines = [report.headline(), *problems, "", report.table()]
    raise AssertionError(_clip("\n".join(lines)))


# -- save / load ---------------------------------------------------------------------------
def assert_roundtrip(model: Any, **roundtrip_kwargs: Any) -> None:
    """Fail unless ``modeldiff.roundtrip(model, **roundtrip_kwargs)`` reports no problem.

    The message lists the report's problems (what did not survive ``save_pretrained`` ->
    ``from_pretrained``), one a line.

    >>> import torch
    >>> from transformers import DistilBertModel
    >>> from modeldiff._tiny import tiny_config
    >>> _ = torch.manual_seed(0)
    >>> assert_roundtrip(DistilBertModel(tiny_config("distilbert")))
    """
    __tracebackhide__ = True
    from modeldiff._roundtrip import roundtrip

    report = roundtrip(model, **roundtrip_kwargs)
    if report.ok:
        return
    lines = [f"round-trip of {report.model} ({report.dtype}) failed: "
             f"{len(report.problems)} problem(s)"]
    lines += [f"  {p}" for p in report.problems]
    raise AssertionError(_clip("\n".join(lines)))


# -- weights -------------------------------------------------------------------------------
def assert_weights_equal(a: Any, b: Any, *, rtol: float = 0.0, atol: float = 0.0,
                         only: Sequence[str] | str | None = None) -> None:
    """Fail unless ``a`` and ``b`` hold the same tensors with the same values.

    ``a`` and ``b`` are each an ``nn.Module`` (its ``state_dict()``), a state dict (name ->
    tensor) or a checkpoint folder / weight file (streamed, never loaded whole when both
    sides are files or modules). With ``rtol = atol = 0`` (the default) tensors must be
    bit-identical; otherwise every value must satisfy ``|b - a| <= atol + rtol * |b|``.
    ``only``: glob patterns (fnmatch) over tensor names restricting the comparison.
    A name that one module side holds only as a tied alias (``save_pretrained`` writes one
    copy of a tied tensor) is not required on the other side.

    The message lists names missing on either side and every differing tensor with its
    number of changed values, max abs difference, relative change and cosine.

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> m = nn.Linear(3, 2)
    >>> before = {k: v.clone() for k, v in m.state_dict().items()}
    >>> assert_weights_equal(before, m)
    >>> with torch.no_grad():
    ...     _ = m.bias.add_(1e-7)
    >>> assert_weights_equal(before, m, atol=1e-6)
    >>> assert_weights_equal(before, m)
    Traceback (most recent call last):
    ...
    AssertionError: weights differ: 1 of 2 tensors compared
      bias: 2 of 2 values changed, max |b-a| ..., rel change ..., cosine 1.000000
    """
    __tracebackhide__ = True
    for arg, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and 0 <= tol < float("inf")):
            from modeldiff.errors import InvalidArgumentError

            raise InvalidArgumentError(f"assert_weights_equal({arg})", tol, "a finite number >= 0")
    patterns = _patterns(only)
    na, aliases_a = _names(a, "a")
    nb, aliases_b = _names(b, "b")

    def keep(n: str) -> bool:
        return patterns is None or any(fnmatch.fnmatchcase(n, p) for p in patterns)

    common = [n for n in na if n in nb and keep(n)]
    only_a = [n for n in na if n not in nb and keep(n) and n not in aliases_a]
    only_b = [n for n in nb if n not in na and keep(n) and n not in aliases_b]
    lines: list[str] = []
    if patterns is not None and not common and not only_a and not only_b:
        lines.append(f"no tensor matches only={list(patterns)}")
        lines += _suggestions(patterns, [*na, *nb])
    lines += _listed(f"missing in b ({len(only_a)}):", only_a)
    lines += _listed(f"unexpected in b ({len(only_b)}):", only_b)
    stats = _weight_stats(a, b, common)
    bad = [s for s in stats if not s.equal]
    if bad and (rtol or atol):
        with _reading(a) as ga, _reading(b) as gb:
            bad = [s for s in bad if not _within(ga, gb, s, rtol=rtol, atol=atol)]
    if bad:
        within = f" (rtol={rtol:g}, atol={atol:g})" if rtol or atol else ""
        lines.insert(0, f"weights differ{within}: {len(bad)} of {len(stats)} tensors compared")
        lines += _listed(None, [str(s) for s in bad])
    elif lines:
        lines.insert(0, "weights differ: the two sides do not hold the same tensors")
    if lines:
        raise AssertionError(_clip("\n".join(lines)))


def assert_weights_changed(before: Any, after: Any, *, changed: Sequence[str] | str = (),
                           frozen: Sequence[str] | str = ()) -> None:
    """Fail unless every tensor matching ``changed`` moved and every one matching ``frozen``
    is bit-identical: "did fine-tuning train what it should, and leave frozen layers alone?"

    ``before`` and ``after`` are modules, state dicts or checkpoint folders; ``before`` is
    typically ``copy.deepcopy(model)`` or ``{k: v.clone() for k, v in
    model.state_dict().items()}`` taken before training. Patterns are fnmatch globs over
    state-dict names (``"classifier.*"``, ``"*.attention.*"``). A pattern that matches no
    tensor at all fails too, with the closest names, so a typo cannot pass silently.

    >>> import copy, torch
    >>> from torch import nn
    >>> model = nn.ModuleDict({"embed": nn.Embedding(5, 2), "head": nn.Linear(2, 2)})
    >>> before = copy.deepcopy(model)
    >>> with torch.no_grad():
    ...     _ = model["head"].weight.mul_(2)
    >>> assert_weights_changed(before, model, changed=["head.weight"], frozen=["embed.*"])
    >>> assert_weights_changed(before, model, changed=["head.*"], frozen=["embd.*"])
    Traceback (most recent call last):
    ...
    AssertionError: fine-tuning did not change what it should (2 problem(s))
    should have changed, but are bit-identical (1 of 2 matching ['head.*']):
      head.bias
    pattern matches no tensor: frozen 'embd.*' (did you mean 'embed.*'?)
    """
    __tracebackhide__ = True
    want_changed, want_frozen = _patterns(changed) or (), _patterns(frozen) or ()
    names, _ = _names(before, "before")
    after_names, _ = _names(after, "after")
    lines: list[str] = []
    problems = 0
    unmatched = [(kind, p) for kind, pats in (("changed", want_changed), ("frozen", want_frozen))
                 for p in pats if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    in_changed = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in want_changed)]
    in_frozen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in want_frozen)]
    wanted = list(dict.fromkeys([*in_changed, *in_frozen]))
    gone = [n for n in wanted if n not in after_names]
    by_name = {s.name: s for s in _weight_stats(before, after, [n for n in wanted
                                                                  if n in after_names])}
    moved = [by_name[n] for n in in_frozen if n in by_name and not by_name[n].equal]
    still = [n for n in in_changed if n in by_name and by_name[n].equal]
    if moved:
        problems += 1
        lines.append(f"should be frozen, but changed ({len(moved)} of {len(in_frozen)} "
                     f"matching {list(want_frozen)}):")
        lines += _listed(None, [str(s) for s in moved])
    if still:
        problems += 1
        lines.append(f"should have changed, but are bit-identical ({len(still)} of "
                     f"{len(in_changed)} matching {list(want_changed)}):")
        lines += _listed(None, still)
    if gone:
        problems += 1
        lines += _listed(f"missing after training ({len(gone)}):", gone)
    for kind, p in unmatched:
        problems += 1
        hint = _close_patterns(p, names)
        lines.append(f"pattern matches no tensor: {kind} {p!r}"
                     + (f" (did you mean {' or '.join(repr(h) for h in hint)}?)" if hint else ""))
    if lines:
        lines.insert(0, f"fine-tuning did not change what it should ({problems} problem(s))")
        raise AssertionError(_clip("\n".join(lines)))


def _graph(obj: Any) -> ModelGraph:
    if isinstance(obj, ModelGraph):
        return obj
    from modeldiff._inputs import walk  # torch only when a side is not a graph yet

    return walk(obj)


def _patterns(p: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if p is None:
        return None
    return (p,) if isinstance(p, str) else tuple(p)


def _is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _names(obj: Any, arg: str) -> tuple[list[str], set[str]]:
    """State-dict names of one side, and those of them that are tied aliases (a later name
    of a tensor object already listed)."""
    if isinstance(obj, Mapping):
        return list(obj), set()
    if _is_path(obj):
        from modeldiff._walk.checkpoint import read_header, read_tensor_index

        p = Path(obj).expanduser()
        if p.is_file() and p.suffix == ".safetensors":
            return list(read_header(p)), set()
        if p.is_file():
            from modeldiff._walk.checkpoint import load_bin

            return list(load_bin(p, map_location="meta")), set()
        return list(read_tensor_index(p)), set()
    import torch
    from torch import nn

    if not isinstance(obj, nn.Module):
        from modeldiff.errors import InputTypeError

        raise InputTypeError(arg, obj, "an nn.Module, a state dict or a checkpoint folder")
    seen: set[int] = set()
    aliases: set[str] = set()
    names: list[str] = []
    for name, t in obj.state_dict(keep_vars=True).items():
        names.append(name)
        if isinstance(t, torch.Tensor):
            if id(t) in seen:
                aliases.add(name)
            seen.add(id(t))
    return names, aliases


def _weight_stats(a: Any, b: Any, names: Sequence[str]) -> tuple[Any, ...]:
    """TensorStats per name: modeldiff's streamed engine for modules and files; per tensor
    (tensor_stats) when a side is a state dict, which the engine does not read."""
    if not names:
        return ()
    if not isinstance(a, Mapping) and not isinstance(b, Mapping):
        from modeldiff._walk.tensors import compare_weights

        return compare_weights(a, b, [(n, n) for n in names]).tensors
    from modeldiff._walk.tensors import tensor_stats

    with _reading(a) as ga, _reading(b) as gb:
        return tuple(tensor_stats(n, ga(n), gb(n)) for n in names)


@contextlib.contextmanager
def _reading(obj: Any) -> Iterator[Callable[[str], Any]]:
    """A tensor getter for one side, valid in the ``with`` block: a checkpoint is opened
    once for all the names read from it."""
    if _is_path(obj):
        from modeldiff._walk.tensors import tensor_reader

        with tensor_reader(Path(obj).expanduser()) as read:
            yield read
    else:
        yield (obj if isinstance(obj, Mapping) else obj.state_dict()).__getitem__


def _within(ga: Callable[[str], Any], gb: Callable[[str], Any], s: Any, *, rtol: float,
            atol: float) -> bool:
    """``|b - a| <= atol + rtol * |b|`` for every value of one differing tensor (``ga`` and
    ``gb`` read it from each side, see :func:`_reading`)."""
    if not s.comparable:
        return False
    import torch

    x = ga(s.name).detach().cpu().to(torch.float64)
    y = gb(s.name).detach().cpu().to(torch.float64)
    same = (x == y) | (x.isnan() & y.isnan())
    return bool((same | ((y - x).abs() <= atol + rtol * y.abs())).all())


def _close_patterns(pattern: str, names: Sequence[str]) -> list[str]:
    """``module.*`` globs (for a glob) or names (for a plain name) close to a pattern that
    matched nothing."""
    glob = any(c in pattern for c in "*?[")
    candidates: dict[str, None] = {}
    for n in names:
        if not glob:
            candidates[n] = None
            continue
        parts = n.split(".")
        for i in range(1, len(parts)):
            candidates[".".join(parts[:i]) + ".*"] = None
    return difflib.get_close_matches(pattern, list(candidates), n=3, cutoff=0.75)


def _suggestions(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    out = []
    for p in patterns:
        hint = _close_patterns(p, names)
        if hint:
            out.append(f"  {p!r}: did you mean {' or '.join(repr(h) for h in hint)}?")
    return out


def _listed(title: str | None, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    lines = [title] if title else []
    lines += [f"  {x}" for x in items[:MAX_LINES]]
    if len(items) > MAX_LINES:
        lines.append(f"  ... and {len(items) - MAX_LINES} more")
    return lines


def _clip(text: str, limit: int = 4 * MAX_LINES) -> str:
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    return "\n".join([*lines[:limit], f"... {len(lines) - limit} more lines"])


# -- pytest's assertion rewriting ------------------------------------------------------------
def explain_compare(left: Any, right: Any) -> list[str] | None:
    """The lines pytest shows for a failed ``left == right`` of two ModelGraphs, GraphDiffs or
    HeadDeltas (``None`` for anything else): the structural diff tree, not two reprs.

    >>> from torch import nn
    >>> import modeldiff
    >>> a = modeldiff.walk(nn.Sequential(nn.Linear(2, 2)))
    >>> b = modeldiff.walk(nn.Sequential(nn.Linear(2, 3)))
    >>> print("\\n".join(explain_compare(a, b)))
    ModelGraph == ModelGraph failed: the structures differ
    Sequential -> Sequential  (path to path)
    ~ 0  Linear  out_features 2 -> 3; weight shape (2, 2) -> (3, 2); bias shape (2,) -> (3,)
    """
    kind = type(left).__name__
    if type(left) is not type(right):
        return None
    if isinstance(left, ModelGraph):
        from modeldiff._compare import diff

        d = diff(left, right, align=None)
        if d:
            return [f"{kind} == {kind} failed: the structures differ",
                    *_clip_lines(str(d).splitlines())]
        # Equal structure, different facts the diff does not show (qualname, totals ...).
        return [f"{kind} == {kind} failed: no structural difference; the JSON differs:",
                *_json_diff(left.to_json(), right.to_json())]
    from modeldiff._core.diff import GraphDiff
    from modeldiff._core.head_delta import HeadDelta

    if isinstance(left, HeadDelta):
        # Field by field, as sets: which module roots and keys only one side has.
        lines = [f"{kind} == {kind} failed (- left only, + right only):"]
        for f in HeadDelta.__slots__:
            a, b = getattr(left, f), getattr(right, f)
            if a == b:
                continue
            if isinstance(a, str):
                lines.append(f"{f}: {a!r} != {b!r}")
                continue
            lines.append(f"{f}:" + "".join(f" -{x}" for x in a if x not in b)
                         + "".join(f" +{x}" for x in b if x not in a)
                         + (" (same items, other order)" if set(a) == set(b) else ""))
        return _clip_lines(lines)
    if isinstance(left, GraphDiff):
        text_l, text_r = str(left), str(right)
        if text_l == text_r:
            text_l, text_r = repr(left), repr(right)
        body = [line for line in difflib.unified_diff(text_l.splitlines(), text_r.splitlines(),
                                                      lineterm="", n=0)
                if not line.startswith(("---", "+++", "@@"))]
        return [f"{kind} == {kind} failed (- left, + right):", *_clip_lines(body)]
    return None


def _clip_lines(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"... {len(lines) - MAX_LINES} more lines "
            "(print(modeldiff.diff(left, right, align=None)) shows all)"]


def _json_diff(a: str, b: str) -> list[str]:
    return _clip_lines(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "left",
                                                 "right", lineterm="", n=1)))


# -- snapshots -------------------------------------------------------------------------------


def snapshot_json(model: Any) -> str:
    """The JSON a snapshot stores: ``walk(model).to_json()`` without what depends on the host
    or library versions (``source``, tensor devices, volatile config keys), so it is
    byte-identical wherever the test runs. ``ModelGraph.from_json`` reads it back.

    >>> from torch import nn
    >>> text = snapshot_json(nn.Sequential(nn.Linear(2, 2)))
    >>> '"device"' in text, '"source": ""' in text
    (False, True)
    >>> ModelGraph.from_json(text)["0"].signature()
    'Linear(in_features=2, out_features=2, bias=True)'
    """
    data = _graph(model).to_dict()
    data["source"] = ""
    for node in data["nodes"]:
        for t in node.get("tensors", ()):
            t.pop("device", None)
    if data.get("hf"):
        config = data["hf"]["config"]
        for k in IGNORED_CONFIG_KEYS:
            config.pop(k, None)
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


# A snapshot file is a few KB to a few MB; anything larger is not one modeldiff wrote.
MAX_SNAPSHOT_BYTES = 64 * 2**20


def read_snapshot(path: str | os.PathLike[str]) -> str:
    """The text of a snapshot file, or a :class:`~modeldiff.errors.SchemaError` naming the file
    when it is not one (not UTF-8, larger than ``MAX_SNAPSHOT_BYTES``, not a regular file).

    >>> import pathlib, tempfile
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "test_x.json"
    >>> _ = bad.write_bytes(b"\\xff\\xfe")
    >>> read_snapshot(bad)
    Traceback (most recent call last):
    ...
    modeldiff.errors.SchemaError: model snapshot .../test_x.json is not UTF-8 text (byte 0xff at ...
    """
    from modeldiff.errors import SchemaError

    p = Path(path)
    fix = "delete it or run with --modeldiff-update to rewrite it"
    if not p.is_file():
        raise SchemaError(f"model snapshot {p} is not a regular file; {fix}")
    size = p.stat().st_size
    if size > MAX_SNAPSHOT_BYTES:
        raise SchemaError(f"model snapshot {p} is {size:,} bytes, more than the "
                          f"{MAX_SNAPSHOT_BYTES:,} a snapshot may have "
                          f"(modeldiff.testing.MAX_SNAPSHOT_BYTES); {fix}")
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError(f"model snapshot {p} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                          f"offset {e.start}); {fix}") from e


Tolerances = Mapping[str, Mapping[str, float]]


def _check_tolerances(tolerances: Tolerances | None) -> dict[str, tuple[float, float]]:
    from modeldiff.errors import InvalidArgumentError

    out: dict[str, tuple[float, float]] = {}
    for key, tol in (tolerances or {}).items():
        if not isinstance(tol, Mapping) or set(tol) - {"atol", "rtol"}:
            raise InvalidArgumentError(f"tolerances[{key!r}]", tol,
                                       'a mapping with "atol" and/or "rtol"')
        atol, rtol = tol.get("atol", 0.0), tol.get("rtol", 0.0)
        for name, v in (("atol", atol), ("rtol", rtol)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise InvalidArgumentError(f"tolerances[{key!r}][{name!r}]", v,
                                           "a finite number >= 0")
        out[str(key)] = (float(atol), float(rtol))
    return out


def _close(a: Any, b: Any, tol: dict[str, tuple[float, float]], key: str | None) -> bool:
    """``a == b`` for snapshot JSON data, numbers under a key of ``tol`` within its
    ``|b - a| <= atol + rtol * |a|`` (pytest-regressions' rule: relative to the stored value).
    An ``attrs`` entry ``[name, value]`` counts as key ``name``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol, k) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        if key == "attrs":
            return all(isinstance(x, list) and isinstance(y, list) and len(x) == len(y) == 2
                       and x[0] == y[0] and _close(x[1], y[1], tol, str(x[0]))
                       for x, y in zip(a, b, strict=True))
        return all(_close(x, y, tol, key) for x, y in zip(a, b, strict=True))
    numbers = (int, float)
    if (key in tol and isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        atol, rtol = tol[key]
        return abs(b - a) <= atol + rtol * abs(a)
    return type(a) is type(b) and a == b


def _safe_name(name: str) -> str:
    """A test name as a file name. Characters unsafe in file names become ``_``; when that
    changed the name, or the name is very long, a short hash of the original name follows,
    so two ids that differ only in such characters never share a file:
    ``test_x[a/b]`` -> ``test_x[a_b]-<hash>``, ``test_x[a_b]`` stays as it is.

    >>> _safe_name("test_x[a_b]"), _safe_name("test_x[a/b]") != _safe_name("test_x[a_b]")
    ('test_x[a_b]', True)
    """
    safe = re.sub(r"[^\w.\-\[\]]", "_", name, flags=re.ASCII).lstrip(".")
    if safe == name and len(name) <= 120:
        return name
    import hashlib

    return f"{safe[:120]}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


class ModelSnapshot:
    """Snapshot assertions for model structure (the ``model_snapshot`` fixture).

    Snapshots live in ``directory`` as ``<name>.json`` for the first ``assert_match`` of a
    test, ``<name>.1.json``, ``<name>.2.json`` ... for the next ones (syrupy's convention),
    or ``<name>.<snapshot_name>.json`` when named. A name with characters unsafe in file names
    gets a hash of the original name, so two test ids never share a file. With
    ``update=True`` a missing, different or corrupt snapshot is written instead of failing;
    ``written`` lists the files written, ``used`` every file read or written.

    ``tolerances`` (per call, in the manner of pytest-regressions): ``{key: {"atol": a,
    "rtol": r}}`` lets a numeric field named ``key`` (a module attribute such as ``eps`` or
    ``p``, a config key such as ``layer_norm_eps``) differ by ``atol + rtol * |stored|``.

    >>> import tempfile
    >>> from torch import nn
    >>> folder = tempfile.mkdtemp()
    >>> ModelSnapshot(folder, "test_net", update=True).assert_match(nn.Linear(2, 2))
    >>> ModelSnapshot(folder, "test_net").assert_match(nn.Linear(2, 2))
    >>> ModelSnapshot(folder, "test_net").assert_match(nn.Linear(2, 3))
    Traceback (most recent call last):
    ...
    AssertionError: model snapshot .../test_net.json does not match (snapshot -> current):
    Linear -> Linear  (path to path)
    ~ (root)  Linear  out_features 2 -> 3; weight shape (2, 2) -> (3, 2); bias shape (2,) -> (3,)
    To accept the current model, run: pytest <this test> --modeldiff-update
    >>> ModelSnapshot(folder, "test_drop", update=True).assert_match(nn.Dropout(0.1))
    >>> ModelSnapshot(folder, "test_drop").assert_match(nn.Dropout(0.1 + 1e-9),
    ...                                                 tolerances={"p": {"atol": 1e-6}})
    """

    def __init__(self, directory: str | os.PathLike[str], name: str, *, update: bool = False,
                 command: str | None = None) -> None:
        self.directory = Path(directory)
        self.name = _safe_name(name)
        self.update = update
        self.command = command or "pytest <this test> --modeldiff-update"
        self.written: list[Path] = []
        self.used: list[Path] = []
        self._index = 0

    def __repr__(self) -> str:
        return f"<ModelSnapshot {self.directory / self.name}.json>"

    def path_for(self, snapshot_name: str | None = None) -> Path:
        """The file the next unnamed ``assert_match`` (or the named one) uses."""
        if snapshot_name is not None:
            return self.directory / f"{self.name}.{_safe_name(snapshot_name)}.json"
        suffix = f".{self._index}" if self._index else ""
        return self.directory / f"{self.name}{suffix}.json"

    def assert_match(self, model: Any, *, name: str | None = None,
                     tolerances: Tolerances | None = None) -> None:
        """Fail unless ``model`` (anything walk reads) has the snapshot's structure, numeric
        fields named in ``tolerances`` compared within their ``atol``/``rtol``."""
        __tracebackhide__ = True
        tol = _check_tolerances(tolerances)
        path = self.path_for(name)
        if name is None:
            self._index += 1
        self.used.append(path)
        current = snapshot_json(model)
        stored: str | None = None
        if path.exists() or path.is_symlink():
            try:
                stored = read_snapshot(path)
                if stored == current or _matches(stored, current, tol, path):
                    return
            except Exception:
                if not self.update:  # a corrupt snapshot: --modeldiff-update rewrites it
                    raise
        if self.update:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(current, encoding="utf-8")
            tmp.replace(path)
            self.written.append(path)
            return
        if stored is None:
            # modeldiff before 0.2 kept snapshots in __snapshots__/, which syrupy owns
            legacy = path.parent.parent.parent / "__snapshots__" / path.parent.name / path.name
            moved = (f"\nAn older modeldiff kept it at {legacy}: move that file here to keep it"
                     if path.parent.parent.name == "__model_snapshots__" and legacy.is_file()
                     else "")
            raise AssertionError(f"no model snapshot at {path}{moved}\n"
                                 f"To create it, run: {self.command}")
        from modeldiff._compare import diff

        old, new = _graph_of(stored, path), ModelGraph.from_json(current)
        d = diff(old, new, align=None)
        body = str(d).splitlines() if d else [
            "no structural difference; the stored JSON differs:",
            *_json_diff(stored, current)]
        within = f" (tolerances {dict(tolerances or {})})" if tol else ""
        raise AssertionError("\n".join([
            f"model snapshot {path} does not match{within} (snapshot -> current):",
            *_clip_lines(body), f"To accept the current model, run: {self.command}"]))


def _matches(stored: str, current: str, tol: dict[str, tuple[float, float]], path: Path) -> bool:
    old = _graph_of(stored, path)  # validates the stored file (a typed error when corrupt)
    if old == ModelGraph.from_json(current):
        return True
    return bool(tol) and _close(json.loads(stored), json.loads(current), tol, None)


def _graph_of(text: str, path: Path) -> ModelGraph:
    from modeldiff.errors import SchemaError

    try:
        return ModelGraph.from_json(text)
    except (SchemaError, ValueError, TypeError, KeyError, RecursionError) as e:
        raise SchemaError(f"model snapshot {path} is not readable: {e}; delete it or run "
                          "with --modeldiff-update to rewrite it") from e
