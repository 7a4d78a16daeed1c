"""Live modules built to break a walker, and graphs at scale: a typed error or a correct
walk, and the model exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.adversarial.cases import add, raises


def _fingerprint(m: Any) -> tuple[object, ...]:
    """What walk must not change: flags, tensors (identity, values), the module tree."""
    import torch

    mods = []
    stack = [m]
    seen: set[int] = set()
    while stack:
        x = stack.pop()
        if id(x) in seen or not isinstance(x, torch.nn.Module):
            continue
        seen.add(id(x))
        d = x.__dict__
        mods.append((id(x), d.get("training"), tuple(d.get("_modules", {}) or ()),
                     tuple((k, id(p), bool(p.requires_grad), float(p.detach().sum()))
                           for k, p in (d.get("_parameters") or {}).items()
                           if isinstance(p, torch.Tensor)),
                     tuple(sorted(k for k in d if not k.startswith("__")))))
        stack.extend(v for v in (d.get("_modules") or {}).values() if v is not None)
    return tuple(mods)


def _walks(name: str, make: Callable[[], Any], check: Callable[[Any, Any], None] | None = None
           ) -> None:
    def run() -> None:
        import modeldiff

        m = make()
        before = _fingerprint(m)
        g = modeldiff.walk(m)
        assert _fingerprint(m) == before, "walk changed the model"
        assert g.nodes[0].path == ""
        str(g)
        g.summary(depth=None, fold=False)
        if check is not None:
            check(m, g)
    add("torch", f"live-{name}", run)


def _refused(name: str, make: Callable[[], Any], match: str | None = None) -> None:
    def run() -> None:
        import modeldiff
        from modeldiff.errors import ModuleWalkError

        m = make()
        before = _fingerprint(m)
        raises(ModuleWalkError, modeldiff.walk, m, match=match)
        assert _fingerprint(m) == before, "walk changed the model"
    add("torch", f"live-{name}", run)


def _chain(n: int, kind: str = "seq") -> Any:
    from torch import nn

    root = cur = nn.Sequential() if kind == "seq" else nn.ModuleDict()
    for _ in range(n):
        nxt = nn.Sequential() if kind == "seq" else nn.ModuleDict()
        if kind == "list":
            nxt = nn.ModuleList()
        cur.add_module("a", nxt)
        cur = nxt
    cur.add_module("fc", nn.Linear(2, 2))
    return root


def _depth(n: int) -> Callable[[Any, Any], None]:
    def check(m: Any, g: Any) -> None:
        assert len(g) == n + 2
        assert g.totals.params == 6
    return check


for kind in ("seq", "dict", "list"):
    _walks(f"nesting-2000-{kind}", lambda kind=kind: _chain(2000, kind), _depth(2000))
_refused("nesting-past-MAX_WALK_DEPTH", lambda: _chain(5_100), "MAX_WALK_DEPTH")


def _raised_depth_limit() -> None:
    import modeldiff
    import modeldiff.limits as limits

    with limits.raised(MAX_WALK_DEPTH=6000):
        assert len(modeldiff.walk(_chain(5_100))) == 5_102


add("torch", "live-nesting-5100-with-limit-raised", _raised_depth_limit)


def _self_cycle() -> Any:
    from torch import nn

    m = nn.Sequential(nn.Linear(2, 2))
    m._modules["me"] = m
    return m


def _ancestor_cycle() -> Any:
    from torch import nn

    a = nn.Sequential(nn.Linear(2, 2))
    b = nn.Sequential()
    a.add_module("b", b)
    b.add_module("back", a)
    return a


def _deep_cycle() -> Any:

    root = _chain(50)
    cur = root
    for _ in range(50):
        cur = cur.a
    cur.add_module("loop", root.a)
    return root


_refused("cycle-self", _self_cycle, "cycle")
_refused("cycle-through-child", _ancestor_cycle, "cycle")
_refused("cycle-50-deep", _deep_cycle, "cycle")


def _shared() -> Any:
    from torch import nn

    lin = nn.Linear(2, 2)
    return nn.Sequential(lin, nn.Sequential(lin), lin)


_walks("shared-submodule-is-not-a-cycle", _shared,
       lambda m, g: (g.totals.params == 6) or (_ for _ in ()).throw(AssertionError(g.totals)))


def _module(extra: Callable[[], Any] | None = None, getattr_error: type | None = None,
            **kwargs: Any) -> Any:
    from torch import nn

    namespace: dict[str, Any] = {}
    if extra is not None:
        namespace["extra_repr"] = lambda self: extra()
    if getattr_error is not None:
        def __getattr__(self: Any, name: str) -> Any:
            if name.startswith("_"):
                return nn.Module.__getattr__(self, name)
            raise getattr_error(name)
        namespace["__getattr__"] = __getattr__
    namespace.update(kwargs)
    cls = type("Hostile", (nn.Module,), namespace)
    m = cls()
    m.fc = nn.Linear(2, 2)
    return nn.Sequential(m)


def _raise(exc: BaseException) -> Callable[[], Any]:
    def f() -> Any:
        raise exc
    return f


def _no_attrs(m: Any, g: Any) -> None:
    assert g["0"].attrs == ()
    assert g["0.fc"].attributes["in_features"] == 2


for label, exc in [("runtime-error", RuntimeError("x")), ("key-error", KeyError("x")),
                   ("attribute-error", AttributeError("x")), ("value-error", ValueError("x")),
                   ("zero-division", ZeroDivisionError()), ("type-error", TypeError("x")),
                   ("not-implemented", NotImplementedError()), ("index-error", IndexError()),
                   ("recursion-error", RecursionError()), ("assertion", AssertionError())]:
    _walks(f"extra-repr-raises-{label}", lambda exc=exc: _module(extra=_raise(exc)), _no_attrs)
for label, value in [("int", 42), ("none", None), ("bytes", b"x=1"), ("list", ["x=1"]),
                     ("dict", {"x": 1}), ("float", 1.5), ("tensor", "TENSOR")]:
    def _make(value: Any = value) -> Any:
        import torch

        v = torch.ones(2) if value == "TENSOR" else value
        return _module(extra=lambda: v)
    _walks(f"extra-repr-returns-{label}", _make, _no_attrs)
_walks("extra-repr-huge", lambda: _module(extra=lambda: "x=1, " * 2_000_000),
       lambda m, g: None)
_walks("extra-repr-nul", lambda: _module(extra=lambda: "a=\x00"), lambda m, g: None)
for label, err in [("key-error", KeyError), ("runtime-error", RuntimeError),
                   ("value-error", ValueError), ("type-error", TypeError),
                   ("attribute-error", AttributeError)]:
    _walks(f"getattr-raises-{label}", lambda err=err: _module(getattr_error=err),
           lambda m, g: None)


def _root_getattr(err: type) -> Any:
    from torch import nn

    class Root(nn.Module):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                return nn.Module.__getattr__(self, name)
            raise err(name)

    r = Root()
    r.fc = nn.Linear(2, 2)
    return r


for label, err in [("key-error", KeyError), ("runtime-error", RuntimeError),
                   ("os-error", OSError)]:
    _walks(f"root-getattr-raises-{label}", lambda err=err: _root_getattr(err), lambda m, g: None)


def _broken_methods(**methods: Any) -> Any:
    from torch import nn

    cls = type("Broken", (nn.Linear,), methods)
    return nn.Sequential(cls(2, 2))


def _boom(*a: Any, **k: Any) -> Any:
    raise RuntimeError("the model's own method")


for method in ("state_dict", "named_modules", "named_parameters", "modules", "children",
               "forward", "__repr__", "parameters", "buffers", "named_buffers"):
    _walks(f"{method}-raises", lambda method=method: _broken_methods(**{method: _boom}),
           lambda m, g: None)


def _non_module(value: Callable[[], Any]) -> Callable[[], Any]:
    def make() -> Any:
        from torch import nn

        m = nn.Sequential(nn.Linear(2, 2))
        m._modules["x"] = value()
        return m
    return make


for label, value in [("int", lambda: 5), ("str", lambda: "Linear"), ("list", lambda: []),
                     ("dict", lambda: {"a": 1}), ("tensor", lambda: __import__("torch").ones(2)),
                     ("parameter", lambda: __import__("torch").nn.Parameter(
                         __import__("torch").ones(2))),
                     ("module-class", lambda: __import__("torch").nn.Linear)]:
    _refused(f"non-module-in-_modules-{label}", _non_module(value), "not an nn.Module")
_walks("none-in-_modules", _non_module(lambda: None), lambda m, g: None)


def _bad_param(value: Callable[[], Any]) -> Callable[[], Any]:
    def make() -> Any:
        from torch import nn

        m = nn.Linear(2, 2)
        m._parameters["weight"] = value()
        return nn.Sequential(m)
    return make


for label, value in [("int", lambda: 5), ("str", lambda: "w"), ("list", lambda: [1.0])]:
    _refused(f"non-tensor-parameter-{label}", _bad_param(value), "well-formed")


def _bad_buffer() -> Any:
    from torch import nn

    m = nn.BatchNorm1d(2)
    m._buffers["running_mean"] = "x"
    return m


_refused("non-tensor-buffer", _bad_buffer, "well-formed")


def _no_init() -> Any:
    from torch import nn

    class NoInit(nn.Module):
        def __init__(self) -> None:
            pass

    return NoInit()


_refused("module-without-init", _no_init, "well-formed")


def _no_init_child() -> Any:
    from torch import nn

    m = nn.Sequential(nn.Linear(2, 2))
    m._modules["x"] = _no_init()
    return m


_refused("child-without-init", _no_init_child, "well-formed")


def _weird_names() -> Any:
    from torch import nn

    m = nn.Sequential()
    for name in ("9" * 5000, "a\\", 'q"', "c:d", "é", " ", "\x00"):
        m.add_module(name, nn.Linear(2, 2))
    return m


def _weird_names_render(m: Any, g: Any) -> None:
    import shutil
    import subprocess

    import modeldiff

    assert len(g) == 8
    source = modeldiff.render(g).source
    out = subprocess.run([shutil.which("dot") or "dot", "-Tcanon"], input=source.encode(),
                         capture_output=True, timeout=20, check=False)
    assert out.returncode == 0, out.stderr.decode()[-400:]
    assert modeldiff.ModelGraph.from_json(g.to_json()) == g


_walks("names-past-int-limit-backslash-quote-colon", _weird_names, _weird_names_render)


# -- scale ------------------------------------------------------------------------------------
def _wide(n: int, offset: int = 0) -> Any:
    from modeldiff._core.graph import Kind, ModelGraph, Totals, make_node

    one = Totals(params=1)
    nodes = [make_node("", "Net", "Net", Kind.BLOCK, (), (), (), Totals(params=n))]
    contains = []
    for i in range(n):
        nodes.append(make_node(f"m{i}", "Linear", "torch.nn.Linear", Kind.LINEAR,
                               (("in_features", i + offset), ("out_features", 2)), (), (), one))
        contains.append(("", f"m{i}", f"m{i}"))
    return ModelGraph(nodes=tuple(nodes), contains=tuple(contains))


def _scale(name: str, fn: Callable[..., object], n: int = 100_000, pair: bool = False) -> None:
    def run() -> None:
        if pair:
            fn(_wide(n), _wide(n, 1))
        else:
            fn(_wide(n))
    add("torch", f"scale-{name}-{n}-children", run)


_scale("str", lambda a: str(a))
_scale("summary", lambda a: a.summary(depth=None, fold=False))
_scale("diff", lambda a, b: __import__("modeldiff").diff(a, b), pair=True)
_scale("str-of-diff", lambda a, b: str(__import__("modeldiff").diff(a, b)), n=50_000, pair=True)
_scale("to-json", lambda a: a.to_json(), n=50_000)
# the direct DOT writer made these linear: 100,000 children render in about 2 s (was 118 s);
# a diff of 100,000 changed modules renders in 3.5 s but needs more than the 1 GB cap
_scale("render", lambda a: __import__("modeldiff").render(a).source)
_scale("render-diff", lambda a, b: __import__("modeldiff").render(
    __import__("modeldiff").diff(a, b)).source, n=20_000, pair=True)


def _walk_wide() -> None:
    import torch
    from torch import nn

    import modeldiff

    with torch.device("meta"):
        m = nn.ModuleList(nn.Linear(2, 2) for _ in range(10_000))
    assert len(modeldiff.walk(m)) == 10_001


add("torch", "scale-walk-10000-children", _walk_wide)


def _dot_timeout() -> None:
    import modeldiff
    import modeldiff.limits as limits
    from modeldiff.errors import GraphvizTimeoutError

    g = _wide(300)
    with limits.raised(DOT_TIMEOUT_SECONDS=0.001):
        e = raises(GraphvizTimeoutError, modeldiff.save, g,
                   __import__("tempfile").mkdtemp() + "/x.svg", match="DOT_TIMEOUT_SECONDS")
    assert isinstance(e, TimeoutError)


add("torch", "render-dot-past-its-time-limit", _dot_timeout)


def _dot_missing() -> None:
    import os
    import tempfile

    import modeldiff
    from modeldiff.errors import GraphvizNotFoundError

    path = os.environ.get("PATH", "")
    os.environ["PATH"] = tempfile.mkdtemp()
    try:
        out = tempfile.mkdtemp()
        raises(GraphvizNotFoundError, modeldiff.save, _wide(3), out + "/x.svg")
        assert os.listdir(out) == []
    finally:
        os.environ["PATH"] = path


add("torch", "render-dot-missing", _dot_missing)
