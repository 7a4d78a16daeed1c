"""The benchmark scripts run and print their tables. No timing is asserted here: timings on
a shared machine are noise to a test suite; docs/performance.md holds the measured numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_quick(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args, "--quick"], capture_output=True, text=True,
                          env=env, timeout=180, check=False, cwd=BENCHMARKS.parent)


def test_bench_walk_quick_prints_every_model_competitor_and_target() -> None:
    proc = run_quick(str(BENCHMARKS / "bench_walk.py"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    header = next(line for line in out.splitlines() if line.startswith("| model "))
    for competitor in ("named_parameters", "networkx walk", "walk", "torchinfo"):
        assert f"| {competitor} (ms) |" in header
    for model in ("Llama-3-70B shape (meta)", "Llama-3.1-405B shape (meta)",
                  "DistilBERT (meta)", "DistilBERT (CPU, weights)"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {model} "))
        # torchinfo works on meta models: every cell is measured, none is "n/a".
        assert "n/a" not in row, row
    assert "| tracemalloc peak during walk " in out
    assert "walks of the 405B shape back to back" in out
    for target in ("walk / named_parameters <=", "torchinfo / walk >=", "walk max/median <=",
                   "extra memory, 405B walk <"):
        assert f"| {target}" in out
    assert "Traceback" not in proc.stderr


def test_runner_rejects_an_unknown_benchmark_and_names_the_real_ones() -> None:
    proc = run_quick(str(BENCHMARKS / "run.py"), "no_such_thing")
    assert proc.returncode == 2
    assert "no benchmarks/bench_no_such_thing.py" in proc.stderr
    assert "bench_walk" in proc.stderr


def test_bench_trace_quick_prints_both_tables() -> None:
    # the checkout under test first on the path, not whichever modeldiff is installed
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(BENCHMARKS.parent)}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_trace.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    for row in ("| Llama-3-70B ", "| Llama-3.1-405B ", "| trace (meta) ",
                "| torchview draw_graph (meta) ", "| torchinfo summary (CPU) "):
        assert row in proc.stdout
    assert "Extra memory of tracing the 405B shape" in proc.stdout


def test_bench_load_report_quick_agrees_with_transformers_and_prints_the_ratio() -> None:
    proc = run_quick(str(BENCHMARKS / "bench_load_report.py"))
    assert proc.returncode == 0, proc.stderr
    assert "reports agree: missing ['score.weight'], unexpected ['lm_head.weight']" in proc.stderr
    for competitor in ("load_report (folder, task)", "load_report (folder, walked target)",
                       "transformers on meta"):
        assert f"| {competitor} " in proc.stdout
    assert "transformers on meta / load_report:" in proc.stdout
