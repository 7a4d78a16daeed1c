"""Properties over generated models: configs() builds real transformers models that walk and
diff as their configs say; walk, diff and render never fail on any generated module tree.

(JSON round-trip and walk determinism on modules() live in test_graph.py, diff(g, g) and the
mirror property in test_diff.py.)
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModel, AutoModelForSequenceClassification

import modeldiff
from modeldiff._core.graph import Kind, ModelGraph
from modeldiff.strategies import configs, graphs, modules

MODEL_TYPES = ["distilbert", "bert", "roberta", "gpt2", "llama", "t5"]

_FAST = settings(max_examples=4, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _layers(cfg) -> int:
    for name in ("num_hidden_layers", "n_layers", "n_layer", "num_layers"):
        if isinstance(getattr(cfg, name, None), int):
            return getattr(cfg, name)
    raise AssertionError(type(cfg).__name__)


@functools.cache
def _strategy(model_type: str):
    return configs(model_type)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_configs_build_models_that_walk_and_diff_as_configured(model_type):
    @_FAST
    @given(_strategy(model_type))
    def check(cfg):
        with torch.device("meta"):  # structure only: no weights, no init cost
            base = AutoModel.from_config(cfg)
            head = AutoModelForSequenceClassification.from_config(cfg)
        gb, gh = modeldiff.walk(base), modeldiff.walk(head)
        # walk counts like torch, and names the repeated layers the config asked for.
        # (parameters() lists a tied weight once, as walk counts it.)
        assert gh.totals.params == sum(p.numel() for p in head.parameters())
        stacks = [n.path for n in gb.nodes if n.kind == Kind.CONTAINER
                  and len(gb.children(n.path)) == _layers(cfg)]
        assert stacks, f"no layer stack of {_layers(cfg)} in {gb.root.cls}"
        # The head sits on the base: diff aligns it and adds a labels-sized output.
        d = modeldiff.diff(gb, gh)
        assert d.alignment.how in ("base_model_prefix", "identity")
        assert d.added
        out = [n for n in gh.nodes if n.attributes.get("out_features") == cfg.num_labels]
        assert out, [n.path for n in gh.nodes]
        # The config's walk (meta, by auto class) is the module's walk.
        assert not modeldiff.diff(modeldiff.walk(cfg, task="sequence-classification"), gh)
        assert ModelGraph.from_json(gh.to_json()) == gh

    check()


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_config_changes_show_as_config_and_module_changes(model_type):
    @_FAST
    @given(_strategy(model_type), _strategy(model_type))
    def check(c1, c2):
        g1 = modeldiff.walk(c1, task="sequence-classification")
        g2 = modeldiff.walk(c2, task="sequence-classification")
        d = modeldiff.diff(g1, g2)
        changed_keys = {k for k in ("num_hidden_layers", "hidden_size", "vocab_size")
                        if getattr(c1, k) != getattr(c2, k)}
        assert changed_keys <= {c.key for c in d.config}
        assert bool(d) == (g1 != g2)
        if changed_keys:
            assert d.modules

    check()


_TREES = settings(max_examples=40, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_TREES
@given(modules(), modules(), st.sampled_from(["auto", None]))
def test_walk_diff_render_never_fail_on_generated_trees(m1, m2, align):
    a, b = modeldiff.walk(m1), modeldiff.walk(m2)
    d = modeldiff.diff(a, b, align=align)
    assert str(d).splitlines()[0].startswith(f"{a.root.cls} -> {b.root.cls}")
    for obj in (a, b, d):
        source = modeldiff.render(obj).source
        assert source.startswith("digraph")
        assert modeldiff.render(obj).source == source  # deterministic
    assert modeldiff.render(a, depth=1).source


@settings(max_examples=60, deadline=None)
@given(graphs(), graphs())
def test_diff_and_render_never_fail_on_generated_graphs(a, b):
    d = modeldiff.diff(a, b, align=None)
    back = modeldiff.diff(b, a, align=None)
    assert len(d.added) == len(back.removed)
    assert len(d.removed) == len(back.added)
    assert modeldiff.render(d).source == modeldiff.render(d).source
    assert modeldiff.render(a).source == modeldiff.render(a).source
