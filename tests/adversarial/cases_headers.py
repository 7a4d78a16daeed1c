"""safetensors headers: every rule of the format, each broken once, plus fuzzing.

Each case writes a file and calls ``read_header`` (torch-free); the expected outcome is a
CheckpointError naming the file, or, for files the format allows, the right table.
"""

from __future__ import annotations

import contextlib
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

from tests.adversarial.cases import add, raises

W = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def _file(header: Any, data: bytes = b"", *, raw: bytes | None = None,
          length: int | None = None) -> Path:
    body = raw if raw is not None else json.dumps(header).encode()
    n = len(body) if length is None else length
    d = Path(tempfile.mkdtemp(prefix="adv-st-"))
    p = d / "model.safetensors"
    p.write_bytes(struct.pack("<Q", n) + body + data)
    return p


def _bad(name: str, header: Any = None, data: bytes = b"", *, raw: bytes | None = None,
         length: int | None = None, match: str | None = None) -> None:
    def run() -> None:
        from modeldiff._walk.checkpoint import read_header
        from modeldiff.errors import CheckpointError

        p = _file(header, data, raw=raw, length=length)
        e = raises(CheckpointError, read_header, p, match=match)
        assert getattr(e, "path", None) == p, e
    add("light", f"header-{name}", run)


def _good(name: str, header: Any, data: bytes, expect: dict[str, tuple[str, tuple[int, ...]]],
          *, raw: bytes | None = None) -> None:
    def run() -> None:
        from modeldiff._walk.checkpoint import read_header

        table = read_header(_file(header, data, raw=raw))
        assert {k: (e.dtype, e.shape) for k, e in table.items()} == expect
    add("light", f"header-valid-{name}", run)


# -- sizes and framing ---------------------------------------------------------------------
for size in range(8):
    def short(size: int = size) -> None:
        from modeldiff._walk.checkpoint import read_header
        from modeldiff.errors import CheckpointError

        d = Path(tempfile.mkdtemp(prefix="adv-st-"))
        (d / "model.safetensors").write_bytes(b"\x01" * size)
        raises(CheckpointError, read_header, d / "model.safetensors", match="truncated")
    add("light", f"header-file-of-{size}-bytes", short)

_bad("length-past-eof", W, bytes(8), length=10_000, match="declares")
_bad("length-2**64-1", W, bytes(8), length=2**64 - 1, match="limit")
_bad("length-over-100MB", W, bytes(8), length=100_000_001, match="MAX_SAFETENSORS_HEADER")
_bad("length-short-of-json", W, bytes(8), length=10, match="corrupt")
_bad("not-json", raw=b"{this is not json}", match="corrupt")
_bad("not-utf8", raw=b'{"w\xff\xfe": 1}', match="UTF-8")
_bad("json-array", raw=b"[1, 2]", match="corrupt")
_bad("json-string", raw=b'"hello"', match="corrupt")
_bad("json-null", raw=b"null", match="corrupt")
_bad("empty-header", raw=b"", match="corrupt")
_bad("depth-bomb-arrays", raw=b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}")
_bad("depth-bomb-objects", raw=b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
_bad("depth-65", raw=b'{"__metadata__":' + b'{"a":' * 64 + b'"x"' + b"}" * 65)
_bad("nul-bytes-outside-strings", raw=b'{"w": \x00}')
_bad("trailing-garbage", raw=json.dumps({"w": W}).encode() + b" xyz", data=bytes(8))
_bad("two-objects", raw=json.dumps({"w": W}).encode() * 2, data=bytes(8))

# -- numbers -------------------------------------------------------------------------------
for label, text in [("nan", "NaN"), ("infinity", "Infinity"), ("minus-infinity", "-Infinity"),
                    ("1e400", "1e400"), ("float", "8.0"), ("string", '"8"'), ("true", "true"),
                    ("null", "null"), ("negative", "-8"), ("huge-int", "9" * 5000),
                    ("exponent-int", "8e0")]:
    _bad(f"offset-{label}",
         raw=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,' + text.encode() + b"]}}",
         data=bytes(8))
    _bad(f"shape-{label}",
         raw=b'{"w":{"dtype":"F32","shape":[' + text.encode() + b'],"data_offsets":[0,8]}}',
         data=bytes(8))

# -- entries -------------------------------------------------------------------------------
_bad("entry-not-object", {"w": [1, 2, 3]}, bytes(8))
_bad("entry-string", {"w": "F32"}, bytes(8))
_bad("missing-dtype", {"w": {"shape": [2], "data_offsets": [0, 8]}}, bytes(8))
_bad("missing-shape", {"w": {"dtype": "F32", "data_offsets": [0, 8]}}, bytes(8))
_bad("missing-offsets", {"w": {"dtype": "F32", "shape": [2]}}, bytes(8))
_bad("dtype-unknown", {"w": {**W, "dtype": "F128"}}, bytes(8), match="unknown dtype")
_bad("dtype-lowercase", {"w": {**W, "dtype": "f32"}}, bytes(8), match="unknown dtype")
_bad("dtype-number", {"w": {**W, "dtype": 4}}, bytes(8))
_bad("dtype-f6-unsupported", {"w": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}},
     bytes(3), match="unknown dtype")
_bad("shape-not-list", {"w": {**W, "shape": 2}}, bytes(8))
_bad("shape-nested", {"w": {**W, "shape": [[2]]}}, bytes(8))
_bad("offsets-one", {"w": {**W, "data_offsets": [8]}}, bytes(8))
_bad("offsets-three", {"w": {**W, "data_offsets": [0, 8, 8]}}, bytes(8))
_bad("offsets-object", {"w": {**W, "data_offsets": {"0": 8}}}, bytes(8))
_bad("offsets-reversed", {"w": {**W, "data_offsets": [8, 0]}}, bytes(8))
_bad("ends-past-file", {"w": {**W, "data_offsets": [0, 8]}}, bytes(4), match="truncated")
_bad("bytes-too-few-for-shape", {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
     bytes(8), match="needs")
_bad("bytes-too-many-for-shape", {"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 8]}},
     bytes(8), match="needs")
_bad("huge-shape-tiny-span", {"w": {"dtype": "F32", "shape": [2**62, 2**62],
                                    "data_offsets": [0, 8]}}, bytes(8), match="needs")
_bad("f4-odd-count", {"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2))
_bad("gap-at-start", {"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8),
     match="gap")
_bad("gap-between", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, bytes(12),
     match="gap")
_bad("overlap", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8),
     match="overlap")
_bad("same-span-twice", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
_bad("trailing-data", {"w": W}, bytes(12), match="cover")
_bad("duplicate-key", raw=b'{"w":' + json.dumps(W).encode() + b',"w":'
     + json.dumps(W).encode() + b"}", data=bytes(8), match="twice")
_bad("metadata-int-value", {"__metadata__": {"format": 1}, "w": W}, bytes(8), match="metadata")
_bad("metadata-list", {"__metadata__": ["pt"], "w": W}, bytes(8), match="metadata")
_bad("metadata-nested", {"__metadata__": {"a": {"b": "c"}}, "w": W}, bytes(8))

# -- what the format allows ----------------------------------------------------------------
_good("empty", {}, b"", {})
_good("metadata-only", {"__metadata__": {"format": "pt"}}, b"", {})
_good("one", {"w": W}, bytes(8), {"w": ("float32", (2,))})
_good("leading-spaces", None, bytes(8), {"w": ("float32", (2,))},
      raw=b"   " + json.dumps({"w": W}).encode())
_good("trailing-padding", None, bytes(8), {"w": ("float32", (2,))},
      raw=json.dumps({"w": W}).encode() + b"      ")
_good("out-of-order-keys", {"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                            "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
      bytes(8), {"a": ("float32", (1,)), "b": ("float32", (1,))})
_good("scalar-and-empty", {"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
                           "e": {"dtype": "I8", "shape": [0, 5], "data_offsets": [8, 8]}},
      bytes(8), {"s": ("float64", ()), "e": ("int8", (0, 5))})
_good("extra-entry-fields", {"w": {**W, "note": "x"}}, bytes(8), {"w": ("float32", (2,))})
_good("nul-in-name", {"w\x00x": W}, bytes(8), {"w\x00x": ("float32", (2,))})
_good("f4-packed", {"w": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}, bytes(2),
      {"w": ("float4_e2m1fn_x2", (4,))})
_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8,
         "U64": 64, "U32": 32, "U16": 16, "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8,
         "C64": 64, "F8_E8M0": 8, "F4": 4}
_every: dict[str, Any] = {}
_at = 0
for _code, _bits in _BITS.items():
    _every[_code] = {"dtype": _code, "shape": [8], "data_offsets": [_at, _at + _bits]}
    _at += _bits
_good("every-dtype", _every, bytes(_at), {
    c: (d, (8,)) for c, d in {"F64": "float64", "F32": "float32", "F16": "float16",
                              "BF16": "bfloat16", "I64": "int64", "I32": "int32",
                              "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32",
                              "U16": "uint16", "U8": "uint8", "BOOL": "bool",
                              "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                              "C64": "complex64", "F8_E8M0": "float8_e8m0fnu",
                              "F4": "float4_e2m1fn_x2"}.items()})


def _fuzz_bytes() -> None:
    """Random bytes after a plausible length prefix: a CheckpointError or a table."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from modeldiff._walk.checkpoint import read_header
    from modeldiff.errors import CheckpointError

    d = Path(tempfile.mkdtemp(prefix="adv-st-"))

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=300), st.integers(0, 400))
    def check(body: bytes, length: int) -> None:
        p = d / "model.safetensors"
        p.write_bytes(struct.pack("<Q", length) + body)
        with contextlib.suppress(CheckpointError):
            read_header(p)

    check()


def _fuzz_entries() -> None:
    """Generated headers of JSON values in every slot: a CheckpointError, or a table that
    satisfies every rule (checked independently here)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from modeldiff._walk.checkpoint import read_header
    from modeldiff.errors import CheckpointError

    d = Path(tempfile.mkdtemp(prefix="adv-st-"))
    json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 40) | st.floats()
                               | st.text(max_size=4), lambda c: st.lists(c, max_size=3)
                               | st.dictionaries(st.text(max_size=3), c, max_size=3),
                               max_leaves=6)
    entry = st.fixed_dictionaries({}, optional={
        "dtype": st.sampled_from(["F32", "F16", "I8", "BOOL", "X"]) | json_values,
        "shape": st.lists(st.integers(0, 5), max_size=3) | json_values,
        "data_offsets": st.lists(st.integers(0, 40), min_size=2, max_size=2) | json_values})

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.text(min_size=1, max_size=3), entry, max_size=4),
           st.integers(0, 48))
    def check(header: dict[str, Any], data: int) -> None:
        p = d / "model.safetensors"
        body = json.dumps(header).encode()
        p.write_bytes(struct.pack("<Q", len(body)) + body + bytes(data))
        try:
            table = read_header(p)
        except CheckpointError:
            return
        spans = sorted((e.start, e.end) for e in table.values())
        at = 8 + len(body)
        for s, e in spans:
            assert s == at
            at = e
        assert at == p.stat().st_size

    check()


add("light", "header-fuzz-random-bytes", _fuzz_bytes)
add("light", "header-fuzz-generated-entries", _fuzz_entries)
