"""The public facade: __all__ is honest, names stay what they are, importing is light."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import modeldiff

FUNCTIONS = {"walk", "diff", "head_delta", "weight_diff", "render", "roundtrip",
             "compare_checkpoints", "classify", "pipeline_steps", "parse_repr", "tiny_config"}


def test_every_public_name_resolves_and_has_a_docstring_with_an_example():
    for name in modeldiff.__all__:
        obj = getattr(modeldiff, name)
        if name in ("__version__", "errors"):
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc, name
        if name in FUNCTIONS:
            assert callable(obj), name
            assert ">>>" in doc or ">>>" in (inspect.getdoc(inspect.getmodule(obj)) or ""), name
    assert set(modeldiff.__all__) >= FUNCTIONS
    assert sorted(dir(modeldiff)) == sorted(modeldiff.__all__)


def test_functions_are_not_shadowed_by_their_modules():
    # A submodule named like the function it exports would replace it in the package
    # namespace once imported; import every module, then look again.
    for module in ("walker", "differ", "diagram", "saveload", "tensors", "pipeline",
                   "reprtext", "tiny", "testing", "strategies", "demo", "cli"):
        importlib.import_module(f"modeldiff.{module}")
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
