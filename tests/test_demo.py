"""The demo replays the tutorial; the examples run as scripts."""

from __future__ import annotations

import json
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
    files = {p.name for p in (out / "checkpoint").iterdir()}
    assert {"config.json", "model.safetensors"} <= files
    assert {"tokenizer.json", "tokenizer_config.json"} <= files  # saved with its tokenizer
    assert 'class="node module linear added"' in (out / "distilbert-head-delta.svg").read_text()


def test_classify_on_the_demo_checkpoint_reproduces_the_demo_scores(demo):
    from modeldiff._demo import SENTENCES

    proc, out = demo
    shown = [line.split() for line in proc.stdout.splitlines() if line.startswith("    = ")]
    assert len(shown) == len(SENTENCES)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = subprocess.run([sys.executable, "-m", "modeldiff", "classify", "--json", "--model",
                          str(out / "checkpoint"), *SENTENCES], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert cli.returncode == 0, cli.stderr
    got = [(p["label"], f"{p['score']:.6f}") for p in json.loads(cli.stdout)]
    assert got == [(row[1], row[2]) for row in shown]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_runs(script, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()
