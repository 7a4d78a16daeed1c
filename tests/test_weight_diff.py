"""Weight diffs on a real pretrained checkpoint: what moved, what stayed frozen."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertModel, DistilBertConfig, DistilBertForSequenceClassification

import modeldiff
from modeldiff.cli import main

PERTURBED = ("encoder.layer.1", "encoder.layer.4")


@pytest.fixture(scope="module")
def tuned_copy(minilm_dir, tmp_path_factory):
    """The real MiniLM checkpoint and a copy in which two layers moved and layer 0, frozen
    (requires_grad off, as in a fine-tuning run), did not."""
    model = BertModel.from_pretrained(minilm_dir)
    model.encoder.layer[0].requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for path in PERTURBED:
            for p in model.get_submodule(path).parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
    out = tmp_path_factory.mktemp("tuned")
    model.save_pretrained(out)
    return model, out


def test_exactly_the_perturbed_layers_are_reported(minilm_dir, tuned_copy):
    _, folder = tuned_copy
    wd = modeldiff.weight_diff(minilm_dir, folder)
    moved = {s.name.rsplit(".", 1)[0] for s in wd.changed}
    assert all(m.startswith(PERTURBED) for m in moved)
    perturbed_tensors = {n for n, _ in BertModel.from_pretrained(minilm_dir).named_parameters()
                         if n.startswith(PERTURBED)}
    assert {s.name for s in wd.changed} == perturbed_tensors
    assert not wd.missing
    frozen = {m.path for m in wd.modules if m.path.startswith("encoder.layer.0.")}
    assert frozen
    assert frozen <= set(wd.unchanged_modules)
    # Ordered by how much moved: perturbed modules first.
    top = [m.path for m in wd.modules[: len({s.name.rsplit('.', 1)[0] for s in wd.changed})]]
    assert all(p.startswith(PERTURBED) for p in top)


def test_statistics_match_direct_torch_computations(minilm_dir, tuned_copy):
    _, folder = tuned_copy
    original = BertModel.from_pretrained(minilm_dir).state_dict()
    tuned = BertModel.from_pretrained(folder).state_dict()
    wd = modeldiff.weight_diff(minilm_dir, folder)
    for s in wd.changed:
        a, b = original[s.name].double(), tuned[s.name].double()
        assert s.max_abs == pytest.approx((b - a).abs().max().item(), rel=1e-9)
        assert s.rel_change == pytest.approx(((b - a).norm() / a.norm()).item(), rel=1e-9)
        cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
        assert s.cosine == pytest.approx(cos, abs=1e-12)
        assert s.n_changed == int((a != b).sum())
    for s in wd.tensors:
        if not s.name.startswith(PERTURBED):
            assert s.equal
            assert torch.equal(original[s.name], tuned[s.name])


def test_diff_with_weights_on_live_modules(minilm_dir, tuned_copy):
    model, _ = tuned_copy
    original = BertModel.from_pretrained(minilm_dir)
    d = modeldiff.diff(original, model, weights=True)
    # Structurally, only the freeze shows: requires_grad off on every layer-0 tensor.
    assert {c.path.split(".")[2] for c in d.modules} == {"0"}
    assert {t.fields for c in d.modules for t in c.tensors} == {("requires_grad",)}
    assert not d.added
    assert not d.removed
    assert d.weights is not None
    assert {s.name.rsplit(".", 2)[0] for s in d.weights.changed} == {
        f"{p}.{rest}" for p in PERTURBED
        for rest in ("attention.self", "attention.output", "intermediate", "output")}
    assert "changed" in str(d)
    data = json.loads(d.to_json())
    assert data["weights"]["tensors"]


def test_base_checkpoint_against_a_head_aligns_keys(tmp_path):
    """A base model's checkpoint has no `distilbert.` prefix; the head's does."""
    config = DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100)
    torch.manual_seed(0)
    head = DistilBertForSequenceClassification(config)
    head.distilbert.save_pretrained(tmp_path / "base")
    head.save_pretrained(tmp_path / "head")
    wd = modeldiff.weight_diff(tmp_path / "base", tmp_path / "head")
    assert not wd.missing
    assert wd.tensors
    assert not wd.changed
    assert all(s.name.startswith("distilbert.") for s in wd.tensors)


def test_cli_diff_weights(minilm_dir, tuned_copy, capsys):
    _, folder = tuned_copy
    assert main(["diff", str(minilm_dir), str(folder), "--weights"]) == 1
    out = capsys.readouterr().out
    assert "encoder.layer.1" in out
    assert "changed" in out
    assert main(["diff", str(minilm_dir), str(minilm_dir), "--weights"]) == 0


def test_module_summary_treats_a_module_as_one_vector():
    """A zero-initialised bias that moved has a relative change of 1 (against its new
    values, as its note says); the module's figures take weight and bias together, as torch
    would on the concatenation."""
    a = torch.nn.Linear(8, 4)
    with torch.no_grad():
        a.bias.zero_()
    b = torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.weight.add_(0.05)
        b.bias.add_(0.01)
    wd = modeldiff.weight_diff(a, b)
    bias = next(s for s in wd.tensors if s.name == "bias")
    assert bias.rel_change == 1.0
    assert bias.note == "a was all zeros: change relative to b"
    (module,) = wd.modules
    va = torch.cat([a.weight.double().flatten(), a.bias.double()])
    vb = torch.cat([b.weight.double().flatten(), b.bias.double()])
    assert module.rel_change == pytest.approx(((vb - va).norm() / va.norm()).item(), rel=1e-9)
    cos = torch.nn.functional.cosine_similarity(va, vb, dim=0).item()
    assert module.cosine == pytest.approx(cos, abs=1e-12)
    assert "inf" not in str(wd).splitlines()[1]
