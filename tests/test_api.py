"""The public facade: __all__ is honest, names stay what they are, importing is light."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import modeldiff

FUNCTIONS = {"walk", "diff", "align", "head_delta", "weight_diff", "render", "save", "roundtrip",
             "compare_checkpoints", "classify", "pipeline_steps", "parse_repr", "tiny_config",
             "trace", "load_report"}
RESULTS = {"GraphDiff", "HeadDelta", "WeightDiff", "CheckpointDiff", "RoundTripReport",
           "PipelineSteps", "Trace", "LoadReport"}
PACKAGE = Path(modeldiff.__file__).parent


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "modeldiff.")
            if m.name != "modeldiff.__main__"]  # importing __main__ runs the CLI


def test_every_public_name_resolves_and_has_a_docstring_with_an_example():
    for name in modeldiff.__all__:
        obj = getattr(modeldiff, name)
        if name in ("__version__", "errors", "limits"):
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc, name
        if name in FUNCTIONS:
            assert callable(obj), name
            assert ">>>" in doc or ">>>" in (inspect.getdoc(inspect.getmodule(obj)) or ""), name
    assert set(modeldiff.__all__) >= FUNCTIONS | RESULTS | {"ModelDiffError", "Report"}
    assert sorted(dir(modeldiff)) == sorted(modeldiff.__all__)
    for name in RESULTS:
        assert issubclass(getattr(modeldiff, name), modeldiff.Report), name
    assert modeldiff.ModelDiffError is modeldiff.errors.ModelDiffError


def test_implementation_modules_are_private_and_use_no_private_name_of_another():
    public = {"modeldiff", "modeldiff.errors", "modeldiff.kinds", "modeldiff.limits", "modeldiff.testing",
              "modeldiff.pytest_plugin", "modeldiff.strategies", "modeldiff.cli",
              "modeldiff.__main__", "modeldiff.syrupy"}
    offenders = []
    for name in _modules():
        leaf = name.rsplit(".", 1)[1]
        assert name in public or leaf.startswith("_") or ".__" in name or \
            name.split(".")[1].startswith("_"), f"{name} is neither facade nor private"
        path = PACKAGE.joinpath(*name.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.exists():  # the C module (_walk/_sums.c) imports nothing
            assert name == "modeldiff._walk._sums", name
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modeldiff"):
                offenders += [f"{name}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_functions_are_not_shadowed_by_their_modules():
    # A submodule named like the function it exports would replace it in the package
    # namespace once imported; import every module, then look again.
    for module in _modules():
        importlib.import_module(module)
    for name in FUNCTIONS:
        assert inspect.isfunction(getattr(modeldiff, name)), name


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        modeldiff.nope  # noqa: B018


def test_import_and_help_stay_light():
    code = ("import sys, modeldiff, modeldiff.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'networkx', 'graphviz') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    proc = subprocess.run([sys.executable, "-m", "modeldiff", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0
    for command in ("summary", "diff", "render", "roundtrip", "compare", "classify", "demo"):
        assert command in proc.stdout
