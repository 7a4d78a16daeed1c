"""Run every benchmark and print its tables: ``make bench`` (or ``python benchmarks/run.py``).

The convention every ``benchmarks/bench_*.py`` follows, so this runner finds it:

- a module-level ``main(quick: bool) -> str | None`` that measures and *returns* its results
  as markdown (tables under ``###`` headings; what ``docs/performance.md`` quotes). Returning
  ``None`` is allowed for a script that prints its own tables;
- progress notes go to stderr, so stdout holds only the tables;
- ``quick=True`` is a CI-sized run: a few repeats, seconds not minutes; it proves the script
  works, its numbers are not worth quoting;
- the timing harness is ``common.py`` (``compare``: interleaved competitors, medians,
  max/median; the garbage collector left on); scripts import it as ``from common import ...``
  (this folder is put on ``sys.path``);
- each script also runs on its own: ``python benchmarks/bench_walk.py [--quick]``.

Modules run in name order, in this one process. One failing benchmark does not stop the
others; the exit status is 1 if any failed.

    python benchmarks/run.py [--quick] [NAME ...]   # NAME: e.g. walk for bench_walk.py
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import note  # noqa: E402  (sets HF_HUB_OFFLINE before anything imports transformers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks/bench_*.py modules.")
    parser.add_argument("--quick", action="store_true", help="CI-sized runs (rough numbers)")
    parser.add_argument("names", nargs="*", help="only these, e.g. `walk` for bench_walk.py")
    args = parser.parse_args(argv)
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    wanted = [f"bench_{n.removeprefix('bench_')}" for n in args.names] or found
    unknown = [n for n in wanted if n not in found]
    if unknown:
        parser.error(f"no benchmarks/{unknown[0]}.py; there are: {', '.join(found)}")
    failed: list[str] = []
    for name in wanted:
        note(f"== {name} ==")
        t0 = time.perf_counter()
        try:
            main_fn = importlib.import_module(name).main
            if "quick" not in inspect.signature(main_fn).parameters:
                note(f"{name}.main{inspect.signature(main_fn)} does not follow the convention "
                     "at the top of benchmarks/run.py: main(quick: bool) -> str | None; "
                     f"skipped (run it alone: python benchmarks/{name}.py)")
                failed.append(name)
                continue
            result = main_fn(args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        if result is not None:
            print(f"## {name}\n\n{result}\n", flush=True)
        note(f"== {name}: {time.perf_counter() - t0:.0f} s ==")
    if failed:
        note(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
