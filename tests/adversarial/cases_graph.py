"""Graph JSON, hand-edited or corrupt: a SchemaError naming what is wrong, or the graph."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from tests.adversarial.cases import add, raises


def _valid() -> dict[str, Any]:
    from modeldiff import parse_repr

    g = parse_repr("Net(\n  (emb): Embedding(10, 4)\n  (layers): ModuleList(\n"
                   "    (0-1): 2 x Linear(in_features=4, out_features=4, bias=True)\n  )\n"
                   "  (head): Linear(in_features=4, out_features=2, bias=False)\n)")
    return json.loads(g.to_json())


def _bad(name: str, edit: Callable[[dict[str, Any]], Any], match: str | None = None) -> None:
    def run() -> None:
        from modeldiff import ModelGraph
        from modeldiff.errors import SchemaError

        d = _valid()
        replaced = edit(d)
        doc = d if replaced is None else replaced
        text = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
        raises(SchemaError, ModelGraph.from_json, text, match=match)
    add("light", f"graph-json-{name}", run)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        *head, last = path.split("/")
        target: Any = d
        for k in head:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return edit


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        *head, last = path.split("/")
        target: Any = d
        for k in head:
            target = target[int(k)] if isinstance(target, list) else target[k]
        del target[int(last) if isinstance(target, list) else last]
    return edit


# -- document level ----------------------------------------------------------------------------
_bad("not-json", lambda d: "{nodes: [}", "not valid JSON")
_bad("not-utf8", lambda d: b'{"schema": "\xff"}', "UTF-8")
_bad("depth-bomb", lambda d: "[" * 100_000 + "]" * 100_000, "nested deeper")
_bad("depth-65", lambda d: '{"a":' * 65 + "1" + "}" * 65, "nested deeper")
_bad("array", lambda d: [d], "not a modeldiff graph")
_bad("null", lambda d: "null", "not a modeldiff graph")
_bad("no-schema", _delete("schema"), "not a modeldiff graph")
_bad("other-schema", _set("schema", "modeldiff.diff"), "not a modeldiff graph")
_bad("version-2", _set("version", 2), "version")
_bad("version-0", _set("version", 0), "version")
_bad("version-true", _set("version", True), "version")
_bad("version-string", _set("version", "1"), "version")
_bad("version-float", _set("version", 1.0), "version")
_bad("version-missing", _delete("version"), "version")
_bad("source-not-string", _set("source", 3), "source")
# -- nodes -------------------------------------------------------------------------------------
_bad("nodes-missing", _delete("nodes"), "nodes")
_bad("nodes-empty", _set("nodes", []), "nodes")
_bad("nodes-object", _set("nodes", {}), "nodes")
_bad("node-not-object", _set("nodes/1", "emb"), r"nodes\[1\]")
_bad("root-not-first", lambda d: d["nodes"].reverse(), "root")
_bad("no-root", _set("nodes/0/path", "x"), "root")
_bad("two-roots", _set("nodes/1/path", ""), "already taken")
_bad("duplicate-path", _set("nodes/2/path", "emb"), "already taken")
_bad("alias-collides", _set("nodes/1/aliases", ["head"]), "already taken")
_bad("path-number", _set("nodes/1/path", 1), r"nodes\[1\]\.path")
_bad("cls-missing", _delete("nodes/1/cls"), r"nodes\[1\]\.cls")
_bad("cls-null", _set("nodes/1/cls", None), r"nodes\[1\]\.cls")
_bad("qualname-list", _set("nodes/1/qualname", ["a"]), "qualname")
_bad("kind-unknown", _set("nodes/1/kind", "quantum"), "kind")
_bad("kind-missing", _delete("nodes/1/kind"), "kind")
_bad("attrs-object", _set("nodes/1/attrs", {"a": 1}), "attrs")
_bad("attr-not-pair", _set("nodes/1/attrs/0", ["num_embeddings"]), "pair")
_bad("attr-key-number", _set("nodes/1/attrs/0", [1, 2]), "attrs")
_bad("attr-value-object", _set("nodes/1/attrs/0", ["k", {"x": 1}]), "attrs")
_bad("totals-negative", _set("nodes/0/totals", [-1, 0, 0, 0]), "totals")
_bad("totals-float", _set("nodes/0/totals", [1.5, 0, 0, 0]), "totals")
_bad("totals-three", _set("nodes/0/totals", [1, 0, 0]), "totals")
_bad("totals-string", _set("nodes/0/totals", "1,0,0,0"), "totals")
_bad("totals-bool", _set("nodes/0/totals", [True, 0, 0, 0]), "totals")
_bad("trainable-over-params", _set("nodes/0/totals", [1, 2, 0, 0]), "trainable")
_bad("tensors-object", _set("nodes/1/tensors", {"weight": 1}), "tensors")
_bad("tensor-shape-negative", _set("nodes/1/tensors/0/shape", [-1, 4]), "shape")
_bad("tensor-shape-float", _set("nodes/1/tensors/0/shape", [10.0, 4]), "shape")
_bad("tensor-shape-string", _set("nodes/1/tensors/0/shape", "10x4"), "shape")
_bad("tensor-name-missing", _delete("nodes/1/tensors/0/name"), "name")
_bad("tensor-dtype-number", _set("nodes/1/tensors/0/dtype", 32), "dtype")
_bad("tensor-buffer-string", _set("nodes/1/tensors/0/buffer", "yes"), "buffer")
_bad("tensor-tied-number", _set("nodes/1/tensors/0/tied_to", 3), "tied_to")
# -- edges and the rest ----------------------------------------------------------------------
_bad("edge-to-missing-node", _set("contains/0", ["", "ghost", "ghost"]), "ghost")
_bad("edge-from-missing-node", _set("contains/0", ["ghost", "emb", "emb"]), "ghost")
_bad("edge-two-strings", _set("contains/0", ["", "emb"]), "contains")
_bad("edge-numbers", _set("contains/0", [0, 1, 2]), "contains")
_bad("orphan-node", _delete("contains/0"), "no parent")
_bad("edge-into-root", lambda d: d["contains"].append(["emb", "up", ""]), "cycle")
_bad("edge-to-ancestor", lambda d: d["contains"].append(["layers.0", "up", "layers"]), "cycle")
_bad("contains-object", _set("contains", {}), "contains")
_bad("ties-bad", _set("ties", [["a"]]), "ties")
_bad("repeat-missing-path", _set("repeats/0/paths", ["layers.0", "layers.9"]), "repeats")
_bad("repeat-one-path", _set("repeats/0/paths", ["layers.0"]), "repeats")
_bad("repeat-not-object", _set("repeats/0", "layers.0-1"), "repeats")
_bad("hf-list", _set("hf", []), "hf")
_bad("hf-missing-field", _set("hf", {"model_type": "x"}), "hf")


def _size_limit() -> None:
    import modeldiff.limits as limits
    from modeldiff import ModelGraph
    from modeldiff.errors import SchemaError

    text = json.dumps(_valid())
    with limits.raised(MAX_JSON_BYTES=100):
        raises(SchemaError, ModelGraph.from_json, text, match="MAX_JSON_BYTES")


add("light", "graph-json-over-MAX_JSON_BYTES", _size_limit)


def _round_trip() -> None:
    from modeldiff import ModelGraph

    d = _valid()
    g = ModelGraph.from_json(json.dumps(d))
    assert json.loads(g.to_json()) == d


add("light", "graph-json-valid-round-trip", _round_trip)


def _fuzz_mutations() -> None:
    """Random edits anywhere in a valid document: SchemaError, or a graph whose JSON reads
    back the same (nothing corrupt is accepted half-way)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from modeldiff import ModelGraph
    from modeldiff.errors import SchemaError

    base = _valid()
    paths: list[tuple[Any, ...]] = []

    def collect(v: Any, at: tuple[Any, ...]) -> None:
        paths.append(at)
        if isinstance(v, dict):
            for k, x in v.items():
                collect(x, (*at, k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                collect(x, (*at, i))

    collect(base, ())
    values = st.none() | st.booleans() | st.integers(-2, 2) | st.floats() | st.text(max_size=3) \
        | st.just([]) | st.just({}) | st.just(["", "x", "x"])

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(paths[1:]), values | st.just("<delete>")),
                    min_size=1, max_size=3))
    def check(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
        d = copy.deepcopy(base)
        for at, value in edits:
            target: Any = d
            try:
                for k in at[:-1]:
                    target = target[k]
                if value == "<delete>":
                    del target[at[-1]]
                else:
                    target[at[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue
        try:
            text = json.dumps(d)
        except ValueError:
            return
        try:
            g = ModelGraph.from_json(text)
        except SchemaError:
            return
        assert ModelGraph.from_json(g.to_json()) == g

    check()


add("light", "graph-json-fuzz-mutations", _fuzz_mutations)
