"""True answers on the inputs people really have (issue 11, section 2), one test each."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, LlamaConfig

import modeldiff
from modeldiff.errors import AlignmentError


def _bert(layers: int) -> BertConfig:
    return BertConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=37, vocab_size=99)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_saved_folders_fold_alike_whatever_their_dtype(tmp_path, dtype):
    torch.manual_seed(0)
    BertModel(_bert(4)).to(dtype).save_pretrained(tmp_path)
    g = modeldiff.walk(tmp_path)
    assert {t.dtype for _, _, t in g.tensors() if not t.buffer} == {str(dtype)[6:]}
    assert [r.label for r in g.repeats] == ["encoder.layer.0-3"]
    assert "0-3 (x4)" in g.summary(depth=3)
    assert "<b>layer.0-3</b>  BertLayer<b> x4</b>" in modeldiff.render(g).source


def test_models_of_different_depth_fold_common_and_extra_layers():
    d = modeldiff.diff(BertConfig(num_hidden_layers=12), BertConfig(num_hidden_layers=6))
    lines = [" ".join(x.split()) for x in str(d).splitlines()]
    assert lines[1].startswith("- encoder.layer.6-11 (x6) BertLayer() 42,527,232 params")
    assert lines[2:] == ["~ config num_hidden_layers 12 -> 6"]
    # widths differ too: common layers fold as one changed row per submodule
    d = modeldiff.diff(_bert(12), BertConfig(hidden_size=48, num_hidden_layers=6,
                                             num_attention_heads=2, intermediate_size=37,
                                             vocab_size=99))
    rows = [c.label for c in d.modules]
    assert "encoder.layer.0-5.attention.self.query (x6)" in rows
    assert "encoder.layer.6-11 (x6)" in rows
    assert not any(".3." in r for r in rows)  # no unfolded per-layer row


def test_llama_8b_against_70b_fits_on_one_screen():
    def llama(hidden: int, inter: int, layers: int, heads: int) -> LlamaConfig:
        return LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                           num_attention_heads=heads, num_key_value_heads=8, vocab_size=128256)

    d = modeldiff.diff(llama(4096, 14336, 32, 32), llama(8192, 28672, 80, 64))
    text = [" ".join(x.split()) for x in str(d).splitlines()]
    assert len(text) <= 24
    assert any(x.startswith("+ layers.32-79 (x48) LlamaDecoderLayer()") for x in text)
    assert any(x.startswith("~ layers.0-31.self_attn.q_proj (x32)") for x in text)
    # and the mirror folds the same way
    back = [c.label for c in modeldiff.diff(llama(8192, 28672, 80, 64),
                                            llama(4096, 14336, 32, 32)).modules]
    assert "layers.32-79 (x48)" in back


def test_head_delta_of_unrelated_models_refuses():
    with pytest.raises(AlignmentError, match="does not contain BertModel"):
        modeldiff.head_delta(_bert(2), GPT2Config(n_layer=2, n_embd=32, n_head=2))


def test_a_folder_saved_without_tokenizer_never_gets_a_made_up_one(tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from modeldiff.cli import main
    from modeldiff.errors import CheckpointError

    torch.manual_seed(0)
    DistilBertForSequenceClassification(DistilBertConfig(
        dim=32, hidden_dim=37, n_layers=2, n_heads=2, vocab_size=120)).save_pretrained(tmp_path)
    for call in (modeldiff.classify, modeldiff.pipeline_steps):
        with pytest.raises(CheckpointError, match=r"no tokenizer files in .*pass tokenizer="):
            call(["a text"], str(tmp_path))
    assert main(["roundtrip", str(tmp_path), "--json"]) == 0
    report = modeldiff.RoundTripReport.from_json(capsys.readouterr().out)
    assert report.ok
    assert "tokenizer" not in {f.source for f in report.files}
    assert "seeded" in report.inputs  # the report says the inputs were made up, not text
