"""Where one model sits in another: identity, transformers' ``base_model_prefix``, structure,
or a forced path.

>>> from modeldiff._core.align import relative, join
>>> relative("distilbert.embeddings", "distilbert"), join("distilbert", "embeddings")
('embeddings', 'distilbert.embeddings')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modeldiff._core.graph import ModelGraph
from modeldiff._core.report import register
from modeldiff.errors import AlignmentError, InputTypeError

__all__ = ["Alignment", "align_graphs", "align_keys", "candidates", "join", "relative"]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Alignment:
    """Where the two compared roots sit: ``before`` in the first model, ``after`` in the
    second (``""`` is the root). ``how`` says how it was found: ``identity`` (path to path),
    ``base_model_prefix`` (transformers metadata), ``structure``, ``forced`` or ``none``."""

    before: str
    after: str
    how: str

    def describe(self) -> str:
        where = self.after or self.before
        if self.how == "base_model_prefix":
            return f"base aligned at {where}"
        if self.how == "structure":
            return f"aligned by structure at {where}"
        if self.how == "forced":
            if self.before and self.after:
                return f"aligned {self.before} <-> {self.after} (forced)"
            return f"aligned at {where or '(root)'} (forced)"
        return "path to path"

    def to_after(self, before_path: str) -> str | None:
        """The after-model path of a before-model path, or None outside the aligned part."""
        rel = relative(before_path, self.before)
        return None if rel is None else join(self.after, rel)

    def to_before(self, after_path: str) -> str | None:
        rel = relative(after_path, self.after)
        return None if rel is None else join(self.before, rel)


def align_graphs(a: ModelGraph, b: ModelGraph, how: str | tuple[str, str] | None) -> Alignment:
    if how is None:
        return Alignment(before="", after="", how="none")
    if isinstance(how, tuple):
        pa, pb = how
        for g, p, side in ((a, pa, "first"), (b, pb, "second")):
            if p not in g:
                raise AlignmentError(f"alignment path {p!r} is not a module of the {side} model "
                                     f"({g.root.cls})", candidates=candidates(a, b))
        return Alignment(before=pa, after=pb, how="forced")
    if not isinstance(how, str):
        raise InputTypeError("align", how, "'auto', a module path, a (path, path) pair or None")
    if how != "auto":
        in_a, in_b = how in a, how in b
        if in_b and (not in_a or b[how].cls == a.root.cls):
            return Alignment(before="", after=how, how="forced")
        if in_a:
            return Alignment(before=how, after="", how="forced")
        cands = candidates(a, b)
        raise AlignmentError(
            f"cannot align at {how!r}: neither {a.root.cls} nor {b.root.cls} has a module "
            f"there. Candidates: {', '.join(cands) or 'none'}", candidates=cands)
    if a.root.cls == b.root.cls:
        return Alignment(before="", after="", how="identity")
    for x, y, flipped in ((a, b, False), (b, a, True)):
        prefix = y.hf.base_model_prefix if y.hf else ""
        if prefix and prefix in y and prefix not in x and y[prefix].path == prefix and \
                (x.hf is None or y.hf is None or x.hf.model_type == y.hf.model_type
                 or y[prefix].cls == x.root.cls):
            return Alignment(before=prefix if flipped else "", after="" if flipped else prefix,
                             how="base_model_prefix")
    found = structural(a, b)
    if found is not None:
        return found
    return Alignment(before="", after="", how="identity")


def candidates(a: ModelGraph, b: ModelGraph) -> tuple[str, ...]:
    """Paths worth aligning at: where one model's root class appears in the other, and the
    top-level children of both."""
    out: list[str] = []
    for x, y in ((a, b), (b, a)):
        out += [n.path for n in y.nodes[1:] if n.cls == x.root.cls]
    for g in (a, b):
        out += [child.path for _, child in g.children("")]
    return tuple(dict.fromkeys(out))


def structural(a: ModelGraph, b: ModelGraph) -> Alignment | None:
    """Without metadata: the subtree of one model that best matches the other's root, by
    the share of (relative path, class) pairs they have in common."""
    best: tuple[float, Alignment] | None = None
    for x, y, flipped in ((a, b, False), (b, a, True)):
        want = {(n.path, n.cls) for n in x.nodes[1:]}
        if not want:
            continue
        root_kids = {name for name, _ in x.children("")}
        for cand in y.nodes[1:]:
            # Only plausible roots: the same class, or most of the same child names. This
            # keeps the search linear-ish on 80-layer models.
            if cand.cls != x.root.cls:
                kids = {name for name, _ in y.children(cand.path)}
                if not root_kids or len(kids & root_kids) * 2 < len(root_kids):
                    continue
            have = {(rel, n.cls) for n in y.nodes
                    if (rel := relative(n.path, cand.path)) is not None and rel}
            if not have:
                continue
            score = len(want & have) / max(len(want), len(have))
            if score > 0.5 and (best is None or score > best[0]):
                al = Alignment(before=cand.path if flipped else "",
                               after="" if flipped else cand.path, how="structure")
                best = (score, al)
    return best[1] if best else None

def relative(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    if path == prefix:
        return ""
    if path.startswith(prefix + "."):
        return path[len(prefix) + 1:]
    return None


def join(prefix: str, rel: str) -> str:
    if not prefix:
        return rel
    return f"{prefix}.{rel}" if rel else prefix


def align_keys(a: Iterable[str], b: Iterable[str]) -> tuple[str, str]:
    """``(prefix_a, prefix_b)``: the prefixes to strip from checkpoint keys of ``a`` and
    ``b`` so that they name the same tensors, as when a base checkpoint (``embeddings.x``)
    meets its head's (``distilbert.embeddings.x``). ``("", "")`` when the keys already
    match, or no prefix makes most of them match.

    >>> align_keys(["emb.w", "layer.0.w"], ["bert.emb.w", "bert.layer.0.w", "classifier.w"])
    ('', 'bert.')
    >>> align_keys(["a.w"], ["b.w"])
    ('', '')
    """
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return "", ""
    best = ("", "", len(sa & sb))
    for keys, other, side in ((sb, sa, "b"), (sa, sb, "a")):
        prefixes = {k.split(".", 1)[0] + "." for k in keys if "." in k and k not in other}
        for p in prefixes:
            hits = sum(1 for k in keys if k.startswith(p) and k[len(p):] in other)
            if hits > best[2]:
                best = ("", p, hits) if side == "b" else (p, "", hits)
    if best[2] * 2 < min(len(sa), len(sb)):
        return "", ""
    return best[0], best[1]
