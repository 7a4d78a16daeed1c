"""modeldiff: what a model is made of, and what changed between two models.

>>> import modeldiff
>>> g = modeldiff.walk("distilbert", task="sequence-classification")
>>> g["dropout"].attributes["p"]
0.2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modeldiff import errors, limits
from modeldiff._core.graph import Kind, ModelGraph, Node, Tensor
from modeldiff._core.report import Report
from modeldiff.errors import ModelDiffError

__version__ = "0.1.0"

__all__ = [
    "CheckpointDiff",
    "GraphDiff",
    "HeadDelta",
    "Kind",
    "LoadReport",
    "ModelDiffError",
    "ModelGraph",
    "Node",
    "PipelineSteps",
    "Prediction",
    "Report",
    "RoundTripReport",
    "Tensor",
    "Trace",
    "WeightDiff",
    "__version__",
    "align",
    "classify",
    "compare_checkpoints",
    "diff",
    "errors",
    "head_delta",
    "limits",
    "load_report",
    "parse_repr",
    "pipeline_steps",
    "plot_weights",
    "render",
    "report",
    "roundtrip",
    "save",
    "tiny_config",
    "trace",
    "walk",
    "weight_diff",
]

# Names whose modules import torch or transformers load on first use (PEP 562), so that
# `import modeldiff` (and the pytest plugin, and `modeldiff --help`) stay fast.
# A module is never named like a function it exports (walker.py holds walk): once imported,
# a submodule would shadow the package attribute of the same name.
_LAZY = {
    "parse_repr": "modeldiff._core.printed",
    "classify": "modeldiff._pipeline",
    "pipeline_steps": "modeldiff._pipeline",
    "Prediction": "modeldiff._pipeline",
    "walk": "modeldiff._inputs",
    "diff": "modeldiff._compare",
    "align": "modeldiff._compare",
    "head_delta": "modeldiff._compare",
    "weight_diff": "modeldiff._compare",
    "load_report": "modeldiff._loading",
    "LoadReport": "modeldiff._core.load_report",
    "GraphDiff": "modeldiff._core.diff",
    "HeadDelta": "modeldiff._core.head_delta",
    "WeightDiff": "modeldiff._core.weights",
    "PipelineSteps": "modeldiff._pipeline",
    "save": "modeldiff._render",
    "tiny_config": "modeldiff._tiny",
    "render": "modeldiff._render",
    "report": "modeldiff._report",
    "plot_weights": "modeldiff._report",
    "roundtrip": "modeldiff._roundtrip",
    "RoundTripReport": "modeldiff._roundtrip",
    "compare_checkpoints": "modeldiff._walk.tensors",
    "CheckpointDiff": "modeldiff._walk.tensors",
    "trace": "modeldiff._trace",
    "Trace": "modeldiff._core.trace",
}

if TYPE_CHECKING:
    from modeldiff._compare import align, diff, head_delta, weight_diff
    from modeldiff._core.diff import GraphDiff
    from modeldiff._core.head_delta import HeadDelta
    from modeldiff._core.load_report import LoadReport
    from modeldiff._core.printed import parse_repr
    from modeldiff._core.trace import Trace
    from modeldiff._core.weights import WeightDiff
    from modeldiff._inputs import walk
    from modeldiff._loading import load_report
    from modeldiff._pipeline import PipelineSteps, Prediction, classify, pipeline_steps
    from modeldiff._render import render, save
    from modeldiff._report import plot_weights, report
    from modeldiff._roundtrip import RoundTripReport, roundtrip
    from modeldiff._tiny import tiny_config
    from modeldiff._trace import trace
    from modeldiff._walk.tensors import CheckpointDiff, compare_checkpoints


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modeldiff' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
