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


V4_PRINT = (__import__("pathlib").Path(__file__).parent / "data" / "distilbert_v4_print.txt"
            ).read_text()
SMALL = "Sequential(\n  (0): Linear(in_features=4, out_features=2, bias=True)\n  (1): SiLU()\n)"


@pytest.mark.parametrize("wrapped", [
    f"Model:\n{SMALL}",
    f"Here is my model\n```python\n{SMALL}\n```\nany idea why it diverges?",
    f">>> print(model)\n{SMALL}\n>>> model.train()",
    f"In [3]: print(model)\nOut[3]: {SMALL}\n\nEpoch 1: loss 0.3",
    SMALL.replace("\n", "<br>\n"),
    SMALL.replace("\n", "<br/>"),
    f"{SMALL}\ntorch.Size([2, 4])\ntensor([[0.1, 0.2]])",
])
def test_a_pasted_print_is_found_and_what_was_skipped_is_said(wrapped):
    g = modeldiff.walk(wrapped)
    assert [(n.path, n.cls) for n in g] == [("", "Sequential"), ("0", "Linear"), ("1", "SiLU")]
    assert not modeldiff.diff(g, modeldiff.parse_repr(SMALL))
    if wrapped.strip() != SMALL and "<br" not in wrapped:
        assert "skipped" in g.source


def test_several_prints_in_one_text_read_the_first_and_say_so():
    g = modeldiff.walk(f"before:\n{SMALL}\nafter:\n{SMALL.replace('SiLU', 'GELU')}\n")
    assert g["1"].cls == "SiLU"
    assert "1 more print(s) in the text (line 7) not read" in g.source


@pytest.mark.parametrize("text", ["this is not a model\nat all", "x" * 5000,
                                  "loss went NaN (after 3 steps)\n"])
def test_text_that_is_not_a_print_is_a_parse_error(text):
    from modeldiff.errors import ReprParseError

    with pytest.raises(ReprParseError):
        modeldiff.walk(text)


def test_old_print_against_todays_class_is_drift_not_difference():
    d = modeldiff.diff(V4_PRINT, "distilbert", task=(None, "sequence-classification"))
    # LayerNorm's bias=True was not printed by the torch of the time: not a difference
    assert not any(c.key == "bias" for m in d.modules for c in m.attrs)
    assert [c.label for c in d.drift] == ["distilbert.transformer.layer.0-5.attention (x6)"]
    assert "drift (classes a library renamed; not counted as differences):" in str(d)
    # what is left is real: transformers 5 holds the FFN activation in a module
    assert [c.label for c in d.modules] == ["distilbert.transformer.layer.0-5.ffn.activation (x6)"]


def test_renamed_activation_is_drift_and_changes_no_exit_status(tmp_path, capsys):
    from modeldiff.cli import main

    (tmp_path / "old.txt").write_text(SMALL)
    (tmp_path / "new.txt").write_text(SMALL.replace("SiLU()", "SiLUActivation()"))
    assert main(["diff", str(tmp_path / "old.txt"), str(tmp_path / "new.txt")]) == 0
    out = capsys.readouterr().out
    assert "no differences in architecture" in out
    assert "1  class 'SiLU' -> 'SiLUActivation'" in out
    (tmp_path / "gelu.txt").write_text(SMALL.replace("SiLU()", "GELU()"))
    assert main(["diff", str(tmp_path / "old.txt"), str(tmp_path / "gelu.txt")]) == 1


@pytest.mark.parametrize("model_type", ["distilbert", "bert", "llama", "gpt2", "t5",
                                        "deberta-v2", "mistral", "roberta"])
def test_a_print_of_a_model_against_its_own_config_has_no_architecture_difference(model_type):
    from modeldiff._inputs import build_model

    config = modeldiff.tiny_config(model_type)
    assert not modeldiff.diff(repr(build_model(config)), config)


def test_compare_checkpoints_aligns_a_base_with_its_head(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    config = DistilBertConfig(dim=32, hidden_dim=37, n_layers=2, n_heads=2, vocab_size=120)
    torch.manual_seed(0)
    base = DistilBertModel(config)
    head = DistilBertForSequenceClassification(config)
    head.distilbert.load_state_dict(base.state_dict())
    base.save_pretrained(tmp_path / "base")
    head.save_pretrained(tmp_path / "head")
    d = modeldiff.compare_checkpoints(tmp_path / "base", tmp_path / "head")
    assert (d.prefix_a, d.prefix_b) == ("", "distilbert.")
    assert d.compared == d.identical == len(base.state_dict())
    assert d.missing == ()
    assert sorted(d.unexpected) == ["classifier.bias", "classifier.weight",
                                    "pre_classifier.bias", "pre_classifier.weight"]
    assert "keys aligned: b's 'distilbert.' prefix stripped" in str(d)
    # the same answer diff --weights gives
    wd = modeldiff.weight_diff(tmp_path / "base", tmp_path / "head")
    assert len(wd.tensors) == d.compared
    assert not wd.changed


def test_compare_checkpoints_of_unrelated_models_says_it_compared_nothing(tmp_path):
    torch.manual_seed(0)
    BertModel(_bert(1)).save_pretrained(tmp_path / "bert")
    from transformers import GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=99)).save_pretrained(
        tmp_path / "gpt2")
    d = modeldiff.compare_checkpoints(tmp_path / "bert", tmp_path / "gpt2")
    assert d.compared == 0
    assert d
    assert "compared nothing: no tensor name is common to both" in str(d)


def test_printed_summaries_mark_their_numbers_as_estimates():
    text = modeldiff.walk(SMALL).summary()
    assert "~10" in text
    assert "Total params: ~10 (estimated from the printed attributes" in text
    assert "Trainable" not in text  # a print does not say what is trainable


def test_every_function_that_takes_a_model_takes_every_kind_of_input(tmp_path):
    from torch import nn

    torch.manual_seed(0)
    model = BertModel(_bert(1))
    model.save_pretrained(tmp_path)
    text = repr(model)
    for obj in (model, _bert(1), tmp_path, text, modeldiff.walk(model)):
        assert "BertModel" in modeldiff.render(obj).source
        assert not modeldiff.diff(obj, model)
    assert 'class="module linear"' in modeldiff.render(nn.Sequential(nn.Linear(2, 2))).source
    assert modeldiff.roundtrip(tmp_path).ok
    assert modeldiff.roundtrip("distilbert", task="sequence-classification").ok
