"""modeldiff: what a model is made of, and what changed between two models.

>>> import modeldiff
>>> g = modeldiff.walk("distilbert", task="sequence-classification")
>>> g["dropout"].attributes["p"]
0.2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modeldiff import errors
from modeldiff.graph import Kind, ModelGraph, Node, Tensor

__version__ = "0.1.0"

__all__ = [
    "CheckpointDiff",
    "GraphDiff",
    "HeadDelta",
    "Kind",
    "ModelGraph",
    "Node",
    "Prediction",
    "RoundTripReport",
    "Tensor",
    "__version__",
    "classify",
    "compare_checkpoints",
    "diff",
    "errors",
    "head_delta",
    "parse_repr",
    "pipeline_steps",
    "render",
    "roundtrip",
    "tiny_config",
    "walk",
    "weight_diff",
]

# Names whose modules import torch or transformers load on first use (PEP 562), so that
# `import modeldiff` (and the pytest plugin, and `modeldiff --help`) stay fast.
# A module is never named like a function it exports (walker.py holds walk): once imported,
# a submodule would shadow the package attribute of the same name.
_LAZY = {
    "parse_repr": "modeldiff.reprtext",
    "classify": "modeldiff.pipeline",
    "pipeline_steps": "modeldiff.pipeline",
    "Prediction": "modeldiff.pipeline",
    "walk": "modeldiff.walker",
    "diff": "modeldiff.differ",
    "head_delta": "modeldiff.differ",
    "weight_diff": "modeldiff.differ",
    "GraphDiff": "modeldiff.differ",
    "HeadDelta": "modeldiff.differ",
    "tiny_config": "modeldiff.tiny",
    "render": "modeldiff.diagram",
    "roundtrip": "modeldiff.saveload",
    "RoundTripReport": "modeldiff.saveload",
    "compare_checkpoints": "modeldiff.tensors",
    "CheckpointDiff": "modeldiff.tensors",
}

if TYPE_CHECKING:
    from modeldiff.diagram import render
    from modeldiff.differ import GraphDiff, HeadDelta, diff, head_delta, weight_diff
    from modeldiff.pipeline import Prediction, classify, pipeline_steps
    from modeldiff.reprtext import parse_repr
    from modeldiff.saveload import RoundTripReport, roundtrip
    from modeldiff.tensors import CheckpointDiff, compare_checkpoints
    from modeldiff.tiny import tiny_config
    from modeldiff.walker import walk


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
