"""The pytest plugin end to end: sample test modules run against the installed plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Inline pytester runs restore sys.modules afterwards, dropping what they imported; a second
# import of torch's or transformers' extension modules then crashes the interpreter. So what
# the sample tests use is imported here, once, in this process.
import pytest
import transformers.models.auto.modeling_auto
import transformers.models.distilbert.modeling_distilbert  # noqa: F401

pytest_plugins = ["pytester"]

MODELS = """
import os
from torch import nn
import modeldiff
from modeldiff._tiny import tiny_config

def net(head=False):
    m = nn.Sequential()
    m.add_module("body", nn.Linear(4, 4))
    m.add_module("act", nn.ReLU())
    if head:
        m.add_module("classifier", nn.Linear(4, int(os.environ.get("N_LABELS", "2"))))
    return m

def tiny_head():
    from transformers import DistilBertForSequenceClassification
    import torch
    with torch.device("meta"):
        return DistilBertForSequenceClassification(tiny_config("distilbert"))
"""


@pytest.fixture
def sample(pytester):
    pytester.makepyfile(models=MODELS)
    return pytester


def test_loading_the_plugin_imports_neither_torch_nor_transformers(pytester):
    code = ("import modeldiff.pytest_plugin, sys; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    # And in a real pytest process, with the plugin loaded from its entry point.
    pytester.makeconftest("""
        import sys
        def pytest_collection_modifyitems(config, items):
            assert config.pluginmanager.has_plugin("modeldiff")
            loaded = sorted(m for m in ("torch", "transformers") if m in sys.modules)
            assert not loaded, loaded
    """)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_options_are_in_the_modeldiff_group(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "modeldiff: model structure assertions:" in out
    assert "--modeldiff-update" in out.split("modeldiff: model structure assertions:")[1]


def test_graph_equality_failure_shows_the_diff_tree(sample):
    sample.makepyfile(test_eq="""
        import modeldiff
        from models import net

        def test_same():
            assert modeldiff.walk(net()) == modeldiff.walk(net())

        def test_refactor_added_a_head():
            assert modeldiff.walk(net()) == modeldiff.walk(net(head=True))

        def test_foreign_types_keep_pytest_output():
            assert [1, 2] == [1, 3]
    """)
    result = sample.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "E       assert ModelGraph == ModelGraph failed: the structures differ",
        "E         Sequential -> Sequential  (path to path)",
        "E         + classifier  Linear(in_features=4, out_features=2)  10 params",
    ])
    out = result.stdout.str()
    assert "nodes=(" not in out  # no dataclass repr of the graph
    result.stdout.fnmatch_lines(["E         At index 1 diff: 2 != 3"])


def test_diff_and_head_delta_equality_failures_are_readable(sample):
    sample.makepyfile(test_eq="""
        import modeldiff
        from models import net, tiny_head

        def test_diffs():
            assert modeldiff.diff(net(), net(head=True)) == modeldiff.diff(net(), net())

        def test_head_deltas():
            base = modeldiff.walk("distilbert")
            expected = modeldiff.head_delta(base, modeldiff.walk("distilbert", task="masked-lm"))
            assert modeldiff.head_delta(base, modeldiff.walk("distilbert",
                                        task="sequence-classification")) == expected
    """)
    result = sample.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "E       assert GraphDiff == GraphDiff failed (- left, + right):",
        "E         -+ classifier  Linear(in_features=4, out_features=2)  10 params",
        "E         +no differences",
    ])
    result.stdout.fnmatch_lines([
        "E       *assert HeadDelta == HeadDelta failed (- left only, + right only):",
        "E         modules: -pre_classifier -classifier -dropout +activation +vocab_transform "
        "+vocab_layer_norm +vocab_projector +mlm_loss_fct",
    ])


SNAPSHOT_TEST = """
    import pytest
    from models import net, tiny_head

    def test_model(model_snapshot):
        model_snapshot.assert_match(net(head=True))
        model_snapshot.assert_match(tiny_head())

    @pytest.mark.parametrize("head", [False, True])
    def test_param(model_snapshot, head):
        model_snapshot.assert_match(net(head=head))
"""


def test_snapshot_lifecycle(sample, monkeypatch):
    sample.makepyfile(test_snap=SNAPSHOT_TEST)
    folder = sample.path / "__snapshots__" / "test_snap"

    # 1. No snapshot yet: the failure says exactly how to create it.
    result = sample.runpytest("-k", "test_model")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"E       AssertionError: no model snapshot at {folder / 'test_model.json'}",
        "E       To create it, run: pytest test_snap.py::test_model --modeldiff-update",
    ])
    assert not folder.exists()

    # 2. --modeldiff-update writes them (one file per assert_match, syrupy's names) and passes.
    result = sample.runpytest("--modeldiff-update")
    result.assert_outcomes(passed=3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "test_model.1.json", "test_model.json", "test_param[False].json", "test_param[True].json"]
    result.stdout.fnmatch_lines(["4 model snapshot(s) written or updated:"])
    text = (folder / "test_model.1.json").read_text()
    data = json.loads(text)
    assert data["nodes"][0]["cls"] == "DistilBertForSequenceClassification"
    # Nothing host- or version-specific: the file is the same on every machine.
    assert data["source"] == ""
    assert '"device"' not in text
    assert "transformers_version" not in data["hf"]["config"]
    assert data["hf"]["config"]["dim"] == 32

    # 3. The next run accepts them and writes nothing.
    result = sample.runpytest()
    result.assert_outcomes(passed=3)
    assert "written or updated" not in result.stdout.str()
    assert (folder / "test_model.1.json").read_text() == text

    # 4. The model changes: the failure shows the structural diff, snapshot -> current.
    monkeypatch.setenv("N_LABELS", "3")
    result = sample.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        f"E       AssertionError: model snapshot {folder / 'test_model.json'} does not match "
        "(snapshot -> current):",
        "E       Sequential -> Sequential  (path to path)",
        "E       ~ classifier  Linear  out_features 2 -> 3; weight shape (2, 4) -> (3, 4); "
        "bias shape (2,) -> (3,)",
        "E       To accept the current model, run: pytest test_snap.py::test_model "
        "--modeldiff-update",
    ])
    result.stdout.fnmatch_lines(["E       To accept the current model, run: pytest "
                                 "'test_snap.py::test_param[True]' --modeldiff-update"])

    # 5. Updating accepts the change.
    assert sample.runpytest("--modeldiff-update").ret == 0
    sample.runpytest().assert_outcomes(passed=3)


def test_snapshot_added_module_shows_plus_line(sample):
    sample.makepyfile(test_snap="""
        import os
        from models import net

        def test_model(model_snapshot):
            model_snapshot.assert_match(net(head=bool(os.environ.get("HEAD"))))
    """)
    assert sample.runpytest("--modeldiff-update").ret == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEAD", "1")
        result = sample.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E       + classifier  Linear(in_features=4, out_features=2)  "
                                 "10 params"])


def test_helpers_hide_their_frames(sample):
    sample.makepyfile(test_helpers=textwrap.dedent("""
        from modeldiff.testing import assert_same_structure
        from models import net

        def test_structure():
            assert_same_structure(net(), net(head=True))
    """))
    result = sample.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["E       AssertionError: Sequential -> Sequential  (path to path)",
                                 "E       + classifier*"])
    assert "modeldiff/testing.py" not in out  # the traceback ends in the user's test
