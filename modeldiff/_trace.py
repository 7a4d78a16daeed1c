"""trace: one forward (on the meta device when modeldiff builds the model) with forward hooks
and a dispatch mode: per-module shapes, FLOPs and activation bytes, data flow, memory.

How it works, and why:

- FLOPs use torch's own formulas (``torch.utils.flop_counter.flop_registry``), so the counts
  are FlopCounterMode's. The fused CPU attention op
  (``aten._scaled_dot_product_flash_attention_for_cpu``) has no formula there and would count
  zero; it gets torch's SDPA formula (:func:`extra_flop_formulas`).
- Attention on meta: ``F.scaled_dot_product_attention`` would run its math decomposition
  there (two ``bmm`` and a materialised seq x seq matrix); where CPU would run the fused
  kernel (inference, 4-d inputs) the trace runs that fused op on meta instead, so FLOPs and
  activation memory are what a CPU forward has.
- A FLOP is attributed to every module on the call stack (the innermost and its callers), as
  FlopCounterMode's module tracker does: a module's FLOPs include what it called.
- Data flow: every tensor remembers the modules it came from (an op's output inherits the
  sources of its inputs, a module's output is sourced at that module). A module's inputs are
  re-sourced as "the input of this module" while it runs, so flow inside a block starts at
  the block; a residual add inside a block is an edge from the block to the module after
  the add.
- Activation peak: every new (non-view, non in-place) tensor adds its bytes while it is
  alive. Meta tensors live exactly as long as real ones would, so the running maximum is the
  forward's activation peak (kernel-internal scratch buffers are not seen).
- Data-dependent checks: transformers' mask helpers ask ``padding_mask.all()`` and whether
  sequences are packed, i.e. ``.item()`` of a meta tensor. Inside
  ``transformers.masking_utils`` the trace answers True (a dense, unpadded, unpacked batch)
  and records an :class:`~modeldiff._core.trace.Assumption`; anywhere else it raises
  :class:`~modeldiff.errors.MetaTraceError` naming the op and the module. By default no
  ``attention_mask`` is passed at all (the same dense assumption), which avoids the checks.
"""

from __future__ import annotations

import inspect
import os
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from modeldiff._core.graph import ModelGraph
from modeldiff._core.trace import (
    Assumption,
    DataEdge,
    MemoryRow,
    ModuleTrace,
    TensorInfo,
    Trace,
)
from modeldiff.errors import InputTypeError, InvalidArgumentError, MetaTraceError

__all__ = ["MEMORY_DTYPES", "build", "extra_flop_formulas", "flop_formulas", "memory_rows", "trace"]

MEMORY_DTYPES = ("float32", "float16", "bfloat16", "int8", "int4")
# accelerate's estimate-memory divides the float32 size by these (its bfloat16 row keeps the
# float32 size, an oversight there; a bfloat16 model is half the size, as written here).
_DIVISOR = {"float32": 1, "float16": 2, "bfloat16": 2, "int8": 4, "int4": 8}

# .item() calls on meta tensors that trace answers, by caller (``file.function`` prefix):
# each answer is what a dense, unpadded, unpacked batch gives on a real device.
ANSWERS: tuple[tuple[str, bool, str], ...] = (
    # padding_mask.all(), fast_all(...), packed-sequence detection, attention_mask.all()
    ("masking_utils.", True, "dense, unpadded input: no padding, no packed sequences"),
    # `pad_token_id in input_ids[:, [-1, 0]]`: only decides whether to warn
    ("modeling_utils.warn_if_padding_and_no_attention_mask", False,
     "no padding token at either end of the input"),
)


def _fusable(args: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether CPU would run this SDPA call as its fused kernel, for meta inputs."""
    if len(args) < 3 or len(args) > 4 or set(kwargs) - {"attn_mask", "dropout_p", "is_causal",
                                                         "scale", "enable_gqa"}:
        return False
    q, k, v = args[:3]
    if not all(getattr(x, "device", None) is not None and x.device.type == "meta" and
               x.dim() == 4 for x in (q, k, v)):
        return False
    if kwargs.get("dropout_p", 0.0) or (kwargs.get("enable_gqa") and k.shape[1] != q.shape[1]
                                         and q.shape[1] % k.shape[1]):
        return False
    mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
    return mask is None or (mask.dtype == q.dtype or mask.dtype.is_floating_point is False)


def _on_meta(args: Any) -> bool:
    return any(getattr(a, "device", None) is not None and a.device.type == "meta" for a in args)


def _sdpa_cpu_flops(query: Any, key: Any, value: Any, *args: Any, out_val: Any = None,
                    **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    # FlopCounterMode(custom_mapping=...) hands formulas shapes; trace hands them tensors.
    shape = [getattr(x, "shape", x) for x in (query, key, value)]
    return int(sdpa_flop_count(*shape))


def _grouped_mm_flops(a: Any, b: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    # Mixture-of-experts kernels: rows of ``a`` (tokens routed to experts, grouped by
    # ``offs``) times one expert matrix each. How many rows go to each expert depends on the
    # router, but their total (tokens x experts per token) does not: 2 x rows x K x N.
    a_shape, b_shape = (tuple(getattr(x, "shape", x)) for x in (a, b))
    out = kwargs.get("out_shape") or tuple(out_val.shape)
    if len(a_shape) == 2 and len(b_shape) == 2:  # K split into groups (a weight gradient)
        return 2 * a_shape[0] * b_shape[1] * a_shape[1]
    n = 1
    for d in out:
        n *= d
    return 2 * n * a_shape[-1]


def extra_flop_formulas() -> dict[Any, Any]:
    """The formulas torch's FlopCounterMode lacks: SDPA's for the fused CPU attention op,
    and one for the mixture-of-experts kernel. ``FlopCounterMode(custom_mapping=...)``
    takes them as they are."""
    import torch

    return {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
            torch.ops.aten._grouped_mm: _grouped_mm_flops}


def flop_formulas() -> dict[Any, Any]:
    """torch's FLOP formulas by op packet, plus SDPA's for the fused CPU attention op; pass it
    as ``FlopCounterMode(custom_mapping=...)`` to count what trace counts.

    >>> import torch
    >>> torch.ops.aten._scaled_dot_product_flash_attention_for_cpu in flop_formulas()
    True
    """
    from torch.utils.flop_counter import flop_registry

    out = dict(flop_registry)
    out.update(extra_flop_formulas())
    return out


def trace(model: Any, inputs: Any = None, *, batch: int = 1, seq: int = 128,
          task: str | None = None, dtype: Any = None) -> Trace:
    """Run one forward of ``model`` and record shapes, FLOPs, activation bytes and data flow.

    ``model`` is anything :func:`modeldiff.walk` accepts that can run: an ``nn.Module``, a
    transformers config, a ``model_type`` name, a checkpoint folder or a hub id; modeldiff
    builds the last four on the meta device (no weights, no compute) with the head ``task``
    names, in ``dtype`` when given. ``inputs`` is a tensor (the main input, e.g.
    ``input_ids``), a mapping of forward arguments, or None: then a ``(batch, seq)`` batch of
    token ids (``pixel_values`` of the configured image size for vision models) on the
    model's device. Inputs on another device than the model move to it.

    No ``attention_mask`` is passed by default (a dense batch); where transformers still
    asks a meta tensor for a value, the answer a dense, unpadded batch gives is used and
    recorded in ``Trace.assumptions``; any other such question raises
    :class:`~modeldiff.errors.MetaTraceError` naming the op and the module.

    >>> t = trace("distilbert", task="sequence-classification", seq=128)
    >>> t["classifier"].output_shape, t["distilbert.transformer.layer.0"].output_shape
    ('[1, 2]', '[1, 128, 768]')
    >>> t.flops
    11174808576
    >>> t.flops_by_op("distilbert.transformer.layer.0.attention")
    {'aten._scaled_dot_product_flash_attention_for_cpu': 50331648, 'aten.addmm': 603979776}
    >>> [e.dst.rpartition("layer.")[2] for e in t.edges_from("distilbert.transformer.layer.0")]
    ['0.attention', '0.sa_layer_norm', '1']
    """
    import torch

    from modeldiff._inputs import walk

    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InvalidArgumentError("batch", batch, "a positive int")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise InvalidArgumentError("seq", seq, "a positive int")
    built = not _is_module(model)
    if built:
        model = build(model, task=task)
        if dtype is not None:
            model = model.to(_dtype(dtype))
    elif dtype is not None:
        raise InvalidArgumentError("dtype", dtype, "None when trace gets an nn.Module (cast "
                                   "it yourself with .to(dtype)); dtype= applies when trace "
                                   "builds the model")
    device = _device(model)
    kwargs = _inputs(model, inputs, batch=batch, seq=seq, device=device)
    graph = walk(model)
    if getattr(model, "training", False):
        model.eval()  # dropout off, as in inference; the user's module is put back below
        restore_training = True
    else:
        restore_training = False
    try:
        rec = _Recorder(model)
        with torch.no_grad():
            rec.run(kwargs)
    finally:
        if restore_training:
            model.train()
    return Trace(graph=graph, modules=rec.modules(graph), edges=tuple(rec.edges),
                 inputs=tuple((k, TensorInfo(shape=tuple(v.shape), dtype=_dt(v.dtype)))
                              for k, v in kwargs.items() if isinstance(v, torch.Tensor)),
                 device=str(device), parameter_bytes=_param_bytes(model),
                 memory=memory_rows(model), activation_peak=rec.peak,
                 assumptions=tuple(rec.assumptions))


# -- building and inputs ---------------------------------------------------------------------
def _is_module(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def build(obj: Any, *, task: str | None = None) -> Any:
    """A name, config or folder as a live model on the meta device, the way walk builds it."""
    from modeldiff._inputs import build_model, model_types

    if isinstance(obj, ModelGraph):
        raise InputTypeError("trace(model)", obj, "something that can run (an nn.Module, a "
                             "config, a model_type, a checkpoint folder or a hub id); a "
                             "ModelGraph holds no code to run")
    tf = sys.modules.get("transformers")
    if tf is not None and isinstance(obj, tf.PretrainedConfig):
        return build_model(obj, task=task)
    if isinstance(obj, (str, os.PathLike)):
        from pathlib import Path

        text = os.fspath(obj)
        path = Path(text).expanduser()
        if path.is_file() and path.name == "config.json":
            path = path.parent
        if path.is_dir():
            from transformers import AutoConfig

            from modeldiff._walk.checkpoint import read_config_json

            raw = read_config_json(path)
            config = AutoConfig.for_model(raw["model_type"], **{
                k: v for k, v in raw.items() if k != "model_type"})
            archs = raw.get("architectures") or ()
            arch = archs[0] if task is None and archs and isinstance(archs[0], str) else None
            return build_model(config, task=task, architecture=arch)
        if text in model_types():
            from transformers import AutoConfig

            return build_model(AutoConfig.for_model(text), task=task)
        from modeldiff._inputs import walk

        walk(obj, task=task)  # raises the right typed error for a bad name or folder
        from transformers import AutoConfig

        return build_model(AutoConfig.from_pretrained(text), task=task)
    raise InputTypeError("trace(model)", obj, "an nn.Module, a transformers config, a "
                         "model_type string, a checkpoint folder or a hub id")


def _dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise InvalidArgumentError("dtype", dtype, "a floating torch dtype or its name "
                                   "('float32', 'bfloat16', 'float16')")
    return value


def _dt(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _device(model: Any) -> Any:
    import torch

    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _inputs(model: Any, inputs: Any, *, batch: int, seq: int, device: Any) -> dict[str, Any]:
    import torch

    config = getattr(model, "config", None)
    if inputs is None:
        if config is None:
            raise InvalidArgumentError("inputs", None, "the forward's inputs (a tensor or a "
                                       "mapping of arguments) for a module that is not a "
                                       "transformers model")
        name = getattr(model, "main_input_name", "input_ids")
        if name == "input_ids":
            vocab = getattr(config, "vocab_size", None) or 2
            ids = (torch.arange(batch * seq, device=device).reshape(batch, seq) % max(vocab - 1, 1)
                   ) + (1 if vocab > 1 else 0)
            kwargs: dict[str, Any] = {"input_ids": ids}
        elif name == "pixel_values":
            size = getattr(config, "image_size", 224)
            size = size if isinstance(size, int) else size[0]
            ch = getattr(config, "num_channels", 3)
            kwargs = {"pixel_values": torch.zeros(batch, ch, size, size, device=device)}
        else:
            raise InvalidArgumentError("inputs", None, f"the model's {name!r} (a tensor or a "
                                       "mapping of arguments): trace makes token ids and "
                                       "pixel values only")
        params = _forward_params(model)
        if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params \
                and "input_ids" in kwargs:
            kwargs["decoder_input_ids"] = kwargs["input_ids"]
        if "use_cache" in params:
            kwargs["use_cache"] = False  # no KV cache object: a single forward, as in scoring
        return kwargs
    if isinstance(inputs, torch.Tensor):
        inputs = {getattr(model, "main_input_name", "input_ids"): inputs}
    if not isinstance(inputs, Mapping):
        raise InputTypeError("inputs", inputs, "a tensor, a mapping of forward arguments, "
                             "or None")
    return {k: v.to(device) if isinstance(v, torch.Tensor) and v.device != device else v
            for k, v in inputs.items()}


def _forward_params(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


# -- memory ----------------------------------------------------------------------------------
def _param_bytes(model: Any) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    seen: set[int] = set()
    for t in (*model.parameters(), *model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        k = _dt(t.dtype)
        out[k] = out.get(k, 0) + t.numel() * t.element_size()
    return tuple(sorted(out.items()))


def memory_rows(model: Any) -> tuple[MemoryRow, ...]:
    """accelerate ``estimate-memory``'s rows for a live (meta is fine) model.

    Total size: parameters and buffers (tied ones once) at float32 width for floating
    tensors, their own width for integer buffers, as a model built in float32 holds them;
    divided by 2 (float16, bfloat16), 4 (int8), 8 (int4). Largest layer: the largest module
    with no children or whose class is in ``_no_split_modules``. Training with Adam
    (accelerate's ``estimate_training_usage``, the largest of model, gradients, optimizer
    states and step): 4x the float32 size for float32, 2x for float16/bfloat16 mixed
    precision; none for int8/int4.
    """
    sizes: dict[str, int] = {}
    seen: set[int] = set()
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        size = t.numel() * (4 if t.is_floating_point() else t.element_size())
        parts = name.split(".")
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            sizes[key] = sizes.get(key, 0) + size
    total = sizes.get("", 0)
    no_split = set(getattr(model, "_no_split_modules", None) or ())
    todo: list[tuple[str, Any]] = [*model.named_parameters(recurse=False),
                                   *model.named_children(),
                                   *model.named_buffers(recurse=False)]
    largest = 0
    while todo:
        name, mod = todo.pop(0)
        kids = list(mod.named_children()) if hasattr(mod, "named_children") else []
        if not kids or type(mod).__name__ in no_split:
            largest = max(largest, sizes.get(name, 0))
        else:
            todo = [(f"{name}.{n}", v) for n, v in kids] + todo
    rows = []
    for d in MEMORY_DTYPES:
        div = _DIVISOR[d]
        if d == "float32":
            adam: int | None = total * 4
        elif d in ("float16", "bfloat16"):
            adam = max(total, total + total // 2, total * 2)
        else:
            adam = None
        rows.append(MemoryRow(dtype=d, largest_layer=largest // div, total=total // div,
                              training_adam=adam))
    return tuple(rows)


# -- the recorder ----------------------------------------------------------------------------
class _Recorder:
    """Hooks on every module plus a dispatch mode, for one forward."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.paths: dict[int, str] = {}
        for name, mod in model.named_modules():
            self.paths.setdefault(id(mod), name)
        self.stack: tuple[str, ...] = ()
        self.flops: dict[tuple[tuple[str, ...], str], int] = {}
        self.first: dict[str, list[Any]] = {}  # path -> [cls, inputs, outputs, act bytes]
        self.calls: dict[str, int] = {}
        self.order: list[str] = []
        # id(tensor) -> (weakref, sources): where a live tensor's data came from
        self.src: dict[int, tuple[Any, frozenset[str]]] = {}
        self.saved: list[list[tuple[int, Any]]] = []
        self.edges: list[DataEdge] = []
        self.edge_seen: set[tuple[str, str, tuple[int, ...]]] = set()
        self.live = 0
        self.peak = 0
        self.assumptions: list[Assumption] = []

    # -- provenance ------------------------------------------------------------------------
    def sources(self, t: Any) -> frozenset[str]:
        entry = self.src.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return frozenset()

    def set_sources(self, t: Any, s: frozenset[str]) -> None:
        self.src[id(t)] = (weakref.ref(t), s)

    # -- hooks -----------------------------------------------------------------------------
    def pre(self, module: Any, args: Any, kwargs: Any) -> None:
        path = self.paths.get(id(module))
        if path is None:
            return
        self.stack = (*self.stack, path)
        tensors = _tensors((args, kwargs))
        n = self.calls.get(path, 0)
        self.calls[path] = n + 1
        if n == 0:
            self.order.append(path)
            self.first[path] = [type(module).__name__, _infos(tensors), (), 0]
        saved = []
        mine = frozenset((path,))
        for t in tensors:
            old = self.sources(t)
            for s in sorted(old):
                self.edge(s, path, t)
            saved.append((t, old))
            self.set_sources(t, mine)
        self.saved.append(saved)

    def post(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        path = self.paths.get(id(module))
        if path is None:
            return
        for t, old in self.saved.pop():
            self.set_sources(t, old)
        outs = _tensors(output)
        mine = frozenset((path,))
        for t in outs:
            for s in sorted(self.sources(t)):
                if s != path and s.startswith(path + "." if path else ""):
                    self.edge(s, path, t)  # a tensor inside leaves as this module's output
            self.set_sources(t, mine)
        rec = self.first[path]
        if not rec[2] and self.calls[path] == 1:
            rec[2] = _infos(outs)
            rec[3] = sum(t.numel() * t.element_size() for t in outs)
        self.stack = self.stack[:-1]

    def edge(self, src: str, dst: str, t: Any) -> None:
        if src == dst:
            return
        shape = tuple(t.shape)
        key = (src, dst, shape)
        if key not in self.edge_seen:
            self.edge_seen.add(key)
            self.edges.append(DataEdge(src=src, dst=dst, shape=shape, dtype=_dt(t.dtype)))

    # -- the forward -----------------------------------------------------------------------
    def run(self, kwargs: dict[str, Any]) -> None:
        import torch
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        rec = self
        formulas = flop_formulas()
        local_scalar = torch.ops.aten._local_scalar_dense.default
        Tensor = torch.Tensor

        storages: dict[int, list[int]] = {}
        held = {t.untyped_storage()._cdata for t in (*self.model.parameters(),
                                                     *self.model.buffers())}
        held.update(v.untyped_storage()._cdata for v in kwargs.values()
                    if isinstance(v, torch.Tensor))

        def release(key: int) -> None:
            entry = storages[key]
            entry[1] -= 1
            if entry[1] == 0:
                rec.live -= entry[0]
                del storages[key]

        sdpa = torch.nn.functional.scaled_dot_product_attention
        fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default

        class Attention(TorchFunctionMode):
            # On meta, SDPA runs its math decomposition, which materialises the attention
            # matrix; on CPU (inference, 4-d inputs) it runs the fused kernel, which does
            # not. Run the fused op on meta too, so activation memory is the CPU's; FLOPs
            # are equal either way.
            def __torch_function__(self, func: Any, types: Any, args: Any = (),
                                   kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                if func is sdpa and _fusable(args, kwargs):
                    q, k, v = args[:3]
                    mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
                    return fused(q, k, v, kwargs.get("dropout_p", 0.0),
                                 kwargs.get("is_causal", False), attn_mask=mask,
                                 scale=kwargs.get("scale"))[0]
                return func(*args, **kwargs)

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                                   kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                if func is local_scalar and args and args[0].device.type == "meta":
                    return rec.scalar(args[0])
                try:
                    out = func(*args, **kwargs)
                except (NotImplementedError, RuntimeError) as e:
                    if isinstance(e, MetaTraceError) or not _on_meta(args):
                        raise
                    detail = str(e).splitlines()[0][:200]
                    if "BF16" in detail:
                        detail += " (trace with dtype='bfloat16')"
                    raise MetaTraceError(str(func), rec.stack[-1] if rec.stack else "",
                                         rec.site(), detail) from e
                formula = formulas.get(func._overloadpacket)
                if formula is not None:
                    n = int(formula(*args, **kwargs, out_val=out))
                    key = (rec.stack, str(func._overloadpacket))
                    rec.flops[key] = rec.flops.get(key, 0) + n
                ins = [a for a in args if isinstance(a, Tensor)]
                for a in args:
                    if isinstance(a, (list, tuple)):
                        ins.extend(x for x in a if isinstance(x, Tensor))
                srcs: frozenset[str] = frozenset()
                for a in ins:
                    s = rec.sources(a)
                    if s:
                        srcs = srcs | s if srcs else s
                outs = out if isinstance(out, (tuple, list)) else (out,)
                for o in outs:
                    if not isinstance(o, Tensor):
                        continue
                    if srcs:
                        rec.set_sources(o, srcs)
                    # Below autograd no output is marked a view: a storage is new when no
                    # live tensor holds it yet (views and in-place results share one).
                    st = o.untyped_storage()
                    key = st._cdata
                    if key in held:
                        continue  # a weight, a buffer or an input (a transposed weight)
                    entry = storages.get(key)
                    if entry is None:
                        n = st.nbytes()
                        storages[key] = entry = [n, 0]
                        rec.live += n
                        if rec.live > rec.peak:
                            rec.peak = rec.live
                    entry[1] += 1
                    weakref.finalize(o, release, key)
                return out

        handles = []
        for mod in self.model.modules():
            handles.append(mod.register_forward_pre_hook(self.pre, with_kwargs=True))
            handles.append(mod.register_forward_hook(self.post, with_kwargs=True))
        for v in kwargs.values():
            if isinstance(v, Tensor):
                self.set_sources(v, frozenset(("",)))
        try:
            with Attention(), Mode():
                out = self.model(**kwargs)
            del out
        except MetaTraceError:
            raise
        except RuntimeError as e:
            if "meta" in str(e) and self.stack:  # a device mismatch met outside the dispatcher
                raise MetaTraceError("a tensor created off the meta device", self.stack[-1],
                                     "the forward", str(e).splitlines()[0][:200]) from e
            raise
        finally:
            for h in handles:
                h.remove()

    @staticmethod
    def site() -> str:
        """``file.function`` of the nearest caller outside torch and this module."""
        frame: Any = sys._getframe(1)
        while frame is not None and ("/torch/" in frame.f_code.co_filename or
                                     frame.f_code.co_filename.endswith("_trace.py")):
            frame = frame.f_back
        if frame is None:
            return "?"
        name = os.path.basename(frame.f_code.co_filename).removesuffix(".py")
        return f"{name}.{frame.f_code.co_name}"

    def scalar(self, t: Any) -> Any:
        """``.item()`` of a meta tensor: answered where the answer for a dense, unpadded
        batch is known (:data:`ANSWERS`), else a MetaTraceError."""
        site = self.site()
        module = self.stack[-1] if self.stack else ""
        for prefix, value, why in ANSWERS:
            if site.startswith(prefix):
                a = Assumption(site=site, module=module, assumed=f"{value} ({why})")
                if a not in self.assumptions:
                    self.assumptions.append(a)
                return value
        raise MetaTraceError("aten._local_scalar_dense (.item() or bool() of a tensor)",
                             module, site)

    def modules(self, graph: ModelGraph) -> tuple[ModuleTrace, ...]:
        total: dict[str, int] = {}
        ops: dict[str, dict[str, int]] = {}
        for (stack, op), n in self.flops.items():
            for p in set(stack):
                total[p] = total.get(p, 0) + n
                d = ops.setdefault(p, {})
                d[op] = d.get(op, 0) + n
        out = []
        for p in self.order:
            cls, ins, outs, act = self.first[p]
            params = graph[p].totals.params if p in graph else 0
            out.append(ModuleTrace(path=p, cls=cls, inputs=ins, outputs=outs,
                                   flops=total.get(p, 0),
                                   ops=tuple(sorted(ops.get(p, {}).items())),
                                   activation_bytes=act, calls=self.calls[p], params=params))
        return tuple(out)


def _tensors(obj: Any) -> list[Any]:
    """The tensors in a forward's arguments or outputs, in order (tuples, lists, dicts and
    ModelOutputs flattened; other objects, such as caches, skipped)."""
    import torch

    out: list[Any] = []
    todo = [obj]
    while todo:
        x = todo.pop()
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (tuple, list)):
            todo.extend(reversed(x))
        elif isinstance(x, Mapping):
            todo.extend(reversed(list(x.values())))
    return out


def _infos(tensors: list[Any]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(shape=tuple(t.shape), dtype=_dt(t.dtype)) for t in tensors)
