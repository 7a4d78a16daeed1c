"""Output paths and roundtrip: a typed error and nothing half-written; the model's own
failures reported as the model's."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.adversarial.cases import add, raises


@contextmanager
def _full_disk(limit: int = 20_000) -> Iterator[None]:
    """RLIMIT_FSIZE: every write past ``limit`` bytes fails with EFBIG, as on a full disk."""
    import resource
    import signal

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)


def _graph() -> Any:
    import modeldiff

    return modeldiff.walk("distilbert")


def _save_error(name: str, target: Callable[[Path], Path], *, disk_full: bool = False) -> None:
    def run() -> None:
        import modeldiff
        from modeldiff.errors import OutputError

        d = Path(tempfile.mkdtemp(prefix="adv-out-"))
        before = sorted(os.listdir(d))
        t = target(d)
        before = sorted(os.listdir(d))
        if disk_full:
            with _full_disk(2_000):
                raises(OutputError, modeldiff.save, _graph(), t)
        else:
            raises(OutputError, modeldiff.save, _graph(), t)
        assert sorted(os.listdir(d)) == before, "something was left behind"
    add("hf", f"output-save-{name}", run)


_save_error("missing-folder", lambda d: d / "missing" / "x.dot")
_save_error("missing-deep-folder", lambda d: d / "a" / "b" / "c" / "x.svg")
_save_error("target-is-a-directory", lambda d: (d / "x.dot").mkdir() or d / "x.dot")
_save_error("parent-is-a-file", lambda d: (d / "f").write_text("keep") and d / "f" / "x.dot")
_save_error("disk-full-dot", lambda d: d / "x.dot", disk_full=True)
_save_error("disk-full-svg", lambda d: d / "x.svg", disk_full=True)


def _save_ok_replaces_atomically() -> None:
    import modeldiff

    d = Path(tempfile.mkdtemp(prefix="adv-out-"))
    (d / "x.dot").write_text("old")
    modeldiff.save(_graph(), d / "x.dot")
    assert (d / "x.dot").read_text().startswith("digraph")
    assert os.listdir(d) == ["x.dot"]


add("hf", "output-save-replaces-an-existing-file", _save_ok_replaces_atomically)


# -- roundtrip ---------------------------------------------------------------------------------
def _tiny() -> Any:
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    return DistilBertModel(DistilBertConfig(dim=8, n_layers=1, n_heads=2, hidden_dim=8,
                                            vocab_size=30, max_position_embeddings=16))


def _rt_error(name: str, error: str, call: Callable[[], Any], match: str | None = None) -> None:
    def run() -> None:
        from modeldiff import errors

        raises(getattr(errors, error), call, match=match)
    add("hf", f"roundtrip-{name}", run)


def _roundtrip(**kw: Any) -> Callable[[], Any]:
    def call() -> Any:
        import modeldiff

        model = kw.pop("model", None) or _tiny()
        return modeldiff.roundtrip(model, **kw)
    return call


for arg, value in [("tokenizer", 5), ("tokenizer", "bert-base-uncased"), ("inputs", 5),
                   ("inputs", "hello"), ("inputs", [1, 2, 3]), ("workdir", 5),
                   ("workdir", ["/tmp"]), ("max_shard_size", [1]), ("max_shard_size", True),
                   ("max_shard_size", 1.5)]:
    _rt_error(f"{arg}-as-{type(value).__name__}", "InputTypeError",
              _roundtrip(**{arg: value}), arg)
_rt_error("max-shard-size-zero", "InvalidArgumentError", _roundtrip(max_shard_size=0),
          "max_shard_size")
_rt_error("model-is-a-string", "UnknownModelTypeError",  # a name: it must be a model_type
          lambda: __import__("modeldiff").roundtrip("x"))
_rt_error("model-is-a-linear", "InputTypeError",
          lambda: __import__("modeldiff").roundtrip(__import__("torch").nn.Linear(2, 2)))


def _own_save_raises(exc: BaseException) -> Callable[[], Any]:
    def call() -> Any:
        import modeldiff

        model = _tiny()

        def save_pretrained(*a: Any, **k: Any) -> None:
            raise exc

        model.save_pretrained = save_pretrained  # type: ignore[method-assign]
        return modeldiff.roundtrip(model)
    return call


for label, exc in [("value-error", ValueError("my model cannot be saved")),
                   ("runtime-error", RuntimeError("my hook failed")),
                   ("key-error", KeyError("x")), ("os-error-without-errno", OSError("mine"))]:
    _rt_error(f"save-pretrained-raises-{label}", "ModelCodeError", _own_save_raises(exc),
              "save_pretrained raised")
_rt_error("save-pretrained-disk-error", "RoundTripError",
          _own_save_raises(OSError(28, "No space left on device")), "disk full")


def _own_forward_raises() -> Any:
    import modeldiff

    model = _tiny()
    original = type(model).forward

    def forward(self: Any, *a: Any, **k: Any) -> Any:
        raise RuntimeError("my forward is broken")

    type(model).forward = forward  # type: ignore[method-assign]
    try:
        return modeldiff.roundtrip(model)
    finally:
        type(model).forward = original  # type: ignore[method-assign]


_rt_error("forward-raises", "ModelCodeError", _own_forward_raises, "forward raised")


def _disk_full_roundtrip() -> None:
    import modeldiff
    from modeldiff.errors import RoundTripError

    d = Path(tempfile.mkdtemp(prefix="adv-out-"))
    with _full_disk(5_000):
        raises(RoundTripError, modeldiff.roundtrip, _tiny(), workdir=d / "new" / "out")
    assert os.listdir(d) == []


add("hf", "roundtrip-disk-full-leaves-nothing", _disk_full_roundtrip)


def _workdir_cases() -> None:
    import modeldiff
    from modeldiff.errors import RoundTripError

    d = Path(tempfile.mkdtemp(prefix="adv-out-"))
    (d / "file").write_text("keep")
    raises(RoundTripError, modeldiff.roundtrip, _tiny(), workdir=d / "file")
    raises(RoundTripError, modeldiff.roundtrip, _tiny(), workdir=d / "file" / "sub")
    raises(RoundTripError, modeldiff.roundtrip, _tiny(), workdir=d)
    assert os.listdir(d) == ["file"]
    assert (d / "file").read_text() == "keep"


add("hf", "roundtrip-workdir-file-or-not-empty", _workdir_cases)


def _model_unchanged_by_roundtrip() -> None:
    import modeldiff

    model = _tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    report = modeldiff.roundtrip(model)
    assert report.ok, str(report)
    assert model.training
    assert model.config.to_dict() == config
    after = model.state_dict()
    assert all(bool((before[k] == after[k]).all()) for k in before)


add("hf", "roundtrip-valid-leaves-the-model-as-it-was", _model_unchanged_by_roundtrip)
