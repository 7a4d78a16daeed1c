"""load_report: what a user reads before from_pretrained, and how it answers for each kind
of input. The sweep over every head family is tests/test_load_report_sweep.py; here: shape
mismatches, key conversions, the module view, verdicts, inputs, the result protocol."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import modeldiff
from modeldiff._core.load_report import LoadReport, Status, Verdict, fold_keys
from tests.sweep import oracle, saved


# -- MISMATCH ------------------------------------------------------------------------------------
def _five_label_head():  # type: ignore[no-untyped-def]
    from transformers import AutoConfig

    from modeldiff._inputs import build_model

    config = AutoConfig.from_pretrained(saved("bert", "sequence-classification"), num_labels=5)
    return build_model(config, task="sequence-classification", device="meta")


def test_two_label_checkpoint_into_five_label_head_is_a_mismatch() -> None:
    truth = oracle("bert", "sequence-classification", "sequence-classification",
                   num_labels=5, ignore_mismatched_sizes=True)
    report = modeldiff.load_report(saved("bert", "sequence-classification"), _five_label_head())
    got = {(m.key, m.checkpoint_shape, m.model_shape) for m in report.mismatched}
    assert got == set(truth.mismatched) == {("classifier.weight", (2, 32), (5, 32)),
                                            ("classifier.bias", (2,), (5,))}
    assert set(report.missing) == truth.missing == set()
    assert report.raises
    assert not report.ok
    assert [g.verdict for g in report.groups] == [Verdict.RESIZED]
    assert "Reinit due to size mismatch - ckpt: [2, 32] vs model:[5, 32]" in report.table()


def test_without_ignore_mismatched_sizes_transformers_raises_what_the_report_says() -> None:
    from transformers import BertForSequenceClassification

    folder = saved("bert", "sequence-classification")
    report = modeldiff.load_report(folder, _five_label_head())
    assert report.error is not None
    with pytest.raises(RuntimeError) as e:
        BertForSequenceClassification.from_pretrained(folder, num_labels=5)
    assert str(e.value) == report.error
    assert "ignore_mismatched_sizes" in str(report)


def test_resized_vocabulary_is_a_mismatch_of_the_embeddings() -> None:
    from transformers import AutoConfig

    from modeldiff._inputs import build_model

    folder = saved("bert", "masked-lm")
    truth = oracle("bert", "masked-lm", "masked-lm", vocab_size=300,
                   ignore_mismatched_sizes=True)
    config = AutoConfig.from_pretrained(folder, vocab_size=300)
    report = modeldiff.load_report(folder, build_model(config, task="masked-lm"))
    got = {(m.key, m.checkpoint_shape, m.model_shape) for m in report.mismatched}
    assert got == set(truth.mismatched)
    assert ("bert.embeddings.word_embeddings.weight", (256, 32), (300, 32)) in got
    assert set(report.missing) == truth.missing
    assert set(report.unexpected) == truth.unexpected


# -- CONVERSION ----------------------------------------------------------------------------------
def _write_safetensors(folder: Path, tensors: dict) -> None:  # type: ignore[type-arg]
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))


def _older_layout(folder: str, into: Path, model_type: str) -> list[str]:
    """Rewrite a checkpoint in the older layout transformers still reads: its own rename
    rules (the ``legacy`` ones every load applies, and the model type's), reversed."""
    import shutil

    from safetensors.torch import load_file
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    rules = [r for r in (get_checkpoint_conversion_mapping("legacy") or [])
             if type(r) is WeightRenaming]
    reverse = [r.reverse_transform() for r in rules]
    sd = load_file(f"{folder}/model.safetensors")
    old = {rename_source_key(k, reverse, [], reverse=True)[0]: v for k, v in sd.items()}
    _write_safetensors(into, old)
    shutil.copy(f"{folder}/config.json", into / "config.json")
    return sorted(set(old) - set(sd))


def test_older_key_layout_is_predicted_as_transformers_renames_it(tmp_path: Path) -> None:
    from transformers import BertForQuestionAnswering

    old = tmp_path / "old"
    renamed = _older_layout(saved("bert"), old, "bert")
    assert renamed
    assert all("LayerNorm.gamma" in k or "LayerNorm.beta" in k for k in renamed)
    _, info = BertForQuestionAnswering.from_pretrained(str(old), output_loading_info=True)
    report = modeldiff.load_report(old, "question-answering")
    assert set(report.missing) == set(info["missing_keys"])
    assert set(report.unexpected) == set(info["unexpected_keys"])
    rows = {r.checkpoint_key: r for r in report.renamed}
    assert set(rows) == set(renamed)
    row = rows["embeddings.LayerNorm.gamma"]
    assert row.key == "bert.embeddings.LayerNorm.weight"
    assert row.rule == "LayerNorm.gamma -> LayerNorm.weight"
    assert report.ok  # renamed keys load; the new QA head is expected
    # the pooler a QA head has no use for is unused, as from any base checkpoint
    assert {g.verdict for g in report.groups} == {Verdict.NEW_HEAD, Verdict.RENAMED,
                                                  Verdict.UNUSED_HEAD}
    assert "CONVERSION" in report.table()


def test_fused_experts_are_a_conversion_of_the_saved_per_expert_layout() -> None:
    truth = oracle("mixtral", "base", "causal-lm")
    report = modeldiff.load_report(saved("mixtral"), "causal-lm")
    assert set(report.missing) == truth.missing == {"lm_head.weight"}
    assert report.unexpected == ()
    merged = [r for r in report.renamed if r.converted]
    assert merged
    assert all(".experts." in r.checkpoint_key for r in merged)
    assert {r.key for r in merged} >= {"model.layers.0.mlp.experts.gate_up_proj",
                                       "model.layers.0.mlp.experts.down_proj"}


# -- module view and verdicts ---------------------------------------------------------------------
def test_new_head_modules_include_parameterless_ones() -> None:
    report = modeldiff.load_report(saved("distilbert"), "sequence-classification")
    assert report.new_modules == ("pre_classifier", "classifier", "dropout")
    assert report.ok
    assert not report.raises
    (group,) = report.groups
    assert group.status is Status.MISSING
    assert group.verdict is Verdict.NEW_HEAD
    assert str(group.verdict) == "new head for the task: expected, train it"


def test_head_checkpoint_into_base_leaves_the_head_unused_as_expected() -> None:
    report = modeldiff.load_report(saved("bert", "token-classification"), "base")
    truth = oracle("bert", "token-classification", "base")
    assert set(report.missing) == truth.missing  # the base's pooler
    assert set(report.unexpected) == truth.unexpected == {"classifier.weight",
                                                          "classifier.bias"}
    verdicts = {g.status: g.verdict for g in report.groups}
    assert verdicts[Status.UNEXPECTED] is Verdict.UNUSED_HEAD
    assert verdicts[Status.MISSING] is Verdict.NEW_HEAD  # pooler.dense: a head part
    assert report.ok


def test_checkpoint_of_another_architecture_does_not_fit() -> None:
    from modeldiff._inputs import build_model
    from modeldiff._tiny import tiny_config

    gpt2 = build_model(tiny_config("gpt2"), task="causal-lm")
    report = modeldiff.load_report(saved("bert"), gpt2)
    assert report.loaded == 0
    assert not report.ok
    assert {g.verdict for g in report.groups} == {Verdict.NOTHING_FITS}


def test_encoder_weights_missing_do_not_fit(tmp_path: Path) -> None:
    """A checkpoint without its last layer: the layer is missing inside a loaded encoder."""
    from safetensors.torch import load_file

    sd = load_file(f"{saved('bert')}/model.safetensors")
    cut = {k: v for k, v in sd.items() if ".layer.1." not in k}
    _write_safetensors(tmp_path, cut)
    import shutil

    shutil.copy(f"{saved('bert')}/config.json", tmp_path / "config.json")
    report = modeldiff.load_report(tmp_path, "sequence-classification")
    bad = [g for g in report.groups if not g.expected]
    assert bad
    assert all(g.verdict is Verdict.BASE_MISSING for g in bad)
    assert any("bert.encoder.layer.1" in g.modules for g in bad)
    assert not report.ok
    text = str(report)
    assert "encoder weights missing: this checkpoint does not fit this class" in text
    assert "bert.encoder.layer.1.attention.self.query.weight" in text


# -- inputs --------------------------------------------------------------------------------------
def test_every_kind_of_target_gives_the_same_report() -> None:
    import transformers

    from modeldiff._inputs import build_model

    folder = saved("bert")
    config = transformers.AutoConfig.from_pretrained(folder)
    head = build_model(config, task="question-answering")
    reports = [
        modeldiff.load_report(folder, "question-answering"),
        modeldiff.load_report(folder, transformers.BertForQuestionAnswering),
        modeldiff.load_report(folder, "BertForQuestionAnswering"),
        modeldiff.load_report(folder, head),
        modeldiff.load_report(folder, modeldiff.walk(head)),
    ]
    assert len({(r.missing, r.unexpected, r.target) for r in reports}) == 1


def test_model_type_target_with_task() -> None:
    report = modeldiff.load_report(saved("bert"), "bert", task="question-answering")
    assert report.target == "BertForQuestionAnswering"
    assert set(report.missing) == {"qa_outputs.weight", "qa_outputs.bias"}


def test_model_and_graph_checkpoints_agree_with_the_folder() -> None:
    import torch

    from modeldiff._inputs import build_model
    from modeldiff._tiny import tiny_config

    torch.manual_seed(0)
    base = build_model(tiny_config("mixtral"), task="base", device="meta")
    from_folder = modeldiff.load_report(saved("mixtral"), "causal-lm")
    from_model = modeldiff.load_report(base, "causal-lm")
    from_graph = modeldiff.load_report(modeldiff.walk(base), "causal-lm")
    for r in (from_model, from_graph):
        assert (r.missing, r.unexpected, r.mismatched) == \
            (from_folder.missing, from_folder.unexpected, from_folder.mismatched)


def test_headers_only_a_folder_of_holes_is_enough(tmp_path: Path) -> None:
    """Only the safetensors header is read: a file whose data is a sparse hole works."""
    header = json.dumps({"embeddings.word_embeddings.weight":
                         {"dtype": "F32", "shape": [256, 32], "data_offsets": [0, 256 * 32 * 4]}})
    raw = header.encode()
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + 256 * 32 * 4)
    import shutil

    shutil.copy(f"{saved('bert')}/config.json", tmp_path / "config.json")
    report = modeldiff.load_report(tmp_path, "base")
    assert "embeddings.word_embeddings.weight" not in report.missing
    assert "embeddings.position_embeddings.weight" in report.missing


def test_bad_inputs_are_typed_errors() -> None:
    from modeldiff.errors import CheckpointError, InputTypeError, UnsupportedTaskError

    with pytest.raises(InputTypeError, match="load_report\\(checkpoint\\)"):
        modeldiff.load_report(42, "base")
    with pytest.raises(CheckpointError):
        modeldiff.load_report("/no/such/folder", "base")
    with pytest.raises(UnsupportedTaskError, match="not a task"):
        modeldiff.load_report(saved("bert"), "no-such-task")


# -- vocabulary and protocol --------------------------------------------------------------------
def test_index_folding_is_transformers() -> None:
    from transformers.utils.loading_report import update_key_name

    keys = [f"model.layers.{i}.mlp.weight" for i in range(12)] + \
        ["model.layers.0.attn.weight", "model.layers.3.attn.weight", "lm_head.weight"]
    assert fold_keys(keys) == list(update_key_name(keys))
    assert fold_keys(keys)[0] == "model.layers.{0...11}.mlp.weight"
    assert fold_keys(keys)[1] == "model.layers.{0, 3}.attn.weight"


def test_report_protocol_json_roundtrip_and_text() -> None:
    report = modeldiff.load_report(saved("bert", "token-classification"), "base")
    assert bool(report)
    assert report.findings == len(report.missing) + len(report.unexpected)
    again = LoadReport.from_json(report.to_json())
    assert again == report
    assert json.loads(report.to_json())["ok"] is True
    assert repr(report).startswith("<LoadReport ")
    assert "UNEXPECTED" in str(report)
    assert "classifier.{weight, bias}" not in str(report)
    exact = modeldiff.load_report(saved("bert"), "base")
    assert not exact
    assert exact.ok
    assert "every key loads" in exact.headline()


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_new_head_only_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from modeldiff.cli import main

    assert main(["load-report", saved("bert"), "--task", "question-answering"]) == 0
    out = capsys.readouterr().out
    assert "BertForQuestionAnswering LOAD REPORT" in out
    assert "qa_outputs.weight" in out
    assert "new head for the task: expected, train it" in out


def test_cli_strict_exits_1_on_any_status() -> None:
    from modeldiff.cli import main

    assert main(["load-report", saved("bert"), "--task", "question-answering",
                 "--strict"]) == 1
    assert main(["load-report", saved("bert"), "--task", "base", "--strict"]) == 0


def test_cli_class_model_type_and_folder_targets(capsys: pytest.CaptureFixture[str]) -> None:
    from modeldiff.cli import main

    assert main(["load-report", saved("bert"), "--class", "BertForTokenClassification",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "modeldiff.load_report"
    assert data["target"] == "BertForTokenClassification"
    assert data["ok"] is True
    assert main(["load-report", saved("bert"), "bert", "--task", "masked-lm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "BertForMaskedLM"
    folder = saved("bert", "sequence-classification")
    assert main(["load-report", saved("bert"), folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "BertForSequenceClassification"


def test_cli_does_not_fit_exits_1_and_errors_exit_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from safetensors.torch import load_file

    from modeldiff.cli import main

    sd = load_file(f"{saved('bert')}/model.safetensors")
    _write_safetensors(tmp_path, {k: v for k, v in sd.items() if "layer.0." not in k})
    shutil.copy(f"{saved('bert')}/config.json", tmp_path / "config.json")
    assert main(["load-report", str(tmp_path), "--task", "base"]) == 1
    assert "does not fit" in capsys.readouterr().out
    assert main(["load-report", str(tmp_path / "nope"), "--task", "base"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["load-report", saved("bert")]) == 2


# -- assert_loads --------------------------------------------------------------------------------
def test_assert_loads_allow_new() -> None:
    from modeldiff.testing import assert_loads

    folder = saved("bert")
    assert_loads(folder, "base")
    assert_loads(folder, "question-answering", allow_new=True, allow_unused=True)
    assert_loads(folder, "question-answering", allow_new=["qa_outputs.*"], allow_unused=True)
    with pytest.raises(AssertionError, match=r"MISSING \(not allowed\): qa_outputs"):
        assert_loads(folder, "question-answering", allow_unused=True)
    with pytest.raises(AssertionError, match=r"UNEXPECTED \(not allowed\): pooler"):
        assert_loads(folder, "question-answering", allow_new=True)


def test_assert_loads_always_fails_on_a_mismatch() -> None:
    from modeldiff.testing import assert_loads

    with pytest.raises(AssertionError, match=r"MISMATCH classifier.weight: checkpoint \[2, 32\]"):
        assert_loads(saved("bert", "sequence-classification"), _five_label_head(),
                     allow_new=True, allow_unused=True)


@pytest.mark.parametrize(("model_type", "task", "rule"), [
    ("esm", "masked-lm", "LayerNorm.beta -> LayerNorm.bias"),
    ("gte", "sequence-classification", "encoder.layer -> layers"),
    ("qwen2_moe", "causal-lm",
     "[mlp.experts.*.gate_proj.weight, mlp.experts.*.up_proj.weight] -> mlp.experts.gate_up_proj"),
    ("sapiens2", "backbone", r"blocks.(\d+). -> model.layer.\1."),
    ("llava", "image-text-to-text", "^language_model -> model.language_model"),
])
def test_hub_layouts_save_pretrained_writes_are_conversions(model_type: str, task: str,
                                                            rule: str) -> None:
    """save_pretrained writes these models in their original (hub) layout, with
    transformers' rename rules reversed; loading renames them back. The sweep checks the
    keys; here, the CONVERSION rows name the rule that fired."""
    report = modeldiff.load_report(saved(model_type), task)
    rules = {part for r in report.renamed for part in r.rule.split("; ")}
    assert rule in rules, sorted(rules)[:6]
    assert report.ok
