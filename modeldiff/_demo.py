"""``modeldiff demo``: the DistilBERT text-classification tutorial, replayed offline.

1. build DistilBertForSequenceClassification from the default config (labels NEGATIVE/POSITIVE)
   and DistilBertModel from the same config, and
   show both architectures (folded summaries);
2. show their structural diff: exactly ``pre_classifier``, ``classifier`` and ``dropout``;
3. write the diagrams of both models and of the delta (SVG) into the output folder;
4. classify a few sentences, showing the pipeline's intermediate steps;
5. save with ``save_pretrained``, list the files written, reload, classify again, and report
   whether the results are identical.

``examples/tutorial.py`` is the same as a plain script to copy from.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, cast

__all__ = ["SENTENCES", "DemoResult", "run_demo"]

SENTENCES = (
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
    "The movie was fine, nothing special.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What the demo produced, for tests and for callers who want more than the printout."""

    out: Path
    added: tuple[str, ...]
    diagrams: tuple[Path, ...]
    model_files: tuple[str, ...]
    identical: bool


def run_demo(out: str | Path = "modeldiff-demo", *, stream: TextIO | None = None) -> DemoResult:
    """Replay the tutorial; artifacts go to ``out``. Returns what it found."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel
    from transformers.utils import logging as hf_logging

    import modeldiff
    from modeldiff._pipeline import default_classifier, pipeline_steps
    from modeldiff.errors import GraphvizNotFoundError, MissingDependencyError

    stream = stream or sys.stdout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def say(text: str = "") -> None:
        print(text, file=stream)

    say("modeldiff demo: the DistilBERT text-classification tutorial, offline\n")

    say("[1/5] Two architectures from the default DistilBertConfig")
    head, tokenizer = default_classifier()  # seeded; labels NEGATIVE/POSITIVE
    with torch.device("meta"):  # the base only needs its structure; same config as the head
        base = DistilBertModel(cast(DistilBertConfig, head.config))
    g_base, g_head = modeldiff.walk(base), modeldiff.walk(head)
    for g in (g_base, g_head):
        say(_indent(g.summary(depth=2)))
        say()

    say("[2/5] What the classification head adds")
    delta = modeldiff.diff(g_base, g_head)
    say(_indent(str(delta)))
    say()

    say(f"[3/5] Diagrams (SVG) in {out}/")
    diagrams: tuple[Path, ...] = ()
    try:
        from modeldiff._render import save

        diagrams = (
            save(g_base, out / "distilbert.svg"),
            save(g_head, out / "distilbert-sequence-classification.svg"),
            save(delta, out / "distilbert-head-delta.svg"),
        )
    except (GraphvizNotFoundError, MissingDependencyError) as e:
        # the rest of the tutorial needs no diagrams: say why they are missing, go on
        say(f"    skipped: {e}")
    for p in diagrams:
        say(f"    {p.name}")
    say()

    say("[4/5] The pipeline: tokenizer -> model -> softmax -> labels")
    steps = pipeline_steps(list(SENTENCES[:2]), head, tokenizer)
    say(_indent(str(steps)))
    before = [(p.label, p.score) for p in modeldiff.classify(list(SENTENCES), head, tokenizer)]
    say()

    say("[5/5] save_pretrained -> from_pretrained")
    # The tokenizer is saved with the checkpoint: `modeldiff classify --model <out>/checkpoint`
    # then reproduces these scores without being told which tokenizer to use.
    report = modeldiff.roundtrip(head, tokenizer=tokenizer, workdir=out / "checkpoint")
    for f in report.model_files:
        say(f"    wrote {f.name:<20} {f.size:>12,} bytes  sha256 {f.sha256[:12]}")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # keep the demo's output to its own lines
    try:
        reloaded = modeldiff.classify(list(SENTENCES), str(out / "checkpoint"))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    after = [(p.label, p.score) for p in reloaded]
    identical = before == after and report.ok
    for text, (label, score), (label2, score2) in zip(SENTENCES, before, after, strict=True):
        mark = "=" if (label, score) == (label2, score2) else "!"
        say(f"    {mark} {label:<8} {score:.6f} -> {label2:<8} {score2:.6f}  {text[:40]!r}")
    verdict = ("identical: same labels, bit-identical scores, state dict and outputs"
               if identical else "DIFFERENT:\n" + _indent(str(report)))
    say(f"    {len(report.model_files)} model files written; results after reloading are {verdict}")
    say("    (the head is untrained, so the labels themselves mean nothing yet)")
    return DemoResult(out=out, added=tuple(c.path for c in delta.added), diagrams=diagrams,
                      model_files=tuple(f.name for f in report.model_files), identical=identical)


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line if line else line for line in text.splitlines())
