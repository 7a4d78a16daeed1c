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
    folder = sample.path / "__model_snapshots__" / "test_snap"

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


# -- snapshot files: names, xdist, unused ones, tolerances, corrupt files ----------------------
PLAIN = """
import os
from torch import nn

def net(head=False, p=0.1):
    m = nn.Sequential()
    m.add_module("body", nn.Linear(4, 4))
    m.add_module("drop", nn.Dropout(float(os.environ.get("P", p))))
    if head:
        m.add_module("classifier", nn.Linear(4, int(os.environ.get("N_LABELS", "2"))))
    return m
"""


@pytest.fixture
def plain(pytester):
    pytester.makepyfile(plainmodels=PLAIN)
    return pytester


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_snapshots_under_xdist_summary_and_update(plain, monkeypatch):
    plain.makepyfile(test_x="""
        import pytest
        from plainmodels import net

        @pytest.mark.parametrize("i", range(4))
        def test_model(model_snapshot, i):
            model_snapshot.assert_match(net(head=i % 2 == 1))
    """)
    folder = plain.path / "__model_snapshots__" / "test_x"
    result = plain.runpytest_subprocess("-n", "2", "--modeldiff-update", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    # One summary, on the controller, counting what both workers wrote.
    result.stdout.fnmatch_lines(["*2 workers*", "4 model snapshot(s) written or updated:"])
    assert _files(folder) == [f"test_model[{i}].json" for i in range(4)]
    monkeypatch.setenv("N_LABELS", "3")
    result = plain.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["E       ~ classifier  Linear  out_features 2 -> 3*"])
    result = plain.runpytest_subprocess("-n", "2", "--modeldiff-update", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["2 model snapshot(s) written or updated:"])
    assert _files(folder) == [f"test_model[{i}].json" for i in range(4)]


def test_ids_that_differ_only_in_unsafe_characters_get_their_own_files(plain):
    plain.makepyfile(test_ids="""
        import pytest
        from plainmodels import net

        @pytest.mark.parametrize("name", ["a/b", "a_b", "a b", "a:b"])
        def test_model(model_snapshot, name):
            model_snapshot.assert_match(net(head=name == "a_b"))
    """)
    plain.runpytest("--modeldiff-update").assert_outcomes(passed=4)
    names = _files(plain.path / "__model_snapshots__" / "test_ids")
    assert len(names) == 4, names
    assert "test_model[a_b].json" in names  # a safe id keeps its plain name
    # each test compares with its own file: only a_b has the head, and all four pass
    plain.runpytest().assert_outcomes(passed=4)


UNUSED = """
    import pytest
    from plainmodels import net

    def test_a(model_snapshot):
        model_snapshot.assert_match(net())

    @pytest.mark.slow
    def test_b(model_snapshot):
        model_snapshot.assert_match(net(head=True))
"""


def test_unused_snapshots_reported_and_removed_only_when_the_whole_file_ran(plain):
    plain.makeini("[pytest]\nmarkers =\n    slow: slow")
    plain.makepyfile(test_u=UNUSED)
    folder = plain.path / "__model_snapshots__" / "test_u"
    plain.runpytest("--modeldiff-update").assert_outcomes(passed=2)
    stale = folder / "test_gone.json"
    stale.write_text((folder / "test_a.json").read_text())

    # The whole file ran: the stale snapshot is reported, not removed without the flag.
    result = plain.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["1 model snapshot(s) unused (--modeldiff-update removes them):",
                                 f"  {stale}"])
    assert stale.exists()

    # Part of the file: -k, -m, a file::test selection, or a skip. Nothing reported or removed,
    # not even test_b's snapshot, which this run did not use.
    partial_runs = [("-k", "test_a"), ("-m", "not slow"), ("test_u.py::test_a",),
                    ("-k", "test_a or test_b", "--deselect", "test_u.py::test_b")]
    for args in partial_runs:
        result = plain.runpytest(*args, "--modeldiff-update")
        assert "snapshot(s) unused" not in result.stdout.str(), args
        assert "snapshot(s) removed" not in result.stdout.str(), args
        assert _files(folder) == ["test_a.json", "test_b.json", "test_gone.json"], args
    plain.makeconftest("""
        import pytest
        def pytest_collection_modifyitems(config, items):
            for item in items:
                if item.name == "test_b":
                    item.add_marker(pytest.mark.skip(reason="not here"))
    """)
    result = plain.runpytest("--modeldiff-update")
    result.assert_outcomes(passed=1, skipped=1)
    assert "snapshot(s) unused" not in result.stdout.str()
    assert _files(folder) == ["test_a.json", "test_b.json", "test_gone.json"]
    (plain.path / "conftest.py").unlink()

    # The whole file with --modeldiff-update: removed and listed.
    result = plain.runpytest("--modeldiff-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["1 model snapshot(s) removed:", f"  {stale}"])
    assert _files(folder) == ["test_a.json", "test_b.json"]


def test_unused_snapshots_under_xdist(plain):
    plain.makepyfile(test_u=UNUSED.replace("@pytest.mark.slow", ""))
    folder = plain.path / "__model_snapshots__" / "test_u"
    plain.runpytest("--modeldiff-update").assert_outcomes(passed=2)
    (folder / "test_gone.json").write_text((folder / "test_a.json").read_text())
    # each worker runs one test; only the controller, which saw both, may call a file unused
    result = plain.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-k", "test_a")
    assert "snapshot(s) unused" not in result.stdout.str()
    result = plain.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--modeldiff-update")
    result.stdout.fnmatch_lines(["1 model snapshot(s) removed:"])
    assert _files(folder) == ["test_a.json", "test_b.json"]


def test_tolerance_on_a_numeric_field(plain, monkeypatch):
    plain.makepyfile(test_tol="""
        from plainmodels import net

        def test_with_tolerance(model_snapshot):
            model_snapshot.assert_match(net(), tolerances={"p": {"atol": 0.01}})

        def test_exact(model_snapshot):
            model_snapshot.assert_match(net())
    """)
    plain.runpytest("--modeldiff-update").assert_outcomes(passed=2)
    monkeypatch.setenv("P", "0.105")
    result = plain.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_exact*", "E       ~ drop  Dropout  p 0.1 -> 0.105"])
    monkeypatch.setenv("P", "0.2")  # beyond atol: the message names the tolerance
    result = plain.runpytest("-k", "with_tolerance")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E       AssertionError: model snapshot * does not match "
                                 "(tolerances {'p': {'atol': 0.01}}) (snapshot -> current):"])


def test_corrupt_snapshot_is_a_typed_error_and_update_repairs_it(plain):
    plain.makepyfile(test_c="""
        from plainmodels import net

        def test_model(model_snapshot):
            model_snapshot.assert_match(net())
    """)
    path = plain.path / "__model_snapshots__" / "test_c" / "test_model.json"
    path.parent.mkdir(parents=True)
    for garbage, says in ((b'{"schema": "modeldiff._core.graph", "nodes": [', "is not readable"),
                          (b"\xff\xfe{}", "is not UTF-8 text"),
                          (b'{"schema": "other"}', "is not readable")):
        path.write_bytes(garbage)
        result = plain.runpytest()
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"E *modeldiff.errors.SchemaError: model snapshot {path} "
                                     f"{says}*--modeldiff-update*"])
        result = plain.runpytest("--modeldiff-update")
        result.assert_outcomes(passed=1)
        plain.runpytest().assert_outcomes(passed=1)


def test_oversized_snapshot_is_a_typed_error(tmp_path, monkeypatch):
    from torch import nn

    from modeldiff import testing
    from modeldiff.errors import SchemaError

    testing.ModelSnapshot(tmp_path, "test_big", update=True).assert_match(nn.Linear(2, 2))
    monkeypatch.setattr(testing, "MAX_SNAPSHOT_BYTES", 100)
    with pytest.raises(SchemaError, match=r"test_big.json is \d[\d,]* bytes, more than the 100"):
        testing.ModelSnapshot(tmp_path, "test_big").assert_match(nn.Linear(2, 2))
    testing.ModelSnapshot(tmp_path, "test_big", update=True).assert_match(nn.Linear(2, 2))


# -- syrupy ------------------------------------------------------------------------------------
def test_syrupy_extension_stores_a_readable_graph_and_shows_the_modeldiff_diff(plain,
                                                                                 monkeypatch):
    pytest.importorskip("syrupy")  # pinned in constraints and the test extra: always there in CI
    plain.makepyfile(test_s="""
        import modeldiff
        from modeldiff.syrupy import ModelGraphExtension
        from plainmodels import net

        def test_fixture(model_graph_snapshot):
            assert modeldiff.walk(net(head=True)) == model_graph_snapshot

        def test_extension(snapshot):
            assert net(head=True) == snapshot.use_extension(ModelGraphExtension)

        def test_side_by_side(model_snapshot):
            model_snapshot.assert_match(net())
    """)
    result = plain.runpytest("--snapshot-update", "--modeldiff-update")
    result.assert_outcomes(passed=3)
    syr = plain.path / "__snapshots__" / "test_s"
    assert _files(syr) == ["test_extension.modelgraph.json", "test_fixture.modelgraph.json"]
    text = (syr / "test_fixture.modelgraph.json").read_text()
    assert '"cls": "Linear"' in text  # readable JSON
    assert '"source": ""' in text  # nothing host-specific
    # Both tools together: neither calls the other's files unused.
    result = plain.runpytest()
    result.assert_outcomes(passed=3)
    assert "snapshot(s) unused" not in result.stdout.str()  # modeldiff's
    assert "snapshots unused" not in result.stdout.str()  # syrupy's
    monkeypatch.setenv("N_LABELS", "3")
    result = plain.runpytest("-vv")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*~ classifier  Linear  out_features 2 -> 3; weight shape "
                                 "(2, 4) -> (3, 4); bias shape (2,) -> (3,)*"])
    assert (syr / "test_fixture.modelgraph.json").read_text() == text


def test_a_failing_test_keeps_every_snapshot(plain, monkeypatch):
    plain.makepyfile(test_f="""
        import os
        from plainmodels import net

        def test_a(model_snapshot):
            assert not os.environ.get("BREAK_A")  # fails before its snapshot assertion
            model_snapshot.assert_match(net())
    """)
    folder = plain.path / "__model_snapshots__" / "test_f"
    plain.runpytest("--modeldiff-update").assert_outcomes(passed=1)
    monkeypatch.setenv("BREAK_A", "1")
    result = plain.runpytest("--modeldiff-update")
    result.assert_outcomes(failed=1)
    assert "snapshot(s) unused" not in result.stdout.str()
    assert "snapshot(s) removed" not in result.stdout.str()
    assert _files(folder) == ["test_a.json"]
