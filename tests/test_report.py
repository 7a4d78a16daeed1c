"""The HTML report: one self-contained file, opened in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

import modeldiff
from modeldiff.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def base_and_tuned(tmp_path_factory):
    """A tiny BERT base checkpoint and a classifier on it whose encoder layer 1 moved."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=64, vocab_size=100, num_labels=2)
    torch.manual_seed(0)
    head = BertForSequenceClassification(cfg)
    head.bert.save_pretrained(tmp / "base")
    with torch.no_grad():
        for p in head.bert.encoder.layer[1].parameters():
            p.add_(torch.randn(p.shape) * 1e-3)
    head.save_pretrained(tmp / "tuned")
    return tmp / "base", tmp / "tuned"


@pytest.fixture(scope="module")
def report_file(base_and_tuned, tmp_path_factory):
    base, tuned = base_and_tuned
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert main(["report", str(base), str(tuned), "-o", str(out)]) == 1
    return out


def test_report_is_one_self_contained_file(report_file):
    html = report_file.read_text()
    assert html.startswith("<!DOCTYPE html>")
    body = html.split("<body", 1)[1]
    # nothing to fetch: no script, no stylesheet link, no image or font from anywhere
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    assert "<link" not in html
    for section in ("verdict", "structure", "diagram", "load-report", "heatmap", "layers",
                    "top-modules"):
        assert f'id="{section}"' in body, section
    assert body.count("<svg") >= 3  # diagram, heatmap, per-layer line
    assert "<details>" in body
    # the base is one side: the load report says what from_pretrained would add
    assert "classifier" in body.split('id="load-report"')[1].split("</section>")[0]


def test_report_json(base_and_tuned, capsys):
    base, tuned = base_and_tuned
    assert main(["report", str(base), str(tuned), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["weights"]["verdict"]["pattern"] == "architecture change"
    moved = {m["path"] for m in data["weights"]["modules"] if m["changed"]}
    assert moved
    assert all(p.startswith("bert.encoder.layer.1.") for p in moved)


def test_report_refuses_an_output_it_cannot_write(base_and_tuned, tmp_path, capsys):
    base, tuned = base_and_tuned
    assert main(["report", str(base), str(tuned), "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert "has no folder to go in" in capsys.readouterr().err
    assert main(["report", str(base), str(tuned), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_report_function_on_live_modules(tmp_path):
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, vocab_size=100)
    torch.manual_seed(0)
    a = BertModel(cfg)
    b = BertModel(cfg)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.pooler.dense.weight.mul_(1.01)
    html = modeldiff.report(a, b)
    assert "targeted" in html
    assert "pooler.dense" in html
    svg = modeldiff.plot_weights(modeldiff.weight_diff(a, b), tmp_path / "h.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
    png = modeldiff.plot_weights(modeldiff.weight_diff(a, b), tmp_path / "l.png", kind="layers")
    assert png.read_bytes()[:4] == b"\x89PNG"


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_a_headless_browser(report_file, tmp_path):
    """The DOM chromium builds from the file holds the verdict, the diagram and the
    heatmap, and the page logs no console error."""
    run = _chromium(["--dump-dom", report_file.as_uri()], tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    consoles = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not consoles, consoles
    verdict = dom.split('id="verdict"', 1)[1].split("</header>", 1)[0]
    assert "architecture change" in verdict
    assert re.search(r'id="diagram"[^>]*>\s*<svg', dom)
    assert re.search(r'id="heatmap"[^>]*>\s*<svg', dom)
    assert "encoder.layer.1" in dom
    shot = tmp_path / "shot.png"
    run = _chromium(["--window-size=1200,1800", f"--screenshot={shot}", report_file.as_uri()],
                    tmp_path / "profile2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:4] == b"\x89PNG"
    assert shot.stat().st_size > 20_000  # a page with pictures, not a blank one
