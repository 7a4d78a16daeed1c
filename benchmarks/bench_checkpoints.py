"""compare_checkpoints vs a numpy memcmp vs a safe_open + torch.equal loop, and roundtrip's
overhead over a bare save_pretrained + from_pretrained.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_checkpoints.py [--repeats 5]

Two identical DistilBERT-sized checkpoints (a seeded default DistilBertModel saved twice) are
compared in the same run by the three methods; medians of ``--repeats`` runs. Throughput is
the size of one checkpoint divided by the time (bytes of A checked against B per second).
Peak memory: tracemalloc peak (Python allocations) and the RSS high-water mark over the
baseline (reset through /proc/self/clear_refs, Linux).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object], repeats: int) -> tuple[float, float, float, object]:
    """(median seconds, tracemalloc peak MB, RSS high-water delta MB, last result)."""
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    base = _rss_kb("VmRSS")
    peak_rss = 0.0
    if _reset_peak_rss():
        fn()
        peak_rss = (_rss_kb("VmHWM") - base) / 1024
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20, peak_rss, result


def main(quick: bool = False, argv: list[str] | None = None) -> None:
    """Prints its own tables (run.py's convention allows None). ``quick``: one repeat."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args([] if argv is None else argv)
    if quick or args.quick:
        args.repeats = 1

    import numpy as np
    import torch
    from safetensors import safe_open
    from transformers import DistilBertConfig, DistilBertModel
    from transformers.utils import logging as hf_logging

    from modeldiff import compare_checkpoints, roundtrip

    hf_logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    torch.manual_seed(0)
    model = DistilBertModel(DistilBertConfig())
    model.save_pretrained(tmp / "a")
    model.save_pretrained(tmp / "b")
    fa, fb = tmp / "a" / "model.safetensors", tmp / "b" / "model.safetensors"
    size = fa.stat().st_size
    print(f"checkpoint: {size / 1e6:.0f} MB ({sum(p.numel() for p in model.parameters()):,} "
          f"parameters), torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats}")

    def ours() -> object:
        return compare_checkpoints(tmp / "a", tmp / "b")

    def memcmp() -> object:
        x = np.memmap(fa, np.uint8, mode="r")
        y = np.memmap(fb, np.uint8, mode="r")
        return np.array_equal(x, y)

    def read_memcmp() -> object:  # plain C memcmp on both files read into memory
        return fa.read_bytes() == fb.read_bytes()

    def safe_open_loop() -> object:
        same = True
        with safe_open(fa, "pt") as x, safe_open(fb, "pt") as y:
            for k in x.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                same &= torch.equal(x.get_tensor(k), y.get_tensor(k))
        return same

    rows = []
    for name, fn in (("compare_checkpoints", ours), ("numpy memcmp (np.memmap, array_equal)",
                                                     memcmp),
                     ("bytes memcmp (read both, ==)", read_memcmp),
                     ("safe_open + torch.equal loop", safe_open_loop)):
        fn()  # warm the page cache
        t, tm, rss, res = measure(fn, args.repeats)
        ok = (not res) if name == "compare_checkpoints" else bool(res)
        assert ok, f"{name} found a difference between identical checkpoints"
        rows.append((name, t, size / t / 1e9, tm, rss))
    print(f"{'method':40} {'median s':>9} {'GB/s':>6} {'tracemalloc MB':>15} {'RSS +MB':>8}")
    for name, t, gbs, tm, rss in rows:
        print(f"{name:40} {t:9.3f} {gbs:6.2f} {tm:15.1f} {rss:8.1f}")
    ours_gbs, memcmp_gbs, bytes_gbs, loop_gbs = (r[2] for r in rows)
    print(f"compare_checkpoints: {ours_gbs / memcmp_gbs:.2f}x numpy memcmp and "
          f"{ours_gbs / bytes_gbs:.2f}x bytes memcmp throughput (target >= 0.5), "
          f"{ours_gbs / loop_gbs:.2f}x the safe_open loop (target > 1)")

    # roundtrip vs the bare save + load it wraps
    def bare() -> object:
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            return type(model).from_pretrained(d)

    def full() -> object:
        return roundtrip(model)

    reps = max(1, args.repeats // 2)
    bare()
    t_bare = measure(bare, reps)[0]
    t_full, _, _, report = measure(full, reps)
    assert report.ok, str(report)
    print(f"save_pretrained + from_pretrained: {t_bare:.2f} s; roundtrip: {t_full:.2f} s "
          f"(overhead {t_full - t_bare:.2f} s, {t_full / t_bare:.2f}x), median of {reps}")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(argv=sys.argv[1:])
