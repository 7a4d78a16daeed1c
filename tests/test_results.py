"""The result protocol, tested once over every result type (modeldiff/_core/report.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import modeldiff
from modeldiff import Report


def _strict(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Report, Report]]:
    """For each type: (a result that found something, one that found nothing)."""
    tmp = tmp_path_factory.mktemp("results")
    base, head = modeldiff.walk("distilbert"), modeldiff.walk("distilbert",
                                                              task="sequence-classification")
    a, b = _pair()
    with torch.no_grad():
        b[1].weight[0, 0] = float("nan")  # a value became NaN: non-finite statistics
    save_file({"w": torch.ones(3)}, tmp / "a.safetensors")
    save_file({"w": torch.tensor([1.0, 2.0, 1.0])}, tmp / "b.safetensors")
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    tiny = DistilBertForSequenceClassification(DistilBertConfig(
        dim=32, hidden_dim=37, n_layers=2, n_heads=2, vocab_size=120))
    ok_trip = modeldiff.roundtrip(tiny)
    steps = modeldiff.pipeline_steps(["a fine day"])
    llama = modeldiff.tiny_config("llama")
    traced = modeldiff.trace(llama, task="causal-lm", seq=8)  # assumed a dense batch
    tiny.save_pretrained(tmp / "seqcls")
    return {
        "GraphDiff": (modeldiff.diff(base, head), modeldiff.diff(base, base)),
        "HeadDelta": (modeldiff.head_delta(base, head), modeldiff.head_delta(base, base)),
        "WeightDiff": (modeldiff.weight_diff(a, b), modeldiff.weight_diff(a, a)),
        "CheckpointDiff": (
            modeldiff.compare_checkpoints(tmp / "a.safetensors", tmp / "b.safetensors"),
            modeldiff.compare_checkpoints(tmp / "a.safetensors", tmp / "a.safetensors")),
        "RoundTripReport": (_with_problem(ok_trip), ok_trip),
        "PipelineSteps": (steps, _trained(steps)),
        "Trace": (traced, _no_assumptions(traced)),
        "LoadReport": (modeldiff.load_report(tmp / "seqcls", "base"),
                       modeldiff.load_report(tmp / "seqcls", "sequence-classification")),
    }


def _no_assumptions(t: modeldiff.Trace) -> modeldiff.Trace:
    from dataclasses import replace

    return replace(t, assumptions=())


def _with_problem(report: modeldiff.RoundTripReport) -> modeldiff.RoundTripReport:
    from dataclasses import replace

    from modeldiff._roundtrip import Finding, Problem

    return replace(report, problems=(Problem(kind=Finding.VALUES, subject="w", message="x"),))


def _trained(steps: modeldiff.PipelineSteps) -> modeldiff.PipelineSteps:
    from dataclasses import replace

    return replace(steps, untrained=False)


TYPES = ["GraphDiff", "HeadDelta", "WeightDiff", "CheckpointDiff", "RoundTripReport",
         "PipelineSteps", "Trace", "LoadReport"]


@pytest.mark.parametrize("name", TYPES)
def test_every_result_follows_the_protocol(results: dict[str, tuple[Report, Report]],
                                           name: str) -> None:
    found, clean = results[name]
    cls = getattr(modeldiff, name)
    for r in (found, clean):
        assert type(r) is cls
        assert isinstance(r, Report)
        # bool means "found something", on every type
        assert bool(r) == (r.findings > 0)
        # strict JSON with schema and version, and it reads back
        text = r.to_json()
        data = _strict(text)
        assert isinstance(data, dict)
        assert data["schema"] == cls.SCHEMA
        assert data["schema"].startswith("modeldiff.")
        assert data["version"] == cls.VERSION
        assert data["findings"] == r.findings
        assert cls.from_json(text).to_json() == text
        # one-line repr, readable str, Jupyter gets a table or a diagram
        line = repr(r)
        assert "\n" not in line
        assert len(line) <= 200
        assert line.startswith(f"<{name} ")
        assert str(r).strip()
        bundle = r._repr_mimebundle_()
        assert "text/plain" in bundle
        rich = bundle.get("image/svg+xml") or bundle.get("text/html")
        assert rich
        assert f"{name}(" not in rich  # a table or a diagram, never a dataclass dump
    assert bool(found)
    assert not bool(clean)


def test_non_finite_numbers_are_written_explicitly(results: dict[str, tuple[Report, Report]]
                                                   ) -> None:
    wd = results["WeightDiff"][0]
    assert any(math.isnan(s.max_abs) for s in wd.tensors if s.max_abs is not None)
    assert '{"float": "nan"}' in wd.to_json(indent=None)
    back = modeldiff.WeightDiff.from_json(wd.to_json())
    assert math.isnan(back.modules[0].rel_change)


def test_from_json_refuses_another_schema(results: dict[str, tuple[Report, Report]]) -> None:
    text = results["HeadDelta"][0].to_json()
    with pytest.raises(modeldiff.errors.SchemaError, match="not a GraphDiff document"):
        modeldiff.GraphDiff.from_json(text)
    with pytest.raises(modeldiff.errors.SchemaError, match="version"):
        modeldiff.HeadDelta.from_json(text.replace('"version": 1', '"version": 99'))
    deep = "[" * 10_000 + "]" * 10_000
    with pytest.raises(modeldiff.errors.SchemaError, match="nested deeper"):
        modeldiff.HeadDelta.from_json(deep)


def test_roundtrip_report_truthiness_is_the_protocols(results: dict[str, tuple[Report, Report]]
                                                      ) -> None:
    bad, good = results["RoundTripReport"]
    assert good.ok
    assert not good  # a clean round-trip found nothing
    assert not bad.ok
    assert bad
    assert _strict(good.to_json())["ok"] is True
