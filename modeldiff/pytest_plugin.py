"""modeldiff's pytest plugin: hooks and fixtures only, import-light.

Loading it imports neither torch nor transformers (nor the rest of modeldiff); fixtures and
hooks import what they need when they run. The assertion logic lives in
:mod:`modeldiff.testing`, as syrupy keeps its hooks apart from its assertions.

- ``assert walk(a) == walk(b)`` fails with the structural diff tree instead of two reprs
  (also ``GraphDiff == GraphDiff`` and ``HeadDelta == HeadDelta``);
- the ``model_snapshot`` fixture: ``model_snapshot.assert_match(model)`` compares the model's
  structure with ``__model_snapshots__/<test module>/<test name>.json``; ``--modeldiff-update``
  writes or refreshes the snapshots (also under pytest-xdist: workers report to the
  controller, which prints one summary);
- snapshots no test used are reported, and removed by ``--modeldiff-update``, only for test
  files that ran whole: never under ``-k``, ``-m``, a ``file::test`` selection, another
  plugin's deselection, a skip or an early stop (the cases syrupy users hit: syrupy#134,
  #333, #752);
- with syrupy installed, the ``model_graph_snapshot`` fixture is syrupy's ``snapshot`` with
  :class:`modeldiff.syrupy.ModelGraphExtension` (see docs/testing.md).

Usage (in any project's tests, once modeldiff is installed)::

    def test_architecture(model_snapshot):
        model_snapshot.assert_match(build_model())
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The classes whose == failures this plugin explains, by (module, name): checking the type by
# name keeps the hook from importing modeldiff's torch-side modules for foreign objects.
_OWNED = frozenset({("modeldiff._core.graph", "ModelGraph"), ("modeldiff._core.diff", "GraphDiff"),
                    ("modeldiff._core.head_delta", "HeadDelta")})



@dataclass
class _Session:
    """What one process saw; under xdist each worker sends its part to the controller."""

    written: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    # test file -> node ids collected in it (after deselection)
    items: dict[str, set[str]] = field(default_factory=dict)
    # test files not collected whole (deselection, file::test selection)
    partial: set[str] = field(default_factory=set)
    called: set[str] = field(default_factory=set)
    unused: list[str] = field(default_factory=list)
    removed: bool = False

    def to_output(self) -> dict[str, Any]:
        return {"written": self.written, "used": sorted(self.used),
                "items": {k: sorted(v) for k, v in self.items.items()},
                "partial": sorted(self.partial)}

    def merge(self, out: dict[str, Any]) -> None:
        self.written += out.get("written", [])
        self.used |= set(out.get("used", ()))
        for k, v in out.get("items", {}).items():
            self.items.setdefault(k, set()).update(v)
        self.partial |= set(out.get("partial", ()))


_STATE = pytest.StashKey[_Session]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modeldiff", "modeldiff: model structure assertions")
    group.addoption("--modeldiff-update", action="store_true", default=False,
                    help="write or refresh model snapshots (model_snapshot fixture) instead of "
                         "comparing with them, and remove unused ones of test files that ran "
                         "whole")


class _Recorder:
    """Which tests ran and passed. A failed test may have stopped before its assert_match, so
    a file with a failure never counts as run whole: a red run deletes nothing."""

    def __init__(self, state: _Session) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.state.called.add(report.nodeid)


def pytest_configure(config: pytest.Config) -> None:
    state = config.stash[_STATE] = _Session()
    config.pluginmanager.register(_Recorder(state), "modeldiff-recorder")


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any,
                              right: Any) -> list[str] | None:
    if op != "==" or type(left) is not type(right):
        return None
    t = type(left)
    if (t.__module__, t.__qualname__) not in _OWNED:
        return None
    from modeldiff.testing import explain_compare

    return explain_compare(left, right)


def _snapshot_dir(test_file: Path) -> Path:
    # Not syrupy's __snapshots__: syrupy claims foreign files there as its own unused ones.
    return test_file.parent / "__model_snapshots__" / test_file.stem


@pytest.fixture
def model_snapshot(request: pytest.FixtureRequest) -> Any:
    """Snapshot assertions for model structure: ``model_snapshot.assert_match(model)``.

    The walked graph is stored as deterministic JSON (no devices, versions or paths) in
    ``__model_snapshots__/<test module stem>/<test name>.json`` beside the test module; a second
    ``assert_match`` in the same test uses ``<test name>.1.json``. Run pytest with
    ``--modeldiff-update`` to write or refresh them.
    """
    from modeldiff.testing import ModelSnapshot

    module = Path(request.node.path)
    update = bool(request.config.getoption("modeldiff_update"))
    snapshot = ModelSnapshot(_snapshot_dir(module), request.node.name, update=update,
                             command=f"pytest {shlex.quote(request.node.nodeid)} "
                                     "--modeldiff-update")
    yield snapshot
    state = request.config.stash[_STATE]
    state.written.extend(str(p) for p in snapshot.written)
    state.used.update(str(p) for p in snapshot.used)


@pytest.fixture
def model_graph_snapshot(request: pytest.FixtureRequest) -> Any:
    """syrupy's ``snapshot`` storing model graphs as readable JSON files (needs syrupy):
    ``assert modeldiff.walk(model) == model_graph_snapshot``; a mismatch shows the modeldiff
    diff. ``pytest --snapshot-update`` writes them, as for any syrupy snapshot."""
    from modeldiff.syrupy import ModelGraphExtension  # a typed error without syrupy

    return request.getfixturevalue("snapshot").use_extension(ModelGraphExtension)


def _file_of(item: pytest.Item) -> str:
    return str(Path(item.path))


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        item.config.stash[_STATE].partial.add(_file_of(item))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    for item in items:
        state.items.setdefault(_file_of(item), set()).add(item.nodeid)
    # `pytest tests/test_x.py::test_a` collects only part of the file, without deselecting.
    for arg in config.args:
        if "::" in arg:
            state.partial.add(str(Path(arg.split("::", 1)[0]).resolve()))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: merge what a worker saw."""
    out = getattr(node, "workeroutput", None) or {}
    if "modeldiff" in out:
        node.config.stash[_STATE].merge(out["modeldiff"])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if _is_worker(config):
        config.workeroutput["modeldiff"] = state.to_output()  # type: ignore[attr-defined]
        return
    state.unused = _unused(state)
    if state.unused and config.getoption("modeldiff_update"):
        for name in state.unused:
            Path(name).unlink(missing_ok=True)
        state.removed = True


def _unused(state: _Session) -> list[str]:
    """Snapshot files of test files that ran whole (every test collected, none deselected,
    every one's call phase run) that no test read or wrote."""
    out = []
    for test_file, ids in sorted(state.items.items()):
        if test_file in state.partial or not ids or not ids <= state.called:
            continue
        folder = _snapshot_dir(Path(test_file))
        if not folder.is_dir():
            continue
        # *.modelgraph.json belong to syrupy (modeldiff.syrupy), which tracks its own.
        out += [str(p) for p in sorted(folder.glob("*.json"))
                if p.is_file() and str(p) not in state.used
                and not p.name.endswith(".modelgraph.json")]
    return out


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or _is_worker(config) or not (state.written or state.unused):
        return
    terminalreporter.write_sep("-", "modeldiff")
    if state.written:
        terminalreporter.write_line(f"{len(state.written)} model snapshot(s) written or updated:")
        for path in sorted(state.written):
            terminalreporter.write_line(f"  {path}")
    if state.unused:
        verb = "removed" if state.removed else "unused (--modeldiff-update removes them)"
        terminalreporter.write_line(f"{len(state.unused)} model snapshot(s) {verb}:")
        for path in state.unused:
            terminalreporter.write_line(f"  {path}")
