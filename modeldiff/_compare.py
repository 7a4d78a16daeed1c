"""The comparison entry points: :func:`diff`, :func:`weight_diff`, :func:`align` and
:func:`head_delta` take anything :func:`modeldiff.walk` reads; the input layer turns each
argument into a graph, the core compares graphs.

``task`` means the same thing in every function: a single value applies to each side that
is built from a name, a config or a folder (a module or a graph already is what it is), and
a ``(task_a, task_b)`` pair sets each side's. :func:`head_delta` is the one exception a
reader would expect: its base side is the base model, so a single value names the head's
task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from modeldiff._compat import saved_layernorm_name, unexpected_key
from modeldiff._core.align import Alignment, align_graphs, join
from modeldiff._core.diff import GraphDiff, diff_graphs, ignored_path
from modeldiff._core.graph import ModelGraph
from modeldiff._core.head_delta import HeadDelta, head_delta_of
from modeldiff._core.weights import WeightDiff, make_weight_diff
from modeldiff._inputs import Task, as_graph, task_pair, weight_source
from modeldiff.errors import AlignmentError

__all__ = ["align", "diff", "head_delta", "head_modules", "weight_diff"]


def diff(a: Any, b: Any, *, align: str | tuple[str, str] | None = "auto", weights: bool = False,
         task: Task = None, ignore: Sequence[str] = ()) -> GraphDiff:
    """The structural difference of ``a`` and ``b`` (anything :func:`modeldiff.walk` reads).

    ``align``: ``"auto"`` finds where one model sits in the other (transformers'
    ``base_model_prefix``, else by structure); a path such as ``"distilbert"`` or a pair of
    paths forces it; ``None`` compares path to path. ``weights=True`` also compares values
    (models must have real weights: modules or checkpoint folders). ``task`` chooses the
    head when a side is built from a name or config (a ``(task_a, task_b)`` pair sets each
    side's). ``ignore``: glob patterns over module
    paths (either side's names) to leave out.

    >>> import modeldiff
    >>> d = modeldiff.diff(modeldiff.walk("distilbert", task="sequence-classification"),
    ...                    "distilbert")
    >>> [c.path for c in d.removed], bool(d)
    (['pre_classifier', 'classifier', 'dropout'], True)
    """
    ta, tb = task_pair(task)
    ga, gb = as_graph(a, task=ta), as_graph(b, task=tb)
    alignment = align_graphs(ga, gb, align)
    result = diff_graphs(ga, gb, alignment, ignore=tuple(ignore))
    if weights:
        structure = tuple(f"{c.change} {c.path or '(root)'}" for c in result.modules
                          if str(c.change) != "changed" or not _freeze_only(c))
        result = replace(result, weights=_weights(a, b, ga, gb, alignment,
                                                  ignore=tuple(ignore), structure=structure))
    return result


def _freeze_only(c: Any) -> bool:
    """A module change that only flips requires_grad (a frozen layer) or casts dtypes: the
    weights themselves tell that story, it is not an architecture change."""
    fields = {f for t in c.tensors for f in t.fields}
    return not c.attrs and fields <= {"requires_grad", "dtype"}


def weight_diff(a: Any, b: Any, *, align: str | tuple[str, str] | None = "auto",
                task: Task = None, svd: bool = True) -> WeightDiff:
    """How weight values moved between ``a`` and ``b`` (modules or checkpoint folders,
    sharded ones too, streamed tensor by tensor): per tensor bit-identity, max abs
    difference, relative change, cosine similarity and, for changed 2-D weights (unless
    ``svd=False``), the rank and top-singular-value energy of the change; per-module rows
    ordered by how much moved, folded rows, per-block rows and a verdict.

    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> before = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> after = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    >>> after.load_state_dict(before.state_dict())
    <All keys matched successfully>
    >>> with torch.no_grad():
    ...     _ = after[1].weight.mul_(1.1)
    >>> wd = weight_diff(before, after)
    >>> [m.path for m in wd.modules if m.changed], bool(wd)
    (['1'], True)
    """
    ta, tb = task_pair(task)
    ga, gb = as_graph(a, task=ta), as_graph(b, task=tb)
    return _weights(a, b, ga, gb, align_graphs(ga, gb, align), ignore=(), svd=svd)


def align(a: Any, b: Any, *, how: str | tuple[str, str] | None = "auto",
          task: Task = None) -> Alignment:
    """Where ``a`` sits in ``b`` or ``b`` in ``a``; see :func:`diff`'s ``align``.

    >>> align("distilbert", "distilbert", how=None)
    Alignment(before='', after='', how='none')
    """
    ta, tb = task_pair(task)
    return align_graphs(as_graph(a, task=ta), as_graph(b, task=tb), how)


def head_delta(base: Any, head: Any, *, task: Task = None) -> HeadDelta:
    """What ``head`` adds on top of ``base``, answered as transformers' loading report would:
    ``HeadClass.from_pretrained(base_checkpoint, output_loading_info=True)``.

    >>> import modeldiff
    >>> d = head_delta("distilbert", modeldiff.walk("distilbert", task="sequence-classification"))
    >>> d.prefix, d.modules
    ('distilbert', ('pre_classifier', 'classifier', 'dropout'))
    >>> d.new_parameters
    ('pre_classifier.weight', 'pre_classifier.bias', 'classifier.weight', 'classifier.bias')
    """
    tb, th = task if isinstance(task, tuple) else (None, task)
    gb, gh = as_graph(base, task=tb), as_graph(head, task=th)
    alignment = align_graphs(gb, gh, "auto")
    # Two transformers models of one family load into each other whatever their module
    # trees look like (MllamaModel into MllamaForCausalLM: the keys decide); without
    # transformers' facts on both sides, unrelated structures have no head delta.
    same_family = gb.hf is not None and gh.hf is not None and (
        gh.hf.model_type.startswith(gb.hf.model_type)
        or gb.hf.model_type.startswith(gh.hf.model_type))
    if alignment.how == "identity" and gb.root.cls != gh.root.cls and not same_family:
        raise AlignmentError(
            f"{gh.root.cls} does not contain {gb.root.cls}: no base_model_prefix and no "
            "subtree of the same structure links them, so no head sits on this base. "
            "Compare them with diff(), or pass a base and a head of one architecture",
            candidates=())
    # The keys follow transformers' loading rules on the saved key names (renames
    # included), whichever way the structures nest: AutoModel's class for llama4 already
    # holds the head, and transformers loads it into Llama4ForCausalLM all the same.
    from modeldiff._loading import load_report

    if gh.hf is None:  # a printed model: no class to build, the structure's prefix
        return head_delta_of(gb, gh, alignment)
    delta = head_delta_of(gb, gh, alignment, load_report(gb, gh))
    if delta.prefix and unexpected_key("k", delta.prefix) != "k":
        # spelled as this transformers' loading report spells them (see modeldiff._compat)
        delta = dataclasses.replace(
            delta, dropped=tuple(unexpected_key(k, delta.prefix) for k in delta.dropped),
            ignored_unexpected=tuple(unexpected_key(k, delta.prefix)
                                     for k in delta.ignored_unexpected))
    return delta


def _weights(a: Any, b: Any, ga: ModelGraph, gb: ModelGraph, al: Alignment, *,
             ignore: tuple[str, ...], structure: Sequence[str] = (),
             svd: bool = True) -> WeightDiff:
    from modeldiff._walk.tensors import compare_weights

    pairs: list[tuple[str, str]] = []
    for name, node, t in ga.tensors():
        if t.tied_to is not None or (t.buffer and not t.persistent) or ignored_path(node.path, ignore):
            continue
        mapped = al.to_after(node.path)
        if mapped is None or mapped not in gb:
            continue
        other = {x.name: x for x in gb[mapped].tensors}.get(t.name)
        if other is None or other.tied_to is not None:
            continue
        pairs.append((name, join(gb[mapped].path, t.name)))
    src_a, src_b = weight_source(a), weight_source(b)
    key_a, key_b = _key_resolver(src_a, ga), _key_resolver(src_b, gb)
    wd = compare_weights(src_a, src_b, [(key_a(x), key_b(y)) for x, y in pairs], svd=svd)
    # The statistics are keyed by b's checkpoint names; the verdict and diagrams need module
    # space: the head modules (outside the base model) and the graphs.
    head = head_modules(gb)
    return make_weight_diff(wd.tensors, pairs=wd.pairs, missing=wd.missing, head=head,
                            structure=structure, before=ga, after=gb, alignment=al)


def head_modules(g: ModelGraph) -> tuple[str, ...]:
    """The root's children outside the base model (``classifier``, ``lm_head``, ...): a
    transformers model names its base ``base_model_prefix``; a model without one has no
    head we can name."""
    prefix = g.hf.base_model_prefix if g.hf else ""
    if not prefix or prefix not in g:
        return ()
    return tuple(n.path for n in g.nodes if n.path and "." not in n.path and n.path != prefix)


def _key_resolver(source: Any, g: ModelGraph) -> Any:
    """Module-space tensor names -> the keys a checkpoint folder really holds: a base model's
    checkpoint lacks the head's ``base_model_prefix``, a head's checkpoint read as its base
    has it."""
    import os

    if not isinstance(source, (str, os.PathLike)):
        return lambda name: name
    from modeldiff._walk.checkpoint import read_tensor_index

    keys = read_tensor_index(source)
    prefix = g.hf.base_model_prefix if g.hf else ""

    def resolve(name: str) -> str:
        candidates = [name]
        if prefix and name.startswith(prefix + "."):
            candidates.append(name[len(prefix) + 1:])
        elif prefix:
            candidates.append(f"{prefix}.{name}")
        for c in candidates:
            # some models' checkpoints hold LayerNorms as gamma/beta (see modeldiff._compat)
            for key in (c, saved_layernorm_name(c)):
                if key in keys:
                    return key
        return name

    return resolve
