"""render() on a Llama-3-70B-shaped model (meta device), and torchview on DistilBERT.

Two questions:

- Is drawing cheap next to walking? On the 70B shape (1,047 modules): ``walk(model)``
  against ``render(graph).source`` (DOT text, no binary), folded (the default, one box per
  distinct layer) and unfolded (all 80 layers), interleaved; then Graphviz's ``dot`` laying
  both out as SVG.
- What does the usual alternative cost? torchview draws from a forward pass, so it needs a
  model with real weights: DistilBERT (default config, random weights, CPU, 16 tokens).
  ``torchview.draw_graph(model, input_data=ids, depth=3)`` (its graph build, forward pass
  included) against ``walk`` + ``render`` on the same live model; then each one's ``dot``
  layout as SVG.

    .venv/bin/python benchmarks/bench_render.py [--quick]
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `common` sits beside this file, also when run.py imports it
    sys.path.insert(0, str(HERE))

from common import LLAMA_70B, build_llama, compare, ms, note, parse_quick, table  # noqa: E402


def _boxes(source: str) -> int:
    return sum(1 for line in source.splitlines() if " [label=<" in line)


class PackageWriter:
    """DOT statements through ``graphviz.Digraph`` (how render wrote them before DotWriter):
    the competitor for the unfolded diagram, same output byte for byte (tests/test_diagram.py)."""

    def __init__(self) -> None:
        import graphviz

        self.g = graphviz.Digraph()
        self.lines = self.g.body

    def node(self, name: str, label: str | None = None, **attrs: str) -> None:
        self.g.node(name, label, **attrs)

    def edge(self, tail: str, head: str, label: str | None = None, **attrs: str) -> None:
        self.g.edge(tail, head, label, **attrs)

    def attr(self, **attrs: str) -> None:
        self.g.attr(**attrs)

    @contextlib.contextmanager
    def subgraph(self, name: str | None = None) -> Iterator[PackageWriter]:
        outer = self.g
        with outer.subgraph(name=name) as sub:
            self.g = sub
            try:
                yield self
            finally:
                self.g = outer


def through_package(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with render's DOT written through the graphviz package instead."""
    from modeldiff import _render

    def call() -> Any:
        direct = _render.DotWriter
        _render.DotWriter = PackageWriter  # type: ignore[misc,assignment]
        try:
            return fn()
        finally:
            _render.DotWriter = direct  # type: ignore[misc]
    return call


def main(quick: bool = False) -> str:
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    from modeldiff._inputs import walk
    from modeldiff._render import render

    repeats, warmup = (3, 1) if quick else (15, 2)
    dot_repeats = 2 if quick else 7

    # -- Llama-3-70B shape ------------------------------------------------------------------
    note("building the Llama-3-70B shape on meta")
    llama = build_llama(LLAMA_70B)
    g = walk(llama)
    folded, unfolded = render(g), render(g, fold_repeats=False)
    note("timing walk vs DOT generation")
    gen = compare({
        "walk": lambda: walk(llama),
        "DOT, folded": lambda: render(g).source,
        "DOT, unfolded": lambda: render(g, fold_repeats=False).source,
        "DOT, unfolded, via graphviz.Digraph": through_package(
            lambda: render(g, fold_repeats=False).source),
    }, repeats=repeats, warmup=warmup)
    assert through_package(lambda: render(g, fold_repeats=False).source)() == unfolded.source
    note("timing dot layout (SVG)")
    lay = compare({
        "dot -Tsvg, folded": lambda: folded.pipe(format="svg"),
        "dot -Tsvg, unfolded": lambda: unfolded.pipe(format="svg"),
    }, repeats=dot_repeats, warmup=1)
    w = gen["walk"].median

    def row(label: str, size: str, st: Any) -> list[str]:
        return [label, size, ms(st.median), ms(st.min), f"{st.median / w:.1f}x",
                f"{st.spread:.2f}"]

    rows = [
        row("walk(model)", f"{len(g):,} modules", gen["walk"]),
        row("render(g).source, folded", f"{_boxes(folded.source)} boxes", gen["DOT, folded"]),
        row("render(g, fold_repeats=False).source", f"{_boxes(unfolded.source)} boxes",
            gen["DOT, unfolded"]),
        row("same, written through graphviz.Digraph (before)", f"{_boxes(unfolded.source)} boxes",
            gen["DOT, unfolded, via graphviz.Digraph"]),
        row("dot -Tsvg, folded", f"{len(folded.pipe(format='svg')) // 1024} KB SVG",
            lay["dot -Tsvg, folded"]),
        row("dot -Tsvg, unfolded", f"{len(unfolded.pipe(format='svg')) // 1024} KB SVG",
            lay["dot -Tsvg, unfolded"]),
    ]
    llama_table = table(["Llama-3-70B shape (meta)", "size", "median (ms)", "min (ms)",
                         "/ walk", "max/median"], rows)
    un = gen["DOT, unfolded"]
    targets = table(["target", "measured (medians)", "verdict"], [
        ["unfolded DOT <= 10x walk", f"{un.median / w:.1f}x (min: "
         f"{un.min / gen['walk'].min:.1f}x)", "met" if un.median <= 10 * w else "NOT met"],
        ["unfolded DOT < 100 ms", f"{ms(un.median)} ms (max {ms(un.max)} ms)",
         "met" if un.median < 0.1 else "NOT met"],
        ["(context) graphviz.Digraph writer / direct writer",
         f"{gen['DOT, unfolded, via graphviz.Digraph'].median / un.median:.1f}x", "-"],
    ])

    # -- torchview on DistilBERT ----------------------------------------------------------------
    import torchview

    note("building DistilBERT with real (random) weights on CPU")
    torch.manual_seed(0)
    bert = DistilBertModel(DistilBertConfig()).eval()
    ids = torch.randint(0, 30522, (1, 16))

    def torchview_build() -> Any:
        with torch.no_grad():
            return torchview.draw_graph(bert, input_data=ids, depth=3, graph_name="distilbert")

    tv = torchview_build()
    ours = render(walk(bert))
    note("timing torchview vs walk + render")
    build = compare({
        "torchview.draw_graph(depth=3)": torchview_build,
        "walk + render(...).source": lambda: render(walk(bert)).source,
    }, repeats=repeats, warmup=warmup)
    note("timing dot layout of both")
    tv_dot = tv.visual_graph
    layout = compare({
        "torchview": lambda: tv_dot.pipe(format="svg"),
        "modeldiff": lambda: ours.pipe(format="svg"),
    }, repeats=dot_repeats, warmup=1)
    tv_nodes = sum(1 for line in tv_dot.source.splitlines() if " [label=" in line)
    bert_rows = [
        ["torchview.draw_graph(depth=3)", f"{tv_nodes} nodes",
         ms(build["torchview.draw_graph(depth=3)"].median), ms(layout["torchview"].median)],
        ["modeldiff walk + render", f"{_boxes(ours.source)} boxes",
         ms(build["walk + render(...).source"].median), ms(layout["modeldiff"].median)],
    ]
    bert_table = table(["DistilBERT (CPU, real weights)", "drawn", "graph build (ms)",
                        "dot -Tsvg (ms)"], bert_rows)
    ratio = build["torchview.draw_graph(depth=3)"].median / build[
        "walk + render(...).source"].median
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"### Llama-3-70B shape: DOT generation vs walk, and dot layout (load average "
            f"{load:.1f})\n\n{llama_table}\n\n### targets\n\n{targets}\n\n"
            f"### DistilBERT: torchview vs modeldiff\n\n{bert_table}\n\n"
            f"torchview's graph build / modeldiff's walk + render: {ratio:.1f}x "
            f"({'quick run, rough' if quick else f'medians of {repeats}'}).\n")


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__ or "")))
