"""What fine-tuning moved, on real and constructed checkpoints: the verdict, the rank of a
merged LoRA, casts, frozen parts, folded rows, and the diagram and CLI that show them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

import modeldiff
from modeldiff._core.weights import Pattern
from modeldiff._inputs import build_model
from modeldiff.cli import main

LORA_RANK = 8


def _llama_pair(tmp_path, *, max_shard_size=None):
    """A tiny Llama and a copy with a rank-8 LoRA merged into every q_proj and v_proj,
    both saved as safetensors folders (sharded when asked)."""
    cfg = modeldiff.tiny_config("llama")
    cfg.hidden_size, cfg.intermediate_size, cfg.head_dim = 128, 256, 32
    torch.manual_seed(0)
    base = build_model(cfg, task=None, device="cpu")
    tuned = build_model(cfg, task=None, device="cpu")
    tuned.load_state_dict(base.state_dict())
    gen = torch.Generator().manual_seed(1)
    targets = []
    with torch.no_grad():
        for name, m in tuned.named_modules():
            if name.endswith(("q_proj", "v_proj")):
                out_f, in_f = m.weight.shape
                lora_b = torch.randn(out_f, LORA_RANK, generator=gen) * 0.02
                lora_a = torch.randn(LORA_RANK, in_f, generator=gen) * 0.02
                m.weight.add_(lora_b @ lora_a)
                targets.append(name)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    base.save_pretrained(tmp_path / "base", **kw)
    tuned.save_pretrained(tmp_path / "lora", **kw)
    return tmp_path / "base", tmp_path / "lora", set(targets)


def test_merged_lora_reads_as_lora_like_with_its_rank_on_exactly_those_modules(tmp_path):
    base, lora, targets = _llama_pair(tmp_path, max_shard_size="200KB")
    assert len(list(lora.glob("*.safetensors"))) > 1  # streamed across shards
    wd = modeldiff.weight_diff(base, lora)
    v = wd.verdict
    assert v.pattern is Pattern.LORA_LIKE
    assert v.rank == LORA_RANK
    moved = {m.path for m in wd.modules if m.changed}
    assert moved == targets
    for s in wd.tensors:
        if s.name.rpartition(".")[0] in targets:
            assert s.rank == LORA_RANK
            assert s.top_energy == pytest.approx(1.0, abs=1e-6)
        else:
            assert s.equal, s.name
    assert "q_proj, v_proj" in v.evidence[0]
    assert "layers.0-1.mlp" in v.frozen
    # folded like the structure: one row per projection type across both layers
    folded = {m.label for m in wd.folded if m.changed}
    assert folded == {"layers.0-1.self_attn.q_proj (x2)", "layers.0-1.self_attn.v_proj (x2)"}


def test_only_the_classifier_trained_reads_as_head_only(tmp_path):
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, vocab_size=100, num_labels=3)
    torch.manual_seed(0)
    before = BertForSequenceClassification(cfg)
    after = BertForSequenceClassification(cfg)
    after.load_state_dict(before.state_dict())
    after.bert.requires_grad_(False)
    opt = torch.optim.SGD([p for p in after.parameters() if p.requires_grad], lr=0.1)
    ids = torch.randint(0, 100, (4, 8), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        loss = after(input_ids=ids, labels=torch.tensor([0, 1, 2, 0])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    wd = modeldiff.weight_diff(before, after)
    assert wd.verdict.pattern is Pattern.HEAD_ONLY
    assert {m.path for m in wd.modules if m.changed} == {"classifier"}
    assert wd.verdict.frozen == ("bert",)


def test_bf16_cast_reads_as_a_dtype_cast_with_nothing_moved_beyond_rounding(tmp_path):
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, vocab_size=100)
    torch.manual_seed(0)
    model = BertModel(cfg)
    model.save_pretrained(tmp_path / "fp32")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    wd = modeldiff.weight_diff(tmp_path / "fp32", tmp_path / "bf16")
    assert wd.verdict.pattern is Pattern.DTYPE_CAST
    assert not [m.path for m in wd.modules if m.changed]
    floats = [s for s in wd.tensors if s.dtype_a == "float32"]
    assert floats
    assert all(s.rounding for s in floats)
    assert "float32 -> bfloat16" in wd.verdict.evidence[0]
    assert "cast within rounding" in wd.summary()


def test_a_real_change_after_a_cast_is_not_hidden_as_rounding(tmp_path):
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, vocab_size=100)
    torch.manual_seed(0)
    model = BertModel(cfg)
    model.save_pretrained(tmp_path / "fp32")
    model = model.to(torch.bfloat16)
    with torch.no_grad():
        model.encoder.layer[1].output.dense.weight.mul_(1.5)
    model.save_pretrained(tmp_path / "bf16")
    wd = modeldiff.weight_diff(tmp_path / "fp32", tmp_path / "bf16")
    assert [m.path for m in wd.modules if m.changed] == ["encoder.layer.1.output.dense"]
    assert wd.verdict.pattern is Pattern.TARGETED


@pytest.fixture(scope="module")
def minilm_steps(minilm_dir, tmp_path_factory):
    """A few AdamW steps on the real MiniLM checkpoint with the embeddings frozen."""
    model = BertModel.from_pretrained(minilm_dir)
    model.embeddings.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        ids = torch.randint(1000, 20000, (2, 8), generator=gen)
        out = model(input_ids=ids).last_hidden_state
        loss = (out[:, 0] - out[:, 1:].mean(1)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    folder = tmp_path_factory.mktemp("minilm-steps")
    model.save_pretrained(folder)
    return folder


def test_optimizer_steps_with_frozen_embeddings_read_as_a_full_fine_tune(minilm_dir,
                                                                          minilm_steps):
    wd = modeldiff.weight_diff(minilm_dir, minilm_steps)
    v = wd.verdict
    assert v.pattern is Pattern.FULL_FINE_TUNE
    assert "embeddings" in v.frozen
    assert not any(s.moved for s in wd.tensors if s.name.startswith("embeddings."))
    # top changed modules, as a direct torch computation over the state dicts finds them
    sa = BertModel.from_pretrained(minilm_dir).state_dict()
    sb = BertModel.from_pretrained(minilm_steps).state_dict()
    per: dict[str, list[float]] = {}
    for name, a in sa.items():
        b = sb[name]
        if torch.equal(a, b) or not a.is_floating_point():
            continue
        acc = per.setdefault(name.rpartition(".")[0], [0.0, 0.0])
        acc[0] += float((b.double() - a.double()).pow(2).sum())
        acc[1] += float(a.double().pow(2).sum())
    direct = sorted(((math.sqrt(d) / math.sqrt(n), p) for p, (d, n) in per.items()),
                    reverse=True)
    top = [m for m in wd.modules if m.changed][:10]
    assert [m.path for m in top] == [p for _, p in direct[:10]]
    for m, (rel, _) in zip(top, direct[:10], strict=True):
        assert m.rel_change == pytest.approx(rel, rel=1e-9)
    # every changed 2-D weight got its rank: optimizer steps are not low rank
    ranks = [s.rank for s in wd.tensors if s.moved and len(s.shape_b) == 2]
    assert ranks
    assert all(r is not None and r >= 16 for r in ranks)
    blocks = {m.path for m in wd.blocks}
    assert blocks == {f"encoder.layer.{i}" for i in range(6)}


def test_diff_with_weights_draws_moved_modules_by_relative_change(tmp_path):
    base, lora, _ = _llama_pair(tmp_path)
    d = modeldiff.diff(base, lora, weights=True)
    assert not d.modules  # the structure did not change ...
    src = modeldiff.render(d).source
    for line in src.splitlines():
        if "q_proj" in line and "label=" in line:
            # ... but the weights did: coloured, never called unchanged
            assert 'class="module linear moved"' in line
            assert "weights moved: rel change" in line
            assert "unchanged" not in line
    assert "fill = relative change" in src
    # render(weight_diff) draws the graphs the weight diff compared
    wd = modeldiff.weight_diff(base, lora)
    assert modeldiff.render(wd).source.count(" moved") == src.count(" moved")
    from modeldiff._core.weights import WeightDiff

    back = WeightDiff.from_json(wd.to_json())
    assert back.verdict == wd.verdict
    with pytest.raises(modeldiff.errors.InputTypeError, match="compute it again"):
        modeldiff.render(back)


def test_cli_diff_says_values_were_not_compared_and_weights_prints_the_top(tmp_path, capsys):
    base, lora, _ = _llama_pair(tmp_path)
    assert main(["diff", str(base), str(lora)]) == 0
    out = capsys.readouterr().out
    assert "weight values not compared" in out
    assert "--weights" in out
    assert main(["diff", str(base), str(lora), "--weights", "--top", "2"]) == 1
    out = capsys.readouterr().out
    assert "verdict: LoRA-like" in out
    assert "... 2 more changed modules (--all shows every row)" in out
    assert "16 modules unchanged" in out
    assert "layers.0-1.self_attn.q_proj (x2)" in out
    assert "per block:" in out
    assert main(["diff", str(base), str(lora), "--weights", "--all"]) == 1
    out = capsys.readouterr().out
    assert "more changed modules" not in out
    assert out.count("self_attn.v_proj  ") >= 2
    assert main(["diff", str(base), str(lora), "--weights", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["weights"]["verdict"]["pattern"] == "LoRA-like"
    assert data["weights"]["verdict"]["rank"] == LORA_RANK
