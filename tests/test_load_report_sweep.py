"""load_report against transformers' own loading report, over every head family.

For each (model_type, head) of :data:`tests.sweep_cases.SWEEP_HEADS` and both directions
(the base checkpoint loaded into the head class; the head checkpoint loaded into the base
class), the oracle saves the tiny checkpoint once per session and calls
``TargetClass.from_pretrained(folder, output_loading_info=True)``; ``load_report`` must
give the same missing, unexpected and mismatched keys, and the same keys hidden by the
class's ignore patterns, from the folder's headers and a meta-device build.
"""

from __future__ import annotations

import pytest

from tests.sweep import oracle, saved
from tests.sweep_cases import SWEEP_HEADS

# transformers itself cannot do these loads; load_report says so with a typed error
# (asserted in test_unloadable_direction_is_an_error)
UNLOADABLE = {("mllama", "causal-lm", "base")}

CASES = [(t, ck, tg) for t, heads in SWEEP_HEADS.items() for h in heads
         for ck, tg in (("base", h), (h, "base")) if (t, ck, tg) not in UNLOADABLE]
IDS = [f"{t}:{ck}->{tg}" for t, ck, tg in CASES]


@pytest.mark.parametrize(("model_type", "checkpoint_task", "target_task"), CASES, ids=IDS)
def test_load_report_matches_transformers(model_type: str, checkpoint_task: str,
                                          target_task: str) -> None:
    import modeldiff

    truth = oracle(model_type, checkpoint_task, target_task)
    report = modeldiff.load_report(saved(model_type, checkpoint_task), target_task)
    assert report.target == truth.head_class
    assert set(report.missing) == truth.missing
    assert set(report.unexpected) == truth.unexpected
    assert {(m.key, m.checkpoint_shape, m.model_shape) for m in report.mismatched} == \
        set(truth.mismatched)
    assert set(report.ignored_missing) == truth.ignored_missing
    assert set(report.ignored_unexpected) == truth.ignored_unexpected
    # each key once
    assert len(report.missing) == len(truth.missing)
    assert len(report.unexpected) == len(truth.unexpected)


def test_unloadable_direction_is_an_error() -> None:
    """A MllamaForCausalLM checkpoint has a MllamaTextConfig, which AutoModel has no class
    for: transformers raises, and so does load_report (a typed error naming the task)."""
    from transformers import AutoModel

    import modeldiff
    from modeldiff.errors import UnsupportedTaskError

    folder = saved("mllama", "causal-lm")
    with pytest.raises(ValueError, match="Unrecognized configuration class"):
        AutoModel.from_pretrained(folder)
    with pytest.raises(UnsupportedTaskError, match="no base model"):
        modeldiff.load_report(folder, "base")


def test_sweep_is_broad() -> None:
    families = {h for heads in SWEEP_HEADS.values() for h in heads}
    assert len(SWEEP_HEADS) >= 150
    assert sum(len(h) for h in SWEEP_HEADS.values()) >= 400
    assert families >= {"question-answering", "causal-lm", "multiple-choice", "seq2seq-lm",
                        "image-classification", "audio-classification", "ctc", "pretraining",
                        "next-sentence-prediction", "semantic-segmentation", "backbone",
                        "image-text-to-text", "speech-seq2seq", "sequence-classification",
                        "token-classification", "masked-lm",
                        "object-detection"}
