"""Hostile and broken input (issue 12): every case ends in a typed modeldiff error or a
correct result, within CASE_SECONDS and MEMORY_BYTES.

Cases live in ``cases_*.py``; each group runs in one child interpreter (see harness.py),
so a hang, a crash or a memory blow-up fails the case that caused it, not the test run.
"""

from __future__ import annotations

import pytest

from tests.adversarial.cases import GROUPS, case_ids
from tests.adversarial.harness import run_group

_results: dict[str, dict[str, dict[str, object]]] = {}


def _result(group: str, cid: str) -> dict[str, object]:
    if group not in _results:
        _results[group] = run_group(group)
    return _results[group][cid]


@pytest.mark.parametrize(("group", "cid"), [(g, c) for g in GROUPS for c in case_ids(g)])
def test_case(group: str, cid: str) -> None:
    rec = _result(group, cid)
    assert rec["ok"], rec["message"]



def test_there_are_at_least_300_cases() -> None:
    assert sum(len(case_ids(g)) for g in GROUPS) >= 300
