"""Each transformers-version difference of modeldiff._compat, asserted on the installed version.

`make test` runs this file on the newest pinned transformers and on the oldest supported 4.x
and 5.x (.venv-4.56, .venv-5.0): every test states what is true on the version it runs on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch

import modeldiff
from modeldiff._compat import (
    META_BUILT_UNTIED,
    MIN_TRANSFORMERS,
    T5_EMBEDDINGS_ARE_MODULE_ALIASES_UNTIL,
    UNEXPECTED_KEYS_PREFIXED_UNTIL,
    dtype_kwarg,
    tied_weight_pairs,
    transformers_version,
)
from modeldiff._inputs import build_model
from modeldiff._tiny import tiny_config
from tests.sweep import loading_report


def _in(span):
    return span[0] <= transformers_version() < span[1]


def test_the_installed_version_is_in_the_supported_range():
    assert MIN_TRANSFORMERS == (4, 56, 2)  # pyproject.toml: transformers>=4.56.2,<5.25
    assert MIN_TRANSFORMERS <= transformers_version() < (5, 25)


def test_distilbert_masked_lm_totals_equal_num_parameters():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    g = modeldiff.walk("distilbert", task="masked-lm")
    built = build_model(DistilBertConfig(), task="masked-lm")
    assert g.totals.params == built.num_parameters() == 66_985_530
    assert [(t.target, t.source) for t in g.ties] == [
        ("vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight")]
    # What walk repairs: on 5.0.x a model built on the meta device comes out untied.
    with torch.device("meta"):
        raw = DistilBertForMaskedLM(DistilBertConfig())
    untied = _in(META_BUILT_UNTIED)
    assert raw.num_parameters() == (90_426_426 if untied else 66_985_530)
    assert modeldiff.walk(raw).totals.params == raw.num_parameters()


def test_tied_weights_are_pairs_on_every_version():
    g = modeldiff.walk("distilbert", task="masked-lm")
    assert g.hf is not None
    assert g.hf.tied_weights == (
        ("vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight"),)
    assert tied_weight_pairs(build_model(tiny_config("distilbert"), task="masked-lm")) == \
        g.hf.tied_weights


@pytest.mark.parametrize("model_type", ["t5", "mt5", "umt5"])
def test_t5_family_token_classification(model_type):
    """4.x shares the embedding module (aliases), 5.x ties separate modules' weights; no
    version saves decoder.embed_tokens.weight, so the token-classification head (encoder only)
    never reports it unused. head_delta says what this version's own loading report says."""
    report = loading_report(model_type, "token-classification")
    base = modeldiff.walk(build_model(tiny_config(model_type), task="base"))
    head = build_model(tiny_config(model_type), task="token-classification")
    delta = modeldiff.head_delta(base, head)
    assert set(delta.new_parameters) == report.missing
    assert set(delta.dropped) == report.unexpected
    assert set(delta.ignored_unexpected) == report.ignored_unexpected
    assert "decoder.embed_tokens.weight" not in report.saved_keys
    unused = {*delta.dropped, *delta.ignored_unexpected}
    assert not any(k.endswith("decoder.embed_tokens.weight") for k in unused)
    # the rest of the decoder is unused (whether a pattern hides it differs by version:
    # ignored_unexpected above equals the version's own report)
    assert any("decoder.block.0." in k for k in unused)
    if transformers_version() < T5_EMBEDDINGS_ARE_MODULE_ALIASES_UNTIL:
        assert base["shared"].aliases == ("encoder.embed_tokens", "decoder.embed_tokens")
        assert not base.ties
    else:
        assert not base["shared"].aliases
        assert ("decoder.embed_tokens.weight", "shared.weight") in {
            (t.target, t.source) for t in base.ties}


def test_unexpected_keys_are_spelled_as_this_version_reports_them():
    report = loading_report("albert", "token-classification")
    delta = modeldiff.head_delta("albert", modeldiff.walk(
        build_model(tiny_config("albert"), task="token-classification")))
    assert set(delta.dropped) == report.unexpected
    prefixed = transformers_version() < UNEXPECTED_KEYS_PREFIXED_UNTIL
    assert {"albert.pooler.weight" if prefixed else "pooler.weight"} <= set(delta.dropped)


def test_roundtrip_passes_the_dtype_keyword_this_version_takes():
    from transformers import DistilBertForSequenceClassification

    assert dtype_kwarg() == "dtype"  # every supported version (4.56+) takes dtype=
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(tiny_config("distilbert")).to(torch.bfloat16)
    report = modeldiff.roundtrip(model)
    assert report.ok, str(report)
    assert report.dtype == "bfloat16"


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification"])
def test_configs_without_pad_token_id_build(task):
    # 5.0.x: PhiConfig has no pad_token_id attribute, which these heads read
    g = modeldiff.walk("phi", task=task)
    assert g.totals.params > 0
    assert g.root.cls.startswith("Phi")


def test_weight_diff_reads_gamma_beta_layernorms(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = build_model(tiny_config("esm"), task="base", device="cpu")
    model.save_pretrained(tmp_path)
    # whatever spelling this version wrote, the comparison pairs every tensor
    assert not modeldiff.weight_diff(model, tmp_path)
    # and a checkpoint in the old (hub) spelling reads the same
    f = tmp_path / "model.safetensors"
    tensors = load_file(f)
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in tensors.items()}
    assert any(k.endswith(".gamma") for k in renamed)
    save_file(renamed, f, metadata={"format": "pt"})
    wd = modeldiff.weight_diff(model, tmp_path)
    assert not wd, str(wd)


def test_cli_roundtrip_on_a_folder_without_a_tokenizer(tmp_path, capsys):
    # 4.x: the tokenizer probe raises ImportError (protobuf) here; it must not escape
    from transformers import DistilBertForMaskedLM

    from modeldiff.cli import main

    torch.manual_seed(0)
    DistilBertForMaskedLM(tiny_config("distilbert")).save_pretrained(tmp_path / "ckpt")
    assert not any(p.name.startswith(("tokenizer", "vocab", "spiece"))
                   for p in (tmp_path / "ckpt").iterdir())
    assert main(["roundtrip", str(tmp_path / "ckpt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_saved_config_of_this_version_walks(tmp_path):
    # a folder written by the installed version walks to the live model's structure
    torch.manual_seed(0)
    model = build_model(tiny_config("bert"), task="sequence-classification", device="cpu")
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        assert not modeldiff.diff(Path(d), model, align=None)
