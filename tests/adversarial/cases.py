"""The registry of adversarial cases: ``group -> [(case id, function)]``.

A case is a function that returns when modeldiff behaved (a typed error with the expected
class, or a correct result) and raises AssertionError otherwise. Registering is torch-free:
case bodies import what they need, so collecting the ids costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

GROUPS = ("light", "torch", "hf")
_REGISTRY: dict[str, dict[str, Callable[[], None]]] = {g: {} for g in GROUPS}
_LOADED = False


def add(group: str, name: str, fn: Callable[[], None]) -> None:
    assert name not in _REGISTRY[group], name
    _REGISTRY[group][name] = fn


def case(group: str, name: str | None = None) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def deco(fn: Callable[[], None]) -> Callable[[], None]:
        add(group, name or fn.__name__, fn)
        return fn
    return deco


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from tests.adversarial import (  # noqa: F401 - registering is the import's effect
            cases_config,
            cases_files,
            cases_graph,
            cases_headers,
            cases_live,
            cases_outputs,
            cases_printed,
        )


def warm_up(group: str) -> None:
    """Pay the one-time costs (importing torch and transformers, transformers' lazy model
    modules) before the cases run, so a case's time is its own."""
    import modeldiff

    if group in ("torch", "hf"):
        import torch  # noqa: F401
        import transformers

        modeldiff.walk(transformers.BertConfig(hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=8))
    if group == "hf":
        modeldiff.walk("distilbert")


def cases(group: str) -> Iterator[tuple[str, Callable[[], None]]]:
    _load()
    yield from _REGISTRY[group].items()


def case_ids(group: str) -> list[str]:
    _load()
    return list(_REGISTRY[group])


def raises(error: type[BaseException], fn: Callable[..., Any], *args: Any,
           match: str | None = None, **kwargs: Any) -> BaseException:
    """``fn(*args)`` must raise ``error``, a modeldiff error with a message; returns it."""
    import pytest

    from modeldiff.errors import ModelDiffError

    with pytest.raises(error, match=match) as info:
        fn(*args, **kwargs)
    e = info.value
    assert isinstance(e, ModelDiffError), f"{type(e).__name__} is not a ModelDiffError"
    assert str(e), "an error without a message"
    return e


def typed_or_ok(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Either a result or a modeldiff error; anything else fails the case."""
    from modeldiff.errors import ModelDiffError

    try:
        return fn(*args, **kwargs)
    except ModelDiffError as e:
        return e
