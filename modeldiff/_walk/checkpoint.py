"""Checkpoint folders, read without loading tensors: config.json, safetensors headers, shard
indexes, and pickled ``.bin`` files (only ever through ``torch.load(weights_only=True)``).

>>> import tempfile, pathlib, json, struct
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
>>> _ = (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
>>> entry = read_header(d / "model.safetensors")["w"]
>>> entry.dtype, entry.shape, entry.end - entry.start
('float32', (2,), 8)
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldiff import limits
from modeldiff._core.report import loads
from modeldiff.errors import CheckpointError, ConfigError

__all__ = [
    "SAFETENSORS_DTYPES",
    "WEIGHT_FILES",
    "HeaderEntry",
    "checkpoint_files",
    "load_bin",
    "read_config_json",
    "read_header",
    "read_limited",
    "read_tensor_index",
    "require_regular_file",
]

# safetensors dtype codes -> torch dtype names (str(torch.dtype) without "torch.").
SAFETENSORS_DTYPES: Mapping[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64",
    "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn_x2",
}
# Bits per element, as the safetensors format counts them (F4 packs two to a byte).
_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8,
         "U64": 64, "U32": 32, "U16": 16, "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8,
         "C64": 64, "F8_E8M0": 8, "F4": 4}

# The weight files from_pretrained reads, in its order of preference: (index, single file).
# Nothing else in a folder (training_args.bin, optimizer.bin, scheduler.pt, rng_state.pth,
# adapters) is ever opened: several of those are pickles of arbitrary objects.
WEIGHT_FILES = (("model.safetensors.index.json", "model.safetensors"),
                ("pytorch_model.bin.index.json", "pytorch_model.bin"))

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True, slots=True)
class HeaderEntry:
    """One tensor in a safetensors file: dtype (torch name), shape, absolute byte range."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def _where(p: Path) -> str:
    return f"{p.name} in {p.parent}"


def require_regular_file(path: str | os.PathLike[str], what: str = "file") -> os.stat_result:
    """``path``'s stat, after making sure it is a regular file (symlinks followed): a FIFO,
    a device (``/dev/zero`` behind a symlink), a socket or a directory with a weight file's
    name is a :class:`CheckpointError` at once, before anything is opened."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError as e:
        raise CheckpointError(f"{what} {p} does not exist", path=p) from e
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {p}: {e.strerror or e}", path=p) from e
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise CheckpointError(f"{what} {p} is {kind}, not a regular file; modeldiff reads only "
                              "regular files. Point it at the real file.", path=p)
    return st


def _open_regular(p: Path, what: str) -> tuple[Any, int]:
    """(binary file object, size) of a regular file; O_NONBLOCK so that a path swapped for
    a FIFO between the check and the open cannot block, and the check repeated on the
    opened file."""
    require_regular_file(p, what)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {p}: {e.strerror or e}", path=p) from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CheckpointError(f"{what} {p} is not a regular file; modeldiff reads only "
                              "regular files", path=p)
    return os.fdopen(fd, "rb"), st.st_size


def read_limited(path: str | os.PathLike[str], limit: str, what: str) -> bytes:
    """The bytes of a small regular file, refused past the :mod:`modeldiff.limits` entry
    named ``limit`` (by its size on disk, and by what can actually be read)."""
    p = Path(path)
    cap = getattr(limits, limit)
    f, size = _open_regular(p, what)
    with f:
        if size > cap:
            raise CheckpointError(f"{what} {p} is {size:,} bytes, over the {cap:,}-byte limit "
                                  f"({limits.hint(limit)})", path=p)
        try:
            # Ask for what the file holds (read(n) allocates n bytes up front: a 500-byte
            # config must not cost a buffer of the whole limit); more only if it grew.
            data = f.read(size + 1)
            if len(data) > size:
                data += f.read(cap + 1 - len(data))
        except OSError as e:
            raise CheckpointError(f"cannot read {what} {p}: {e.strerror or e}", path=p) from e
    if len(data) > cap:
        raise CheckpointError(f"{what} {p} grew past the {cap:,}-byte limit while it was "
                              f"read ({limits.hint(limit)})", path=p)
    return data


def read_header(path: str | os.PathLike[str]) -> dict[str, HeaderEntry]:
    """The tensor table of a ``.safetensors`` file, validated to the format's rules.

    The rules are those the safetensors library enforces, and a few more: a header of at
    most :data:`modeldiff.limits.MAX_SAFETENSORS_HEADER_BYTES`, UTF-8 JSON object starting
    with ``{``, no key twice, ``__metadata__`` a string-to-string map, each tensor a known
    dtype, a shape of non-negative integers and two integer ``data_offsets`` whose span is
    exactly the shape's byte size; the tensors tile the data section in order, without gap
    or overlap, to the last byte of the file. Raises :class:`CheckpointError` naming the
    file and the rule; nothing past the header is read.
    """
    p = Path(path)
    f, size = _open_regular(p, "safetensors file")
    with f:
        try:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(
                    f"{_where(p)} is truncated: {size} bytes, too short for a safetensors "
                    "header. Re-save or re-download it.", path=p)
            (n,) = struct.unpack("<Q", raw_len)
            cap = limits.MAX_SAFETENSORS_HEADER_BYTES
            if n > cap:
                raise CheckpointError(
                    f"{_where(p)} has a corrupt header: it declares {n:,} header bytes, over "
                    f"the {cap:,}-byte limit ({limits.hint('MAX_SAFETENSORS_HEADER_BYTES')})",
                    path=p)
            if 8 + n > size:
                raise CheckpointError(
                    f"{_where(p)} has a corrupt header: it declares {n:,} header bytes but "
                    f"the file has {size:,} bytes. Re-save or re-download it.", path=p)
            raw = f.read(n)
        except OSError as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"cannot read {p}: {e.strerror or e}", path=p) from e
    if len(raw) < n:
        raise CheckpointError(f"{_where(p)} shrank while it was read; re-run once nothing "
                              "writes to it", path=p)

    def corrupt(message: str) -> CheckpointError:
        return CheckpointError(f"{_where(p)} has a corrupt header: {message}. Re-save or "
                               "re-download it.", path=p)

    if not raw.lstrip(b" ").startswith(b"{"):
        raise corrupt("it does not start with '{' (a JSON object)")
    # No separate depth walk (a tenth of reading a header): the checks below accept only
    # entries two levels deep and never descend into anything else.
    header = loads(raw, what="it", size_limit="MAX_SAFETENSORS_HEADER_BYTES",
                   error=corrupt, strict=True, unique_keys=True, check_depth=False)
    if not isinstance(header, dict):
        raise corrupt("not a JSON object")
    base = 8 + n
    data_size = size - base
    out: dict[str, HeaderEntry] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise corrupt("__metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict):
            raise corrupt(f"the entry for {name[:200]!r} is not an object")
        code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(code, str):
            raise corrupt(f"tensor {name[:200]!r} has no dtype string")
        dtype = SAFETENSORS_DTYPES.get(code)
        if dtype is None:
            raise CheckpointError(f"{_where(p)}: tensor {name[:200]!r} has unknown dtype "
                                  f"{code[:40]!r}; modeldiff reads "
                                  f"{', '.join(SAFETENSORS_DTYPES)}", path=p)
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise corrupt(f"tensor {name[:200]!r}: shape must be a list of non-negative "
                          f"integers, got {str(shape)[:80]}")
        if not isinstance(offsets, list) or len(offsets) != 2 or \
                not all(_is_uint(x) for x in offsets):
            raise corrupt(f"tensor {name[:200]!r}: data_offsets must be two non-negative "
                          f"integers, got {str(offsets)[:80]}")
        start, end = offsets
        if start > end:
            raise corrupt(f"tensor {name[:200]!r} ends (byte {end:,}) before it starts "
                          f"(byte {start:,})")
        if end > data_size:
            raise CheckpointError(
                f"{_where(p)} is truncated: tensor {name[:200]!r} ends at byte "
                f"{base + end:,} but the file has {size:,} bytes. Re-save or re-download it.",
                path=p)
        numel = 1
        for d in shape:
            numel *= d
        bits = numel * _BITS[code]
        if bits % 8 or bits // 8 != end - start:
            raise corrupt(f"tensor {name[:200]!r} of shape {shape} {dtype} needs "
                          f"{bits / 8:,g} bytes, the header gives it {end - start:,}")
        spans.append((start, end, name))
        out[name] = HeaderEntry(dtype, tuple(shape), base + start, base + end)
    spans.sort()
    at = 0
    for start, end, name in spans:
        if start != at:
            raise corrupt(f"tensor {name[:200]!r} starts at data byte {start:,}, expected "
                          f"{at:,} ({'overlap' if start < at else 'gap'}: tensors must tile "
                          "the data section in order)")
        at = end
    if at != data_size:
        raise corrupt(f"the tensors cover {at:,} data bytes but the file holds {data_size:,} "
                      "after the header")
    return out


def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


def _read_json_object(p: Path, limit: str, what: str, error: type[Exception]) -> dict[str, Any]:
    data = read_limited(p, limit, what)

    def fail(message: str) -> Exception:
        return error(message, path=p)  # type: ignore[call-arg]

    obj = loads(data, what=str(p), size_limit=limit, error=fail)
    if not isinstance(obj, dict):
        raise fail(f"{p} must hold a JSON object, found {type(obj).__name__}")
    return obj


def read_config_json(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder as a dict, with errors that name the file.

    Only a regular file of at most :data:`modeldiff.limits.MAX_CONFIG_BYTES`, nested at most
    :data:`modeldiff.limits.MAX_JSON_DEPTH` deep, is read."""
    p = Path(folder) / "config.json"
    if not p.exists() and not p.is_symlink():
        raise CheckpointError(
            f"no config.json in {Path(folder)}: not a transformers checkpoint folder "
            "(model.save_pretrained(folder) writes one)", path=p)
    return _read_json_object(p, "MAX_CONFIG_BYTES", "config file", ConfigError)


def checkpoint_files(folder: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The weight files ``from_pretrained`` would read from ``folder``: the shards a
    ``model.safetensors.index.json`` names, else ``model.safetensors``, else the shards of
    ``pytorch_model.bin.index.json``, else ``pytorch_model.bin``; ``()`` when there are none.
    Other files (``training_args.bin``, ``optimizer.bin`` ...) never count."""
    d = Path(folder)
    for index_name, single_name in WEIGHT_FILES:
        index, single = d / index_name, d / single_name
        if index.exists() or index.is_symlink():
            return tuple(sorted(set(_read_index(index).values())))
        if single.exists() or single.is_symlink():
            require_regular_file(single, "weight file")
            return (single,)
    return ()


def _read_index(index: Path) -> dict[str, Path]:
    """``{tensor: shard path}`` of a shard index, validated: a JSON object whose
    ``weight_map`` maps strings to shard file names that resolve inside the folder (no
    ``..``, absolute paths or symlinks out) and exist as regular files."""
    data = _read_json_object(index, "MAX_INDEX_BYTES", "shard index", CheckpointError)
    weight_map = data.get("weight_map")

    def bad(message: str, path: Path = index) -> CheckpointError:
        return CheckpointError(f"{_where(index)} is not a valid shard index: {message}",
                               path=path)

    if not isinstance(weight_map, dict):
        raise bad('it needs a "weight_map" object (tensor name -> shard file name)')
    folder = index.parent
    try:
        root = folder.resolve(strict=True)
    except OSError as e:
        raise bad(f"cannot resolve the folder: {e}") from e
    shards: dict[str, Path] = {}
    out: dict[str, Path] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise bad(f"the shard for {name[:200]!r} must be a file name string, got "
                      f"{type(shard).__name__}")
        hit = shards.get(shard)
        if hit is None:
            if not shard or "\x00" in shard or os.path.isabs(shard) or \
                    any(part in ("..", "") for part in shard.replace("\\", "/").split("/")):
                raise bad(f"shard name {shard[:200]!r} (for {name[:200]!r}) is not a plain "
                          "file name inside the folder")
            path = folder / shard
            if not path.exists() and not path.is_symlink():
                raise CheckpointError(
                    f"{index.name} in {folder} names shard {shard[:200]!r} (for "
                    f"{name[:200]!r}), which does not exist. The checkpoint is incomplete: "
                    "re-save or re-download it.", path=path)
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
                raise bad(f"shard {shard[:200]!r} cannot be resolved: {e}", path) from e
            if real != root and root not in real.parents:
                raise bad(f"shard {shard[:200]!r} leads outside the folder (to {real})", path)
            require_regular_file(path, "shard")
            hit = shards[shard] = path
        out[name] = hit
    return out


def read_tensor_index(folder: str | os.PathLike[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{key: (dtype, shape)}`` for every tensor of a checkpoint folder, from headers only.

    ``.bin`` files are opened with ``torch.load(weights_only=True, mmap=True)`` onto the meta
    device, so no pickle code runs and no weights are read. When a shard index is present,
    every key it lists must be in the shard it names.
    """
    d = Path(folder)
    expected: dict[str, Path] = {}
    for index_name, _ in WEIGHT_FILES:
        index = d / index_name
        if index.exists() or index.is_symlink():
            expected = _read_index(index)
            break
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    held: dict[Path, set[str]] = {}
    for f in checkpoint_files(folder):
        keys = held.setdefault(f, set())
        if f.suffix == ".safetensors":
            for k, e in read_header(f).items():
                out[k] = (e.dtype, e.shape)
                keys.add(k)
        else:
            for k, t in load_bin(f, map_location="meta").items():
                out[k] = (str(t.dtype).removeprefix("torch."), tuple(t.shape))
                keys.add(k)
    for key, shard in expected.items():
        if key not in held.get(shard, ()):
            raise CheckpointError(
                f"the shard index in {d} says {key[:200]!r} is in {shard.name}, which does not "
                "hold it. The checkpoint is inconsistent: re-save or re-download it.",
                path=shard)
    return out


def load_bin(path: Path, *, map_location: str = "cpu") -> dict[str, Any]:
    """A pickled state dict, read with ``weights_only=True``: no code in the file runs.

    Refused with :class:`CheckpointError`: a path that is not a regular file, a legacy
    (non-zip) pickle over :data:`modeldiff.limits.MAX_BIN_FILE_BYTES`, a zip whose compressed
    members would inflate past :data:`modeldiff.limits.MAX_BIN_UNCOMPRESSED_BYTES`, and a
    pickle that holds anything but a ``{str: tensor}`` mapping.
    """
    import pickle
    import zipfile

    import torch

    size = require_regular_file(path, "weight file").st_size
    # mmap only works for the zip format torch has written since 1.6; older plain pickles
    # are read whole, still with weights_only=True.
    try:
        use_mmap = zipfile.is_zipfile(path)
    except OSError as e:
        raise CheckpointError(f"cannot read {_where(path)}: {e}", path=path) from e
    if use_mmap:
        _check_zip(path)
    elif size > limits.MAX_BIN_FILE_BYTES:
        raise CheckpointError(
            f"{_where(path)} is a legacy (non-zip) pickle of {size:,} bytes, which would be "
            f"read whole ({limits.hint('MAX_BIN_FILE_BYTES')}); re-save it with torch.save "
            "from a current torch, or as safetensors", path=path)
    try:
        sd = torch.load(path, map_location=map_location, weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as e:
        first = (str(e).splitlines() or [""])[0]
        raise CheckpointError(
            f"{_where(path)} was refused: it is a pickle that needs more than "
            f"tensors to load ({first}). modeldiff never unpickles arbitrary "
            "objects; convert it to safetensors with a trusted tool.", path=path) from e
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, zipfile.BadZipFile, MemoryError,
            RecursionError) as e:
        first = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"cannot read {_where(path)}: {type(e).__name__}: {first}",
                              path=path) from e
    if not isinstance(sd, dict):
        raise CheckpointError(f"{_where(path)} does not hold a state dict "
                              f"(found {type(sd).__name__})", path=path)
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(
                f"{_where(path)} does not hold a state dict: entry {str(k)[:80]!r} is a "
                f"{type(k).__name__} -> {type(v).__name__}, expected str -> Tensor",
                path=path)
    return sd


def _check_zip(path: Path) -> None:
    """Refuse a zip whose compressed members would inflate past the cap (a zip bomb)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"cannot read {_where(path)}: not a valid zip ({e})",
                              path=path) from e
    inflated = sum(i.file_size for i in infos if i.compress_type != zipfile.ZIP_STORED)
    if inflated > limits.MAX_BIN_UNCOMPRESSED_BYTES:
        raise CheckpointError(
            f"{_where(path)} holds compressed members that would inflate to {inflated:,} "
            f"bytes ({limits.hint('MAX_BIN_UNCOMPRESSED_BYTES')}); torch.save never writes "
            "such files", path=path)
