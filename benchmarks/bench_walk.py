"""walk() against what a user would otherwise reach for, on Llama-3-70B- and Llama-3.1-405B-
shaped models built on the meta device and on DistilBERT (meta, and CPU with real weights).

Competitors, all on the same live model, interleaved (see ``common.py``):

- ``named_parameters``: ``list(model.named_parameters())``, the bare listing: the floor.
- ``networkx walk``: a minimal hand-written graph: ``named_modules()`` into ``add_node`` /
  ``add_edge`` with the class name, plus each parameter's shape. Context: what the least
  useful graph costs.
- ``walk``: ``modeldiff.walk(model)``: typed nodes, attributes, totals, ties, repeat groups,
  the HF config.
- ``torchinfo``: ``torchinfo.summary(model, verbose=0)`` with no input: torchinfo's static
  summary (class, depth, parameter counts per layer; no attributes, shapes or dtypes).

Memory: the 405B-shaped model is walked in a fresh subprocess (so freed memory from earlier
walks cannot hide the cost): the peak RSS delta of a first walk, then the tracemalloc peak
of a second one.

    .venv/bin/python benchmarks/bench_walk.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `common` sits beside this file, also when run.py imports it
    sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    LLAMA_70B,
    LLAMA_405B,
    Stats,
    build_llama,
    compare,
    measure,
    ms,
    note,
    parse_quick,
    table,
)

# The targets of the issue, evaluated on every row of the comparison.
MAX_WALK_OVER_LISTING = 5.0  # walk within 5x of list(named_parameters())
MIN_TORCHINFO_OVER_WALK = 5.0  # walk at least 5x faster than torchinfo's static summary
MAX_SPREAD = 2.0  # slowest repeated walk within 2x of the median
MAX_EXTRA_MB = 100.0  # extra memory of walking the 405B shape

COMPETITORS = ("named_parameters", "networkx walk", "walk", "torchinfo")


def build_distilbert(device: str) -> Any:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    with torch.device(device):
        return DistilBertForSequenceClassification(DistilBertConfig()).eval()


MODELS: dict[str, Callable[[], Any]] = {
    "Llama-3-70B shape (meta)": lambda: build_llama(LLAMA_70B),
    "Llama-3.1-405B shape (meta)": lambda: build_llama(LLAMA_405B),
    "DistilBERT (meta)": lambda: build_distilbert("meta"),
    "DistilBERT (CPU, weights)": lambda: build_distilbert("cpu"),
}


def networkx_walk(model: Any) -> Any:
    """The least a graph of a model can be: modules, containment, class names, shapes."""
    import networkx as nx

    g = nx.DiGraph()
    for name, mod in model.named_modules():
        g.add_node(name, cls=type(mod).__name__, params=[])
        if name:
            g.add_edge(name.rpartition(".")[0], name)
    nodes = g.nodes
    for name, p in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        nodes[owner]["params"].append((leaf, tuple(p.shape)))
    return g


def competitors(model: Any) -> tuple[dict[str, Callable[[], Any]], str | None]:
    """The competitor callables for ``model``, and why torchinfo is missing if it is."""
    import torchinfo

    from modeldiff import walk

    fns: dict[str, Callable[[], Any]] = {
        "named_parameters": lambda: list(model.named_parameters()),
        "networkx walk": lambda: networkx_walk(model),
        "walk": lambda: walk(model),
        "torchinfo": lambda: torchinfo.summary(model, verbose=0),
    }
    try:
        stats = torchinfo.summary(model, verbose=0)
    except Exception as e:  # a competitor failing is a result to report, not a crash
        del fns["torchinfo"]
        return fns, f"torchinfo fails: {type(e).__name__}: {str(e).splitlines()[0]}"
    # Same model, same count: the competitors really do look at the same thing.
    walked = walk(model).totals.params
    if stats.total_params != walked:
        note(f"  note: torchinfo counts {stats.total_params:,} params, walk {walked:,}")
    return fns, None


def memory_probe(*, rss: bool = True) -> dict[str, float]:
    """Extra memory of walking the 405B-shaped model, in MB. Run it in a fresh process: the
    RSS numbers mean something only for the first walk in a process (``rss=False`` skips
    them)."""
    import gc
    import tracemalloc

    from modeldiff import walk

    model = build_llama(LLAMA_405B)
    gc.collect()

    def status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    out: dict[str, float] = {}
    if rss:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to VmRSS
        except OSError:  # not Linux: no RSS cross-check, tracemalloc still works
            rss = False
    if rss:
        before = status("VmRSS")
        graph = walk(model)
        out["rss_peak_mb"] = status("VmHWM") - before
        out["rss_retained_mb"] = status("VmRSS") - before
        del graph
    else:
        walk(model)  # the tracemalloc walk below is a second walk either way
    gc.collect()
    tracemalloc.start()
    graph = walk(model)  # held, so "current" is what the graph keeps
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del graph
    out["tracemalloc_peak_mb"] = peak / 2**20
    out["tracemalloc_retained_mb"] = current / 2**20
    return out


def run_memory_probe() -> dict[str, float]:
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import bench_walk; "
            "print(json.dumps(bench_walk.memory_probe()))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(quick: bool = False) -> str:
    from modeldiff import walk

    repeats, warmup = (3, 1) if quick else (31, 3)
    serial_repeats = 5 if quick else 101
    results: dict[str, dict[str, Stats]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    notes: list[str] = []
    serial: Stats | None = None
    for label, build in MODELS.items():
        note(f"bench_walk: {label}: building")
        model = build()
        fns, why = competitors(model)
        if why:
            notes.append(f"{label}: {why}; measured without it.")
        note(f"bench_walk: {label}: {repeats} interleaved rounds of {', '.join(fns)}")
        results[label] = compare(fns, repeats=repeats, warmup=warmup)
        g = walk(model)
        sizes[label] = (len(g), g.totals.params)
        if label.startswith("Llama-3.1-405B"):
            # What a user walking the same big model again and again gets: walk alone, back
            # to back, no other competitor's garbage in the heap's generations.
            note(f"bench_walk: {label}: {serial_repeats} walks back to back")
            serial = measure(lambda m=model: walk(m), repeats=serial_repeats, warmup=warmup)
        del model, fns, g
    assert serial is not None, "MODELS lost its 405B-shaped entry"
    if quick:  # saves a second torch import; RSS deltas mean nothing in this warm process
        note("bench_walk: memory (405B shape, tracemalloc only)")
        mem = memory_probe(rss=False)
    else:
        note("bench_walk: memory probe (405B shape, fresh process)")
        mem = run_memory_probe()

    rows = []
    for label, res in results.items():
        w, listing = res["walk"], res["named_parameters"]
        ti = res.get("torchinfo")
        rows.append([label, f"{sizes[label][0]:,}", *(ms(res[c].median) if c in res else "n/a"
                                                      for c in COMPETITORS),
                     f"{w.median / listing.median:.1f}x",
                     f"{ti.median / w.median:.1f}x" if ti else "n/a",
                     f"{w.spread:.2f} / {w.cpu_spread:.2f}"])
    speed = table(["model", "modules", *(f"{c} (ms)" for c in COMPETITORS),
                   "walk / named_parameters", "torchinfo / walk",
                   "walk max/median (wall / CPU)"], rows)
    def spread_cell(st: Stats) -> str:
        return (f"{st.spread:.2f} / {st.cpu_spread:.2f} "
                f"(gc {st.collections}, full {st.full_collections})")

    spread = table(["model", *COMPETITORS],
                   [[label, *(spread_cell(res[c]) if c in res else "n/a" for c in COMPETITORS)]
                    for label, res in results.items()])
    def mb(key: str) -> str:
        return f"{mem[key]:.1f}" if key in mem else "n/a"

    memory = table(["405B shape, walk", "MB"], [
        ["tracemalloc peak during walk", mb("tracemalloc_peak_mb")],
        ["tracemalloc still held by the graph", mb("tracemalloc_retained_mb")],
        ["RSS peak delta (first walk in a fresh process)", mb("rss_peak_mb")],
        ["RSS delta still held after it", mb("rss_retained_mb")],
    ])

    worst_listing = max(r["walk"].median / r["named_parameters"].median for r in results.values())
    with_ti = [r for r in results.values() if "torchinfo" in r]
    worst_ti = min((r["torchinfo"].median / r["walk"].median for r in with_ti),
                   default=float("nan"))
    # Ratios of the fastest calls: a cross-check that is less at the mercy of the machine's
    # load than the medians (the verdict is still on medians).
    best_listing = max(r["walk"].min / r["named_parameters"].min for r in results.values())
    best_ti = min((r["torchinfo"].min / r["walk"].min for r in with_ti), default=float("nan"))
    worst_spread = max(r["walk"].spread for r in results.values())
    worst_cpu_spread = max(r["walk"].cpu_spread for r in results.values())
    walk_full_gcs = sum(r["walk"].full_collections for r in results.values())
    extra = max(mem["tracemalloc_peak_mb"], mem.get("rss_peak_mb", 0.0))

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    targets = table(["target", "worst row (medians)", "verdict"], [
        [f"walk / named_parameters <= {MAX_WALK_OVER_LISTING:g}x",
         f"{worst_listing:.1f}x (min: {best_listing:.1f}x)",
         verdict(worst_listing <= MAX_WALK_OVER_LISTING)],
        [f"torchinfo / walk >= {MIN_TORCHINFO_OVER_WALK:g}x",
         f"{worst_ti:.1f}x (min: {best_ti:.1f}x)",
         verdict(worst_ti >= MIN_TORCHINFO_OVER_WALK)],
        [f"walk max/median <= {MAX_SPREAD:g} ({repeats} interleaved walks), wall clock",
         f"{worst_spread:.2f}", verdict(worst_spread <= MAX_SPREAD)],
        [f"walk max/median <= {MAX_SPREAD:g} ({repeats} interleaved walks), CPU time",
         f"{worst_cpu_spread:.2f}", verdict(worst_cpu_spread <= MAX_SPREAD)],
        [f"405B walk max/median <= {MAX_SPREAD:g} ({serial.n} walks back to back), wall clock",
         f"{serial.spread:.2f}", verdict(serial.spread <= MAX_SPREAD)],
        [f"405B walk max/median <= {MAX_SPREAD:g} ({serial.n} walks back to back), CPU time",
         f"{serial.cpu_spread:.2f}", verdict(serial.cpu_spread <= MAX_SPREAD)],
        [f"(context) full collections during the {repeats * len(results)} timed walks",
         f"{walk_full_gcs}", "-"],
        [f"extra memory, 405B walk < {MAX_EXTRA_MB:g} MB", f"{extra:.1f} MB",
         verdict(extra < MAX_EXTRA_MB)],
    ])
    parts = [
        f"### walk: median ms of {repeats} interleaved calls"
        + (" (--quick: rough numbers)" if quick else ""),
        speed,
        "### max/median per competitor: wall clock / CPU time (collector runs during the "
        "timed calls)",
        spread,
        f"### {serial.n} walks of the 405B shape back to back",
        table(["median ms", "p90 / median", "max / median (wall)", "max / median (CPU)",
               "collector runs (full)"],
              [[ms(serial.median), f"{serial.p90 / serial.median:.2f}", f"{serial.spread:.2f}",
                f"{serial.cpu_spread:.2f}", f"{serial.collections} ({serial.full_collections})"]]),
        "### memory",
        memory,
        "### targets",
        targets,
    ]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__.splitlines()[0])))
