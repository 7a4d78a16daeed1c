"""modeldiff's pytest plugin: hooks and fixtures only, import-light.

Loading it imports neither torch nor transformers; fixtures import what they need in their
bodies. Assertion logic lives in :mod:`modeldiff.testing`.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modeldiff", "modeldiff: model structure assertions")
    group.addoption("--modeldiff-update", action="store_true", default=False,
                    help="write or refresh model snapshots instead of comparing with them")


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any,
                              right: Any) -> list[str] | None:
    return None
