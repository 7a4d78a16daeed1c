"""Diagrams: DOT structure, snapshots, determinism, scale, files, missing Graphviz, CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeldiff._render import render, save
from modeldiff.errors import GraphvizNotFoundError, InvalidArgumentError

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("MODELDIFF_UPDATE_SNAPSHOTS") == "1"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")


# -- a small reader for the DOT that graphviz (the Python package) writes -------------------
def _attrs(text: str) -> dict[str, str]:
    """``a=1 b="x y" label=<<b>q</b>>`` -> dict (HTML labels kept with their brackets)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        j = text.index("=", i)
        key = text[i:j]
        i = j + 1
        if text[i] == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out[key] = text[i + 1:j].replace('\\"', '"')
            i = j + 1
        elif text[i] == "<":
            depth, j = 0, i
            while True:
                depth += {"<": 1, ">": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            out[key] = text[i:j]
            i = j
        else:
            j = i
            while j < n and text[j] not in " \t":
                j += 1
            out[key] = text[i:j]
            i = j
    return out


_ID = r'("(?:[^"\\]|\\.)*"|[^\s\[\]"{}]+)'
_NODE = re.compile(rf"^\s*{_ID} \[(.*)\]$")
_EDGE = re.compile(rf"^\s*{_ID} -> {_ID}(?: \[(.*)\])?$")
_SUB = re.compile(rf"^\s*subgraph {_ID} \{{$")


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"') if s.startswith('"') else s


def parse_dot(source: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]],
                                    list[tuple[str, str, dict[str, str]]], dict[str, str]]:
    """(boxes by id, clusters by name, edges, parent cluster of each box and cluster)."""
    boxes: dict[str, dict[str, str]] = {}
    clusters: dict[str, dict[str, str]] = {}
    edges: list[tuple[str, str, dict[str, str]]] = []
    parent: dict[str, str] = {}
    stack: list[str] = []  # open subgraphs ("" for anonymous ones)
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped in ("{",):
            stack.append("")
        elif stripped == "}":
            if stack:
                stack.pop()
        elif m := _SUB.match(line):
            name = _unquote(m.group(1))
            owner = next((s for s in reversed(stack) if s), "")
            parent[name] = owner
            clusters[name] = {}
            stack.append(name)
        elif m := _EDGE.match(line):
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _attrs(m.group(3) or "")))
        elif (m := _NODE.match(line)) and m.group(1) not in ("graph", "node", "edge"):
            ident = _unquote(m.group(1))
            boxes[ident] = _attrs(m.group(2))
            parent[ident] = next((s for s in reversed(stack) if s), "")
        elif stack and stack[-1] and "=" in stripped and not stripped.startswith("rank="):
            clusters[stack[-1]].update(_attrs(stripped))
    return boxes, clusters, edges, parent


def _text(label: str) -> str:
    """The visible text of an HTML label, lines joined by ' | '."""
    label = re.sub(r"<br[^>]*>", " | ", label[1:-1])
    label = re.sub(r"<[^>]+>", "", label)
    return label.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


def _classes(attrs: dict[str, str]) -> set[str]:
    return set(attrs.get("class", "").split())


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base():
    from modeldiff._inputs import walk

    return walk("distilbert")


@pytest.fixture(scope="module")
def head():
    from modeldiff._inputs import walk

    return walk("distilbert", task="sequence-classification")


@pytest.fixture(scope="module")
def llama70b():
    from transformers import LlamaConfig

    from modeldiff._inputs import walk

    config = LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                         num_attention_heads=64, num_key_value_heads=8, vocab_size=128256)
    return walk(config, task="causal-lm")


# -- model diagrams ----------------------------------------------------------------------------
BLOCK = "transformer.layer.0"


def test_distilbert_base_boxes_show_name_class_attributes_and_counts(base):
    boxes, clusters, _, parent = parse_dot(render(base).source)
    expected = {
        "embeddings.word_embeddings":
            "word_embeddings | Embedding · 30522 x 768 | 23,440,896 params",
        "embeddings.position_embeddings":
            "position_embeddings | Embedding · 512 x 768 | 393,216 params",
        "embeddings.LayerNorm": "LayerNorm | LayerNorm · 768, eps=1e-12 | 1,536 params",
        "embeddings.dropout": "dropout | Dropout · p=0.1",
        f"{BLOCK}.attention.q_lin": "q_lin | Linear · 768 -> 768 | 590,592 params",
        f"{BLOCK}.attention.k_lin": "k_lin | Linear · 768 -> 768 | 590,592 params",
        f"{BLOCK}.attention.v_lin": "v_lin | Linear · 768 -> 768 | 590,592 params",
        f"{BLOCK}.attention.out_lin": "out_lin | Linear · 768 -> 768 | 590,592 params",
        f"{BLOCK}.attention.dropout": "dropout | Dropout · p=0.1",
        f"{BLOCK}.sa_layer_norm": "sa_layer_norm | LayerNorm · 768, eps=1e-12 | 1,536 params",
        f"{BLOCK}.ffn.dropout": "dropout | Dropout · p=0.1",
        f"{BLOCK}.ffn.lin1": "lin1 | Linear · 768 -> 3072 | 2,362,368 params",
        f"{BLOCK}.ffn.lin2": "lin2 | Linear · 3072 -> 768 | 2,360,064 params",
        f"{BLOCK}.ffn.activation": "activation | GELUActivation",
        f"{BLOCK}.output_layer_norm":
            "output_layer_norm | LayerNorm · 768, eps=1e-12 | 1,536 params",
    }
    assert {k: _text(v["label"]) for k, v in boxes.items()} == expected
    # the six identical blocks are one cluster, nested inside transformer, inside the root
    group = clusters[f"cluster:{BLOCK}"]
    assert _text(group["label"]) == ("layer.0-5  TransformerBlock x6 | "
                                     "7,087,872 params each · 42,527,232 in all | ")
    assert "repeat" in _classes(group)
    assert parent[f"cluster:{BLOCK}"] == "cluster:transformer"
    assert parent["cluster:transformer"] == "cluster:(root)"
    assert parent[f"{BLOCK}.ffn.lin1"] == f"cluster:{BLOCK}.ffn"
    assert _text(clusters["cluster:(root)"]["label"]).startswith("DistilBertModel | 66,362,880")
    # kinds are told apart by fill
    fills = {k: boxes[f"{BLOCK}.{k}"]["fillcolor"] for k in
             ("attention.q_lin", "sa_layer_norm", "ffn.dropout", "ffn.activation")}
    assert len(set(fills.values())) == 4


def test_unfolded_draws_every_layer(base):
    boxes, clusters, _, _ = parse_dot(render(base, fold_repeats=False).source)
    leaves = [n.path for n in base if not base.children(n.path)]
    assert sorted(boxes) == sorted(leaves)
    assert len(leaves) == 4 + 6 * 11
    assert not any("repeat" in _classes(c) for c in clusters.values())


def test_depth_cuts_the_tree_and_shows_subtree_totals(head):
    boxes, clusters, _, _ = parse_dot(render(head, depth=1).source)
    assert list(boxes) == ["distilbert", "pre_classifier", "classifier", "dropout"]
    assert list(clusters) == ["cluster:(root)"]
    cut = boxes["distilbert"]
    assert _text(cut["label"]) == ("distilbert | DistilBertModel | 66,362,880 params | "
                                   "91 modules inside")
    assert "collapsed" in _classes(cut)
    boxes0, clusters0, _, _ = parse_dot(render(head, depth=0).source)
    assert list(boxes0) == ["(root)"]
    assert not clusters0
    assert "66,955,010 params" in _text(boxes0["(root)"]["label"])


def test_tied_weights_are_a_dashed_edge():
    from modeldiff._inputs import walk

    g = walk("distilbert", task="masked-lm")
    _, _, edges, _ = parse_dot(render(g).source)
    tied = [(u, v) for u, v, a in edges if a.get("style") == "dashed"]
    assert tied == [("vocab_projector", "distilbert.embeddings.word_embeddings")]


def test_same_model_gives_byte_identical_dot(head):
    from modeldiff._inputs import walk

    again = walk("distilbert", task="sequence-classification")
    assert again is not head
    assert render(again).source == render(head).source
    assert render(head, fold_repeats=False).source == render(again, fold_repeats=False).source


@pytest.mark.parametrize(("name", "task"), [("distilbert", None),
                                            ("distilbert-seqcls", "sequence-classification")])
def test_dot_snapshot(name, task):
    from modeldiff._inputs import walk

    source = render(walk("distilbert", task=task)).source
    path = SNAPSHOTS / f"{name}.dot"
    if UPDATE:
        path.write_text(source)
    assert source == path.read_text(), (
        f"{path.name} differs; if the change is intended, rerun with "
        "MODELDIFF_UPDATE_SNAPSHOTS=1 and read the new snapshot before committing it")


def test_llama_70b_folds_to_one_screen(llama70b):
    assert len(llama70b) == 1047
    boxes, clusters, _, _ = parse_dot(render(llama70b).source)
    assert len(boxes) <= 60
    assert len(boxes) == 14
    group = clusters["cluster:model.layers.0"]
    assert _text(group["label"]).startswith("layers.0-79  LlamaDecoderLayer x80 | "
                                            "855,654,400 params each · 68,452,352,000 in all")
    assert _text(boxes["lm_head"]["label"]) == ("lm_head | Linear · 8192 -> 128256 | "
                                                "1,050,673,152 params")


def test_llama_70b_unfolded_source_has_every_leaf(llama70b):
    boxes, _, _, _ = parse_dot(render(llama70b, fold_repeats=False).source)
    assert len(boxes) == 4 + 80 * 10  # embed, norm, rotary, lm_head; 4+4+2 per layer
    assert "model.layers.79.mlp.down_proj" in boxes


# -- diffs -----------------------------------------------------------------------------------
def test_head_delta_marks_exactly_the_head_modules_added(base, head):
    from modeldiff._compare import diff

    boxes, clusters, _, _ = parse_dot(render(diff(base, head)).source)
    marked = {k: c for k, a in boxes.items() for c in ("added", "removed", "changed")
              if c in _classes(a)}
    assert marked == {"pre_classifier": "added", "classifier": "added", "dropout": "added"}
    assert not any(_classes(c) & {"added", "removed", "changed"} for c in clusters.values())
    # the aligned base is drawn once, as one box with its totals
    base_box = boxes["distilbert"]
    assert "collapsed" in _classes(base_box)
    assert _text(base_box["label"]) == ("distilbert | DistilBertModel | 66,362,880 params | "
                                        "aligned base, unchanged, 91 modules inside")
    assert len(boxes) == 4
    assert _text(boxes["classifier"]["label"]) == "+ classifier | Linear · 768 -> 2 | 1,538 params"
    assert boxes["classifier"]["fillcolor"] != boxes["distilbert"]["fillcolor"]


def test_reverse_delta_marks_them_removed(base, head):
    from modeldiff._compare import diff

    boxes, _, _, _ = parse_dot(render(diff(head, base)).source)
    removed = {k for k, a in boxes.items() if "removed" in _classes(a)}
    assert removed == {"pre_classifier", "classifier", "dropout"}
    assert boxes["dropout"]["style"] == "rounded,filled,dashed"


def test_changed_modules_show_before_and_after(base):
    from transformers import DistilBertConfig

    from modeldiff._compare import diff
    from modeldiff._inputs import walk

    d = diff(base, walk(DistilBertConfig(hidden_dim=4096)))
    boxes, clusters, _, _ = parse_dot(render(d).source)
    changed = {k for k, a in boxes.items() if "changed" in _classes(a)}
    assert changed == {f"{BLOCK}.ffn.lin1", f"{BLOCK}.ffn.lin2"}
    lin1 = _text(boxes[f"{BLOCK}.ffn.lin1"]["label"])
    assert "out_features 3072 -> 4096" in lin1
    assert "params 2,362,368 -> 3,149,824" in lin1
    assert "same change in 6 places" in lin1
    # the change is the same in all six blocks, so they stay folded; untouched parts collapse
    assert "x6" in _text(clusters[f"cluster:{BLOCK}"]["label"])
    assert "collapsed" in _classes(boxes["embeddings"])
    assert "collapsed" in _classes(boxes[f"{BLOCK}.attention"])


# -- files, Graphviz, notebooks ----------------------------------------------------------------
@needs_dot
def test_save_writes_real_svg_and_png(tmp_path, head):
    svg = save(head, tmp_path / "head.svg")
    png = save(head, tmp_path / "head.png")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml")
    assert "<svg" in text
    assert ">pre_classifier<" in text
    assert ">classifier<" in text
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.png", "head.svg"]
    umask = os.umask(0)
    os.umask(umask)
    assert svg.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_missing_dot_raises_and_leaves_nothing_behind(tmp_path, monkeypatch, head):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "out"
    out.mkdir()
    (out / "head.svg").write_text("previous")
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz") as info:
        save(head, out / "head.svg")
    assert info.value.format == "svg"
    assert (out / "head.svg").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["head.svg"]
    # DOT source needs no binary
    assert save(head, out / "head.dot").read_text() == render(head).source
    # Jupyter falls back to text
    bundle = head._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert "pre_classifier" in bundle["text/plain"]


@needs_dot
def test_notebook_display_is_svg(base, head):
    from modeldiff._compare import diff

    assert "<svg" in base._repr_mimebundle_()["image/svg+xml"]
    assert "<svg" in diff(base, head)._repr_mimebundle_()["image/svg+xml"]


def test_bad_arguments_say_what_is_allowed(tmp_path, head):
    with pytest.raises(InvalidArgumentError, match=r"\.svg"):
        save(head, tmp_path / "head.jpg")
    with pytest.raises(InvalidArgumentError, match="non-negative"):
        render(head, depth=-1)
    assert list(tmp_path.iterdir()) == []


def test_diagram_module_does_not_import_torch():
    code = ("import sys, modeldiff._render, modeldiff._core.graph; "
            "g = modeldiff._core.graph.ModelGraph(nodes=(modeldiff._core.graph.Node(path='', cls='X', "
            "qualname='X', kind='other'),)); modeldiff._render.render(g).source; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_render_one_model_and_a_diff(tmp_path, base, head):
    from modeldiff.cli import main

    assert main(["render", "distilbert", "-o", str(tmp_path / "m.dot")]) == 0
    assert (tmp_path / "m.dot").read_text() == render(base).source
    assert main(["render", "distilbert", "distilbert", "--task", "sequence-classification",
                 "-o", str(tmp_path / "delta.dot"), "--depth", "1"]) == 0
    boxes, _, _, _ = parse_dot((tmp_path / "delta.dot").read_text())
    assert {k for k, a in boxes.items() if "added" in _classes(a)} == {
        "pre_classifier", "classifier", "dropout"}
    assert main(["render", "distilbert", "-o", str(tmp_path / "m.jpg")]) == 2


# -- the direct DOT writer against the graphviz package --------------------------------------
class _PackageWriter:
    """The same statements as ``DotWriter``, written through ``graphviz.Digraph``."""

    def __init__(self) -> None:
        import graphviz

        self.g = graphviz.Digraph()
        self.lines = self.g.body  # subgraphs are appended to it in place on exit

    def node(self, name, label=None, **attrs):
        self.g.node(name, label, **attrs)

    def edge(self, tail, head, **attrs):
        self.g.edge(tail, head, **attrs)

    def attr(self, **attrs):
        self.g.attr(**attrs)

    def subgraph(self, name=None):
        import contextlib

        @contextlib.contextmanager
        def scope():
            outer = self.g
            with outer.subgraph(name=name) as sub:
                self.g = sub
                try:
                    yield self
                finally:
                    self.g = outer
        return scope()


def _odd_names_model():
    """Module names DOT must quote or escape: quotes, backslashes, keywords, ports, HTML."""
    from torch import nn

    from tests.models import Tied

    inner = nn.ModuleDict({"x:y": nn.Linear(2, 2), "back\\slash": nn.ReLU(),
                           "ends\\": nn.Dropout(0.1)})
    return nn.ModuleDict({'say "hi"': nn.Linear(2, 3), "node": nn.ReLU(), "Edge": inner,
                          "<b>": nn.LayerNorm(3), "中文 😀": nn.Embedding(4, 2),
                          "-15": nn.Identity(), "tied": Tied()})


@pytest.mark.filterwarnings("ignore::graphviz.DotSyntaxWarning")
@pytest.mark.parametrize("case", ["distilbert", "distilbert unfolded", "masked-lm ties",
                                  "diff", "odd names", "odd names unfolded, LR"])
def test_direct_dot_writer_writes_what_the_graphviz_package_writes(case, base, head,
                                                                   monkeypatch):
    from modeldiff import _render
    from modeldiff._compare import diff
    from modeldiff._inputs import walk

    obj, options = {
        "distilbert": (base, {}),
        "distilbert unfolded": (head, {"fold_repeats": False}),
        "masked-lm ties": (walk("distilbert", task="masked-lm"), {}),
        "diff": (diff(base, head), {}),
        "odd names": (walk(_odd_names_model()), {"title": 'a "title" \\ with <html>'}),
        "odd names unfolded, LR": (walk(_odd_names_model()),
                                   {"fold_repeats": False, "direction": "LR"}),
    }[case]
    direct = render(obj, **options).source
    monkeypatch.setattr(_render, "DotWriter", _PackageWriter)
    package = render(obj, **options).source
    assert direct == package
    if case.startswith("odd names"):
        assert '"say \\"hi\\""' in direct
