"""The small harness every ``benchmarks/bench_*.py`` shares: timing, tables, ``--quick``.

Timing rules, chosen for a shared, noisy 2-core machine:

- ``perf_counter`` (and ``thread_time``, to tell the code's slowness from the machine's)
  around one call; the call's result is dropped *after* the clock stops, so
  freeing a big result is not billed to the call that made it.
- Competitors run round-robin (A, B, C, A, B, C ...; the starting one rotates every round),
  so a burst of load from elsewhere lands on all of them alike. Compare medians measured in
  the same run; ``max/median`` says how bad the worst call was.
- The garbage collector is left exactly as users have it: on, never disabled by the harness.
  The code under test may manage it itself (``walk`` does); that is part of what we measure.
  One ``gc.collect()`` runs before a comparison starts, so garbage left by building the
  models is not collected on whichever competitor happens to go first.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Nothing in a benchmark may reach the network: hub look-ups fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# The model shapes docs/performance.md quotes, built once here for every benchmark.
LLAMA_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
             "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256}
LLAMA_405B = {"hidden_size": 16384, "intermediate_size": 53248, "num_hidden_layers": 126,
              "num_attention_heads": 128, "num_key_value_heads": 8, "vocab_size": 128256}


def build_llama(shape: dict[str, int], **overrides: int) -> Any:
    """LlamaForCausalLM of ``shape`` on the meta device (no weight memory)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        return LlamaForCausalLM(LlamaConfig(**{**shape, **overrides}))


@dataclass(frozen=True, slots=True)
class Stats:
    """Seconds per call over ``n`` timed calls: wall clock, and the calling thread's CPU time.

    Wall clock is what users wait; CPU time leaves out the time the process sat descheduled,
    so when wall ``max/median`` is high and CPU ``max/median`` is not, the slow call was the
    machine's doing, not the code's. ``collections`` counts garbage-collector runs that started
    inside the timed calls (``full_collections``: generation 2, the expensive ones).
    """

    median: float
    min: float
    max: float
    p90: float
    n: int
    cpu_median: float = float("nan")
    cpu_max: float = float("nan")
    collections: int = 0
    full_collections: int = 0

    @property
    def spread(self) -> float:
        """Wall-clock max / median: 1.0 means the slowest call was as fast as the typical one."""
        return self.max / self.median

    @property
    def cpu_spread(self) -> float:
        """CPU-time max / median."""
        return self.cpu_max / self.cpu_median

    @classmethod
    def of(cls, wall: Sequence[float], cpu: Sequence[float] = (), collections: int = 0,
           full_collections: int = 0) -> Stats:
        ordered = sorted(wall)
        p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
        return cls(median=statistics.median(ordered), min=ordered[0], max=ordered[-1],
                   p90=p90, n=len(ordered),
                   cpu_median=statistics.median(cpu) if cpu else float("nan"),
                   cpu_max=max(cpu) if cpu else float("nan"),
                   collections=collections, full_collections=full_collections)


# Collector runs by generation, counted by a gc callback while a comparison runs.
_gc_runs = [0, 0, 0]


def _count_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_runs[info["generation"]] += 1


def _time_once(fn: Callable[[], Any]) -> tuple[float, float, int, int]:
    before, before_full = sum(_gc_runs), _gc_runs[2]
    c0 = time.thread_time()
    t0 = time.perf_counter()
    out = fn()
    # Allocating one tracked object lets a collection that ``fn`` put off (walk disables the
    # collector while it runs) happen here, billed to ``fn``, not to the next competitor.
    settle = [out]
    wall = time.perf_counter() - t0
    cpu = time.thread_time() - c0
    runs, full = sum(_gc_runs) - before, _gc_runs[2] - before_full
    del out, settle  # freed outside the timed region
    return wall, cpu, runs, full


def compare(competitors: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 2
            ) -> dict[str, Stats]:
    """Time every competitor ``repeats`` times (after ``warmup`` untimed calls), interleaved."""
    names = list(competitors)
    samples: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in names}
    gc.collect()
    gc.callbacks.append(_count_gc)
    try:
        for r in range(warmup + repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                sample = _time_once(competitors[name])
                if r >= warmup:
                    samples[name].append(sample)
    finally:
        gc.callbacks.remove(_count_gc)
    return {name: Stats.of([s[0] for s in got], [s[1] for s in got], sum(s[2] for s in got),
                           sum(s[3] for s in got))
            for name, got in samples.items()}


def measure(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> Stats:
    """One competitor on its own; see :func:`compare`."""
    return compare({"fn": fn}, repeats=repeats, warmup=warmup)["fn"]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f}" if seconds < 0.1 else f"{seconds * 1e3:,.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        parts = [row[0].ljust(widths[0]), *rest]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]])
    return "\n".join([line(cells[0]), rule + "|", *(line(r) for r in cells[1:])])


def note(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(text, file=sys.stderr, flush=True)


def parse_quick(argv: Sequence[str] | None = None, description: str = "") -> bool:
    """The one flag every benchmark takes: ``--quick`` for a CI-sized run (a smoke test of
    the script; its numbers are not worth quoting)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="few repeats, for CI: checks the script runs, numbers are rough")
    return bool(parser.parse_args(argv).quick)


def _rss_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # not Linux
        pass
    return 0


def peak_memory(fn: Callable[[], object]) -> tuple[float, float]:
    """(tracemalloc peak MB, peak growth of anonymous RSS in MB) of one call each.

    Anonymous memory (``RssAnon``: heap, buffers, tensors, anything private) is what a call
    costs; pages of a file mapped for reading belong to the page cache, shared and
    reclaimable, and would make plain RSS grow by the files' size. The peak is sampled every
    0.5 ms by a thread while the call runs (0 where /proc is missing)."""
    base = _rss_kb("RssAnon")
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb("RssAnon"))
            time.sleep(0.0005)

    t = threading.Thread(target=sample)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    tracemalloc.start()
    try:
        fn()
        top = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return top / 2**20, max(0, peak[0] - base) / 1024
