"""The one comparison kernel: one value-change record, one mapping comparison, one ignore policy.

diff (attributes and config), compare_checkpoints (config.json), roundtrip (config before
and after saving) and the snapshot fixture all compare key/value mappings through
:func:`compare_mappings`, so a config key is compared the same way everywhere and what is
ignored is named once, in :data:`IGNORED_CONFIG_KEYS`.

>>> changes, ignored = compare_mappings(
...     {"dim": 768, "dropout": 0.1, "transformers_version": "4.57.0"},
...     {"dim": 768, "dropout": 0.2, "n_layers": 6, "transformers_version": "5.24.0"},
...     ignore=IGNORED_CONFIG_KEYS)
>>> [str(c) for c in changes]
['dropout 0.1 -> 0.2', 'n_layers (absent) -> 6']
>>> ignored
('transformers_version',)
>>> same_value(True, 1), same_value(1, 1.0), same_value((1, [2]), [1, (2,)])
(False, True, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "ABSENT",
    "IGNORED_CONFIG_KEYS",
    "IGNORED_CONFIG_REASONS",
    "PROVENANCE_CONFIG_KEYS",
    "ValueChange",
    "compare_mappings",
    "fmt_value",
    "same_value",
]


class _Absent:
    """The value of a key that one side does not have."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"

    def __reduce__(self) -> str:
        return "ABSENT"

    def __json__(self) -> dict[str, bool]:
        return {"absent": True}


ABSENT = _Absent()

# The one list of config keys no comparison reports (diff, compare_checkpoints, roundtrip,
# snapshots), each with the reason. None of them is the architecture.
IGNORED_CONFIG_REASONS: Mapping[str, str] = MappingProxyType({
    # provenance: two saves of one model differ here
    "transformers_version": "the transformers version that wrote the config",
    "_name_or_path": "the folder or hub id a model was loaded from",
    "_commit_hash": "the hub revision a model was loaded from",
    # classes are compared as classes (a diff's root classes, a checkpoint's tensors)
    "architectures": "the class that saved the config; compared as the model's class",
    # the dtype shows on every tensor
    "dtype": "the weights' dtype; compared tensor by tensor",
    "torch_dtype": "the weights' dtype (older name); compared tensor by tensor",
    # transformers picks the attention implementation per host and install
    "_attn_implementation": "the attention kernel transformers picked on this host",
    "_attn_implementation_autoset": "whether transformers picked the attention kernel itself",
    "attn_implementation": "the attention kernel asked for at load time",
})
IGNORED_CONFIG_KEYS = frozenset(IGNORED_CONFIG_REASONS)
PROVENANCE_CONFIG_KEYS = frozenset({"transformers_version", "_name_or_path", "_commit_hash"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueChange:
    """One key whose value differs: ``before`` or ``after`` is :data:`ABSENT` when that side
    does not have the key. Used for config keys and module attributes alike."""

    key: str
    before: Any
    after: Any

    @property
    def added(self) -> bool:
        return self.before is ABSENT

    @property
    def removed(self) -> bool:
        return self.after is ABSENT

    def __str__(self) -> str:
        return f"{self.key} {fmt_value(self.before)} -> {fmt_value(self.after)}"

    @classmethod
    def from_json_value(cls, data: Any) -> ValueChange:
        return cls(key=data["key"], before=_unabsent(data["before"]),
                   after=_unabsent(data["after"]))


def _unabsent(v: Any) -> Any:
    if v == {"absent": True}:
        return ABSENT
    if isinstance(v, dict) and set(v) == {"float"}:
        return float(v["float"])
    if isinstance(v, list):
        return tuple(_unabsent(x) for x in v)
    return v


def same_value(x: Any, y: Any) -> bool:
    """Equality as a comparison should see it: a flag is not a count (``True != 1``), an int
    and a float of the same value agree, tuples and lists alike, NaN equals NaN, dict key
    order does not matter."""
    if isinstance(x, bool) or isinstance(y, bool):
        return x is y
    if isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
        return len(x) == len(y) and all(same_value(p, q) for p, q in zip(x, y, strict=True))
    if isinstance(x, Mapping) and isinstance(y, Mapping):
        return x.keys() == y.keys() and all(same_value(x[k], y[k]) for k in x)
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    try:
        return bool(x == y)
    except Exception:  # an exotic value whose __eq__ raises: compare what JSON would store
        return json.dumps(x, default=str, sort_keys=True) == json.dumps(y, default=str,
                                                                        sort_keys=True)


def compare_mappings(before: Mapping[str, Any], after: Mapping[str, Any], *,
                     ignore: Iterable[str] = ()) -> tuple[tuple[ValueChange, ...], tuple[str, ...]]:
    """The keys whose values differ (in ``before``'s key order, then ``after``'s new keys;
    :data:`ABSENT` for a missing side), and the ignored keys present on either side (so a
    result can say what it left out)."""
    skip = frozenset(ignore)
    keys = list(dict.fromkeys([*before, *after]))
    changes = []
    ignored = []
    for k in keys:
        if k in skip:
            ignored.append(k)
            continue
        b, a = before.get(k, ABSENT), after.get(k, ABSENT)
        if b is ABSENT or a is ABSENT or not same_value(b, a):
            changes.append(ValueChange(key=k, before=b, after=a))
    return tuple(changes), tuple(ignored)


def fmt_value(v: Any, limit: int | None = None) -> str:
    """A value as the reports print it: strings and floats as Python writes them, the rest
    with ``str()``; cut to ``limit`` characters when given."""
    if v is ABSENT:
        return "(absent)"
    text = repr(v) if isinstance(v, (str, float)) else str(v)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
