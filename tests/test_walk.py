"""walk(): real transformers models and hand-made modules into typed graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    DistilBertModel,
)

import modeldiff
from modeldiff._core.graph import Kind
from modeldiff.errors import (
    CheckpointError,
    ConfigError,
    HubUnavailableError,
    InputTypeError,
    ModelDiffError,
    UnknownModelTypeError,
    UnsupportedTaskError,
)
from tests.models import Shared, Stack, Tied, WithBuffers, WithDict


def _meta(cls, config):
    # Built as modeldiff builds: transformers 5.0.x leaves models built on the meta device
    # untied (two parameters where later versions share one); tie_built_model ties them there.
    from modeldiff._compat import tie_built_model

    with torch.device("meta"):
        return tie_built_model(cls(config))


def _assert_matches_named_modules(g, model):
    """Node set, classes, attributes and tensors agree with what torch itself reports."""
    mods = dict(model.named_modules())
    assert [n.path for n in g] == list(mods)
    for node in g:
        mod = mods[node.path]
        assert node.cls == type(mod).__name__
        for name, value in node.attrs:
            if name == "bias" and isinstance(value, bool):
                assert value == (mod.bias is not None), node.path
            elif name == "normalized_shape":
                assert tuple(value) == tuple(mod.normalized_shape), node.path
            elif hasattr(mod, name) and not isinstance(getattr(mod, name), (nn.Module, torch.Tensor)):
                assert getattr(mod, name) == value, (node.path, name)
        own = {**dict(mod.named_parameters(recurse=False, remove_duplicate=False)),
               **dict(mod.named_buffers(recurse=False, remove_duplicate=False))}
        assert [t.name for t in node.tensors] == list(own), node.path
        for t in node.tensors:
            real = own[t.name]
            assert t.shape == tuple(real.shape)
            assert t.dtype == str(real.dtype).removeprefix("torch.")
            assert t.device == str(real.device)
            assert t.requires_grad == real.requires_grad


@pytest.mark.parametrize("cls", [DistilBertModel, DistilBertForSequenceClassification])
def test_default_distilbert_matches_named_modules(cls, distilbert_config):
    model = _meta(cls, distilbert_config)
    g = modeldiff.walk(model)
    _assert_matches_named_modules(g, model)
    assert g.totals.params == model.num_parameters()
    assert g.totals.trainable == model.num_parameters(only_trainable=True)
    assert set(g.state_dict_keys()) == set(model.state_dict())


def test_distilbert_head_facts(distilbert_config):
    g = modeldiff.walk(_meta(DistilBertForSequenceClassification, distilbert_config))
    pre, clf, drop = g["pre_classifier"], g["classifier"], g["dropout"]
    assert (pre.cls, pre.kind, pre.attributes["in_features"], pre.attributes["out_features"]) \
        == ("Linear", Kind.LINEAR, 768, 768)
    assert (clf.attributes["in_features"], clf.attributes["out_features"]) == (768, 2)
    assert (drop.cls, drop.kind, drop.attributes["p"]) == ("Dropout", Kind.DROPOUT, 0.2)
    assert clf.totals.params == 768 * 2 + 2
    assert g.hf is not None
    assert (g.hf.model_type, g.hf.architecture, g.hf.base_model_prefix) == \
        ("distilbert", "DistilBertForSequenceClassification", "distilbert")
    assert g.hf.config["n_layers"] == 6
    # The six identical TransformerBlocks are one repeat group.
    (group,) = g.repeats
    assert (group.label, group.count, group.cls) == \
        ("distilbert.transformer.layer.0-5", 6, "TransformerBlock")


def test_walk_builds_from_model_type_and_config_without_mutating_it(distilbert_config):
    before = distilbert_config.to_dict()
    from_config = modeldiff.walk(distilbert_config, task="sequence-classification")
    from_name = modeldiff.walk("distilbert", task="sequence-classification")
    assert distilbert_config.to_dict() == before
    assert from_config == from_name
    assert all(t.device == "meta" for _, _, t in from_name.tensors())
    assert from_name.totals.params == \
        _meta(DistilBertForSequenceClassification, distilbert_config).num_parameters()


@pytest.mark.parametrize(("task", "cls"), [
    (None, "DistilBertModel"),
    ("base", "DistilBertModel"),
    ("sequence-classification", "DistilBertForSequenceClassification"),
    ("token-classification", "DistilBertForTokenClassification"),
    ("masked-lm", "DistilBertForMaskedLM"),
    ("question-answering", "DistilBertForQuestionAnswering"),
])
def test_task_chooses_the_head(task, cls):
    assert modeldiff.walk("distilbert", task=task).root.cls == cls


def test_causal_lm_task():
    assert modeldiff.walk("gpt2", task="causal-lm").root.cls == "GPT2LMHeadModel"


def test_masked_lm_ties_count_once(distilbert_config):
    model = _meta(DistilBertForMaskedLM, distilbert_config)
    g = modeldiff.walk(model)
    assert [(t.target, t.source) for t in g.ties] == \
        [("vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight")]
    (proj_weight,) = [t for t in g["vocab_projector"].tensors if t.name == "weight"]
    assert proj_weight.tied_to == "distilbert.embeddings.word_embeddings.weight"
    assert g.totals.params == model.num_parameters()
    assert g.hf is not None
    assert ("vocab_projector.weight",
                                 "distilbert.embeddings.word_embeddings.weight") in g.hf.tied_weights
    edge = g.nx.edges["vocab_projector", "distilbert.embeddings.word_embeddings"]
    assert edge["kind"] == "tied"
    assert set(g.state_dict_keys()) == set(model.state_dict())


def test_hand_made_tied_module():
    model = Tied()
    g = modeldiff.walk(model)
    assert g.totals.params == sum(p.numel() for p in model.parameters())
    assert g["decoder"].totals.params == 0  # its only weight is the embedding's
    assert g.nx.edges["decoder", "embed"]["kind"] == "tied"


def test_shared_submodule_is_one_node_with_aliases():
    model = Shared()
    g = modeldiff.walk(model)
    assert [n.path for n in g] == [p for p, _ in model.named_modules()]
    assert g["first"].aliases == ("second",)
    assert g["first.0"].aliases == ("second.0",)
    assert g["second"] is g["first"]  # lookups by alias reach the same node
    # Both parents contain it; the module is counted once.
    assert ("", "second", "first") in g.contains
    assert g.nx.has_edge("", "first")
    assert g.totals.params == sum(p.numel() for p in model.parameters())
    assert set(g.state_dict_keys()) == set(model.state_dict())


def test_module_dict():
    model = WithDict()
    g = modeldiff.walk(model)
    assert g["heads"].kind == Kind.CONTAINER
    assert g["heads"].cls == "ModuleDict"
    assert [name for name, _ in g.children("heads")] == ["a", "b"]
    assert g["heads.b"].attributes["out_features"] == 3


def test_buffers_persistent_and_not():
    model = WithBuffers()
    g = modeldiff.walk(model)
    root = {t.name: t for t in g[""].tensors}
    assert root["scale"].buffer
    assert root["scale"].persistent
    assert root["cache"].buffer
    assert not root["cache"].persistent
    norm = {t.name: t for t in g["norm"].tensors}
    assert norm["num_batches_tracked"].dtype == "int64"
    assert not g["frozen"].tensors[0].requires_grad
    assert g.totals.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert g.totals.buffers == sum(b.numel() for b in model.buffers())
    assert set(g.state_dict_keys()) == set(model.state_dict())  # "cache" is not in it


def test_repeat_groups_stop_where_siblings_differ():
    g = modeldiff.walk(Stack(4))
    (group,) = g.repeats
    assert group.paths == ("layers.0", "layers.1", "layers.2", "layers.3")  # layers.4 differs


def test_checkpoint_folder_reads_headers_only(minilm_dir, tmp_path):
    from safetensors import safe_open

    g = modeldiff.walk(minilm_dir)
    assert g.root.cls == "BertModel"
    with safe_open(minilm_dir / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        for name, _node, t in g.tensors():
            if name in keys:
                sl = f.get_slice(name)
                assert t.shape == tuple(sl.get_shape()), name
                assert t.dtype == {"F32": "float32", "I64": "int64"}[sl.get_dtype()], name
    assert g["embeddings.word_embeddings"].attributes["embedding_dim"] == 384
    assert len([n for n in g if n.cls == "BertLayer"]) == 6
    # Proof that no weight is read: the same folder with every weight byte replaced by a
    # hole in a sparse file walks to the same graph.
    hollow = tmp_path / "hollow"
    hollow.mkdir()
    shutil.copy(minilm_dir / "config.json", hollow / "config.json")
    src = (minilm_dir / "model.safetensors").read_bytes()
    header_len = 8 + int.from_bytes(src[:8], "little")
    with open(hollow / "model.safetensors", "wb") as f:
        f.write(src[:header_len])
        f.truncate(len(src))
    assert modeldiff.walk(hollow) == g


def test_folder_dtype_comes_from_the_file(tmp_path):
    config = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=100)
    torch.manual_seed(0)
    model = DistilBertForMaskedLM(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    g = modeldiff.walk(tmp_path)
    assert g.root.cls == "DistilBertForMaskedLM"  # from config.json's architectures
    dtypes = {t.dtype for _, _, t in g.tensors() if not t.buffer}
    assert dtypes == {"bfloat16"}  # the tied decoder weight takes its source's dtype too
    assert modeldiff.walk(tmp_path, task="base").root.cls == "DistilBertModel"


def test_folders_with_one_config_each_get_their_own_tensors(tmp_path):
    # Folders with the same config.json share the meta model they are walked from (it is
    # built once); what each holds still comes from its own files: here float32 in one,
    # bfloat16 with the same config in the other, and a third with one layer more.
    config = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=100)
    torch.manual_seed(0)
    model = DistilBertForMaskedLM(config)
    model.save_pretrained(tmp_path / "f32")
    shutil.copytree(tmp_path / "f32", tmp_path / "bf16")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
               if k != "vocab_projector.weight"}, tmp_path / "bf16" / "model.safetensors",
              metadata={"format": "pt"})
    torch.manual_seed(0)
    DistilBertForMaskedLM(DistilBertConfig(**{**config.to_dict(), "n_layers": 2})
                          ).save_pretrained(tmp_path / "deeper")
    for _ in range(2):  # and again, from the kept models
        f32, bf16 = modeldiff.walk(tmp_path / "f32"), modeldiff.walk(tmp_path / "bf16")
        deep = modeldiff.walk(tmp_path / "deeper")
        assert {t.dtype for _, _, t in f32.tensors() if not t.buffer} == {"float32"}
        assert {t.dtype for _, _, t in bf16.tensors() if not t.buffer} == {"bfloat16"}
        assert str(tmp_path / "bf16") in bf16.source
        assert "distilbert.transformer.layer.1" in deep
        assert "distilbert.transformer.layer.1" not in f32
        assert [n.path for n in f32.nodes] == [n.path for n in bf16.nodes]


def test_walk_leaves_the_model_untouched():
    torch.manual_seed(0)
    config = DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100)
    model = DistilBertForSequenceClassification(config)
    model.train()
    model.distilbert.embeddings.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    config_before = model.config.to_dict()
    modeldiff.walk(model)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert model.config.to_dict() == config_before
    for m in model.modules():
        assert not m._forward_hooks
        assert not m._forward_pre_hooks
        assert not m._backward_hooks
    assert not any(p.grad is not None for p in model.parameters())


def test_walk_does_not_materialise_a_meta_model(distilbert_config):
    model = _meta(DistilBertForMaskedLM, distilbert_config)
    modeldiff.walk(model)
    assert all(p.is_meta for p in model.parameters())


def test_walk_is_deterministic(distilbert_config):
    a = modeldiff.walk("distilbert", task="masked-lm")
    b = modeldiff.walk(_meta(DistilBertForMaskedLM, distilbert_config))
    assert a == b  # equal graphs, whatever their source
    assert a.to_json() == modeldiff.walk("distilbert", task="masked-lm").to_json()


def test_summary_table_and_total(distilbert_config):
    model = _meta(DistilBertForSequenceClassification, distilbert_config)
    text = modeldiff.walk(model).summary(depth=2)
    assert f"Total params: {model.num_parameters():,}" in text
    assert "0-5 (x6)" not in text  # the group sits at depth 4
    deep = modeldiff.walk(model).summary()
    assert "0-5 (x6)" in deep
    assert "TransformerBlock" in deep
    assert "classifier" in text
    assert "in_features=768, out_features=2" in text
    unfolded = modeldiff.walk(model).summary(fold=False)
    assert unfolded.count("TransformerBlock") == 6


# -- bad input -------------------------------------------------------------------------------
def test_not_a_model():
    with pytest.raises(InputTypeError, match=r"walk\(obj\) must be .* got builtins.int") as e:
        modeldiff.walk(42)
    assert isinstance(e.value, TypeError)
    assert e.value.received is int


def test_folder_without_config(tmp_path):
    with pytest.raises(CheckpointError, match=r"no config.json in") as e:
        modeldiff.walk(tmp_path)
    assert e.value.path == tmp_path / "config.json"


def test_config_that_is_not_json(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert",\n  "hidden_size": }')
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON: .* line 2"):
        modeldiff.walk(tmp_path)


def test_unknown_model_type_in_folder_suggests(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbrt"}))
    with pytest.raises(UnknownModelTypeError, match="did you mean 'distilbert'") as e:
        modeldiff.walk(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_unknown_model_type_name_suggests():
    with pytest.raises(UnknownModelTypeError, match="did you mean 'distilbert'"):
        modeldiff.walk("distilbrt")


def test_corrupt_safetensors_header(minilm_dir, tmp_path):
    shutil.copy(minilm_dir / "config.json", tmp_path / "config.json")
    data = bytearray((minilm_dir / "model.safetensors").read_bytes()[:4096])
    data[10:20] = b"\x00garbage\xff\xfe"
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors in .* (corrupt|truncated)"):
        modeldiff.walk(tmp_path)


def test_truncated_safetensors(minilm_dir, tmp_path):
    shutil.copy(minilm_dir / "config.json", tmp_path / "config.json")
    data = (minilm_dir / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"is truncated: tensor .* ends at byte"):
        modeldiff.walk(tmp_path)


def test_hub_id_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match=r"someone/some-model.*Hugging Face hub") as e:
        modeldiff.walk("someone/some-model")
    assert isinstance(e.value, OSError)


def test_task_the_model_type_does_not_offer():
    with pytest.raises(UnsupportedTaskError, match=r"offers: .*sequence-classification"):
        modeldiff.walk("distilbert", task="causal-lm")
    with pytest.raises(UnsupportedTaskError, match="unknown task 'sequence'"):
        modeldiff.walk("distilbert", task="sequence")


def test_missing_path_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        modeldiff.walk(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no such folder"):
        modeldiff.walk(Path("./definitely/not/here"))


def test_every_error_is_a_modeldiff_error():
    for cls in (InputTypeError, ConfigError, CheckpointError, HubUnavailableError,
                UnknownModelTypeError, UnsupportedTaskError):
        assert issubclass(cls, ModelDiffError)


@pytest.mark.parametrize("zip_format", [True, False])
def test_bin_checkpoint_folder_in_both_torch_formats(tmp_path, zip_format):
    config = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=100)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(config).half()
    config.architectures = ["DistilBertForSequenceClassification"]
    config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin",
               _use_new_zipfile_serialization=zip_format)
    g = modeldiff.walk(tmp_path)
    assert g["classifier"].tensors[0].dtype == "float16"
    assert g.totals.params == model.num_parameters()


def test_config_changes_between_walks_are_seen(distilbert_config):
    """walk caches a config's JSON; editing the config in place, even a nested dict, shows."""
    model = _meta(DistilBertForSequenceClassification, distilbert_config)
    first = modeldiff.walk(model)
    model.config.id2label[0] = "NEGATIVE"
    second = modeldiff.walk(model)
    assert second.hf.config["id2label"]["0"] == "NEGATIVE"
    assert first.hf.config["id2label"]["0"] == "LABEL_0"
    model.config.attention_dropout = 0.3
    assert modeldiff.walk(model).hf.config["attention_dropout"] == 0.3
    assert modeldiff.diff(first, modeldiff.walk(model)).config


def test_children_named_with_non_decimal_digits():
    """'²'.isdigit() is true but int('²') fails: such a child is not numbered, no crash,
    and printed and live graphs still fold alike."""
    model = nn.Module()
    model.add_module("²", nn.Linear(2, 2))
    model.add_module("0", nn.Linear(2, 2))
    model.add_module("1", nn.Linear(2, 2))
    g = modeldiff.walk(model)
    assert [r.label for r in g.repeats] == ["0-1"]
    assert modeldiff.parse_repr(repr(model)).repeats == g.repeats
