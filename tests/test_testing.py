"""modeldiff.testing: each helper passes on a match and fails with the diff a user needs."""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import DistilBertForSequenceClassification, DistilBertModel

import modeldiff
from modeldiff._tiny import tiny_config
from modeldiff.testing import (
    assert_head_delta,
    assert_roundtrip,
    assert_same_structure,
    assert_weights_changed,
    assert_weights_equal,
)
from tests.models import Tied

EXAMPLE = Path(__file__).parents[1] / "examples" / "finetune_weight_diff.py"


def _no_giant_repr(message: str) -> None:
    # What a failed `assert a == b` on models would print without the helpers.
    assert "tensor(" not in message
    assert "Parameter containing" not in message
    assert "(embeddings): Embeddings(" not in message
    assert len(message.splitlines()) < 60


@pytest.fixture(scope="module")
def tiny_pair():
    cfg = tiny_config("distilbert")
    torch.manual_seed(0)
    return DistilBertModel(cfg), DistilBertForSequenceClassification(cfg)


# -- structure -------------------------------------------------------------------------------
def test_same_structure_passes_and_fails_with_the_tree(tiny_pair):
    base, head = tiny_pair
    assert assert_same_structure(head, copy.deepcopy(head)) is None
    with pytest.raises(AssertionError) as e:
        assert_same_structure(base, head)
    msg = str(e.value)
    assert msg.splitlines()[0] == \
        "DistilBertModel -> DistilBertForSequenceClassification  (base aligned at distilbert)"
    assert "+ classifier      Linear(in_features=32, out_features=2)" in msg
    _no_giant_repr(msg)
    # ignore= and align= reach the diff.
    assert_same_structure(base, head, ignore=["pre_classifier", "classifier", "dropout"])
    with pytest.raises(AssertionError, match=r"\+ distilbert +DistilBertModel\(\)"):
        assert_same_structure(base, head, align=None)


# -- head delta ------------------------------------------------------------------------------
def test_head_delta(tiny_pair):
    base, head = tiny_pair
    assert_head_delta(base, head, modules=["pre_classifier", "classifier", "dropout"])
    with pytest.raises(AssertionError) as e:
        assert_head_delta(base, head, modules=["classifier", "pooler"])
    msg = str(e.value)
    assert "missing (expected, not added by the head): pooler" in msg
    assert "unexpected (added by the head, not expected): pre_classifier, dropout" in msg
    assert "+ pre_classifier  Linear(in_features=32, out_features=32)" in msg  # the tree
    _no_giant_repr(msg)


# -- round-trip ------------------------------------------------------------------------------
def test_roundtrip(tiny_pair):
    base, _ = tiny_pair
    assert_roundtrip(base)
    # A change the config does not record is lost on reload: the classic save/load bug.
    broken = copy.deepcopy(base)
    broken.transformer.layer[1].attention.dropout.p = 0.5
    with pytest.raises(AssertionError) as e:
        assert_roundtrip(broken)
    assert str(e.value).splitlines() == [
        "round-trip of DistilBertModel (float32) failed: 1 problem(s)",
        "  structure: transformer.layer.1.attention.dropout: p 0.5 -> 0.1"]


# -- weights equal ---------------------------------------------------------------------------
def test_weights_equal_across_modules_state_dicts_and_folders(tmp_path, tiny_pair):
    base, _ = tiny_pair
    snapshot = {k: v.clone() for k, v in base.state_dict().items()}
    base.save_pretrained(tmp_path)
    assert_weights_equal(base, snapshot)
    assert_weights_equal(base, tmp_path)
    assert_weights_equal(tmp_path, snapshot)
    moved = copy.deepcopy(base)
    with torch.no_grad():
        moved.transformer.layer[1].ffn.lin2.weight.add_(1e-3)
    with pytest.raises(AssertionError) as e:
        assert_weights_equal(tmp_path, moved)
    msg = str(e.value)
    assert msg.splitlines()[0].startswith("weights differ: 1 of ")
    assert "transformer.layer.1.ffn.lin2.weight: 2,048 of 2,048 values changed, " \
           "max |b-a| 0.001" in msg
    _no_giant_repr(msg)
    assert_weights_equal(snapshot, moved, atol=2e-3)
    assert_weights_equal(tmp_path, moved, atol=2e-3)  # the folder's tensor read by name
    with pytest.raises(AssertionError, match=r"lin2\.weight"):
        assert_weights_equal(tmp_path, moved, atol=5e-4)
    assert_weights_equal(base, moved, only=["embeddings.*", "transformer.layer.0.*"])
    with pytest.raises(AssertionError, match=r"no tensor matches only=\['embedings\.\*'\]\n"
                                             r"  'embedings\.\*': did you mean 'embeddings\.\*'"):
        assert_weights_equal(base, moved, only=["embedings.*"])


def test_weights_equal_names_missing_tensors(tmp_path):
    a = {"w": torch.ones(2), "b": torch.zeros(2)}
    save_file({"w": torch.ones(2), "extra": torch.ones(1)}, tmp_path / "m.safetensors")
    with pytest.raises(AssertionError) as e:
        assert_weights_equal(a, tmp_path / "m.safetensors")
    assert str(e.value).splitlines() == [
        "weights differ: the two sides do not hold the same tensors",
        "missing in b (1):", "  b", "unexpected in b (1):", "  extra"]


def test_tied_aliases_are_not_required_in_a_checkpoint(tmp_path):
    model = Tied()
    # save_pretrained writes one copy of a tied tensor; so does this.
    save_file({k: v for k, v in model.state_dict().items() if k != "decoder.weight"},
              tmp_path / "model.safetensors")
    assert_weights_equal(model, tmp_path)


# -- weights changed: the fine-tuning scenario -----------------------------------------------
def _example():
    spec = importlib.util.spec_from_file_location("finetune_weight_diff", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finetune_example_passes_and_prints_the_weight_diff(capsys):
    _example().main()
    out = capsys.readouterr().out
    # The frozen embeddings are named frozen (unchanged modules are counted, not listed
    # one by one); the classifier moved.
    assert "(distilbert.embeddings frozen)" in out
    assert re.search(r"^classifier +2/2 ", out, re.M)
    assert out.rstrip().endswith("ok: the classifier trained, the embeddings stayed frozen")


def test_finetune_without_the_freeze_fails_naming_the_embeddings():
    before, after = _example().finetune(freeze_embeddings=False)
    with pytest.raises(AssertionError) as e:
        assert_weights_changed(before, after, changed=["classifier.*"],
                               frozen=["distilbert.embeddings.*"])
    msg = str(e.value)
    lines = msg.splitlines()
    assert lines[0] == "fine-tuning did not change what it should (1 problem(s))"
    assert lines[1] == ("should be frozen, but changed (4 of 4 matching "
                        "['distilbert.embeddings.*']):")
    moved = sorted(line.split(":")[0].strip() for line in lines[2:])
    assert moved == ["distilbert.embeddings.LayerNorm.bias", "distilbert.embeddings.LayerNorm.weight",
                     "distilbert.embeddings.position_embeddings.weight",
                     "distilbert.embeddings.word_embeddings.weight"]
    assert "values changed, max |b-a|" in lines[2]
    _no_giant_repr(msg)


def test_weights_changed_with_state_dict_snapshot_and_typos():
    torch.manual_seed(0)
    model = nn.ModuleDict({"encoder": nn.Linear(3, 3), "classifier": nn.Linear(3, 2)})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model["classifier"].weight.add_(1.0)
    assert_weights_changed(before, model, changed=["classifier.weight"], frozen=["encoder.*"])
    with pytest.raises(AssertionError) as e:
        assert_weights_changed(before, model, changed=["classifer.*"], frozen=["encoder.*"])
    assert str(e.value).splitlines() == [
        "fine-tuning did not change what it should (1 problem(s))",
        "pattern matches no tensor: changed 'classifer.*' (did you mean 'classifier.*'?)"]
    with pytest.raises(AssertionError, match=r"should have changed, but are bit-identical "
                                             r"\(1 of 2 matching \['classifier\.\*'\]\):\n"
                                             r"  classifier\.bias$"):
        assert_weights_changed(before, model, changed="classifier.*")


def test_meta_models_are_an_error_not_a_failure():
    with torch.device("meta"):
        m = nn.Linear(2, 2)
    with pytest.raises(modeldiff.errors.NotMaterializedError):
        assert_weights_equal(m, copy.deepcopy(m))


def test_a_snapshot_left_in_the_old_folder_is_pointed_at(tmp_path):
    """Snapshots moved from __snapshots__/ (which syrupy owns) to __model_snapshots__/: a
    missing snapshot whose old file exists says where it is, instead of only 'create it'."""
    from torch import nn

    from modeldiff.testing import ModelSnapshot

    ModelSnapshot(tmp_path / "__snapshots__" / "test_x", "test_a", update=True).assert_match(
        nn.Linear(2, 2))
    with pytest.raises(AssertionError, match=r"An older modeldiff kept it at .*__snapshots__"):
        ModelSnapshot(tmp_path / "__model_snapshots__" / "test_x", "test_a").assert_match(
            nn.Linear(2, 2))
