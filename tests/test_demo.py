"""The demo replays the tutorial; the examples run as scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`modeldiff demo` as `make demo` runs it, once for the module."""
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "modeldiff", "demo", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    return proc, out


def test_demo_replays_the_five_steps(demo):
    proc, _ = demo
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for step in range(1, 6):
        assert f"[{step}/5]" in out
    assert "[5/5] save_pretrained -> from_pretrained" in out
    added = [line.split()[1] for line in out.splitlines() if line.startswith("    + ")]
    assert added == ["pre_classifier", "classifier", "dropout"]
    assert "+ pre_classifier  Linear(in_features=768, out_features=768)  590,592 params" in out
    assert "~ config" not in out  # base and head share one config: only the modules differ
    assert "2 model files written; results after reloading are identical" in out
    assert "untrained" in out
    assert out.count("\n") < 90  # about a screen
    assert "Loading weights" not in out + proc.stderr


def test_demo_writes_its_artifacts(demo):
    _, out = demo
    for name in ("distilbert.svg", "distilbert-sequence-classification.svg",
                 "distilbert-head-delta.svg"):
        assert (out / name).read_text().lstrip().startswith(("<?xml", "<svg")), name
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == \
        ["config.json", "model.safetensors"]
    assert 'class="node module linear added"' in (out / "distilbert-head-delta.svg").read_text()


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_runs(script, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()
