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

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldiff.errors import CheckpointError, ConfigError

__all__ = [
    "SAFETENSORS_DTYPES",
    "HeaderEntry",
    "checkpoint_files",
    "read_config_json",
    "read_header",
    "read_tensor_index",
]

# safetensors dtype codes -> torch dtype names (str(torch.dtype) without "torch.").
SAFETENSORS_DTYPES: Mapping[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64",
    "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn_x2",
}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
             "C64": 8, "F8_E8M0": 1}

# A safetensors header larger than this is corrupt, not big (safetensors itself caps at 100 MB).
_MAX_HEADER = 100_000_000


@dataclass(frozen=True, slots=True)
class HeaderEntry:
    """One tensor in a safetensors file: dtype (torch name), shape, absolute byte range."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: str | os.PathLike[str]) -> dict[str, HeaderEntry]:
    """The tensor table of a ``.safetensors`` file, validated against the file's size.

    Raises :class:`CheckpointError` naming the file when the header is truncated, not JSON,
    or points past the end of the file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(
                    f"{p.name} in {p.parent} is truncated: {size} bytes, too short for a "
                    "safetensors header. Re-save or re-download it.", path=p)
            (n,) = struct.unpack("<Q", raw_len)
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(
                    f"{p.name} in {p.parent} has a corrupt header: it declares {n:,} header "
                    f"bytes but the file has {size:,} bytes. Re-save or re-download it.", path=p)
            raw = f.read(n)
    except OSError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {p}: {e.strerror or e}", path=p) from e
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{p.name} in {p.parent} has a corrupt header: not valid JSON ({e}). "
            "Re-save or re-download it.", path=p) from e
    base = 8 + n
    out: dict[str, HeaderEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            code = info["dtype"]
            shape = tuple(int(x) for x in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{p.name} in {p.parent} has a corrupt header entry for {name!r}: "
                f"{type(e).__name__} {e}", path=p) from e
        dtype = SAFETENSORS_DTYPES.get(code)
        if dtype is None:
            raise CheckpointError(f"{p.name} in {p.parent}: tensor {name!r} has unknown dtype "
                                  f"{code!r}", path=p)
        if start > end or base + end > size:
            raise CheckpointError(
                f"{p.name} in {p.parent} is truncated: tensor {name!r} ends at byte "
                f"{base + end:,} but the file has {size:,} bytes. Re-save or re-download it.",
                path=p)
        numel = 1
        for d in shape:
            numel *= d
        itemsize = _ITEMSIZE.get(code)
        if itemsize is not None and numel * itemsize != end - start:
            raise CheckpointError(
                f"{p.name} in {p.parent} has a corrupt header: tensor {name!r} of shape "
                f"{list(shape)} {dtype} needs {numel * itemsize:,} bytes, the header gives it "
                f"{end - start:,}", path=p)
        out[name] = HeaderEntry(dtype, shape, base + start, base + end)
    return out


def read_config_json(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder as a dict, with errors that name the file."""
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise CheckpointError(
            f"no config.json in {Path(folder)}: not a transformers checkpoint folder "
            "(model.save_pretrained(folder) writes one)", path=p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}",
                          path=p) from e
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {p}: {e}", path=p) from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a JSON object, found {type(data).__name__}", path=p)
    return data


def checkpoint_files(folder: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The weight files of a folder: safetensors (single or sharded), else ``.bin``."""
    d = Path(folder)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        return tuple(sorted({d / f for f in _read_index(index).values()}))
    single = d / "model.safetensors"
    if single.is_file():
        return (single,)
    st = sorted(d.glob("*.safetensors"))
    if st:
        return tuple(st)
    bin_index = d / "pytorch_model.bin.index.json"
    if bin_index.is_file():
        return tuple(sorted({d / f for f in _read_index(bin_index).values()}))
    return tuple(sorted(d.glob("*.bin")))


def _read_index(index: Path) -> dict[str, str]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index} is not a valid shard index: {type(e).__name__}: {e}",
                              path=index) from e
    for name, shard in weight_map.items():
        if not (index.parent / shard).is_file():
            raise CheckpointError(
                f"{index.name} in {index.parent} names shard {shard!r} (for {name!r}), "
                "which does not exist. The checkpoint is incomplete: re-save or re-download it.",
                path=index.parent / shard)
    return {str(k): str(v) for k, v in weight_map.items()}


def read_tensor_index(folder: str | os.PathLike[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{key: (dtype, shape)}`` for every tensor of a checkpoint folder, from headers only.

    ``.bin`` files are opened with ``torch.load(weights_only=True, mmap=True)`` onto the meta
    device, so no pickle code runs and no weights are read.
    """
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in checkpoint_files(folder):
        if f.suffix == ".safetensors":
            for k, e in read_header(f).items():
                out[k] = (e.dtype, e.shape)
        else:
            for k, t in load_bin(f, map_location="meta").items():
                out[k] = (str(t.dtype).removeprefix("torch."), tuple(t.shape))
    return out


def load_bin(path: Path, *, map_location: str = "cpu") -> dict[str, Any]:
    """A pickled state dict, read with ``weights_only=True``: no code in the file runs."""
    import pickle
    import zipfile

    import torch

    # mmap only works for the zip format torch has written since 1.6; older plain pickles
    # are read whole, still with weights_only=True.
    use_mmap = zipfile.is_zipfile(path)
    try:
        sd = torch.load(path, map_location=map_location, weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path.name} in {path.parent} was refused: it is a pickle that needs more than "
            f"tensors to load ({str(e).splitlines()[0]}). modeldiff never unpickles arbitrary "
            "objects; convert it to safetensors with a trusted tool.", path=path) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"cannot read {path.name} in {path.parent}: {e}", path=path) from e
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path.name} in {path.parent} does not hold a state dict "
                              f"(found {type(sd).__name__})", path=path)
    return sd
