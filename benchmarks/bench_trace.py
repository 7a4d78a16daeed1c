"""trace() against what a user would otherwise run: a bare meta forward under torch's
FlopCounterMode (Llama-3-70B and Llama-3.1-405B shapes, batch 1, seq 2048), and torchview's
``draw_graph(device='meta')`` and torchinfo's ``summary`` on DistilBERT (batch 1, seq 128).

Competitors, interleaved (see ``common.py``):

- ``FlopCounterMode``: ``with FlopCounterMode(): model(input_ids=...)`` on the meta model:
  total and per-module FLOPs, nothing else. The floor: trace does that plus shapes, dtypes,
  data flow, activation memory and the walked graph.
- ``trace``: ``modeldiff.trace(model, seq=...)``.
- ``torchview``: ``draw_graph(model, input_data=..., device='meta')``: a data-flow graph.
- ``torchinfo``: ``summary(model, input_data=..., verbose=0)`` on the CPU model (it runs a
  real forward: torchinfo has no meta mode), output shapes and mult-adds per layer.

Memory: the extra memory of tracing the 405B shape: the tracemalloc peak of one trace after
the model is built.

    .venv/bin/python benchmarks/bench_trace.py [--quick]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    LLAMA_70B,
    LLAMA_405B,
    build_llama,
    compare,
    ms,
    note,
    parse_quick,
    table,
)

MAX_TRACE_OVER_FLOPCOUNTER = 1.5
MAX_SECONDS = {"Llama-3-70B": 3.0, "Llama-3.1-405B": 6.0}
MAX_EXTRA_MB = 200.0
SEQ = 2048


def flopcounter_forward(model: Any, ids: Any) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # use_cache left on: without a cache, transformers' packed-sequence check calls .item()
    # on a meta tensor, which a bare forward cannot answer (trace answers it).
    with torch.no_grad(), counter:
        model(input_ids=ids)
    return counter.get_total_flops()


def llama_rows(quick: bool) -> tuple[list[list[object]], list[str]]:
    import torch

    from modeldiff import trace

    rows: list[list[object]] = []
    misses: list[str] = []
    shapes = {"Llama-3-70B": LLAMA_70B, "Llama-3.1-405B": LLAMA_405B}
    seq = 256 if quick else SEQ
    for name, shape in shapes.items():
        note(f"  {name}")
        # --quick: two layers at seq 256, to prove the script runs (numbers not quotable)
        model = build_llama(shape, num_hidden_layers=2) if quick else build_llama(shape)
        ids = torch.ones(1, seq, dtype=torch.long, device="meta")
        fns: dict[str, Callable[[], Any]] = {
            "FlopCounterMode": lambda m=model, i=ids: flopcounter_forward(m, i),
            "trace": lambda m=model: trace(m, seq=seq),
        }
        stats = compare(fns, repeats=1 if quick else 5, warmup=1)
        fc, tr = stats["FlopCounterMode"], stats["trace"]
        ratio = tr.median / fc.median
        rows.append([name, ms(fc.median), ms(tr.median), f"{ratio:.2f}",
                     f"{tr.spread:.2f}"])
        if quick:
            continue
        if ratio > MAX_TRACE_OVER_FLOPCOUNTER:
            misses.append(f"{name}: trace {ratio:.2f}x FlopCounterMode "
                          f"(target {MAX_TRACE_OVER_FLOPCOUNTER}x)")
        if tr.median > MAX_SECONDS[name]:
            misses.append(f"{name}: trace {tr.median:.2f} s (target {MAX_SECONDS[name]} s)")
        del model
    return rows, misses


def extra_memory_mb(quick: bool) -> float:
    import gc
    import tracemalloc

    from modeldiff import trace

    model = build_llama(LLAMA_405B, num_hidden_layers=2) if quick else build_llama(LLAMA_405B)
    seq = 256 if quick else SEQ
    trace(model, seq=seq)  # first call: imports and caches are not the trace's cost
    gc.collect()
    tracemalloc.start()
    result = trace(model, seq=seq)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return peak / 2**20


def distilbert_rows(quick: bool) -> list[list[object]]:
    import torch
    import torchinfo
    from torchview import draw_graph
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from modeldiff import trace

    torch.manual_seed(0)
    with torch.device("meta"):
        meta = DistilBertForSequenceClassification(DistilBertConfig()).eval()
    cpu = DistilBertForSequenceClassification(DistilBertConfig()).eval()
    ids = torch.ones(1, 128, dtype=torch.long)
    fns: dict[str, Callable[[], Any]] = {
        "trace (meta)": lambda: trace(meta, seq=128),
        "torchview draw_graph (meta)": lambda: draw_graph(meta, input_data=[ids.to("meta")],
                                                          device="meta"),
        "torchinfo summary (CPU)": lambda: torchinfo.summary(cpu, input_data=[ids],
                                                             verbose=0),
    }
    stats = compare(fns, repeats=1 if quick else 7, warmup=0 if quick else 1)
    base = stats["trace (meta)"].median
    return [[name, ms(s.median), f"{s.median / base:.2f}", f"{s.spread:.2f}"]
            for name, s in stats.items()]


def main(quick: bool = False) -> str:
    note("trace vs FlopCounterMode on Llama shapes")
    rows, misses = llama_rows(quick)
    note("extra memory of tracing the 405B shape")
    extra = extra_memory_mb(quick)
    if extra > MAX_EXTRA_MB and not quick:
        misses.append(f"405B: extra memory {extra:.0f} MB (target {MAX_EXTRA_MB:.0f} MB)")
    note("DistilBERT: trace vs torchview vs torchinfo")
    drows = distilbert_rows(quick)
    out = [
        "### trace vs a bare meta forward under FlopCounterMode "
        + ("(--quick: 2 layers, seq 256)" if quick else f"(batch 1, seq {SEQ})"),
        "",
        table(["model", "FlopCounterMode ms", "trace ms", "trace / FlopCounterMode",
               "trace max/median"], rows),
        "",
        f"Extra memory of tracing the 405B shape (tracemalloc peak): {extra:.0f} MB",
        "",
        "### trace vs torchview and torchinfo on DistilBERT (batch 1, seq 128)",
        "",
        table(["competitor", "median ms", "x trace", "max/median"], drows),
    ]
    if misses:
        out += ["", "Targets missed: " + "; ".join(misses)]
    return "\n".join(out)


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__)))
