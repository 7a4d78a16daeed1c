"""modeldiff's pytest plugin: hooks and fixtures only, import-light.

Loading it imports neither torch nor transformers (nor the rest of modeldiff); fixtures and
hooks import what they need when they run. The assertion logic lives in
:mod:`modeldiff.testing`, as syrupy keeps its hooks apart from its assertions.

- ``assert walk(a) == walk(b)`` fails with the structural diff tree instead of two reprs
  (also ``GraphDiff == GraphDiff`` and ``HeadDelta == HeadDelta``);
- the ``model_snapshot`` fixture: ``model_snapshot.assert_match(model)`` compares the model's
  structure with ``__snapshots__/<test module>/<test name>.json``; ``--modeldiff-update``
  writes or refreshes the snapshots.

Usage (in any project's tests, once modeldiff is installed)::

    def test_architecture(model_snapshot):
        model_snapshot.assert_match(build_model())
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

# The classes whose == failures this plugin explains, by (module, name): checking the type by
# name keeps the hook from importing modeldiff's torch-side modules for foreign objects.
_OWNED = frozenset({("modeldiff._core.graph", "ModelGraph"), ("modeldiff._core.diff", "GraphDiff"),
                    ("modeldiff._core.head_delta", "HeadDelta")})

_WRITTEN = pytest.StashKey[list[Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modeldiff", "modeldiff: model structure assertions")
    group.addoption("--modeldiff-update", action="store_true", default=False,
                    help="write or refresh model snapshots (model_snapshot fixture) instead of "
                         "comparing with them")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_WRITTEN] = []


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any,
                              right: Any) -> list[str] | None:
    if op != "==" or type(left) is not type(right):
        return None
    t = type(left)
    if (t.__module__, t.__qualname__) not in _OWNED:
        return None
    from modeldiff.testing import explain_compare

    return explain_compare(left, right)


@pytest.fixture
def model_snapshot(request: pytest.FixtureRequest) -> Any:
    """Snapshot assertions for model structure: ``model_snapshot.assert_match(model)``.

    The walked graph is stored as deterministic JSON (no devices, versions or paths) in
    ``__snapshots__/<test module stem>/<test name>.json`` beside the test module; a second
    ``assert_match`` in the same test uses ``<test name>.1.json``. Run pytest with
    ``--modeldiff-update`` to write or refresh them.
    """
    from modeldiff.testing import ModelSnapshot

    module = Path(request.node.path)
    update = bool(request.config.getoption("modeldiff_update"))
    snapshot = ModelSnapshot(module.parent / "__snapshots__" / module.stem, request.node.name,
                             update=update,
                             command=f"pytest {shlex.quote(request.node.nodeid)} "
                                     "--modeldiff-update")
    yield snapshot
    request.config.stash[_WRITTEN].extend(snapshot.written)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    written = config.stash.get(_WRITTEN, [])
    if written:
        terminalreporter.write_sep("-", "modeldiff")
        terminalreporter.write_line(f"{len(written)} model snapshot(s) written or updated:")
        for path in written:
            terminalreporter.write_line(f"  {path}")
