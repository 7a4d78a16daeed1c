"""head_delta against transformers' own loading report, over many architectures and heads.

For each (model_type, task) of :data:`tests.sweep.SWEEP_CASES`, the oracle saves the tiny
base model and loads the head class from it (see ``tests/sweep.py`` for exactly what
transformers counts); ``head_delta`` must give the same answer from structure alone, with
both models on the meta device.
"""

from __future__ import annotations

import pytest

from tests.sweep import SWEEP_CASES, loading_report, matches_any

IDS = [f"{t}-{task}" for t, task in SWEEP_CASES]


def _models(model_type: str, task: str):  # type: ignore[no-untyped-def]
    from modeldiff._inputs import build_model
    from modeldiff._tiny import tiny_config

    config = tiny_config(model_type)
    return (build_model(config, task="base", device="meta"),
            build_model(config, task=task, device="meta"))


# -- head_delta == the oracle ------------------------------------------------------------------
@pytest.mark.parametrize(("model_type", "task"), SWEEP_CASES, ids=IDS)
def test_head_delta_matches_the_loading_report(model_type: str, task: str) -> None:
    import modeldiff

    report = loading_report(model_type, task)
    base, head = _models(model_type, task)
    delta = modeldiff.head_delta(base, head)
    assert set(delta.new_parameters) == report.missing
    assert set(delta.ignored_missing) == report.ignored_missing
    assert set(delta.dropped) == report.unexpected
    assert set(delta.ignored_unexpected) == report.ignored_unexpected
    # each entry is reported once, and never both new and ignored
    assert len(delta.new_parameters) == len(report.missing)
    assert len(delta.dropped) == len(report.unexpected)


@pytest.mark.parametrize(("model_type", "task"), SWEEP_CASES, ids=IDS)
def test_alignment_is_found_at_the_base_model_prefix(model_type: str, task: str) -> None:
    import modeldiff

    report = loading_report(model_type, task)
    base, head = _models(model_type, task)
    prefix = report.base_model_prefix
    assert prefix in dict(head.named_modules()), (prefix, report.head_class)
    delta = modeldiff.head_delta(base, head)
    assert delta.prefix == prefix
    assert modeldiff.diff(base, head).alignment.after == prefix
    # head-only roots are modules of the head that the base, seen through the prefix, lacks
    # (outside the prefix, or inside it: gte's and nomic_bert's heads add a pooler there)
    head_modules = dict(head.named_modules())
    base_modules = dict(base.named_modules())
    assert delta.modules
    for m in delta.modules:
        assert m in head_modules
        inner = m.removeprefix(prefix + ".") if m.startswith(prefix + ".") else None
        assert inner is None or inner not in base_modules, m


# -- the oracle itself: these hold today, head_delta or not -------------------------------------
@pytest.mark.parametrize(("model_type", "task"), SWEEP_CASES, ids=IDS)
def test_oracle_reports_real_names(model_type: str, task: str) -> None:
    """Missing keys are head state-dict names; unexpected ones are base state-dict names
    (the model's names, even where the saved file uses another layout)."""
    report = loading_report(model_type, task)
    base, head = _models(model_type, task)
    head_keys, base_keys = set(head.state_dict()), set(base.state_dict())
    assert report.raw_missing <= head_keys
    assert report.raw_unexpected <= base_keys
    assert report.missing <= report.raw_missing
    assert report.unexpected <= report.raw_unexpected
    assert not report.mismatched
    assert report.base_class == type(base).__name__
    assert report.head_class == type(head).__name__
    # every key transformers dropped from its lists matches one of the head's patterns
    assert all(matches_any(k, report.ignored_missing_patterns) for k in report.ignored_missing)
    assert all(matches_any(k, report.ignored_unexpected_patterns)
               for k in report.ignored_unexpected)
    assert not any(matches_any(k, report.ignored_missing_patterns) for k in report.missing)


@pytest.mark.parametrize(("model_type", "task"), SWEEP_CASES, ids=IDS)
def test_oracle_loaded_tied_sources_are_not_missing(model_type: str, task: str) -> None:
    report = loading_report(model_type, task)
    _, head = _models(model_type, task)
    for target, source in head.all_tied_weights_keys.items():
        if source not in report.raw_missing:
            assert target not in report.raw_missing, (target, source)


def test_oracle_mlm_decoder_tied_to_embeddings_is_not_missing() -> None:
    report = loading_report("bert", "masked-lm")
    assert "cls.predictions.decoder.weight" not in report.missing
    # tied to each other, neither in a base checkpoint: both reported
    assert {"cls.predictions.bias", "cls.predictions.decoder.bias"} <= report.missing
    assert report.unexpected == {"pooler.dense.weight", "pooler.dense.bias"}


def test_oracle_distilbert_sequence_head() -> None:
    report = loading_report("distilbert", "sequence-classification")
    assert report.missing == {"pre_classifier.weight", "pre_classifier.bias",
                              "classifier.weight", "classifier.bias"}
    assert report.unexpected == set()
    assert report.base_model_prefix == "distilbert"


def test_oracle_unexpected_keys_carry_no_prefix() -> None:
    report = loading_report("roberta", "token-classification")
    assert report.unexpected == {"pooler.dense.weight", "pooler.dense.bias"}


def test_oracle_missing_keys_inside_the_prefix() -> None:
    report = loading_report("gte", "sequence-classification")
    assert {"gte.pooler.dense.weight", "gte.pooler.dense.bias"} <= report.missing


def test_oracle_other_inner_base_class_drops_the_rest() -> None:
    funnel = loading_report("funnel", "sequence-classification")
    assert funnel.unexpected
    assert all(k.startswith("decoder.layers.") for k in funnel.unexpected)
    mt5 = loading_report("mt5", "token-classification")
    assert mt5.unexpected
    assert all(k.startswith("decoder.") for k in mt5.unexpected)


def test_oracle_ignore_patterns_are_already_applied() -> None:
    t5 = loading_report("t5", "token-classification")
    assert t5.unexpected == set()
    assert len(t5.ignored_unexpected) > 10
    assert all(k.startswith("decoder.") for k in t5.ignored_unexpected)
    bart = loading_report("bart", "masked-lm")
    assert bart.missing == set()
    assert bart.ignored_missing == {"final_logits_bias"}
    mvp = loading_report("mvp", "masked-lm")  # its pattern sits in the unexpected list
    assert mvp.missing == {"final_logits_bias"}


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe"])
def test_oracle_moe_experts_convert_on_load(model_type: str) -> None:
    report = loading_report(model_type, "sequence-classification")
    assert report.missing == {"score.weight"}
    assert report.unexpected == set()
    # the file holds one tensor per expert; the model one fused tensor per layer
    assert any(".experts.0." in k for k in report.saved_keys)
    base, _ = _models(model_type, "sequence-classification")
    assert not any(".experts.0." in k for k in base.state_dict())
    assert any(k.endswith("experts.gate_up_proj") for k in base.state_dict())


def test_sweep_is_broad() -> None:
    types = {t for t, _ in SWEEP_CASES}
    assert len(types) >= 40
    assert {task for _, task in SWEEP_CASES} == {
        "sequence-classification", "token-classification", "masked-lm"}


# -- every head family, both directions ---------------------------------------------------------
def _family_cases() -> list[tuple[str, str, str]]:
    """Per head family, the first three model types of the load-report sweep, plus the types
    whose structure and key names disagree (llama4 and tipsv2: AutoModel's class already
    holds the head; mllama and llama4_text: the head is built from a sub-config), in both
    directions. head_delta takes its keys from the rules load_report runs, which
    tests/test_load_report_sweep.py checks on every (type, head); this checks the graph path
    (graphs of meta models, saved layout rebuilt where transformers converts keys)."""
    from tests.sweep_cases import SWEEP_HEADS

    picked: dict[str, list[str]] = {}
    for model_type, heads in SWEEP_HEADS.items():
        for h in heads:
            if len(picked.setdefault(h, [])) < 3:
                picked[h].append(model_type)
    pairs = {(t, h) for h, types in picked.items() for t in types}
    pairs |= {("llama4", "causal-lm"), ("tipsv2", "backbone"), ("mllama", "causal-lm"),
              ("llama4_text", "causal-lm"), ("pixio", "backbone")}
    out = []
    for t, h in sorted(pairs):
        out.append((t, "base", h))
        if (t, h) != ("mllama", "causal-lm"):  # transformers cannot load that one back
            out.append((t, h, "base"))
    return out


FAMILY_CASES = _family_cases()


@pytest.mark.parametrize(("model_type", "checkpoint_task", "target_task"), FAMILY_CASES,
                         ids=[f"{t}:{c}->{g}" for t, c, g in FAMILY_CASES])
def test_head_delta_matches_transformers_on_every_family(model_type: str, checkpoint_task: str,
                                                         target_task: str) -> None:
    import modeldiff
    from modeldiff._inputs import build_model
    from modeldiff._tiny import tiny_config
    from tests.sweep import oracle

    truth = oracle(model_type, checkpoint_task, target_task)
    model = build_model(tiny_config(model_type), task=checkpoint_task)
    # from_pretrained builds the target from the checkpoint's config (a llama4 causal-lm
    # checkpoint has a Llama4TextConfig, so AutoModel gives Llama4TextModel)
    target = build_model(model.config, task=target_task)
    delta = modeldiff.head_delta(modeldiff.walk(model), modeldiff.walk(target))
    assert set(delta.new_parameters) == truth.missing
    assert set(delta.dropped) == truth.unexpected
    assert set(delta.ignored_missing) == truth.ignored_missing
    assert set(delta.ignored_unexpected) == truth.ignored_unexpected


def test_a_base_class_that_already_holds_the_head_is_no_error() -> None:
    """AutoModel builds Llama4ForConditionalGeneration for llama4, which contains the text
    model that Llama4ForCausalLM is: head_delta used to refuse, telling the caller to swap
    arguments that were right. transformers loads it, and head_delta says what it reports."""
    import modeldiff
    from modeldiff._inputs import build_model
    from modeldiff._tiny import tiny_config

    config = tiny_config("llama4")
    base = build_model(config, task="base")
    assert type(base).__name__ == "Llama4ForConditionalGeneration"
    delta = modeldiff.head_delta(base, build_model(config, task="causal-lm"))
    assert delta.new_parameters == ()
    assert delta.dropped  # the vision tower and projector have no place in a text model
    assert all(k.startswith(("vision_model.", "multi_modal_projector.", "model.vision_model",
                             "model.multi_modal_projector")) for k in delta.dropped), \
        delta.dropped[:3]


def test_prefixed_key_wins_over_the_same_key_at_the_root() -> None:
    """PixioBackbone has both ``layernorm`` (its own) and ``pixio.layernorm`` (the base's):
    a base checkpoint's ``layernorm.weight`` goes to ``pixio.layernorm.weight``, and the
    root one is newly initialised. transformers adds the prefix before it looks at the
    key as it is."""
    import modeldiff
    from tests.sweep import oracle, saved

    truth = oracle("pixio", "base", "backbone")
    assert truth.missing == {"layernorm.weight", "layernorm.bias"}
    assert set(modeldiff.load_report(saved("pixio"), "backbone").missing) == truth.missing
