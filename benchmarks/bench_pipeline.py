"""modeldiff.classify against transformers.pipeline("text-classification"): throughput in
texts per second on the same default model (DistilBERT, default size, CPU, real weights)
and the same texts, at batch sizes 1 and 32.

Competitors, interleaved in one run (see ``common.py``), each classifying the whole corpus
once per call:

- ``classify``: ``modeldiff.classify(texts, model, tok, batch_size=bs)``.
- ``pipeline``: ``pipeline("text-classification", model=model, tokenizer=tok)(texts,
  batch_size=bs, truncation=True)``; the pipeline object is built once, outside the clock.

The corpus: sentences whose word counts are drawn from a log-normal distribution (median 15
words, clipped to 3..120: many short texts, a long tail), in input order (not sorted by
length, as users send them), plus an empty string, emoji and Chinese. Before timing, the
script checks that both give the same labels and scores within 1e-6 at both batch sizes, on
the corpus plus one text longer than 512 tokens (truncated). That text stays out of the
timed corpus: one 512-token text decides the padding of its whole batch for the pipeline,
so it would make the batched rows a measure of where it happens to fall.

    .venv/bin/python benchmarks/bench_pipeline.py [--quick]
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `common` sits beside this file, also when run.py imports it
    sys.path.insert(0, str(HERE))

from common import compare, note, parse_quick, table  # noqa: E402

BATCH_SIZES = (1, 32)
_WORDS = ("the movie was good bad long short funny boring actor plot scene music story "
          "ending great terrible slow fast beautiful dull and but not very quite really a an "
          "of in with this that it I we they loved hated watched film director script")
WORDS = tuple(_WORDS.split())


def corpus(n: int) -> list[str]:
    rng = random.Random(0)
    texts = ["", "😀🎬🍿 great", "这部电影非常好看"]
    while len(texts) < n:
        words = min(120, max(3, round(rng.lognormvariate(math.log(15), 0.8))))
        texts.append(" ".join(rng.choice(WORDS) for _ in range(words)) + ".")
    rng.shuffle(texts)
    return texts[:n]


def main(quick: bool = False) -> str:
    from transformers import pipeline

    import modeldiff
    from modeldiff._pipeline import default_classifier

    n, repeats, warmup = (8, 2, 1) if quick else (256, 3, 1)
    texts = corpus(n)
    note("bench_pipeline: building the default model")
    model, tok = default_classifier()
    clf = pipeline("text-classification", model=model, tokenizer=tok, device="cpu")
    check = [*texts, "the plot went on and on " * 120]
    worst = 0.0
    for bs in BATCH_SIZES:
        ours = modeldiff.classify(check, model, tok, batch_size=bs)
        theirs = clf(check, batch_size=bs, truncation=True)
        if [p.label for p in ours] != [d["label"] for d in theirs]:
            raise SystemExit("bench_pipeline: classify and pipeline disagree; not timing them")
        worst = max(worst, *(abs(p.score - d["score"]) for p, d in zip(ours, theirs,
                                                                          strict=True)))
    if worst > 1e-6:
        raise SystemExit(f"bench_pipeline: scores differ by {worst:.2e} > 1e-6; not timing")

    rows = []
    targets = []
    for bs in BATCH_SIZES:
        fns: dict[str, Any] = {
            "classify": lambda bs=bs: modeldiff.classify(texts, model, tok, batch_size=bs),
            "pipeline": lambda bs=bs: clf(texts, batch_size=bs, truncation=True),
        }
        note(f"bench_pipeline: batch size {bs}: {repeats} interleaved rounds of "
             f"{len(texts)} texts")
        res = compare(fns, repeats=repeats, warmup=warmup)
        c, p = res["classify"], res["pipeline"]
        rows.append([str(bs), f"{n / c.median:,.1f}", f"{n / p.median:,.1f}",
                     f"{p.median / c.median:.2f}x",
                     f"{c.spread:.2f} / {p.spread:.2f}"])
        want = 2.0 if bs > 1 else 1.0
        targets.append([f"classify >= {want:g}x pipeline at batch size {bs}",
                        f"{p.median / c.median:.2f}x (min: {p.min / c.min:.2f}x)",
                        "met" if p.median / c.median >= want else "NOT met"])
    speed = table(["batch size", "classify (texts/s)", "pipeline (texts/s)",
                   "classify speed / pipeline speed", "max/median (classify / pipeline)"], rows)
    import os

    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    targets.append(["same labels, scores within 1e-6 (both batch sizes, + a >512-token text)",
                    f"max |score diff| {worst:.1e}", "met"])
    return (f"### classify vs transformers.pipeline ({n} texts per call, default DistilBERT, "
            f"CPU, {torch.get_num_threads()} torch threads, median of {repeats} interleaved "
            f"rounds, load average {load:.1f})\n\n{speed}\n\n### targets\n\n"
            f"{table(['target', 'measured (medians)', 'verdict'], targets)}\n")


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__)))
