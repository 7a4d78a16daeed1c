"""Does a model survive ``save_pretrained`` -> ``from_pretrained``? :func:`roundtrip` says.

It saves the model (and tokenizer) into a temporary folder, lists every file written, loads the
folder back with the model's own class and the same dtype, and compares structure, state dict
(bit for bit, including which tensors share storage), config and eval-mode outputs.

>>> import torch
>>> from transformers import DistilBertConfig, DistilBertModel
>>> _ = torch.manual_seed(0)
>>> model = DistilBertModel(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64,
...                                          vocab_size=100))
>>> report = roundtrip(model)
>>> report.ok, [f.name for f in report.files]
(True, ['config.json', 'model.safetensors'])
>>> [n.key for n in report.normalised]
['_name_or_path', 'architectures', 'dtype']

(The module is ``saveload``, not ``roundtrip``: a submodule named like the function it exports
would shadow that function in the package namespace.)
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import inspect
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modeldiff._compat import dtype_kwarg
from modeldiff._core.compare import (
    ABSENT,
    IGNORED_CONFIG_KEYS,
    IGNORED_CONFIG_REASONS,
    compare_mappings,
    fmt_value,
    same_value,
)
from modeldiff._core.graph import StrEnum, human_bytes
from modeldiff._core.report import Report, register
from modeldiff._walk.tensors import TensorStats, tensor_stats
from modeldiff.errors import (
    InputTypeError,
    InvalidArgumentError,
    ModelCodeError,
    NotMaterializedError,
    RoundTripError,
)

__all__ = [
    "SAMPLE_SENTENCES",
    "FileEntry",
    "Finding",
    "Normalised",
    "OutputCheck",
    "Problem",
    "RoundTripReport",
    "roundtrip",
]

SAMPLE_SENTENCES = (
    "A model should come back from disk exactly as it went in.",
    "The quick brown fox jumps over the lazy dog.",
)

# torch.testing.assert_close's default (rtol, atol) per dtype, which transformers' own
# save/load tests use. Spelled out because torch keeps its table private.
_ASSERT_CLOSE_TOL: Mapping[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}


class Finding(StrEnum):
    """What kind of thing did not survive the round-trip."""

    LOAD = "load"  # from_pretrained failed, or reported missing / unexpected / mismatched keys
    STRUCTURE = "structure"  # module tree differs
    MISSING = "missing"  # a state-dict tensor is gone after reloading
    UNEXPECTED = "unexpected"  # a state-dict tensor appeared after reloading
    SHAPE = "shape"
    DTYPE = "dtype"
    VALUES = "values"
    SHARING = "sharing"  # tensors that shared storage (tied weights) no longer do, or vice versa
    CONFIG = "config"
    OUTPUTS = "outputs"
    USER_MODEL = "user-model"  # the caller's model or config was changed by the round-trip


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One finding: ``subject`` names the tensor, config key, output or module path."""

    kind: Finding
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.message}"



@register
@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """A file written by the save: path relative to the folder, size, sha256, and who wrote it
    (``"model"`` or ``"tokenizer"``)."""

    name: str
    size: int
    sha256: str
    source: str = "model"



@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Normalised:
    """A config key left out of the comparison on purpose, with its values and the reason."""

    key: str
    before: Any
    after: Any
    reason: str



@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputCheck:
    """One output tensor before vs after: bit-identical, or how far apart and whether that
    passes ``torch.testing.assert_close``'s default tolerance for its dtype."""

    name: str
    equal: bool
    max_abs: float
    within_tolerance: bool
    rtol: float
    atol: float


    def __str__(self) -> str:
        if self.equal:
            return f"{self.name}: bit-identical"
        verdict = "within" if self.within_tolerance else "OUTSIDE"
        return (f"{self.name}: max |after-before| {self.max_abs:.3g}, {verdict} assert_close "
                f"tolerance (rtol={self.rtol:g}, atol={self.atol:g})")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RoundTripReport(Report):
    """The result of :func:`roundtrip`.

    Its findings (the result protocol) are its ``problems``: like every result, a report is
    truthy when it found something, so a clean round-trip is falsy. ``ok`` is the positively
    named property (``assert report.ok``).
    """

    SCHEMA = "modeldiff.roundtrip"

    model: str
    dtype: str
    folder: str | None = None  # the kept workdir; None when a temporary folder was used
    files: tuple[FileEntry, ...] = ()
    problems: tuple[Problem, ...] = ()
    normalised: tuple[Normalised, ...] = ()
    outputs: tuple[OutputCheck, ...] = ()
    tensors_compared: int = 0
    tensors_identical: int = 0
    shared_groups: tuple[tuple[str, ...], ...] = ()
    inputs: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def model_files(self) -> tuple[FileEntry, ...]:
        return tuple(f for f in self.files if f.source == "model")

    def _findings(self) -> int:
        return len(self.problems)

    def _extra_json(self) -> dict[str, Any]:
        return {"ok": self.ok}

    def headline(self) -> str:
        verdict = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return f"round-trip of {self.model} ({self.dtype}): {verdict}"

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"round-trip of {self.model} ({self.dtype}): {verdict}", "files written:"]
        w = max((len(f.name) for f in self.files), default=0)
        for f in self.files:
            lines.append(f"  {f.name.ljust(w)}  {human_bytes(f.size):>9}  sha256 {f.sha256[:16]}"
                         + ("  (tokenizer)" if f.source != "model" else ""))
        lines.append(f"state dict: {self.tensors_compared} tensors, "
                     f"{self.tensors_identical} bit-identical"
                     + (f"; shared storage kept: {len(self.shared_groups)} group(s)"
                        if self.shared_groups else ""))
        if self.normalised:
            lines.append("config: normalised " + ", ".join(
                f"{n.key} ({fmt_value(n.before, 50)} -> {fmt_value(n.after, 50)})" for n in self.normalised))
        if self.outputs:
            lines.append(f"outputs (eval mode, {self.inputs}):")
            lines += [f"  {o}" for o in self.outputs]
        lines += [f"note: {n}" for n in self.notes]
        if self.problems:
            lines.append("problems:")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)



def roundtrip(model: Any, *, tokenizer: Any = None, inputs: Any = None,
              workdir: str | os.PathLike[str] | None = None,
              max_shard_size: int | str | None = None,
              task: str | None = None) -> RoundTripReport:
    """Save ``model`` with ``save_pretrained``, load it back, and report what changed.

    ``model`` is a ``PreTrainedModel`` with real weights, a checkpoint folder (loaded with
    its own tokenizer when it has one; ``task`` picks the head class, else the class its
    config names), or a ``model_type`` such as ``"distilbert"`` (built on the CPU with
    seeded weights, ``task`` picking the head). Like every result, the report is truthy
    when it found something (problems); ``report.ok`` says the round-trip was clean.

    ``tokenizer`` is saved alongside and, when ``inputs`` is not given, encodes
    :data:`SAMPLE_SENTENCES`; without either, seeded random token ids are used. ``inputs`` is a
    dict of tensors (or one tensor for the model's main input). ``workdir`` keeps the files (it
    must be empty or not exist); by default a temporary folder is used and removed.
    ``max_shard_size`` is passed to ``save_pretrained`` (e.g. ``"50KB"`` to force shards).

    The caller's model is left as it was: its config (which ``save_pretrained`` mutates), its
    training flags and ``requires_grad`` flags. Nothing half-written is left behind when a
    save fails: a created workdir is removed, an existing one emptied of what was added.

    Raises :class:`~modeldiff.errors.RoundTripError` when the folder cannot be written (and
    ``NotMaterializedError`` for a model on the meta device).
    """
    if not isinstance(model, nn.Module):
        model, tokenizer = _materialise(model, tokenizer, task)
    _check_model(model)
    _check_arguments(tokenizer, inputs, workdir, max_shard_size)
    base_folder, created, before_entries = _prepare_workdir(workdir)
    folder = base_folder
    try:
        with _user_model_guard(model) as guard:
            report = _roundtrip_in(model, folder, tokenizer=tokenizer, inputs=inputs,
                                   max_shard_size=max_shard_size)
        problems = report.problems + guard.problems
        return replace(report, problems=problems,
                       folder=str(folder) if workdir is not None else None)
    except BaseException:
        _undo_workdir(base_folder, created, before_entries, keep=False)
        raise
    finally:
        if workdir is None:
            shutil.rmtree(base_folder, ignore_errors=True)


def _materialise(source: Any, tokenizer: Any, task: str | None) -> tuple[Any, Any]:
    """A folder or a model_type name as a model with real weights (and its tokenizer)."""
    if not isinstance(source, (str, os.PathLike)):
        raise InputTypeError("roundtrip(model)", source, "a transformers PreTrainedModel, a "
                             "checkpoint folder or a model_type such as 'distilbert'")
    from pathlib import Path

    from modeldiff._inputs import build_model, load_model, load_tokenizer, model_types
    from modeldiff.errors import CheckpointError, UnknownModelTypeError
    from modeldiff.kinds import suggest

    text = os.fspath(source)
    if Path(text).expanduser().is_dir():
        model, _ = load_model(text, task=task)
        if tokenizer is None:
            try:
                tokenizer = load_tokenizer(text)
            except CheckpointError:
                tokenizer = None  # saved without one: seeded token ids, said in the report
        return model, tokenizer
    if text not in model_types():
        raise UnknownModelTypeError(text, suggestions=suggest(text, model_types()))
    from transformers import AutoConfig

    torch.manual_seed(0)
    return build_model(AutoConfig.for_model(text), task=task, device="cpu"), tokenizer


# -- preconditions and the workdir -----------------------------------------------------------
def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module) or not hasattr(model, "save_pretrained") or \
            not hasattr(type(model), "from_pretrained"):
        raise InputTypeError("roundtrip(model)", model,
                             "a transformers PreTrainedModel (with save_pretrained and "
                             "from_pretrained)")
    for name, t in model.state_dict().items():
        if isinstance(t, torch.Tensor) and t.is_meta:
            raise NotMaterializedError(
                f"roundtrip(model): {type(model).__name__} is on the meta device ({name!r} has "
                "a shape but no values), so there are no weights to save. Build it with real "
                "weights: from_pretrained(folder), or from_config(config) outside a meta "
                "device context.")


def _check_arguments(tokenizer: Any, inputs: Any, workdir: Any, max_shard_size: Any) -> None:
    """Wrong argument types are typed errors here, not AttributeErrors deep in a save."""
    if tokenizer is not None and not (callable(tokenizer) and
                                      callable(getattr(tokenizer, "save_pretrained", None))):
        raise InputTypeError("roundtrip(tokenizer)", tokenizer,
                             "a transformers tokenizer (with save_pretrained) or None")
    if inputs is not None and not isinstance(inputs, (torch.Tensor, Mapping)):
        raise InputTypeError("roundtrip(inputs)", inputs,
                             "a dict of tensors, one tensor for the model's main input, or None")
    if workdir is not None and not isinstance(workdir, (str, os.PathLike)):
        raise InputTypeError("roundtrip(workdir)", workdir, "a folder path (str or Path) or None")
    if max_shard_size is not None:
        if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, (int, str)):
            raise InputTypeError("roundtrip(max_shard_size)", max_shard_size,
                                 "a size in bytes (int) or a string such as '50KB', or None")
        if isinstance(max_shard_size, int) and max_shard_size <= 0:
            raise InvalidArgumentError("roundtrip(max_shard_size)", max_shard_size,
                                       "a positive number of bytes")


def _prepare_workdir(workdir: str | os.PathLike[str] | None
                     ) -> tuple[Path, Path | None, frozenset[str] | None]:
    """(folder, topmost folder we created or None, entries that were already there)."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="modeldiff-roundtrip-")), None, None
    folder = Path(workdir).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise RoundTripError(f"workdir {folder} is a file, not a folder; pass a folder "
                                 "(it may not exist yet) or leave workdir=None", path=folder)
        entries = frozenset(os.listdir(folder))
        if entries:
            raise RoundTripError(
                f"workdir {folder} is not empty ({len(entries)} entries): from_pretrained "
                "would read what is already there. Pass an empty or new folder.", path=folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise RoundTripError(f"workdir {folder} is not writable by this user; pass a "
                                 "folder you can write to", path=folder)
        return folder, None, entries
    top = folder
    while not top.parent.exists():
        top = top.parent
    parent = top.parent
    if not parent.is_dir():
        raise RoundTripError(f"cannot create workdir {folder}: {parent} is a file, not a folder",
                             path=folder)
    try:
        folder.mkdir(parents=True)
    except OSError as e:
        raise RoundTripError(f"cannot create workdir {folder}: {e.strerror or e}. Pass a folder "
                             "you can write to, or leave workdir=None for a temporary one",
                             path=folder) from e
    return folder, top, frozenset()


def _undo_workdir(folder: Path, created: Path | None, before: frozenset[str] | None, *,
                  keep: bool) -> None:
    if keep or before is None:  # a temporary folder: the caller's finally removes it
        return
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for name in set(os.listdir(folder)) - before:
            p = folder / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


# -- leaving the caller's model as it was ----------------------------------------------------
class _Guard:
    def __init__(self) -> None:
        self.problems: tuple[Problem, ...] = ()


@contextlib.contextmanager
def _user_model_guard(model: nn.Module) -> Iterator[_Guard]:
    """Snapshot what a save/eval may touch, restore it after, and report what could not be."""
    guard = _Guard()
    configs = [c for c in (getattr(model, "config", None),
                           getattr(model, "generation_config", None)) if c is not None]
    saved = [(c, dict(vars(c)), copy.deepcopy(vars(c)), c.to_dict()) for c in configs]
    training = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield guard
    finally:
        for c, shallow, deep, _ in saved:
            _restore_vars(c, shallow, deep)
        for m, flag in training:
            m.training = flag
        for p, flag in grads:
            p.requires_grad_(flag)
    found = []
    for c, _, _, before in saved:
        if c.to_dict() != before:
            found.append(Problem(kind=Finding.USER_MODEL, subject=type(c).__name__,
                                 message="the model's config changed and could not be restored"))
    guard.problems = tuple(found)


def _restore_vars(obj: Any, shallow: dict[str, Any], deep: dict[str, Any]) -> None:
    # Restore the original objects (other modules may hold references to them); where one was
    # mutated in place (e.g. a list appended to), fall back to the deep copy taken before.
    current = vars(obj)
    for k in [k for k in current if k not in shallow]:
        del current[k]
    for k, v in shallow.items():
        if current.get(k, _MISSING) is not v:
            current[k] = v
        else:
            try:
                same = bool(v == deep[k])
            except Exception:  # an object without a usable __eq__: trust identity
                same = True
            if not same:
                current[k] = deep[k]


_MISSING = object()


# -- the round-trip itself -------------------------------------------------------------------
def _roundtrip_in(model: nn.Module, folder: Path, *, tokenizer: Any, inputs: Any,
                  max_shard_size: int | str | None) -> RoundTripReport:
    model_any: Any = model
    cls = type(model)
    dtype = _model_dtype(model)
    before_config = model_any.config.to_dict()
    before_gen = _gen_dict(model)
    sd_before = model.state_dict()

    kwargs: dict[str, Any] = {}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    with _quiet_transformers():
        _save(lambda: model_any.save_pretrained(folder, **kwargs), folder, "model", cls.__name__)
        model_names = set(_list_files(folder))
        if tokenizer is not None:
            _save(lambda: tokenizer.save_pretrained(folder), folder, "tokenizer",
                  type(tokenizer).__name__)
    files = tuple(FileEntry(name=n, size=(folder / n).stat().st_size, sha256=_sha256(folder / n),
                            source="model" if n in model_names else "tokenizer")
                  for n in _list_files(folder))
    report = RoundTripReport(model=cls.__name__, dtype=_dtype_name(dtype), files=files)

    try:
        with _quiet_transformers():
            reloaded, info = cls.from_pretrained(  # type: ignore[attr-defined]
                folder, **{dtype_kwarg(): dtype}, output_loading_info=True,
                trust_remote_code=False)
    except Exception as e:  # whatever from_pretrained raises, it is the finding
        msg = f"{cls.__name__}.from_pretrained({folder.name}) failed: {type(e).__name__}: {e}"
        return replace(report, problems=(Problem(kind=Finding.LOAD, subject=cls.__name__,
                                                 message=msg),))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        reloaded.to(device)
    reloaded.eval()
    problems: list[Problem] = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in (info.get(key) or ()))
        if keys:
            problems.append(Problem(kind=Finding.LOAD, subject=", ".join(keys[:5]),
                                    message=f"from_pretrained reported {key.replace('_', ' ')}"))
    problems += _compare_structure(model, reloaded)
    sd_after = reloaded.state_dict()
    n, same, tensor_problems = _compare_state_dicts(sd_before, sd_after)
    problems += tensor_problems
    groups_before, groups_after = _shared_groups(sd_before), _shared_groups(sd_after)
    for g in sorted(set(groups_before) - set(groups_after)):
        problems.append(Problem(kind=Finding.SHARING, subject=", ".join(g),
                                message="shared one storage before saving, not after loading"))
    for g in sorted(set(groups_after) - set(groups_before)):
        problems.append(Problem(kind=Finding.SHARING, subject=", ".join(g),
                                message="share one storage after loading, did not before"))
    normalised, config_problems = _compare_config(before_config, reloaded.config.to_dict())
    problems += config_problems
    problems += _compare_generation_config(before_gen, _gen_dict(reloaded))
    outputs: tuple[OutputCheck, ...] = ()
    notes: list[str] = []
    batch, described = _make_inputs(model, tokenizer, inputs, notes)
    if batch is not None:
        outputs = _compare_outputs(model, reloaded, batch, given=inputs is not None)
        for o in outputs:
            if not o.equal:
                problems.append(Problem(kind=Finding.OUTPUTS, subject=o.name, message=str(o)))
    return replace(report, problems=tuple(problems), normalised=normalised, outputs=outputs,
                   tensors_compared=n, tensors_identical=same,
                   shared_groups=tuple(sorted(set(groups_before) & set(groups_after))),
                   inputs=described, notes=tuple(notes))


def _save(fn: Any, folder: Path, what: str, owner: str) -> None:
    """Run a save; the disk's failures (full, read-only, no permission, file too large) are
    a RoundTripError, anything else the ``owner``'s own code raised is a ModelCodeError."""
    try:
        fn()
    except ModelCodeError:
        raise
    except Exception as e:
        if _is_disk_error(e):
            raise RoundTripError(f"saving the {what} into {folder} failed: "
                                 f"{type(e).__name__}: {e}. Is the disk full or the folder "
                                 "read-only?", path=folder) from e
        raise ModelCodeError(owner, "save_pretrained", e) from e


# What a full, read-only or forbidden disk raises: an OSError with one of these errnos, or
# the same failure as reported by safetensors (Rust io::Error) and torch.save (C++ writer).
_DISK_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EROFS", "EACCES", "EPERM",
                                                      "EFBIG", "EDQUOT", "EIO", "ENOENT",
                                                      "ENOTDIR", "EISDIR", "EMFILE")
                         if hasattr(errno, n))
_DISK_WORDS = ("os error", "ioerror", "no space", "read-only", "permission denied",
               "file write failed", "file too large", "quota")


def _is_disk_error(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno in _DISK_ERRNOS
    text = str(e).lower()
    return type(e).__name__ in ("SafetensorError", "RuntimeError", "OSError") and \
        any(w in text for w in _DISK_WORDS)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own progress bars ("Loading weights", "Writing model shards") are noise
    inside a check; switch them off for the duration and put the setting back."""
    from transformers.utils import logging as hf_logging

    was_disabled = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()


def _list_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def _model_dtype(model: nn.Module) -> torch.dtype:
    dt = getattr(model, "dtype", None)
    if isinstance(dt, torch.dtype):
        return dt
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def _gen_dict(model: nn.Module) -> dict[str, Any] | None:
    gc = getattr(model, "generation_config", None)
    return None if gc is None else dict(gc.to_dict())


# -- comparisons -----------------------------------------------------------------------------
def _compare_structure(a: nn.Module, b: nn.Module) -> list[Problem]:
    from modeldiff._inputs import walk

    # Training mode and requires_grad are runtime state that no checkpoint stores: copy the
    # original's onto the reloaded model so the graphs compare what a checkpoint does hold.
    b_modules = dict(b.named_modules())
    for name, m in a.named_modules():
        if name in b_modules:
            b_modules[name].training = m.training
    b_params = dict(b.named_parameters())
    for name, p in a.named_parameters():
        if name in b_params:
            b_params[name].requires_grad_(p.requires_grad)
    from modeldiff._compare import diff
    from modeldiff._core.diff import Change

    # An empty structural diff is the check; the config is compared (and normalised) on
    # its own, below, so config findings of the diff are left out here.
    d = diff(walk(a), walk(b), align=None)
    out: list[Problem] = []
    for c in d.modules:
        if c.change is Change.CHANGED:
            detail = "; ".join([*(str(x) for x in c.attrs), *(str(t) for t in c.tensors)])
        else:
            detail = ("only before saving" if c.change is Change.REMOVED
                      else "only after loading") + f": {c.node.signature()}"
        out.append(Problem(kind=Finding.STRUCTURE, subject=c.label, message=detail))
    for t in d.ties:
        state = "tie lost on reload" if t.change is Change.REMOVED else "tie gained on reload"
        out.append(Problem(kind=Finding.STRUCTURE, subject=t.target,
                           message=f"{state}: {t.target} -> {t.source}"))
    return out


def _compare_state_dicts(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]
                         ) -> tuple[int, int, list[Problem]]:
    problems: list[Problem] = []
    for k in before:
        if k not in after:
            problems.append(Problem(kind=Finding.MISSING, subject=k,
                                    message="in the state dict before saving, not after loading"))
    for k in after:
        if k not in before:
            problems.append(Problem(kind=Finding.UNEXPECTED, subject=k,
                                    message="in the state dict after loading, not before saving"))
    n = same = 0
    for k, t in before.items():
        if k not in after:
            continue
        s: TensorStats = tensor_stats(k, t, after[k])
        n += 1
        if s.equal:
            same += 1
            continue
        kind = Finding.SHAPE if not s.comparable else \
            Finding.DTYPE if s.dtype_a != s.dtype_b else Finding.VALUES
        problems.append(Problem(kind=kind, subject=k, message=str(s).partition(": ")[2]))
    return n, same, problems


def _shared_groups(sd: Mapping[str, torch.Tensor]) -> tuple[tuple[str, ...], ...]:
    """Names whose tensors are the same view of one storage (tied weights). Stride and dtype
    are part of it: ``w`` and ``w.t()`` share storage, offset and (square) shape, not values."""
    by_ptr: dict[tuple[Any, ...], list[str]] = {}
    for k, t in sd.items():
        if isinstance(t, torch.Tensor) and t.numel():
            key = (t.untyped_storage().data_ptr(), int(t.storage_offset()), tuple(t.shape),
                   tuple(t.stride()), t.dtype)
            by_ptr.setdefault(key, []).append(k)
    return tuple(sorted(tuple(sorted(v)) for v in by_ptr.values() if len(v) > 1))


def _compare_config(before: dict[str, Any], after: dict[str, Any]
                    ) -> tuple[tuple[Normalised, ...], list[Problem]]:
    """Config keys before saving vs after loading. The keys every comparison ignores
    (:data:`~modeldiff._core.compare.IGNORED_CONFIG_REASONS`) are listed as normalised when a
    save/load changed them, with the reason, so nothing is hidden silently."""
    changes, ignored = compare_mappings(before, after, ignore=IGNORED_CONFIG_KEYS)
    normalised = tuple(
        Normalised(key=k, before=before.get(k), after=after.get(k),
                   reason=IGNORED_CONFIG_REASONS[k])
        for k in sorted(ignored) if not same_value(before.get(k, ABSENT), after.get(k, ABSENT)))
    problems = [Problem(kind=Finding.CONFIG, subject=c.key,
                        message="only before saving" if c.removed else "only after loading"
                        if c.added else f"{fmt_value(c.before, 60)} -> {fmt_value(c.after, 60)}")
                for c in changes]
    return normalised, problems


def _compare_generation_config(before: dict[str, Any] | None, after: dict[str, Any] | None
                               ) -> list[Problem]:
    if before is None or after is None:
        return []
    changes, _ = compare_mappings(before, after, ignore=IGNORED_CONFIG_KEYS)
    return [Problem(kind=Finding.CONFIG, subject=f"generation_config.{c.key}",
                    message=f"{fmt_value(c.before, 60)} -> {fmt_value(c.after, 60)}") for c in changes]


# -- outputs ---------------------------------------------------------------------------------
def _make_inputs(model: nn.Module, tokenizer: Any, inputs: Any, notes: list[str]
                 ) -> tuple[dict[str, Any] | None, str]:
    model_any: Any = model
    config = model_any.config
    main = getattr(model, "main_input_name", "input_ids")
    accepted = set(inspect.signature(model.forward).parameters)
    if inputs is not None:
        batch = {main: inputs} if isinstance(inputs, torch.Tensor) else dict(inputs)
        described = "the given inputs"
    elif tokenizer is not None:
        batch = dict(tokenizer(list(SAMPLE_SENTENCES), padding=True, return_tensors="pt"))
        described = f"{len(SAMPLE_SENTENCES)} tokenized sample sentences"
    elif main == "input_ids":
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        vocab = int(getattr(text, "vocab_size", 0) or 0)
        if vocab <= 0:
            notes.append("outputs not compared: the config has no vocab_size; pass inputs=")
            return None, ""
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (2, 8), generator=g)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in accepted:
            batch["decoder_input_ids"] = ids.clone()
        described = "2 x 8 seeded random token ids"
    elif main == "pixel_values":
        size = getattr(config, "image_size", 224)
        size = size if isinstance(size, int) else int(size[0])
        channels = int(getattr(config, "num_channels", 3))
        g = torch.Generator().manual_seed(0)
        batch = {"pixel_values": torch.randn(2, channels, size, size, generator=g,
                                             dtype=_model_dtype(model))}
        described = f"2 seeded random {channels}x{size}x{size} images"
    else:
        notes.append(f"outputs not compared: no default inputs for {main!r}; pass inputs=")
        return None, ""
    # Inputs we made up go only where forward names them (a BERT tokenizer's token_type_ids
    # would land in DistilBERT's **kwargs); the caller's own inputs are passed as given.
    dropped = sorted(k for k in batch if k not in accepted)
    if dropped and inputs is None:
        batch = {k: v for k, v in batch.items() if k in accepted}
        notes.append(f"{', '.join(dropped)} left out: {type(model).__name__}.forward does not "
                     "take them")
    if "use_cache" in accepted:
        batch["use_cache"] = False  # cache objects are not outputs worth comparing
    return batch, described


def _run(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    model.eval()
    with torch.no_grad():
        out = model(**moved)
    flat: dict[str, torch.Tensor] = {}
    _flatten("", out, flat)
    return flat


def _flatten(prefix: str, obj: Any, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix or "output"] = obj
    elif isinstance(obj, Mapping):  # ModelOutput is an OrderedDict of the non-None fields
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}[{i}]", v, out)


def _compare_outputs(model: nn.Module, reloaded: nn.Module, batch: dict[str, Any], *,
                     given: bool = True) -> tuple[OutputCheck, ...]:
    try:
        before = _run(model, batch)
    except (TypeError, ValueError, RuntimeError, IndexError) as e:
        if not given:  # inputs modeldiff made up from the config: the model's forward failed
            raise ModelCodeError(type(model).__name__, "forward", e) from e
        raise InputTypeError(
            "roundtrip(inputs)", batch,
            f"inputs that {type(model).__name__}.forward accepts (it failed with "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    except Exception as e:  # anything else forward raises is the model's own
        raise ModelCodeError(type(model).__name__, "forward", e) from e
    try:
        after = _run(reloaded, batch)
    except Exception as e:
        raise ModelCodeError(type(reloaded).__name__, "forward (of the reloaded model)", e) \
            from e
    checks = []
    for name in sorted(set(before) | set(after), key=lambda n: (n not in before, n)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            checks.append(OutputCheck(name=name, equal=False, max_abs=float("nan"),
                                      within_tolerance=False, rtol=0.0, atol=0.0))
            continue
        rtol, atol = _ASSERT_CLOSE_TOL.get(a.dtype, (0.0, 0.0))
        s = tensor_stats(name, a, b)
        if s.equal:
            checks.append(OutputCheck(name=name, equal=True, max_abs=0.0, within_tolerance=True,
                                      rtol=rtol, atol=atol))
            continue
        try:
            torch.testing.assert_close(b, a)
            within = True
        except AssertionError:
            within = False
        checks.append(OutputCheck(name=name, equal=False,
                                  max_abs=float("nan") if s.max_abs is None else s.max_abs,
                                  within_tolerance=within, rtol=rtol, atol=atol))
    return tuple(checks)
