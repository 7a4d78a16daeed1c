"""ModelGraph: lossless JSON, equality, the networkx view, lookups."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings

import modeldiff
from modeldiff._core.graph import ModelGraph
from modeldiff.errors import SchemaError
from modeldiff.strategies import graphs, modules
from tests.models import Shared, Tied

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(modules())
def test_json_round_trip_of_walked_modules_is_the_identity(module):
    g = modeldiff.walk(module)
    back = ModelGraph.from_json(g.to_json())
    assert back == g
    assert back.to_json() == g.to_json()  # and byte-identical when written again
    assert back.nodes == g.nodes
    assert back.repeats == g.repeats
    assert back.ties == g.ties


@_SETTINGS
@given(modules())
def test_walk_is_deterministic_and_counts_like_torch(module):
    g = modeldiff.walk(module)
    assert modeldiff.walk(module).to_json() == g.to_json()
    assert g.totals.params == sum(p.numel() for p in module.parameters())
    assert set(g.state_dict_keys()) == set(module.state_dict())
    assert [n.path for n in g] == [p for p, _ in module.named_modules()]


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_json_round_trip_of_arbitrary_graphs(g):
    assert ModelGraph.from_json(g.to_json()) == g


def test_tuple_attributes_survive_json():
    g = modeldiff.walk("distilbert")
    ln = ModelGraph.from_json(g.to_json())["embeddings.LayerNorm"]
    assert ln.attributes["normalized_shape"] == (768,)
    assert isinstance(ln.attributes["normalized_shape"], tuple)


def test_networkx_view():
    g = modeldiff.walk(Tied())
    view = g.nx
    assert isinstance(view, nx.DiGraph)
    assert nx.is_frozen(view)
    assert list(view.successors("")) == ["embed", "body", "decoder"]
    assert [view.edges["", c]["order"] for c in view.successors("")] == [0, 1, 2]
    assert view.edges["", "body"]["names"] == ("body",)
    assert view.nodes["body"]["node"] is g["body"]
    assert view.nodes["body"]["kind"] == "linear"
    assert view.edges["decoder", "embed"] == {
        "kind": "tied", "tensors": (("decoder.weight", "embed.weight"),)}
    tree = nx.subgraph_view(view, filter_edge=lambda u, v: view.edges[u, v]["kind"] == "contains")
    assert nx.is_tree(tree.to_undirected(as_view=True))
    with pytest.raises(nx.NetworkXError):
        view.add_node("x")


def test_shared_module_makes_a_dag_not_a_tree():
    view = modeldiff.walk(Shared()).nx
    # The root holds one module under two names: one edge that keeps both names.
    assert list(view.predecessors("first")) == [""]
    assert view.edges["", "first"]["name"] == "first"
    assert view.edges["", "first"]["names"] == ("first", "second")
    assert "second" not in view  # an alias, not a node


def test_lookup_errors_name_the_path():
    g = modeldiff.walk(Tied())
    with pytest.raises(KeyError, match="no module at path 'nope'"):
        g["nope"]
    assert "body" in g
    assert "nope" not in g
    assert repr(g) == "<ModelGraph Tied: 4 modules, 64 params>"


def test_schema_errors():
    with pytest.raises(SchemaError, match="not valid JSON"):
        ModelGraph.from_json("{nope")
    with pytest.raises(SchemaError, match="not a modeldiff graph"):
        ModelGraph.from_json("[]")
    data = json.loads(modeldiff.walk(Tied()).to_json())
    data["version"] = 99
    with pytest.raises(SchemaError, match="version 99 is not supported"):
        ModelGraph.from_json(json.dumps(data))
    del data["nodes"]
    data["version"] = 1
    with pytest.raises(SchemaError, match="malformed"):
        ModelGraph.from_json(json.dumps(data))
