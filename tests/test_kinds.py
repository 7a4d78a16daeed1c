"""The kind registry: built-in kinds, name guesses, and plugins through the entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from modeldiff._core.graph import Kind
from modeldiff.kinds import lookup, parse_attrs


@pytest.mark.parametrize(("name", "children", "kind"), [
    ("Linear", False, Kind.LINEAR),
    ("DistilBertSelfAttention", True, Kind.ATTENTION),
    ("LlamaRMSNorm", False, Kind.NORM),
    ("BertEmbeddings", True, Kind.BLOCK),  # a block of embeddings, not a lookup table
    ("LlamaRotaryEmbedding", False, Kind.OTHER),  # computes positions, holds no table
    ("GELUActivation", False, Kind.ACTIVATION),
    ("CrossEntropyLoss", False, Kind.LOSS),
    ("TransformerBlock", True, Kind.BLOCK),
    ("Mystery", False, Kind.OTHER),
])
def test_kinds(name, children, kind):
    assert lookup(name, has_children=children).kind == kind


def test_attribute_values_are_typed():
    attrs = dict(parse_attrs(lookup("LayerNorm"), "(768,), eps=1e-12, elementwise_affine=True"))
    assert attrs == {"normalized_shape": (768,), "eps": 1e-12, "elementwise_affine": True}
    odd = dict(parse_attrs(lookup("X"), "mode='a,b', fn=<lambda>, sizes=[1, 2]"))
    assert odd == {"mode": "a,b", "fn": "<lambda>", "sizes": (1, 2)}


def test_a_plugin_registers_kinds_through_the_entry_point(tmp_path):
    """A real installed distribution (a dist-info with entry_points.txt on sys.path) that
    declares `modeldiff.kinds`; walk classifies its class as the plugin says."""
    site = tmp_path / "site"
    (site / "acme_kinds").mkdir(parents=True)
    (site / "acme_kinds" / "__init__.py").write_text(textwrap.dedent('''
        def register(registry):
            registry.register("GatedThing", "linear", positional=("width",))
    '''))
    info = site / "acme_kinds-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-kinds\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[modeldiff.kinds]\nacme = acme_kinds:register\n")
    code = textwrap.dedent('''
        import torch.nn as nn, modeldiff
        class GatedThing(nn.Module):
            def extra_repr(self):
                return "64, gate=True"
        root = nn.Module()
        root.g = GatedThing()
        node = modeldiff.walk(root)["g"]
        print(node.kind, dict(node.attrs))
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.getcwd()])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    assert out == "linear {'width': 64, 'gate': True}"


def test_a_broken_plugin_does_not_break_walking(tmp_path):
    site = tmp_path / "site"
    info = site / "broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[modeldiff.kinds]\nbad = no_such_module:register\n")
    code = "import torch.nn as nn, modeldiff; print(modeldiff.walk(nn.Linear(2, 2)).root.kind)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.getcwd()])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "linear"
    assert "plugin 'bad' failed to load" in proc.stderr


def test_registering_a_kind_after_a_walk_applies_to_the_next_walk():
    from torch import nn

    import modeldiff
    from modeldiff.kinds import registry

    class RegisteredLateMixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

    model = nn.Sequential(RegisteredLateMixer())
    assert modeldiff.walk(model)["0"].kind == Kind.BLOCK  # guessed from the name
    registry.register("RegisteredLateMixer", Kind.ATTENTION)
    assert modeldiff.walk(model)["0"].kind == Kind.ATTENTION  # the walker's cache was dropped
    assert lookup("RegisteredLateMixer", has_children=True).kind == Kind.ATTENTION
