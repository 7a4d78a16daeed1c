"""diff(): alignment, the canonical DistilBERT case, folding, ties, config, properties, CLI."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn
from transformers import (
    BertConfig,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertModel,
)

import modeldiff
from modeldiff._core.compare import ABSENT
from modeldiff._core.diff import Change, GraphDiff
from modeldiff.cli import main
from modeldiff.errors import AlignmentError, NotMaterializedError
from modeldiff.strategies import modules
from tests.models import Stack

CANONICAL = """\
DistilBertModel -> DistilBertForSequenceClassification  (base aligned at distilbert)
+ pre_classifier  Linear(in_features=768, out_features=768)  590,592 params
+ classifier      Linear(in_features=768, out_features=2)      1,538 params
+ dropout         Dropout(p=0.2)"""


@pytest.fixture(scope="module")
def base_and_head():
    config = DistilBertConfig()
    with torch.device("meta"):
        return DistilBertModel(config), DistilBertForSequenceClassification(config)


def test_canonical_distilbert_case(base_and_head):
    base, head = base_and_head
    d = modeldiff.diff(base, head)
    assert str(d) == CANONICAL
    assert d.alignment.after == "distilbert"
    assert d.alignment.how == "base_model_prefix"
    assert [c.path for c in d.added] == ["pre_classifier", "classifier", "dropout"]
    assert not d.removed
    assert not d.changed
    assert not d.ties
    assert not d.config
    assert bool(d)
    # The numbers printed are the models' own: the head adds exactly what the diff says.
    added = sum(c.after.totals.params for c in d.added)
    assert added == head.num_parameters() - base.num_parameters() == 590_592 + 1_538


def test_reverse_reports_the_same_modules_removed(base_and_head):
    base, head = base_and_head
    d = modeldiff.diff(head, base)
    assert [c.path for c in d.removed] == ["pre_classifier", "classifier", "dropout"]
    assert not d.added
    assert not d.changed
    assert str(d).splitlines()[1:] == [line.replace("+", "-", 1)
                                       for line in CANONICAL.splitlines()[1:]]
    assert d.alignment.before == "distilbert"


def test_names_configs_and_graphs_compare_alike(base_and_head):
    base, head = base_and_head
    d = modeldiff.diff("distilbert", modeldiff.walk(DistilBertConfig(),
                                                    task="sequence-classification"))
    assert d == modeldiff.diff(base, head)


def test_identical_models_have_no_diff(base_and_head):
    _, head = base_and_head
    d = modeldiff.diff(head, head)
    assert not d
    assert d.modules == ()
    assert str(d).endswith("no differences")


def test_changes_fold_across_repeat_groups():
    a = modeldiff.walk(DistilBertConfig(), task="sequence-classification")
    b = modeldiff.walk(DistilBertConfig(attention_dropout=0.3, num_labels=3),
                       task="sequence-classification")
    d = modeldiff.diff(a, b)
    (drop,) = [c for c in d.changed if c.path.endswith("attention.dropout")]
    assert drop.count == 6
    assert drop.label == "distilbert.transformer.layer.0-5.attention.dropout (x6)"
    assert [(x.key, x.before, x.after) for x in drop.attrs] == [("p", 0.1, 0.3)]
    (clf,) = [c for c in d.changed if c.path == "classifier"]
    assert [(x.key, x.before, x.after) for x in clf.attrs] == [("out_features", 2, 3)]
    assert {t.name: (t.before.shape, t.after.shape) for t in clf.tensors} == {
        "weight": ((2, 768), (3, 768)), "bias": ((2,), (3,))}
    assert "~ distilbert.transformer.layer.0-5.attention.dropout (x6)  Dropout  p 0.1 -> 0.3" \
        in str(d)
    assert {c.key for c in d.config} == {"attention_dropout", "id2label", "label2id"}


def test_a_change_in_only_some_members_is_not_folded():
    a, b = Stack(4), Stack(4)
    b.layers[1][2].p = 0.5
    d = modeldiff.diff(a, b)
    assert [c.label for c in d.changed] == ["layers.1.2"]


def test_dtype_and_requires_grad_changes():
    a = nn.Sequential(nn.Linear(3, 3))
    b = nn.Sequential(nn.Linear(3, 3)).to(torch.float16)
    b[0].bias.requires_grad_(False)
    (c,) = modeldiff.diff(a, b).changed
    assert {t.name: t.fields for t in c.tensors} == {"weight": ("dtype",),
                                                     "bias": ("dtype", "requires_grad")}
    assert "weight dtype 'float32' -> 'float16'" in str(modeldiff.diff(a, b))


def test_tie_gained_and_lost():
    d = modeldiff.diff("distilbert", modeldiff.walk("distilbert", task="masked-lm"))
    assert [(t.change, t.target, t.source) for t in d.ties] == [
        (Change.ADDED, "vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight")]
    untied = modeldiff.walk(DistilBertConfig(tie_word_embeddings=False), task="masked-lm")
    d2 = modeldiff.diff(modeldiff.walk("distilbert", task="masked-lm"), untied)
    assert [(t.change, t.target) for t in d2.ties] == [(Change.REMOVED, "vocab_projector.weight")]
    # Untied, the projector owns its weight: the totals say so.
    (proj,) = [c for c in d2.changed if c.path == "vocab_projector"] or [None]
    assert proj is None or proj.tensors == ()
    assert untied.totals.params - modeldiff.walk("distilbert", task="masked-lm").totals.params \
        == 30522 * 768


def test_attribute_that_only_one_side_has():
    a = nn.Sequential(nn.LayerNorm(4))
    b = nn.Sequential(nn.LayerNorm(4, bias=False))
    (c,) = modeldiff.diff(a, b).changed
    assert [(x.key, x.before, x.after) for x in c.attrs] == [("bias", True, False)]
    assert [t.change for t in c.tensors] == [Change.REMOVED]
    assert ABSENT is type(ABSENT)()  # one sentinel


def test_class_change_is_reported():
    d = modeldiff.diff(nn.Sequential(nn.ReLU()), nn.Sequential(nn.GELU()), align=None)
    (c,) = d.changed
    assert next((x.key, x.before, x.after) for x in c.attrs) == ("class", "ReLU", "GELU")


def test_different_families_compare_path_to_path():
    d = modeldiff.diff("bert", "distilbert")
    assert d.alignment.how == "identity"
    assert {c.path for c in d.removed} >= {"encoder", "pooler"}
    assert "transformer" in {c.path for c in d.added}
    assert d.config
    assert any(c.key == "model_type" for c in d.config)


def test_forced_alignment_and_errors(base_and_head):
    base, head = base_and_head
    forced = modeldiff.diff(base, head, align="distilbert")
    assert forced.alignment.how == "forced"
    assert [c.path for c in forced.added] == \
        ["pre_classifier", "classifier", "dropout"]
    pair = modeldiff.diff(base, head, align=("", "distilbert"))
    assert pair.modules == forced.modules
    plain = modeldiff.diff(base, head, align=None)
    assert plain.alignment.how == "none"
    assert len(plain.added) > 3
    with pytest.raises(AlignmentError, match=r"cannot align at 'bert'.*Candidates: distilbert") as e:
        modeldiff.diff(base, head, align="bert")
    assert "distilbert" in e.value.candidates


def test_structural_alignment_without_metadata():
    inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    outer = nn.Module()
    outer.backbone = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    outer.head = nn.Linear(2, 1)
    d = modeldiff.diff(inner, outer)
    assert (d.alignment.how, d.alignment.after) == ("structure", "backbone")
    assert [c.path for c in d.added] == ["head"]


def test_ignore_patterns(base_and_head):
    base, head = base_and_head
    d = modeldiff.diff(base, head, ignore=["*classifier"])
    assert [c.path for c in d.added] == ["dropout"]


def test_json_carries_everything(base_and_head):
    base, head = base_and_head
    data = json.loads(modeldiff.diff(base, head).to_json())
    assert data["alignment"] == {"before": "", "after": "distilbert", "how": "base_model_prefix"}
    assert [m["path"] for m in data["modules"]] == ["pre_classifier", "classifier", "dropout"]
    assert data["modules"][1]["after"]["attrs"][1] == ["out_features", 2]
    assert data["findings"] > 0


def test_weights_on_meta_models_are_refused(base_and_head):
    base, head = base_and_head
    with pytest.raises(NotMaterializedError, match=r"not materiali[sz]ed|meta"):
        modeldiff.diff(base, head, weights=True)
    with pytest.raises(NotMaterializedError, match="name or config"):
        modeldiff.diff("distilbert", "distilbert", weights=True)


# -- properties ------------------------------------------------------------------------------
_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(modules())
def test_diff_of_a_graph_with_itself_is_empty(module):
    g = modeldiff.walk(module)
    assert not modeldiff.diff(g, g)
    assert not modeldiff.diff(g, modeldiff.ModelGraph.from_json(g.to_json()))


def _mirror(d: GraphDiff) -> set[tuple]:
    swap = {Change.ADDED: Change.REMOVED, Change.REMOVED: Change.ADDED,
            Change.CHANGED: Change.CHANGED}
    out = set()
    for c in d.modules:
        attrs = frozenset((a.key, repr(a.after), repr(a.before)) for a in c.attrs)
        out.add((swap[c.change], c.count, attrs, len(c.tensors)))
    return out


def _plain(d: GraphDiff) -> set[tuple]:
    return {(c.change, c.count, frozenset((a.key, repr(a.before), repr(a.after))
                                          for a in c.attrs), len(c.tensors)) for c in d.modules}


@_SETTINGS
@given(modules(), modules())
def test_reverse_diff_mirrors(m1, m2):
    a, b = modeldiff.walk(m1), modeldiff.walk(m2)
    forward, backward = modeldiff.diff(a, b, align=None), modeldiff.diff(b, a, align=None)
    assert _plain(backward) == _mirror(forward)
    assert {(t.source, t.target) for t in forward.ties} == \
        {(t.source, t.target) for t in backward.ties}


@functools.cache
def _walked(model_type: str, task: str | None) -> modeldiff.ModelGraph:
    return modeldiff.walk(model_type, task=task)


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification",
                                  "masked-lm", "question-answering"])
@pytest.mark.parametrize("model_type", ["distilbert", "bert"])
def test_auto_alignment_mirrors_for_heads(task, model_type):
    base, head = _walked(model_type, None), _walked(model_type, task)
    forward, backward = modeldiff.diff(base, head), modeldiff.diff(head, base)
    assert forward.alignment.after == backward.alignment.before == model_type
    assert [c.path for c in forward.added] == [c.path for c in backward.removed]
    assert [c.path for c in forward.removed] == [c.path for c in backward.added]
    assert forward.added
    # BERT's token, MLM and QA heads are built without the pooler; DistilBERT has none.
    assert [c.path for c in forward.removed] == \
        (["pooler"] if model_type == "bert" and task != "sequence-classification" else [])


# -- command line ----------------------------------------------------------------------------
def test_cli_diff_exit_status_and_tree(capsys):
    assert main(["diff", "distilbert", "distilbert", "--task-b", "sequence-classification"]) == 1
    assert capsys.readouterr().out.strip() == CANONICAL
    assert main(["diff", "distilbert", "distilbert"]) == 0
    assert "no differences" in capsys.readouterr().out


def test_cli_diff_json_and_errors(capsys):
    assert main(["diff", "bert", "distilbert", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["findings"] > 0
    assert main(["diff", "distilbrt", "distilbert"]) == 2
    assert "did you mean 'distilbert'" in capsys.readouterr().err
    assert main(["diff", "distilbert", "distilbert", "--task-b", "masked-lm",
                 "--align", "nope"]) == 2
    assert "Candidates" in capsys.readouterr().err


def test_cli_diff_of_bert_configs_with_different_depth(tmp_path, capsys):
    for name, layers in (("a", 2), ("b", 3)):
        (tmp_path / name).mkdir()
        BertConfig(num_hidden_layers=layers, hidden_size=64, num_attention_heads=2,
                   intermediate_size=128).save_pretrained(tmp_path / name)
    # No weights in the folders: walk builds from config.json alone.
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "+ encoder.layer.2" in out
    assert "~ config num_hidden_layers 2 -> 3" in out


# -- printed models --------------------------------------------------------------------------
def test_printed_base_and_head_give_the_live_head_delta(base_and_head):
    base, head = base_and_head
    live = modeldiff.diff(base, head)
    printed = modeldiff.diff(repr(base), " ".join(repr(head).split()))  # one pasted line too
    assert [c.path for c in printed.added] == [c.path for c in live.added]
    assert str(printed).splitlines()[1:] == str(live).splitlines()[1:]
    against_live = modeldiff.diff(repr(base), head)
    assert [c.path for c in against_live.added] == ["pre_classifier", "classifier", "dropout"]
    assert against_live.not_compared == ("dtypes", "requires_grad", "buffers", "ties", "config")
    assert "(not compared: dtypes, requires_grad, buffers, ties, config" in str(against_live)


def test_printed_model_against_itself_live_has_no_differences(base_and_head):
    _, head = base_and_head
    assert not modeldiff.diff(repr(head), head)


def test_version_drift_of_an_old_distilbert_print():
    old = modeldiff.walk("tests/data/distilbert_v4_print.txt")
    d = modeldiff.diff(old, "distilbert")
    assert old.source == "printed model tests/data/distilbert_v4_print.txt"
    assert [c.label for c in d.added] == ["transformer.layer.0-5.ffn.activation (x6)"]
    from modeldiff._compat import SDPA_CLASS_NAMES_UNTIL, transformers_version

    # 4.x builds the attention class of the default (sdpa) implementation; 5.x has one class
    now = ("DistilBertSdpaAttention" if transformers_version() < SDPA_CLASS_NAMES_UNTIL
           else "DistilBertSelfAttention")
    assert d.changed == ()  # LayerNorm's unprinted bias=True is how the print was made
    assert [(c.label, [(a.key, a.before, a.after) for a in c.attrs]) for c in d.drift] == [
        ("transformer.layer.0-5.attention (x6)", [("class", "MultiHeadSelfAttention", now)])]


def test_cli_diff_of_a_printed_file(capsys):
    assert main(["diff", "tests/data/distilbert_v4_print.txt", "distilbert",
                 "--task", "sequence-classification"]) == 1
    out = capsys.readouterr().out
    assert "+ distilbert.transformer.layer.0-5.ffn.activation (x6)" in out
    assert "(not compared: dtypes" in out


def test_printed_base_and_head_give_the_same_head_delta(base_and_head):
    base, head = base_and_head
    live = modeldiff.head_delta(base, head)
    printed = modeldiff.head_delta(repr(base), " ".join(repr(head).split()))
    assert (printed.prefix, printed.modules, printed.new_parameters, printed.dropped) == \
        (live.prefix, live.modules, live.new_parameters, live.dropped)


def test_a_task_for_each_side(capsys):
    d = modeldiff.diff("distilbert", "distilbert", task=(None, "sequence-classification"))
    assert str(d) == CANONICAL
    # The command line passes --task-a/--task-b through the same pair, weights or not.
    assert main(["diff", "distilbert", "distilbert", "--task-a", "sequence-classification"]) == 1
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]] == \
        ["pre_classifier", "classifier", "dropout"]
