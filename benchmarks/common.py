"""The small harness every ``benchmarks/bench_*.py`` shares: timing, tables, ``--quick``.

Timing rules, chosen for a shared, noisy 2-core machine:

- ``perf_counter`` around one call; the call's result is dropped *after* the clock stops, so
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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Nothing in a benchmark may reach the network: hub look-ups fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@dataclass(frozen=True, slots=True)
class Stats:
    """Seconds per call over ``n`` timed calls."""

    median: float
    min: float
    max: float
    p90: float
    n: int

    @property
    def spread(self) -> float:
        """max / median: 1.0 means the slowest call was as fast as the typical one."""
        return self.max / self.median

    @classmethod
    def of(cls, times: Sequence[float]) -> Stats:
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
        return cls(median=statistics.median(ordered), min=ordered[0], max=ordered[-1],
                   p90=p90, n=len(ordered))


def _time_once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    del out  # freed outside the timed region
    return elapsed


def compare(competitors: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 2
            ) -> dict[str, Stats]:
    """Time every competitor ``repeats`` times (after ``warmup`` untimed calls), interleaved."""
    names = list(competitors)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    for r in range(warmup + repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = _time_once(competitors[name])
            if r >= warmup:
                times[name].append(elapsed)
    return {name: Stats.of(times[name]) for name in names}


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
