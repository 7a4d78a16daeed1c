"""modeldiff._roundtrip.roundtrip, and the `roundtrip` / `compare` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import modeldiff
from modeldiff._roundtrip import Finding, roundtrip
from modeldiff._walk.checkpoint import read_header
from modeldiff.cli import main
from modeldiff.errors import (
    InputTypeError,
    ModelDiffError,
    NotMaterializedError,
    RoundTripError,
)


def tiny_config(**kw):
    from transformers import DistilBertConfig

    return DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=1000, **kw)


def tiny(cls_name: str = "DistilBertForMaskedLM", dtype=torch.float32, **kw):
    import transformers

    torch.manual_seed(0)
    return getattr(transformers, cls_name)(tiny_config(**kw)).to(dtype)


@pytest.fixture
def no_leftover_tempdirs(tmp_path, monkeypatch):
    """Point tempfile at a private folder so a test can check nothing is left there."""
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    yield private
    assert list(private.iterdir()) == []


# -- what survives ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtype_survives_the_trip(dtype, tmp_path):
    model = tiny("DistilBertForSequenceClassification", dtype)
    report = roundtrip(model, workdir=tmp_path / "out")
    assert report.ok, str(report)
    assert report.dtype == str(dtype).removeprefix("torch.")
    assert [f.name for f in report.files] == ["config.json", "model.safetensors"]
    on_disk = {e.dtype for e in read_header(tmp_path / "out" / "model.safetensors").values()}
    assert on_disk == {report.dtype}
    assert report.tensors_compared == report.tensors_identical == len(model.state_dict())
    assert [o.name for o in report.outputs] == ["logits"]
    assert report.outputs[0].equal
    assert report.folder == str(tmp_path / "out")


def test_sharded_save_and_tied_weights(no_leftover_tempdirs):
    model = tiny("DistilBertForMaskedLM")
    report = roundtrip(model, max_shard_size="60KB")
    assert report.ok, str(report)
    names = [f.name for f in report.files]
    shards = [n for n in names if n.startswith("model-")]
    assert len(shards) >= 3
    assert "model.safetensors.index.json" in names
    assert all(len(f.sha256) == 64 and f.size > 0 for f in report.files)
    # the masked-LM decoder shares the word embeddings' storage, before and after
    assert ("distilbert.embeddings.word_embeddings.weight",
            "vocab_projector.weight") in report.shared_groups
    assert "shared storage kept: 1 group(s)" in str(report)
    assert report.folder is None  # the temporary folder is gone (fixture checks)


def test_generative_model_writes_generation_config():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=1000,
                                       n_positions=64, bos_token_id=0, eos_token_id=0))
    report = roundtrip(model)
    assert report.ok, str(report)
    assert [f.name for f in report.files] == ["config.json", "generation_config.json",
                                             "model.safetensors"]


def test_real_pretrained_minilm(minilm_dir):
    from transformers import AutoTokenizer, BertModel

    model = BertModel.from_pretrained(minilm_dir)
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    report = roundtrip(model, tokenizer=tok)
    assert report.ok, str(report)
    assert report.tensors_identical == report.tensors_compared > 90
    assert {f.name for f in report.model_files} == {"config.json", "model.safetensors"}
    assert {f.source for f in report.files} == {"model", "tokenizer"}
    assert "2 tokenized sample sentences" in report.inputs
    assert {o.name for o in report.outputs} >= {"last_hidden_state", "pooler_output"}
    assert all(o.equal for o in report.outputs)


def test_tutorial_default_distilbert_with_minilm_tokenizer(minilm_dir):
    from transformers import (
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig())
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    assert len(tok) > 30000  # the real vocabulary, not the 5-token trap
    report = modeldiff.roundtrip(model, tokenizer=tok)
    assert report.ok, str(report)
    assert [f.name for f in report.model_files] == ["config.json", "model.safetensors"]
    assert report.model_files[1].size > 250e6  # the real 66M-parameter model was written
    assert "tokenizer.json" in {f.name for f in report.files}
    # identical predictions: the logits on the tokenized sample sentences, bit for bit
    assert [o.name for o in report.outputs] == ["logits"]
    assert report.outputs[0].equal
    assert report.inputs == "2 tokenized sample sentences"
    assert "token_type_ids left out" in " ".join(report.notes)
    assert json.loads(report.to_json())["ok"] is True


def test_user_model_and_config_are_left_as_they_were():
    model = tiny("DistilBertForMaskedLM")
    model.train()
    model.distilbert.embeddings.eval()  # a mixed train/eval state must come back as it was
    model.distilbert.embeddings.word_embeddings.weight.requires_grad_(False)
    config_before = model.config.to_dict()
    assert config_before["architectures"] is None  # save_pretrained would stamp it
    flags = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = roundtrip(model)
    assert report.ok, str(report)
    assert model.config.to_dict() == config_before
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert {n.key for n in report.normalised} == {"architectures", "dtype", "_name_or_path"}


# -- what does not survive: the report must say so -------------------------------------------
def test_unsaved_buffer_shows_up_in_outputs():
    # position_ids is a non-persistent buffer: edits to it are not saved, so the reloaded
    # model computes something else. A round-trip must catch exactly this kind of loss.
    model = tiny("DistilBertForSequenceClassification")
    emb = model.distilbert.embeddings
    emb.position_ids = emb.position_ids.flip(-1).contiguous()
    report = roundtrip(model)
    assert not report.ok
    assert report.tensors_identical == report.tensors_compared  # the state dict is fine
    (problem,) = report.problems
    assert problem.kind == Finding.OUTPUTS
    assert problem.subject == "logits"
    assert report.outputs[0].max_abs > 0
    assert not report.outputs[0].within_tolerance
    assert "outputs: logits" in str(report)


def test_parameter_added_after_construction_is_lost():
    model = tiny("DistilBertModel")
    model.extra = torch.nn.Parameter(torch.ones(3))
    report = roundtrip(model)
    kinds = {p.kind for p in report.problems}
    assert Finding.MISSING in kinds
    assert any(p.subject == "extra" for p in report.problems if p.kind == Finding.MISSING)
    assert Finding.STRUCTURE in kinds
    assert not report.ok


def test_module_added_after_construction_shows_as_a_diff_line():
    model = tiny("DistilBertModel")
    model.adapter = torch.nn.Linear(4, 2)
    report = roundtrip(model)
    (structure,) = [p for p in report.problems if p.kind == Finding.STRUCTURE]
    assert structure.subject == "adapter"
    assert structure.message == \
        "only before saving: Linear(in_features=4, out_features=2, bias=True)"
    assert not report.ok


# -- bad input -------------------------------------------------------------------------------
def test_workdir_under_a_regular_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    with pytest.raises(RoundTripError, match="a_file") as e:
        roundtrip(tiny("DistilBertModel"), workdir=blocker / "sub")
    assert isinstance(e.value, OSError)
    assert blocker.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_non_empty_workdir_is_refused_and_left_alone(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(RoundTripError, match="not empty"):
        roundtrip(tiny("DistilBertModel"), workdir=tmp_path)
    assert os.listdir(tmp_path) == ["mine.txt"]


def test_failure_midway_leaves_no_temporary_folder(no_leftover_tempdirs):
    with pytest.raises(InputTypeError, match=r"DistilBertModel\.forward"):
        roundtrip(tiny("DistilBertModel"), inputs={"bogus": torch.ones(1)})


def test_meta_model_and_non_models_are_refused():
    from transformers import DistilBertModel

    with torch.device("meta"):
        meta = DistilBertModel(tiny_config())
    with pytest.raises(NotMaterializedError, match="meta device"):
        roundtrip(meta)
    with pytest.raises(InputTypeError, match="PreTrainedModel"):
        roundtrip(torch.nn.Linear(2, 2))


def test_disk_full_gives_a_typed_error_and_leaves_nothing(tmp_path):
    # RLIMIT_FSIZE makes every write past 50 KB fail with EFBIG, as a full disk would.
    target = tmp_path / "new" / "out"
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from transformers import DistilBertConfig, DistilBertModel
        from modeldiff._roundtrip import roundtrip
        from modeldiff.errors import RoundTripError
        model = DistilBertModel(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                 vocab_size=1000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        try:
            roundtrip(model, workdir={str(target)!r})
        except RoundTripError as e:
            print("RoundTripError:", e)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert "RoundTripError:" in out.stdout, out.stderr[-2000:]
    assert str(target) in out.stdout
    assert not (tmp_path / "new").exists()  # the folders it created are gone


# -- command line ----------------------------------------------------------------------------
def test_cli_roundtrip_model_type(capsys):
    # electra's default config is the small discriminator (14M parameters): quick to build
    assert main(["roundtrip", "electra", "--task", "sequence-classification", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["model"] == "ElectraForSequenceClassification"
    assert report["outputs"][0]["equal"] is True


def test_cli_roundtrip_folder_and_errors(tmp_path, capsys):
    tiny("DistilBertForMaskedLM").save_pretrained(tmp_path / "ckpt")
    assert main(["roundtrip", str(tmp_path / "ckpt")]) == 0
    assert "round-trip of DistilBertForMaskedLM (float32): ok" in capsys.readouterr().out
    (tmp_path / "ckpt" / "config.json").unlink()
    assert main(["roundtrip", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err
    assert str(tmp_path / "ckpt") in err
    assert main(["roundtrip", "distilbrt"]) == 2
    assert "did you mean 'distilbert'" in capsys.readouterr().err


def test_cli_compare_exit_status(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(4)}, tmp_path / "a.safetensors")
    save_file({"w": torch.ones(4)}, tmp_path / "same.safetensors")
    save_file({"w": torch.tensor([1.0, 1.0, 1.0, 1.001])}, tmp_path / "b.safetensors")
    a, same, b = (str(tmp_path / f"{n}.safetensors") for n in ("a", "same", "b"))
    assert main(["compare", a, same]) == 0
    assert "1 tensors compared, 1 identical" in capsys.readouterr().out
    assert main(["compare", a, b, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["changed"][0]["name"] == "w"
    assert main(["compare", a, b, "--atol", "0.01"]) == 0
    assert "close" in capsys.readouterr().out
    assert main(["compare", a, b, "--atol", "-1"]) == 2
    assert "atol) must be a finite number >= 0; got -1.0" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"\x01\x02")
    assert main(["compare", a, str(tmp_path / "bad.safetensors")]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_public_names():
    assert {"roundtrip", "RoundTripReport", "compare_checkpoints",
            "CheckpointDiff"} <= set(modeldiff.__all__)
    assert modeldiff.roundtrip is roundtrip
    assert issubclass(RoundTripError, ModelDiffError)


def test_a_transposed_view_is_not_a_tie():
    from modeldiff._roundtrip import _shared_groups

    w = torch.arange(9.0).reshape(3, 3)
    assert _shared_groups({"a": w, "b": w, "c": w.t()}) == (("a", "b"),)
