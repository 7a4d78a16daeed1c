"""Tensor-level comparison: two tensors, two state dicts, two checkpoints.

Everything here starts with the cheapest question, "are the bytes identical?", and computes
statistics only for the tensors whose bytes differ. Checkpoints are streamed: both sides are
read with ``pread`` into two small reusable buffers and compared as they come, so comparing two
10 GB checkpoints needs a fraction of a MB, not 20 GB. Files are read, never memory-mapped: a
file truncated or rewritten by another process during a comparison gives a
:class:`~modeldiff.errors.CheckpointError` naming it, where a mapping would die with SIGBUS.

>>> import torch
>>> a = torch.tensor([1.0, 2.0, 3.0])
>>> s = tensor_stats("w", a, a.clone())
>>> s.equal, s.rel_change, s.cosine
(True, 0.0, 1.0)
>>> s = tensor_stats("w", a, torch.tensor([1.0, 2.0, 3.5]))
>>> s.equal, s.n_changed, s.max_abs
(False, 1, 0.5)
>>> print(s)
w: 1 of 3 values changed, max |b-a| 0.5, rel change 0.134, cosine 0.997409

``.bin`` (pickle) checkpoints are read only through
:func:`modeldiff._walk.checkpoint.load_bin`, which uses ``torch.load(weights_only=True)``: no code in
the file ever runs.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import itertools
import math
import mmap
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no leases, files are read with pread
    fcntl = None  # type: ignore[assignment]

import numpy as np
import torch
from torch import nn

from modeldiff._core.align import align_keys
from modeldiff._core.compare import ABSENT, IGNORED_CONFIG_KEYS, ValueChange, compare_mappings
from modeldiff._core.graph import StrEnum
from modeldiff._core.report import Report, register
from modeldiff._core.weights import (
    ENERGY_K,
    ModuleSummary,
    TensorStats,
    WeightDiff,
    make_weight_diff,
)
from modeldiff._walk.checkpoint import (
    checkpoint_files,
    load_bin,
    read_header,
    require_regular_file,
)
from modeldiff.errors import (
    CheckpointError,
    InputTypeError,
    InvalidArgumentError,
    NotMaterializedError,
)

__all__ = [
    "CheckpointDiff",
    "Difference",
    "ModuleSummary",
    "TensorChange",
    "TensorStats",
    "WeightDiff",
    "compare_checkpoints",
    "compare_weights",
    "tensor_stats",
]

# Bytes compared (and, for differing tensors, values converted to float64) per step. A few MB
# keeps peak memory flat whatever the checkpoint size while staying large enough that the
# per-step Python overhead is negligible next to the memory bandwidth.
CHUNK_BYTES = 4 * 2**20
# Statistics are computed in float64: this many elements per step is CHUNK_BYTES of float64.
_CHUNK_ELEMS = CHUNK_BYTES // 8
# Bytes per read when checking files for identity. Two buffers of this size stay in the CPU's
# L2 cache (2 MB per core here), so the copy out of the page cache and the memcmp that follows
# touch cached memory. Measured against an mmap + memcmp loop on page-cached files, chunk
# sizes 64 KB to 4 MB, interleaved: 512 KB was best or within 5% of best both on a quiet
# machine and at load 8 on 2 cores (0.79x there; 64 KB 0.62x, 4 MB 0.72x).
READ_CHUNK = 512 * 2**10
# Bytes compared per step through two leased mappings (see _File): each step first asks
# whether a lease is being broken, so this bounds how long a writer waits.
MAP_CHUNK = 4 * 2**20
# A progress bar appears only for comparisons at least this large (and only on a terminal).
_PROGRESS_MIN_BYTES = 512 * 2**20


# -- one pair of tensors ---------------------------------------------------------------------
def tensor_stats(name: str, a: torch.Tensor, b: torch.Tensor) -> TensorStats:
    """Compare two tensors: bit-identity first, statistics only where the bytes differ.

    Works in chunks of a few MB, so two huge tensors need little extra memory. A dtype
    difference is stated in ``note`` and the values are compared in the wider dtype; a shape
    difference is reported, never raised.

    >>> import torch
    >>> s = tensor_stats("w", torch.tensor([0.0, 1.0]), torch.tensor([-0.0, 1.0]))
    >>> s.equal, s.n_changed, s.max_abs   # -0.0 has other bits than 0.0, but the same value
    (False, 0, 0.0)
    >>> s = tensor_stats("w", torch.ones(4), torch.ones(4, dtype=torch.float16))
    >>> s.equal, s.max_abs, s.note
    (False, 0.0, 'dtype float32 -> float16')
    """
    for arg, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(f"tensor_stats({arg})", t, "a torch.Tensor")
        if t.is_meta:
            raise NotMaterializedError(
                f"tensor {name!r} ({arg}) is on the meta device: it has a shape but no values. "
                "Load real weights (from_pretrained, or load_state_dict) before comparing them.")
    return _stats(name, _TensorRef(a), _TensorRef(b))[0]


# -- tensor references: bytes and values of one tensor, wherever it lives ---------------------
class _Ref:
    """One tensor, readable as raw bytes (a uint8 array) and as values, a range at a time.

    Both are context managers: what they give may be a view of a mapped file, valid only
    inside the ``with`` block (see :class:`_File`); copy what must outlive it.
    """

    __slots__ = ("dtype", "itemsize", "nbytes", "numel", "shape")
    dtype: torch.dtype
    shape: tuple[int, ...]
    numel: int
    itemsize: int
    nbytes: int

    def raw(self, start: int, stop: int) -> contextlib.AbstractContextManager[np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    def values(self, start: int, stop: int
               ) -> contextlib.AbstractContextManager[torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract


class _TensorRef(_Ref):
    """A tensor in memory, or in a file torch.load mapped (``guard``: that file, leased; see
    :meth:`_File.guarding`)."""

    __slots__ = ("_bytes", "_flat", "_guard")

    def __init__(self, t: torch.Tensor, guard: _File | None = None) -> None:
        self._guard = guard
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.resolve_conj().resolve_neg().contiguous()
        self.dtype, self.shape, self.numel = t.dtype, tuple(t.shape), t.numel()
        self.itemsize = t.element_size()
        self.nbytes = self.numel * self.itemsize
        self._flat = t.reshape(-1)
        self._bytes = self._flat.view(torch.uint8).numpy() if self.numel else np.empty(0, np.uint8)

    def raw(self, start: int, stop: int) -> contextlib.AbstractContextManager[np.ndarray]:
        return self._scoped(self._bytes[start:stop])

    def values(self, start: int, stop: int
               ) -> contextlib.AbstractContextManager[torch.Tensor]:
        return self._scoped(self._flat[start:stop])

    def _scoped(self, view: Any) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext(view) if self._guard is None else \
            self._guard.guarding(view)


class _File:
    """One weight file opened for reading: mapped under a read lease where Linux grants one,
    else read by offset (``pread``).

    Why not a plain mmap: touching a mapped page of a file that another process has truncated
    kills the process with SIGBUS, which no ``try`` can catch. A read past the new end is a
    short read instead, reported as a :class:`CheckpointError`; :meth:`check` also catches a
    file rewritten in place (size or modification time changed since it was opened).

    Why a mapping anyway, when it is safe: comparing mapped pages where they lie in the page
    cache is twice as fast as copying them out first (docs/performance.md). A read lease
    (``fcntl(F_SETLEASE, F_RDLCK)``) makes it safe: while it is held, the kernel holds back
    any other process's ``open`` for writing or ``truncate`` of the file and tells the holder
    instead, and a lease is refused while anyone has the file open for writing. Every chunk
    read through the mapping first asks whether the lease is being broken (:meth:`mapped`);
    if so, the lease is let go at once (the writer goes on) and the rest is read with
    ``pread``, whose short reads and the final :meth:`check` catch whatever the writer does.
    Where no lease is granted (not Linux, a file of another user, a network file system, a
    writer already at work), everything is read with ``pread``.
    """

    __slots__ = ("_addr", "_breaking", "_fd", "_lock", "_map", "_mtime", "_size", "_users",
                 "_view", "leased", "path")

    def __init__(self, path: Path, *, map_file: bool = True) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise CheckpointError(f"cannot open {path}: {e.strerror or e}", path=path) from e
        st = os.fstat(self._fd)
        self._size, self._mtime = st.st_size, st.st_mtime_ns
        self._map: mmap.mmap | None = None
        self._view: np.ndarray | None = None
        self._addr = 0
        # Threads comparing through the mapping right now; a lease break seen while some
        # are lets go of the mapping when the last one is done (see mapped / let_go).
        self._lock = threading.Lock()
        self._users = 0
        self._breaking = False
        self.leased = False
        signum = _lease_signal()
        if signum is not None and self._size > 0:
            self._lease(signum, map_file)

    def _lease(self, signum: int, map_file: bool) -> None:
        fd = self._fd
        try:
            # The signal the kernel sends when the lease is broken: SIGURG, ignored unless a
            # handler is installed (checked before); SIGIO, the default, would kill us.
            fcntl.fcntl(fd, fcntl.F_SETSIG, signum)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # EAGAIN: open for writing elsewhere; EACCES: not ours; EINVAL: NFS
            return
        self.leased = True
        st = os.fstat(fd)
        try:
            if (st.st_size, st.st_mtime_ns) != (self._size, self._mtime):
                raise OSError("changed between open and lease")
            if map_file:
                self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)  # private: never written
        except (OSError, ValueError):
            self._unmap()
            return
        if self._map is not None:
            self._view = np.frombuffer(self._map, np.uint8)
            self._addr = self._view.ctypes.data

    @contextlib.contextmanager
    def guarding(self, value: Any) -> Iterator[Any]:
        """Yield ``value``, a view of this file that another library mapped (``torch.load``
        with ``mmap=True``), holding the lease while the block reads it.

        Those pages cannot be re-read with pread, so a lease being broken ends the
        comparison here with a :class:`CheckpointError` (and lets the writer go on) before
        anything touches them. Without a lease (see the class) the view is read unguarded."""
        with self._lock:
            if self.leased:
                if not self._lease_holds():
                    raise self._changed("another process opened it for writing")
                self._users += 1
        try:
            yield value
        finally:
            if self.leased:
                self.let_go()

    def mapped(self, start: int, stop: int, *, hold: bool = False) -> bool:
        """True when bytes ``start:stop`` may be read through the mapping now. Asked before
        every chunk: a lease being broken is let go here (once no thread holds the mapping),
        and the file is read with pread from then on. With ``hold``, the caller may read
        the bytes until it calls :meth:`let_go`; without, it must not read them at all."""
        with self._lock:
            if self._map is None or not self._lease_holds():
                return False
            if stop > self._size:
                raise self._changed(f"its header needs {stop:,} bytes, but it has "
                                    f"{self._size:,}")
            self._users += hold
            return True

    def _lease_holds(self) -> bool:
        """Whether the lease still holds (the caller has ``_lock``). Once it is being broken
        it never holds again, and it is let go as soon as no thread reads under it."""
        if self._breaking or fcntl.fcntl(self._fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK:
            self._breaking = True
            if self._users == 0:
                self._unmap()
            return False
        return True

    def let_go(self) -> None:
        """The end of a :meth:`mapped` ``hold`` or a :meth:`guarding` block."""
        with self._lock:
            self._users -= 1
            if self._breaking and self._users == 0:
                self._unmap()

    def address(self, offset: int) -> int:
        """The memory address of byte ``offset`` of the mapping (after :meth:`mapped`)."""
        return self._addr + offset

    def array(self, start: int, stop: int) -> np.ndarray:
        """Bytes ``start:stop`` of the mapping as an array (after :meth:`mapped`; a private
        mapping, so writable as torch wants it, and never written)."""
        assert self._view is not None
        return self._view[start:stop]

    def _unmap(self) -> None:
        # Let go of the lease first: from here on nothing touches the mapping, whose pages a
        # writer may now truncate. It is closed once no array of it is left (or by the GC).
        self._view, self._addr = None, 0
        if self.leased:
            self._breaking = True  # no lease any more: guarding() must not read unguarded
            with contextlib.suppress(OSError):
                fcntl.fcntl(self._fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill ``buf`` with the bytes at ``offset``, or raise if the file ends early."""
        want, got = len(buf), 0
        while got < want:
            try:
                n = _preadv(self._fd, buf[got:], offset + got)
            except OSError as e:
                raise CheckpointError(f"cannot read {self.path}: {e.strerror or e}",
                                      path=self.path) from e
            if n == 0:
                raise self._changed(f"it ends at byte {offset + got:,}, but its header said "
                                    f"{self._size:,} bytes")
            got += n

    def check(self) -> None:
        """Raise if the file's size or modification time changed since it was opened."""
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) != (self._size, self._mtime):
            raise self._changed(f"it had {self._size:,} bytes when the comparison started "
                                f"and has {st.st_size:,} now")

    def _changed(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path.name} in {self.path.parent} changed while it was being compared: "
            f"{what}. Something rewrote or truncated it; compare again once it is written.",
            path=self.path)

    def close(self) -> None:
        if self._fd >= 0:
            self._unmap()
            os.close(self._fd)  # also ends the lease
            self._fd = -1


def _lease_signal() -> int | None:
    """The signal a broken lease sends (SIGURG), or None where leases cannot be used safely:
    not Linux, or SIGURG has a handler that would run on every lease break."""
    if fcntl is None or not sys.platform.startswith("linux") or \
            not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        handler = signal.getsignal(signal.SIGURG)
    except (ValueError, OSError):  # pragma: no cover
        return None
    return int(signal.SIGURG) if handler in (signal.SIG_DFL, signal.SIG_IGN) else None


_memcmp = ctypes.CDLL(None).memcmp if sys.platform.startswith("linux") else None
if _memcmp is not None:
    _memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    _memcmp.restype = ctypes.c_int


def _preadv(fd: int, buf: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buf], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - platforms without preadv
    return os.readv(fd, [buf])  # pragma: no cover


class _FileRef(_Ref):
    """A tensor inside a safetensors file: nothing is read until asked."""

    __slots__ = ("file", "start")

    def __init__(self, file: _File, dtype: str, shape: tuple[int, ...], start: int,
                 stop: int) -> None:
        self.file, self.start = file, start
        self.dtype = _torch_dtype(dtype)
        self.shape = shape
        self.nbytes = stop - start
        self.itemsize = _itemsize(self.dtype)
        self.numel = math.prod(shape)

    @contextlib.contextmanager
    def raw(self, start: int, stop: int) -> Iterator[np.ndarray]:
        lo, hi = self.start + start, self.start + stop
        if self.file.mapped(lo, hi, hold=True):
            try:
                yield self.file.array(lo, hi)
            finally:
                self.file.let_go()
            return
        buf = bytearray(stop - start)
        self.file.read_into(memoryview(buf), lo)
        yield np.frombuffer(buf, np.uint8)

    @contextlib.contextmanager
    def values(self, start: int, stop: int) -> Iterator[torch.Tensor]:
        with self.raw(start * self.itemsize, stop * self.itemsize) as raw:
            # writable (a private mapping, or a bytearray), as torch wants
            yield torch.from_numpy(raw).view(self.dtype)


def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise CheckpointError(f"dtype {name!r} is not supported by this torch version")
    return dt


def _itemsize(dt: torch.dtype) -> int:
    return dt.itemsize


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def _bytes_equal(a: _Ref, b: _Ref, progress: Any = None) -> bool:
    """Byte-identity, CHUNK_BYTES at a time: C memcmp where there is one, else numpy."""
    n = a.nbytes
    if n != b.nbytes:
        return False
    for lo in range(0, n, CHUNK_BYTES):
        hi = min(lo + CHUNK_BYTES, n)
        with a.raw(lo, hi) as x, b.raw(lo, hi) as y:
            if _memcmp is not None:
                same = _memcmp(x.ctypes.data, y.ctypes.data, hi - lo) == 0
            else:  # pragma: no cover - not Linux
                same = bool(np.array_equal(x, y))
        if progress is not None:
            progress.update(2 * (hi - lo))
        if not same:
            if progress is not None:
                progress.update(2 * (n - hi))
            return False
    return True


# What the accumulators return: (values changed, max |b - a|, |a|^2, |b|^2, |d|^2, a.b,
# values beyond the tolerance, |b|^2 - |a|^2 computed without cancellation where possible).
_Sums = tuple[int, float, float, float, float, float, int, float]


class _StatsBase(TypedDict):
    """The TensorStats fields every outcome of :func:`_stats` shares."""

    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    numel: int


def _stats(name: str, a: _Ref, b: _Ref, *, rtol: float = 0.0, atol: float = 0.0,
           progress: Any = None) -> tuple[TensorStats, bool]:
    """(stats, close): ``close`` is True when every value is within ``atol + rtol * |b|``."""
    da, db = _dtype_name(a.dtype), _dtype_name(b.dtype)
    base: _StatsBase = {"name": name, "shape_a": a.shape, "shape_b": b.shape, "dtype_a": da,
                        "dtype_b": db, "numel": a.numel}
    notes = [f"dtype {da} -> {db}"] if da != db else []
    if a.shape != b.shape:
        if progress is not None:
            progress.update(a.nbytes + b.nbytes)
        notes.insert(0, f"shape {a.shape} -> {b.shape}")
        return TensorStats(**base, equal=False, note="; ".join(notes)), False
    if da == db and _bytes_equal(a, b, progress):
        return TensorStats(**base, equal=True, n_changed=0, max_abs=0.0, rel_change=0.0,
                           cosine=1.0), True
    if da != db and progress is not None:
        progress.update(a.nbytes + b.nbytes)
    try:
        acc = _accumulate(a, b, rtol=rtol, atol=atol)
    except (RuntimeError, TypeError) as e:  # e.g. packed float4, which has no float64 view
        notes.append(f"values of {da} cannot be compared numerically ({e})")
        return TensorStats(**base, equal=False, note="; ".join(notes)), False
    n_changed, max_abs, sa2, sb2, sd2, dot, n_far, growth = acc
    na, nb, nd = math.sqrt(sa2), math.sqrt(sb2), math.sqrt(sd2)
    if nd == 0.0 and n_changed == 0:
        rel = 0.0
    elif na == 0.0 and nb > 0.0:
        # A zero-initialised tensor (a bias, a LoRA B) that moved: relative to zero the change
        # is infinite, which says nothing and ranks all of them first. Relative to the new
        # values it is 1.0: "all of b is new".
        rel = nd / nb
        notes.append("a was all zeros: change relative to b")
    elif na == 0.0:
        rel = math.inf
    else:
        rel = nd / na
    if na == 0.0 and nb == 0.0:
        cos = 1.0
    elif na == 0.0 or nb == 0.0:
        cos = 0.0
    elif all(math.isfinite(v) for v in (sd2, dot, na * nb, growth)):
        # Two exact formulas with opposite weak spots; each is used where it is accurate.
        # A small change: 1 - cos from the change itself, |d|^2 = (|b| - |a|)^2 +
        # 2|a||b|(1 - cos) with |b| - |a| = (|b|^2 - |a|^2) / (|a| + |b|); dot / (|a||b|)
        # would lose 1 - cos ~ 1e-7 in the rounding of sums ~1e7 times larger. A large
        # change (or mostly a rescaling): dot / (|a||b|), where the first would subtract
        # two large, nearly equal numbers. Either way the error is at most the sums'.
        grow = growth / (na + nb)
        cos = (1.0 - (sd2 - grow * grow) / (2.0 * na * nb) if sd2 + grow * grow < na * nb
               else dot / (na * nb))
        cos = max(-1.0, min(1.0, cos))
    else:
        cos = math.nan
    stats = TensorStats(**base, equal=False, n_changed=n_changed, max_abs=max_abs,
                        rel_change=rel, cosine=cos, note="; ".join(notes), norm_a=na,
                        norm_b=nb, norm_diff=nd)
    return stats, n_far == 0


def _as_f64(t: torch.Tensor) -> torch.Tensor:
    """A float64 copy (never a view: ``t`` may be a mapped file's, see :class:`_Ref`)."""
    if t.is_complex():
        return torch.view_as_real(t.to(torch.complex128, copy=True)).reshape(-1)
    return t.to(torch.float64, copy=True)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded, then restore the caller's setting. Element-wise work on
    4 MB chunks gains nothing from intra-op threads, and on shared cores their spin-waiting
    made it 30-100x slower (measured: isfinite 40 ms with 2 threads, 1.1 ms with 1)."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _accumulate(a: _Ref, b: _Ref, *, rtol: float, atol: float
                ) -> _Sums:
    fast = None
    if not (rtol or atol) and a.dtype == b.dtype:
        # One fast path at most: where the C module returns None (a value not finite, or b
        # much smaller than a), the torch fast path would only find the same.
        kind = _ONE_PASS_KINDS.get(a.dtype) if _one_pass is not None else None
        if kind is not None:
            fast = _accumulate_one_pass(a, b, kind)
        elif a.dtype in _FAST_DTYPES:
            with _one_thread():
                fast = _accumulate_fast(a, b)
    if fast is not None:
        return fast
    with _one_thread():
        return _accumulate_chunks(a, b, rtol=rtol, atol=atol)


# The optional C module (modeldiff/_walk/_sums.c, built at install where there is a C
# compiler): the five sums in one pass over the bytes where they lie, in float64, with the
# GIL let go. Without it the torch path below computes the same numbers (to float64
# rounding; the tests hold both to one reference) in about three times the time.
try:
    from modeldiff._walk._sums import sums as _one_pass
except ImportError:  # pragma: no cover - built without a C compiler
    _one_pass = None  # type: ignore[assignment]
_ONE_PASS_KINDS = {torch.float32: "f", torch.float16: "e", torch.bfloat16: "b"}
# Bytes per call: the lease is asked about before each (see _File.mapped), so this bounds how
# long a writer waits, as MAP_CHUNK does for the byte comparison.
_ONE_PASS_BYTES = MAP_CHUNK


def _accumulate_one_pass(a: _Ref, b: _Ref, kind: str) -> _Sums | None:
    """:func:`_accumulate_fast` through the C module: one call per few MB of both tensors,
    each reading the bytes where they lie (a leased mapping, a read buffer, the tensor's own
    memory). None when a value is not finite, or ``b`` is much smaller than ``a``: the
    general path redoes the tensor."""
    assert _one_pass is not None
    n_changed = 0
    max_abs = saa = sdd = sad = 0.0
    for lo in range(0, a.nbytes, _ONE_PASS_BYTES):
        hi = min(lo + _ONE_PASS_BYTES, a.nbytes)
        with a.raw(lo, hi) as x, b.raw(lo, hi) as y:
            sums = _one_pass(x, y, kind)
        if sums is None:
            return None
        changed, m, aa, dd, ad = sums
        n_changed += changed
        max_abs = max(max_abs, m)
        saa += aa
        sdd += dd
        sad += ad
    return _derived(n_changed, max_abs, saa, sdd, sad)


# Float dtypes whose statistics take the fast path, and its chunk: three float64 buffers of
# 256K values (6 MB) stay in the CPU's cache through every pass. Measured on two 265 MB
# DistilBERT checkpoints (one thread): 64K values 180 ms, 128K 159, 256K 150, 512K 152,
# 1M 330 (out of the cache).
_FAST_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16, torch.float64})
_FAST_ELEMS = 256 * 1024


def _accumulate_fast(a: _Ref, b: _Ref) -> _Sums | None:
    """:func:`_accumulate_chunks` for float tensors of one dtype, or None when a value is not
    finite (the general path then redoes the tensor).

    A few cheap passes per cache-resident chunk instead of ~10 passes over fresh float64
    copies: the chunk copied into two reusable float64 buffers, ``d = b - a`` once, then
    ``a.a``, ``d.d`` and ``a.d`` as BLAS dot products, then ``|d|`` in place for its count
    of non-zeros and its max; the rest follows from those (:func:`_derived`). The C module
    does the same in one pass (:func:`_accumulate_one_pass`); this is the path without it,
    and the one for float64 tensors."""
    # In float64, like the general path: float32 dot products drift by ~1e-6 over 64K values
    # (measured), enough to lose the cosine of a rescaled tensor. The copies into float64
    # stay in the cache; the sums are exact to float64 rounding.
    size = min(_FAST_ELEMS, a.numel)
    d_buf = torch.empty(size, dtype=torch.float64)
    x_buf, y_buf = torch.empty(size, dtype=torch.float64), torch.empty(size, dtype=torch.float64)
    bits = d_buf.numpy().view(np.int64)
    n_changed = 0
    max_abs = saa = sdd = sad = 0.0
    for lo in range(0, a.numel, _FAST_ELEMS):
        hi = min(lo + _FAST_ELEMS, a.numel)
        k = hi - lo
        with a.values(lo, hi) as va, b.values(lo, hi) as vb:
            x, y = x_buf[:k].copy_(va), y_buf[:k].copy_(vb)
        d = torch.sub(y, x, out=d_buf[:k])
        aa, dd, ad = float(torch.dot(x, x)), float(torch.dot(d, d)), float(torch.dot(x, d))
        if not (math.isfinite(aa) and math.isfinite(dd) and math.isfinite(ad)):
            return None
        d.abs_()  # no -0.0 left: a zero difference is a word of zero bits
        changed = int(np.count_nonzero(bits[:k]))  # on int64 words: twice as fast as floats
        if changed:
            n_changed += changed
            max_abs = max(max_abs, float(torch.amax(d)))
        saa += aa
        sdd += dd
        sad += ad
    return _derived(n_changed, max_abs, saa, sdd, sad)


def _derived(n_changed: int, max_abs: float, saa: float, sdd: float, sad: float
             ) -> _Sums | None:
    """The fast paths' sums as :data:`_Sums`: ``|b|^2 = |a|^2 + 2 a.d + |d|^2`` and
    ``a.b = |a|^2 + a.d`` exactly, and ``2 a.d + |d|^2`` as ``|b|^2 - |a|^2`` without
    cancellation (for the cosine of a small change: see :func:`_stats`). None when ``b`` is
    under 1% of ``a``: then ``|b|^2`` itself would come from cancellation."""
    sbb = saa + 2 * sad + sdd
    if sbb < 1e-4 * saa:
        return None
    return n_changed, max_abs, saa, sbb, sdd, saa + sad, n_changed, 2 * sad + sdd


def _accumulate_chunks(a: _Ref, b: _Ref, *, rtol: float, atol: float
                       ) -> _Sums:
    n_changed = n_far = 0
    max_abs = sa2 = sb2 = sd2 = dot = 0.0
    for lo in range(0, a.numel, _CHUNK_ELEMS):
        hi = min(lo + _CHUNK_ELEMS, a.numel)
        with a.values(lo, hi) as va, b.values(lo, hi) as vb:
            x, y = _as_f64(va), _as_f64(vb)
        if not (rtol or atol):
            # The usual case, all values finite: ~8 passes over the chunk instead of ~25,
            # the four sums of products as BLAS dot products. A NaN or infinity anywhere
            # makes the sums of squares non-finite, so finiteness is checked on five numbers
            # after the fact instead of on every element before; then the chunk is redone
            # by the general path below. Same results either way.
            d = y - x
            sums = (float(torch.dot(x, x)), float(torch.dot(y, y)), float(torch.dot(d, d)),
                    float(torch.dot(x, y)))
            if all(math.isfinite(v) for v in sums):
                changed = int(torch.count_nonzero(d))
                n_changed += changed
                n_far = n_changed
                if changed:
                    lo_d, hi_d = torch.aminmax(d)
                    max_abs = max(max_abs, -float(lo_d), float(hi_d))
                sa2 += sums[0]
                sb2 += sums[1]
                sd2 += sums[2]
                dot += sums[3]
                continue
        both_nan = x.isnan() & y.isnan()
        same = (x == y) | both_nan  # inf == inf counts as unchanged, as does NaN vs NaN
        x = torch.where(both_nan, 0.0, x)
        y = torch.where(both_nan, 0.0, y)
        d = torch.where(same, 0.0, y - x)
        ad = d.abs()
        n_changed += int((~same).sum())
        if ad.numel():
            m = float(ad.max())  # NaN (a value became NaN) propagates: that is worth seeing
            max_abs = m if math.isnan(m) or math.isnan(max_abs) else max(max_abs, m)
        sa2 += float((x * x).sum())
        sb2 += float((y * y).sum())
        sd2 += float((d * d).sum())
        dot += float((x * y).sum())
        if rtol or atol:
            n_far += int((~(same | (ad <= atol + rtol * y.abs()))).sum())
        else:
            n_far = n_changed
    return n_changed, max_abs, sa2, sb2, sd2, dot, n_far, sb2 - sa2


def _identical_in_files(pairs: Iterable[tuple[str, _Ref, _Ref]], progress: Any = None
                        ) -> set[str]:
    """Names of the file-backed pairs whose bytes are identical, checked run by run.

    Tensors that lie back to back in both files (the usual layout: the same writer wrote both)
    form one run, compared a chunk at a time whatever the tensor boundaries, so a checkpoint
    of many small tensors costs what one big tensor does: MAP_CHUNK bytes through the two
    leased mappings (see :class:`_File`), else READ_CHUNK bytes read into two buffers. A chunk
    that differs marks the tensors it overlaps as not identical (the caller computes their
    statistics) and the run goes on after the last of them. Memory: two buffers per thread.
    """
    runs: list[list[tuple[str, _FileRef, _FileRef]]] = []
    key = None
    for name, ra, rb in sorted(
            ((n, a, b) for n, a, b in pairs if isinstance(a, _FileRef) and
             isinstance(b, _FileRef) and a.dtype == b.dtype and a.shape == b.shape),
            key=lambda p: (id(p[1].file), p[1].start)):
        prev = runs[-1][-1] if runs else None
        if (prev is not None and key == (id(ra.file), id(rb.file)) and
                prev[1].start + prev[1].nbytes == ra.start and
                prev[2].start + prev[2].nbytes == rb.start):
            runs[-1].append((name, ra, rb))
        else:
            runs.append([(name, ra, rb)])
            key = (id(ra.file), id(rb.file))
    # Each run is cut into pieces of at least _PIECE_BYTES, compared by a few threads: the
    # memcmp calls and the preads let go of the GIL, so two cores compare two pieces at once.
    pieces: list[tuple[int, int, int]] = []  # (run, start, stop) in bytes from the run's start
    ends_of = [list(itertools.accumulate(r[1].nbytes for r in run)) for run in runs]
    workers = min(_COMPARE_THREADS, os.cpu_count() or 1)
    for i, ends in enumerate(ends_of):
        n = ends[-1]
        k = max(1, min(workers, n // _PIECE_BYTES))
        cuts = [n * j // k // MAP_CHUNK * MAP_CHUNK for j in range(k)] + [n]
        pieces += [(i, lo, hi) for lo, hi in itertools.pairwise(cuts) if hi > lo]

    def compare(piece: tuple[int, int, int]) -> tuple[int, set[int]]:
        i, lo, hi = piece
        return i, _differing(runs[i], ends_of[i], lo, hi, progress)

    found = _each_in_threads(compare, pieces, workers)
    differs: list[set[int]] = [set() for _ in runs]
    for i, d in found:
        differs[i] |= d
    return {r[0] for i, run in enumerate(runs) for j, r in enumerate(run) if j not in differs[i]}


# Threads comparing file pieces at once, and the smallest piece worth a thread of its own.
_COMPARE_THREADS = 4
_PIECE_BYTES = 16 * 2**20


def _differing(run: list[tuple[str, _FileRef, _FileRef]], ends: list[int], lo: int, hi: int,
               progress: Any) -> set[int]:
    """Indices of the tensors of ``run`` whose bytes differ within ``lo:hi`` of the run."""
    fa, fb = run[0][1].file, run[0][2].file
    base_a, base_b = run[0][1].start, run[0][2].start
    buf_a = buf_b = bytearray()
    differs: set[int] = set()
    while lo < hi:
        k = min(MAP_CHUNK, hi - lo)
        a0, b0 = base_a + lo, base_b + lo
        if _memcmp is not None and fa.mapped(a0, a0 + k, hold=True):
            try:
                if fb.mapped(b0, b0 + k, hold=True):
                    # both under a lease: compare the cached pages where they are (ctypes
                    # lets go of the GIL for the call)
                    try:
                        equal = _memcmp(fa.address(a0), fb.address(b0), k) == 0
                    finally:
                        fb.let_go()
                else:
                    equal = None
            finally:
                fa.let_go()
        else:
            equal = None
        if equal is None:
            k = min(READ_CHUNK, hi - lo)
            if len(buf_a) != READ_CHUNK:
                buf_a, buf_b = bytearray(READ_CHUNK), bytearray(READ_CHUNK)
            view_a, view_b = memoryview(buf_a), memoryview(buf_b)
            fa.read_into(view_a[:k], a0)
            fb.read_into(view_b[:k], b0)
            # bytearray == bytearray is one memcmp; slices of a short last chunk are copies
            # of at most READ_CHUNK bytes, once per piece
            equal = buf_a == buf_b if k == READ_CHUNK else buf_a[:k] == buf_b[:k]
        if equal:
            step = k
        else:  # the tensors this chunk overlaps differ; resume after the last of them
            first = bisect.bisect_right(ends, lo)
            last = min(bisect.bisect_left(ends, lo + k), len(run) - 1)
            differs.update(range(first, last + 1))
            step = ends[last] - lo
        if progress is not None:
            progress.update(2 * min(step, hi - lo))
        lo += step
    return differs


# -- sources: a module, a safetensors file, a checkpoint folder -------------------------------
class _Source:
    """Named tensor references from one side of a comparison; close() closes its files."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.refs: dict[str, _Ref] = {}
        self.folder: Path | None = None
        self.files: list[_File] = []

    def check(self) -> None:
        """Raise if any file changed since it was opened (see :meth:`_File.check`)."""
        for f in self.files:
            f.check()

    def close(self) -> None:
        self.refs.clear()
        for f in self.files:
            f.close()
        self.files.clear()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_module(model: nn.Module, arg: str) -> _Source:
    src = _Source(type(model).__name__)
    for name, t in model.state_dict(keep_vars=False).items():
        if not isinstance(t, torch.Tensor):
            continue
        if t.is_meta:
            raise NotMaterializedError(
                f"{arg} ({type(model).__name__}) is on the meta device: tensor {name!r} has a "
                "shape but no values, so there are no weights to compare. Build the model on "
                "a real device (e.g. from_pretrained(folder), or to_empty(device='cpu') followed "
                "by load_state_dict / init_weights) and compare again.")
        src.refs[name] = _TensorRef(t)
    return src


def _open_path(path: str | os.PathLike[str], arg: str) -> _Source:
    p = Path(path).expanduser()
    src = _Source(str(p))
    if p.is_dir():
        src.folder = p
        files = checkpoint_files(p)
        if not files:
            raise CheckpointError(
                f"{p} holds no weights: no model.safetensors, no *.safetensors shards and no "
                "pytorch_model.bin. Pass a folder save_pretrained wrote, or a weight file.",
                path=p)
    elif p.is_file():
        files = (p,)
    elif p.exists():  # a FIFO, a device, a socket: refused before anything opens it
        require_regular_file(p, arg)
        raise CheckpointError(f"{arg}: {p} is not a regular file", path=p)  # pragma: no cover
    else:
        raise CheckpointError(f"{arg}: no such file or folder: {p}", path=p)
    try:
        for f in files:
            if f.suffix == ".safetensors":
                _open_safetensors(src, f)
            else:
                # torch.load maps the file itself: lease it first, and read its tensors only
                # while the lease holds (see _File.guarding)
                guard = _File(f, map_file=False)
                src.files.append(guard)
                for name, t in load_bin(f).items():
                    if isinstance(t, torch.Tensor):
                        src.refs[name] = _TensorRef(t, guard if guard.leased else None)
    except BaseException:
        src.close()
        raise
    return src


def _open_safetensors(src: _Source, f: Path) -> None:
    header = read_header(f)  # validates every entry against the file size
    file = _File(f)
    src.files.append(file)
    for name, entry in header.items():
        src.refs[name] = _FileRef(file, entry.dtype, entry.shape, entry.start, entry.end)


def _open(obj: Any, arg: str) -> _Source:
    if isinstance(obj, nn.Module):
        return _open_module(obj, arg)
    if isinstance(obj, (str, os.PathLike)):
        return _open_path(obj, arg)
    raise InputTypeError(arg, obj, "an nn.Module, a safetensors/.bin file or a checkpoint folder")


def _progress(total: int, desc: str) -> Any:
    if total < _PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


# -- checkpoints -----------------------------------------------------------------------------
class Difference(StrEnum):
    """How one tensor differs between two checkpoints."""

    SHAPE = "shape"
    DTYPE = "dtype"
    VALUES = "values"
    CLOSE = "close"  # values differ, but within rtol / atol


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class TensorChange:
    """A tensor present on both sides that differs; ``stats`` says by how much."""

    name: str
    difference: Difference
    stats: TensorStats



@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CheckpointDiff(Report):
    """What differs between two checkpoints, shaped like safetensors' ``(missing, unexpected)``.

    ``missing`` are tensors in ``a`` but not in ``b``, ``unexpected`` the reverse, ``changed``
    the tensors whose shape, dtype or values differ, ``close`` those that differ only within
    ``rtol`` / ``atol`` (not a difference: ``bool(d)`` ignores them). ``config`` lists
    ``config.json`` keys that differ; ``ignored_config_keys`` the keys present but left out
    (the one list, :data:`~modeldiff._core.compare.IGNORED_CONFIG_KEYS`). Findings (the
    result protocol): missing, unexpected and changed tensors and differing config keys.

    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> d = tempfile.mkdtemp()
    >>> save_file({"w": torch.ones(3), "b": torch.zeros(2)}, f"{d}/a.safetensors")
    >>> save_file({"w": torch.tensor([1.0, 1.0, 2.0])}, f"{d}/b.safetensors")
    >>> diff = compare_checkpoints(f"{d}/a.safetensors", f"{d}/b.safetensors")
    >>> bool(diff), diff.missing, [c.name for c in diff.changed]
    (True, ('b',), ['w'])
    >>> print(diff)
    missing in b: b
    values: w: 1 of 3 values changed, max |b-a| 1, rel change 0.577, cosine 0.942809
    1 tensors compared, 0 identical, 1 changed, 0 close; 1 missing, 0 unexpected;
    0 config keys differ
    """

    SCHEMA = "modeldiff.checkpoints"

    a: str
    b: str
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    changed: tuple[TensorChange, ...] = ()
    close: tuple[TensorChange, ...] = ()
    config: tuple[ValueChange, ...] = ()
    ignored_config_keys: tuple[str, ...] = ()
    compared: int = 0
    identical: int = 0
    rtol: float = 0.0
    atol: float = 0.0
    prefix_a: str = ""  # stripped from a's keys to align them with b's (a base vs its head)
    prefix_b: str = ""

    def _findings(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.changed) + len(self.config)

    def headline(self) -> str:
        return f"{self.a} -> {self.b}: {self.summary()}"

    def summary(self) -> str:
        return (f"{self.compared} tensors compared, {self.identical} identical, "
                f"{len(self.changed)} changed, {len(self.close)} close; "
                f"{len(self.missing)} missing, {len(self.unexpected)} unexpected; "
                f"{len(self.config)} config keys differ")

    def __str__(self) -> str:
        lines = [f"missing in b: {n}" for n in self.missing]
        lines += [f"unexpected in b: {n}" for n in self.unexpected]
        lines += [f"{c.difference}: {c.stats}" for c in self.changed]
        lines += [f"close (rtol={self.rtol:g}, atol={self.atol:g}): {c.stats}"
                  for c in self.close]
        lines += [f"config {c}" for c in self.config]
        if self.prefix_a or self.prefix_b:
            lines.insert(0, "keys aligned: " + (f"a's {self.prefix_a!r}" if self.prefix_a
                                                 else f"b's {self.prefix_b!r}")
                         + " prefix stripped (a base checkpoint and its head's)")
        if self.compared == 0 and (self.missing or self.unexpected):
            lines.append("compared nothing: no tensor name is common to both checkpoints, and "
                         "no prefix aligns them; these are different models")
        lines.append(self.summary())
        return "\n".join(lines)


def compare_checkpoints(a: str | os.PathLike[str], b: str | os.PathLike[str], *,
                        rtol: float = 0.0, atol: float = 0.0) -> CheckpointDiff:
    """Compare two checkpoints tensor by tensor, streamed, without loading either.

    ``a`` and ``b`` are two weight files (``.safetensors``, or ``.bin`` read with
    ``torch.load(weights_only=True)``) or two checkpoint folders (single file or sharded
    through ``model.safetensors.index.json``). Headers are compared first, then each tensor's
    bytes a few MB at a time; statistics are computed only for tensors whose bytes differ.
    With ``rtol`` / ``atol`` > 0 a tensor whose values all satisfy
    ``|b - a| <= atol + rtol * |b|`` is reported as ``close`` rather than changed. For folders,
    ``config.json`` is compared key by key, ignoring ``transformers_version``.

    Raises :class:`~modeldiff.errors.CheckpointError` naming the file for truncated files,
    corrupt headers, shards that an index names but that do not exist, and pickles that need
    more than tensors to load.
    """
    for arg, tol in (("rtol", rtol), ("atol", atol)):
        if not 0 <= tol < math.inf:
            raise InvalidArgumentError(f"compare_checkpoints({arg})", tol,
                                       "a finite number >= 0")
    with _open(a, "compare_checkpoints(a)") as sa, _open(b, "compare_checkpoints(b)") as sb:
        if (sa.folder is None) != (sb.folder is None):
            raise InputTypeError("compare_checkpoints(b)", b,
                                 "the same kind as a: two files or two folders")
        # A base checkpoint against its head's: keys differ by the base model prefix
        # (embeddings.x vs distilbert.embeddings.x); compare them as diff --weights does.
        pa, pb = align_keys(sa.refs, sb.refs)
        names_a = {n.removeprefix(pa) if pa else n: n for n in sa.refs}
        names_b = {n.removeprefix(pb) if pb else n: n for n in sb.refs}
        if pa or pb:
            sa.refs = {k: sa.refs[n] for k, n in names_a.items()}
            sb.refs = {k: sb.refs[n] for k, n in names_b.items()}
        missing = tuple(names_a[n] for n in sa.refs if n not in sb.refs)
        unexpected = tuple(names_b[n] for n in sb.refs if n not in sa.refs)
        common = [n for n in sa.refs if n in sb.refs]
        total = sum(sa.refs[n].nbytes + sb.refs[n].nbytes for n in common)
        changed: list[TensorChange] = []
        close: list[TensorChange] = []
        identical = 0
        bar = _progress(total, "comparing")
        try:
            same_bytes = _identical_in_files(
                [(n, sa.refs[n], sb.refs[n]) for n in common], bar)
            for name in common:
                if name in same_bytes:
                    identical += 1
                    continue
                ra, rb = sa.refs[name], sb.refs[name]
                stats, within = _stats(name, ra, rb, rtol=rtol, atol=atol, progress=bar)
                if stats.equal:
                    identical += 1
                elif not stats.comparable:
                    changed.append(TensorChange(name=name, difference=Difference.SHAPE,
                                                stats=stats))
                elif stats.dtype_a != stats.dtype_b:
                    changed.append(TensorChange(name=name, difference=Difference.DTYPE,
                                                stats=stats))
                elif within and (rtol or atol or stats.n_changed == 0):
                    # n_changed == 0: -0.0 vs 0.0 and NaN payloads: other bytes, same values
                    close.append(TensorChange(name=name, difference=Difference.CLOSE,
                                              stats=stats))
                else:
                    changed.append(TensorChange(name=name, difference=Difference.VALUES,
                                                stats=stats))
        finally:
            if bar is not None:
                bar.close()
        # A file rewritten in place with its old size would not show as a short read.
        sa.check()
        sb.check()
        config: tuple[ValueChange, ...] = ()
        ignored: tuple[str, ...] = ()
        if sa.folder is not None and sb.folder is not None:
            config, ignored = _compare_config(sa.folder, sb.folder)
        return CheckpointDiff(a=sa.label, b=sb.label, missing=missing, unexpected=unexpected,
                              changed=tuple(changed), close=tuple(close), config=config,
                              ignored_config_keys=ignored, compared=len(common),
                              identical=identical, rtol=float(rtol), atol=float(atol),
                              prefix_a=pa, prefix_b=pb)


def read_tensor(path: str | os.PathLike[str], name: str) -> torch.Tensor:
    """One tensor of a checkpoint file or folder, copied out: nothing else is read, and a
    file changed meanwhile is a :class:`CheckpointError` (see :class:`_File`), where
    ``safetensors.torch.load_file`` maps the file and can die with SIGBUS.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> f = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_file({"w": torch.arange(6.0).reshape(2, 3)}, f)
    >>> read_tensor(f, "w")
    tensor([[0., 1., 2.],
            [3., 4., 5.]])
    """
    with tensor_reader(path) as read:
        return read(name)


@contextlib.contextmanager
def tensor_reader(path: str | os.PathLike[str]) -> Iterator[Callable[[str], torch.Tensor]]:
    """:func:`read_tensor` for many names: the checkpoint's index and headers are read and
    its files opened once, for the ``with`` block.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> f = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_file({"w": torch.zeros(2), "b": torch.ones(1)}, f)
    >>> with tensor_reader(f) as read:
    ...     read("w"), read("b")
    (tensor([0., 0.]), tensor([1.]))
    """
    with _open_path(path, "read_tensor(path)") as src:

        def read(name: str) -> torch.Tensor:
            ref = src.refs.get(name)
            if ref is None:
                raise CheckpointError(f"{src.label} holds no tensor {name!r}", path=Path(path))
            with ref.values(0, ref.numel) as v:
                out = v.clone()
            src.check()
            return out.reshape(ref.shape)

        yield read


def _compare_config(fa: Path, fb: Path) -> tuple[tuple[ValueChange, ...], tuple[str, ...]]:
    from modeldiff._walk.checkpoint import read_config_json

    ha, hb = (fa / "config.json").is_file(), (fb / "config.json").is_file()
    if not ha and not hb:
        return (), ()
    if ha != hb:
        return (ValueChange(key="config.json", before="present" if ha else ABSENT,
                            after="present" if hb else ABSENT),), ()
    return compare_mappings(read_config_json(fa), read_config_json(fb),
                            ignore=IGNORED_CONFIG_KEYS)


# -- weights: what did fine-tuning change? ---------------------------------------------------
def compare_weights(a: nn.Module | str | os.PathLike[str], b: nn.Module | str | os.PathLike[str],
                    pairs: Iterable[tuple[str, str]], *, svd: bool = True,
                    head: Iterable[str] = ()) -> WeightDiff:
    """Compare the tensors ``pairs`` names, ``(name_in_a, name_in_b)``, between two models.

    ``a`` and ``b`` are each an ``nn.Module`` (its ``state_dict()``) or a checkpoint folder or
    weight file (sharded folders too), streamed tensor by tensor a few MB at a time: memory
    stays bounded by the largest tensor pair, never the model. ``svd`` adds the rank and
    top-singular-value energy of every changed 2-D weight's ``dW`` (randomized, bounded
    time); ``head`` names the modules outside the base model, for the verdict.

    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> base = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> tuned = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> tuned.load_state_dict(base.state_dict())
    <All keys matched successfully>
    >>> with torch.no_grad():
    ...     _ = tuned[1].weight.add_(0.1)
    >>> names = [(k, k) for k in base.state_dict()]
    >>> wd = compare_weights(base, tuned, names)
    >>> [m.path for m in wd.modules if m.changed], wd.unchanged_modules
    (['1'], ('0',))
    >>> wd.tensors[2].rank   # adding 0.1 everywhere is a rank-1 change
    1

    Raises :class:`~modeldiff.errors.NotMaterializedError` for a model on the meta device.
    """
    pairs = tuple((str(x), str(y)) for x, y in pairs)
    with _open(a, "compare_weights(a)") as sa, _open(b, "compare_weights(b)") as sb:
        jobs: list[tuple[str, _Ref, _Ref]] = []
        kept: list[tuple[str, str]] = []
        missing: list[tuple[str, str]] = []
        for na, nb in pairs:
            ra, rb = sa.refs.get(na), sb.refs.get(nb)
            if ra is None or rb is None:
                missing.append((na, nb))
                continue
            jobs.append((nb, ra, rb))
            kept.append((na, nb))
        with _one_thread():
            stats = _each_in_threads(lambda job: weight_stats(*job, svd=svd), jobs,
                                     min(2, os.cpu_count() or 1))
    return make_weight_diff(stats, pairs=kept, missing=missing, head=tuple(head))


def _each_in_threads(fn: Any, jobs: list[Any], workers: int) -> list[Any]:
    """``[fn(job) for job in jobs]``, by ``workers`` threads: memcmp through ctypes, pread
    and torch's kernels let go of the GIL, so two cores work on two jobs at once (torch
    itself should run one thread meanwhile: on shared cores its own threads spin-wait, see
    _one_thread). The first error ends it: jobs not started are cancelled."""
    if workers < 2 or len(jobs) < 2:
        return [fn(job) for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers, thread_name_prefix="modeldiff")
    try:
        return list(pool.map(fn, jobs))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def weight_stats(name: str, a: _Ref, b: _Ref, *, svd: bool = True) -> TensorStats:
    """:func:`tensor_stats` for a weight diff: a dtype change is checked against the
    narrower dtype's rounding, and a changed 2-D weight gets its low-rank analysis."""
    rounding = _rounding(a.dtype, b.dtype) if a.shape == b.shape else None
    if rounding is None:
        stats = _stats(name, a, b)[0]
    else:
        stats, within = _stats(name, a, b, rtol=rounding[0], atol=rounding[1])
        stats = replace(stats, rounding=within and stats.n_changed is not None)
    if svd and stats.moved and len(a.shape) == 2 and min(a.shape) > 1 and a.shape == b.shape:
        # One thread: on shared cores intra-op threads spin-wait, and the SVD of a
        # 3072 x 768 change took 3.5 s with two threads against 0.09 s with one (measured).
        with contextlib.suppress(RuntimeError, TypeError), _one_thread():
            stats = replace(stats, **_low_rank(a, b, (stats.norm_diff or 0.0) ** 2))
    return stats


def _rounding(da: torch.dtype, db: torch.dtype) -> tuple[float, float] | None:
    """(rtol, atol) of one rounding to the narrower of two float dtypes, or None."""
    if da == db or not (da.is_floating_point and db.is_floating_point):
        return None
    fa, fb = torch.finfo(da), torch.finfo(db)
    narrow = fa if fa.eps > fb.eps else fb
    u = narrow.eps / 2  # unit roundoff of round-to-nearest
    # |fl(x) - x| <= u |x| <= u / (1 - u) |fl(x)|, whichever side was rounded; subnormals
    # round to a fixed spacing instead.
    return u / (1 - u) * (1 + 1e-6), narrow.smallest_normal * narrow.eps


# Singular values computed by the randomized SVD (plus oversampling) for the rank of dW:
# the rank is counted among these, so a change of higher rank reads ">= RANK_K".
RANK_K = 32
_OVERSAMPLE = 8
# A singular value counts towards the rank when at least this share of the largest one:
# merged-LoRA rounding noise in float32 sits near 1e-6 of it, a real direction far above.
RANK_RTOL = 1e-3


def _low_rank(a: _Ref, b: _Ref, total: float) -> dict[str, Any]:
    """Rank and top-k energy of ``dW = b - a`` with torch.svd_lowrank: a few matmuls of the
    matrix by a (n, RANK_K + 8) block, so a 4096 x 11008 weight takes about a second.
    ``total`` is ``||dW||^2`` (from the statistics, summed in float64). Memory: one float32
    copy of ``dW`` and the (n, RANK_K + 8) blocks."""
    m, n = a.shape
    # float32 is enough to find directions; one tensor pair in memory at a time
    with b.values(0, b.numel) as vb:
        d = vb.to(torch.float32, copy=True)
    with a.values(0, a.numel) as va:
        d -= va
    d = d.reshape(m, n)
    if total == 0.0 or not math.isfinite(total):
        return {}
    k = min(RANK_K, m, n)
    if min(m, n) <= RANK_K + _OVERSAMPLE:
        sv = torch.linalg.svdvals(d.double())
    else:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same numbers run to run
        try:
            _, sv, _ = torch.svd_lowrank(d, q=k + _OVERSAMPLE, niter=2)
        finally:
            torch.random.set_rng_state(gen_state)
        sv = sv.double()
    sv = sv[:k]
    rank = int((sv >= sv[0] * RANK_RTOL).sum()) if float(sv[0]) > 0 else 0
    energy = min(1.0, float((sv[:ENERGY_K] ** 2).sum()) / total)
    return {"rank": rank, "svd_k": k, "top_energy": energy}
