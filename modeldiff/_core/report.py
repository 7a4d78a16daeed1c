"""The one result protocol: every result type behaves the same way, so users learn it once.

A result (GraphDiff, HeadDelta, WeightDiff, CheckpointDiff, RoundTripReport, PipelineSteps,
and every later one) is a frozen dataclass that derives from :class:`Report`:

- ``bool(result)`` is True when the result **found something**: a difference, a problem, a
  caveat worth reading. ``not result`` reads as "nothing to report", the way ``diff(1)``
  exits 0. Every type says in its docstring what its findings are; ``result.findings`` is
  their count. (A round-trip that changed nothing is falsy: ``report.ok`` is the
  positively named property.)
- ``to_json()`` is strict JSON (``allow_nan=False``) with ``schema`` and ``version``; a
  non-finite float is written explicitly as ``{"float": "nan"}`` (``"inf"``, ``"-inf"``)
  and ``from_json`` reads it all back:
  ``type(r).from_json(r.to_json()).to_json() == r.to_json()``.
- ``repr()`` is one line; ``str()`` is the readable report; ``_repr_mimebundle_`` gives
  Jupyter a diagram where the type has one, else an HTML table of the report.

The JSON codec is derived from the dataclass fields and their annotations, once, here: no
result type writes its own serializer.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, repr=False)
... class Count(Report):
...     SCHEMA = "example.count"
...     n: int
...     ratio: float
...     def _findings(self) -> int:
...         return self.n
...     def headline(self) -> str:
...         return f"{self.n} found"
>>> r = Count(n=2, ratio=float("inf"))
>>> bool(r), repr(r)
(True, '<Count 2 found>')
>>> r.to_json(indent=None)
'{"schema": "example.count", "version": 1, "n": 2, "ratio": {"float": "inf"}, "findings": 2}'
>>> Count.from_json(r.to_json()).ratio
inf
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import html
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from modeldiff import limits
from modeldiff.errors import SchemaError

__all__ = ["Report", "decode", "encode", "loads", "register"]

R = TypeVar("R", bound="Report")

# Dataclasses that take part in result JSON, by name: the decoder resolves annotations
# (written as strings under ``from __future__ import annotations``) against these.
_TYPES: dict[str, Any] = {}



def register(cls: type) -> type:
    """Make a value type (a frozen dataclass, an enum) known to the result JSON decoder."""
    _TYPES[cls.__name__] = cls
    return cls


class Report:
    """Base of every result type; see the module docstring for the protocol."""

    __slots__ = ()
    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

    # -- what every type defines ----------------------------------------------------------
    def _findings(self) -> int:
        """How many things this result reports (differences, problems, caveats)."""
        raise NotImplementedError

    def headline(self) -> str:
        """One line: what was compared and what was found."""
        raise NotImplementedError

    # -- the protocol -----------------------------------------------------------------------
    @property
    def findings(self) -> int:
        """How many things this result reports; ``bool(result) == (findings > 0)``."""
        return self._findings()

    def __bool__(self) -> bool:
        return self._findings() > 0

    def __repr__(self) -> str:
        line = " ".join(self.headline().split())
        if len(line) > 160:
            line = line[:157] + "..."
        return f"<{type(self).__name__} {line}>"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as Python data (strict: no NaN or infinity inside)."""
        out: dict[str, Any] = {"schema": self.SCHEMA, "version": self.VERSION}
        out.update(_encode_fields(self))
        out.update(self._extra_json())
        out["findings"] = self._findings()
        return out

    def _extra_json(self) -> dict[str, Any]:
        """Derived values worth having in the JSON (not read back: they follow from fields)."""
        return {}

    def to_json(self, *, indent: int | None = 1) -> str:
        """Strict JSON (``allow_nan=False``) with ``schema`` and ``version``."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        """Read what :meth:`to_dict` wrote; a wrong schema, version or field is a
        :class:`~modeldiff.errors.SchemaError` naming it."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"{cls.SCHEMA}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != cls.SCHEMA:
            raise SchemaError(f"not a {cls.__name__} document: schema is {data.get('schema')!r}, "
                              f"expected {cls.SCHEMA!r}")
        if data.get("version") != cls.VERSION:
            raise SchemaError(f"{cls.SCHEMA} version {data.get('version')!r} is not supported "
                              f"(this modeldiff reads version {cls.VERSION})")
        return typing.cast(R, decode(cls, data, cls.SCHEMA))

    @classmethod
    def from_json(cls: type[R], text: str | bytes) -> R:
        """Read what :meth:`to_json` wrote."""
        return cls.from_dict(loads(text, what=cls.SCHEMA))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Jupyter: the report as an HTML table (types with a diagram add SVG)."""
        return {"text/plain": str(self), "text/html": self._html()}

    def _html(self) -> str:
        lines = str(self).splitlines() or [self.headline()]
        rows = "".join(f"<tr><td style=\"text-align:left;font-family:monospace;"
                       f"white-space:pre\">{html.escape(x)}</td></tr>" for x in lines[1:])
        return (f"<table><thead><tr><th style=\"text-align:left\">{html.escape(lines[0])}"
                f"</th></tr></thead><tbody>{rows}</tbody></table>")


# -- JSON codec ------------------------------------------------------------------------------
def loads(text: str | bytes, *, what: str, size_limit: str = "MAX_JSON_BYTES",
          error: Callable[[str], Exception] = SchemaError, strict: bool = False,
          unique_keys: bool = False, check_depth: bool = True) -> Any:
    """``json.loads`` that ends in a typed error, never RecursionError or a raw ValueError.

    ``text`` over the limit ``size_limit`` names (default
    :data:`modeldiff.limits.MAX_JSON_BYTES`) or nested
    deeper than :data:`modeldiff.limits.MAX_JSON_DEPTH` is refused before (size) or while
    (depth) it is parsed; ``error`` builds the exception from a message (default
    :class:`~modeldiff.errors.SchemaError`), which starts with ``what``. ``strict`` refuses
    ``NaN``/``Infinity`` and numbers that overflow a float (``1e400``); ``unique_keys``
    refuses an object with the same key twice. ``check_depth=False`` leaves the depth limit
    to a caller that validates the shape of the whole document itself (json.loads still
    stops near Python's recursion limit).

    >>> loads('{"a": [1, 2]}', what="example")
    {'a': [1, 2]}
    >>> loads("[" * 100 + "]" * 100, what="example")
    Traceback (most recent call last):
    ...
    modeldiff.errors.SchemaError: example is JSON nested deeper than 64 levels (limit \
modeldiff.limits.MAX_JSON_DEPTH = 64; raise it if the input is genuine)
    """
    cap = getattr(limits, size_limit)
    if len(text) > cap:
        raise error(f"{what} is a JSON document of {len(text):,} bytes, over the "
                    f"{cap:,}-byte limit ({limits.hint(size_limit)})")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{what} is not UTF-8 text ({e})") from e
    kwargs: dict[str, Any] = {}
    if strict:
        kwargs["parse_constant"] = _refuse_constant
        kwargs["parse_float"] = _finite_float
    if unique_keys:
        kwargs["object_pairs_hook"] = _unique_object
    try:
        data = json.loads(text, **kwargs)
    except RecursionError as e:
        raise error(f"{what} is JSON nested deeper than {limits.MAX_JSON_DEPTH} levels "
                    f"({limits.hint('MAX_JSON_DEPTH')})") from e
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") \
            from e
    except ValueError as e:  # int-string limit, our strict hooks
        raise error(f"{what} is not valid JSON: {e}") from e
    if check_depth:
        _check_depth(data, what, error)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} overflows a float")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {dup[:80]!r} appears twice in one object")
    return out


def _check_depth(data: Any, what: str, error: Callable[[str], Exception]) -> None:
    """Depth of parsed JSON, without recursion: json.loads itself stops near Python's
    recursion limit (about 1000 levels), the readers after it must stay far below that."""
    cap = limits.MAX_JSON_DEPTH
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > cap:
            raise error(f"{what} is JSON nested deeper than {cap} levels "
                        f"({limits.hint('MAX_JSON_DEPTH')})")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _encode_fields(obj: Any) -> dict[str, Any]:
    return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if f.metadata.get("json", True)}


def encode(value: Any) -> Any:
    """A value as strict-JSON data: dataclasses as objects, tuples as lists, enums by value,
    non-finite floats as ``{"float": "nan"}``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": str(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "to_dict") and not isinstance(value, Report) and \
            not dataclasses.is_dataclass(value):
        return value.to_dict()
    if type(value).__name__ == "ModelGraph":
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return _encode_fields(value)
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    enc = getattr(value, "__json__", None)
    if enc is not None:
        return enc()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # a tensor or an array
        return encode(value.tolist())
    raise TypeError(f"cannot encode {type(value).__name__} as result JSON")


def decode(tp: Any, data: Any, where: str) -> Any:
    """Read ``data`` as type ``tp`` (an annotation); errors name the JSON path."""
    try:
        return _decode(tp, data, where)
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise SchemaError(f"{where}: {type(e).__name__}: {e}") from e


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The dataclass fields' annotations, evaluated (they are strings under
    ``from __future__ import annotations``) in the defining module plus the registry."""
    hints = _HINTS.get(cls)
    if hints is None:
        module = sys.modules.get(cls.__module__)
        ns: dict[str, Any] = dict(vars(typing))
        ns.update(_TYPES)  # names the module only imports for type checking
        ns.update(vars(module) if module else {})  # the module's own names win
        hints = {f.name: eval(f.type, ns) if isinstance(f.type, str) else f.type
                 for f in dataclasses.fields(cls)}
        _HINTS[cls] = hints
    return hints


def _decode(tp: Any, data: Any, where: str) -> Any:
    if tp is Any or tp is object:
        return _plain(data)
    if isinstance(tp, str):
        tp = _TYPES[tp]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            with contextlib.suppress(SchemaError, TypeError, ValueError, KeyError):
                return _decode(option, data, where)
        raise SchemaError(f"{where}: {data!r:.80} fits none of {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list):
            raise SchemaError(f"{where}: expected a list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x, f"{where}[{i}]") for i, x in enumerate(data))
        if len(args) != len(data):
            raise SchemaError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(_decode(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, data, strict=True)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {k: _decode(vt, v, f"{where}.{k}") for k, v in data.items()}
    if tp is type(None):
        if data is not None:
            raise SchemaError(f"{where}: expected null")
        return None
    if tp is float:
        if isinstance(data, dict) and set(data) == {"float"} and \
                data["float"] in ("nan", "inf", "-inf"):
            return float(data["float"])
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise SchemaError(f"{where}: expected a number, got {data!r:.40}")
        return float(data)
    if tp is bool:
        if not isinstance(data, bool):
            raise SchemaError(f"{where}: expected true or false, got {data!r:.40}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SchemaError(f"{where}: expected an integer, got {data!r:.40}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise SchemaError(f"{where}: expected a string, got {data!r:.40}")
        return data
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and tp.__name__ == "ModelGraph":
        return typing.cast(Any, tp).from_dict(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if not f.init or not f.metadata.get("json", True):
                continue
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise SchemaError(f"{where}: missing field {f.name!r}")
                continue
            kwargs[f.name] = _decode(hints[f.name], data[f.name], f"{where}.{f.name}")
        return tp(**kwargs)
    if isinstance(tp, type) and tp.__module__ == "torch" and tp.__name__ == "Tensor":
        import torch  # only a result that holds tensors (PipelineSteps) gets here

        return torch.tensor(_plain(data))
    if isinstance(tp, type) and hasattr(tp, "from_json_value"):
        return tp.from_json_value(data)
    if tp.__class__.__name__ == "TypeAliasType" or (getattr(tp, "__origin__", None) is None and \
            not isinstance(tp, type)):
        return _plain(data)
    if isinstance(tp, type) and isinstance(data, tp):
        return data
    raise SchemaError(f"{where}: cannot read {tp!r}")


def _plain(data: Any) -> Any:
    """An ``Any`` field: JSON values as they are, explicit non-finite floats decoded."""
    if isinstance(data, dict):
        if set(data) == {"float"} and isinstance(data["float"], str):
            return float(data["float"])
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data
