"""trace: a meta forward tells the truth about a real one.

The reference for every model is a real CPU forward of the same weights-initialised model
on the same token ids, with forward hooks (output shapes) and torch's FlopCounterMode
(FLOPs), the fused CPU attention op given torch's SDPA formula through ``custom_mapping``.
"""

from __future__ import annotations

import inspect
import itertools
import json

import pytest
import torch

import modeldiff
from modeldiff._core.trace import Trace, human_flops
from modeldiff._inputs import build_model
from modeldiff._trace import extra_flop_formulas, trace
from modeldiff.errors import InvalidArgumentError, MetaTraceError

SEQ = 8

# model_type -> head, for every tiny type that traces; seq-cls where the type has one.
SEQ_CLS = (
    "albert", "bert", "big_bird", "biogpt", "bloom", "camembert", "convbert", "ctrl",
    "data2vec-text", "deberta", "deberta-v2", "diffllama", "distilbert", "electra", "ernie",
    "esm", "eurobert", "falcon", "fnet", "funnel", "gemma", "gemma2", "gpt2", "gpt_bigcode",
    "gpt_neo", "gpt_neox", "gptj", "gte", "ibert", "layoutlm", "llama", "luke", "markuplm",
    "megatron-bert", "mistral", "mobilebert", "modernbert", "mpnet", "mpt", "mra",
    "nemotron", "nomic_bert", "nystromformer", "opt", "openai-gpt", "olmo",
    "persimmon", "phi", "phi3", "qwen2", "qwen3", "rembert", "roberta",
    "roberta-prelayernorm", "roc_bert", "roformer", "squeezebert", "stablelm", "starcoder2",
    "tapas", "xlm-roberta", "xlm-roberta-xl", "yoso",
)
CAUSAL = ("olmo", "bart", "mbart", "plbart", "mvp", "bigbird_pegasus", "llama", "gpt2",
          "qwen3", "phi3")
CASES = [(t, "sequence-classification") for t in SEQ_CLS] + [(t, "causal-lm") for t in CAUSAL]

# Types that cannot trace on meta, and why: each raises MetaTraceError naming op and module.
CANNOT = {
    # `len(torch.unique_consecutive(eos_mask.sum(1))) > 1`: counts <eos> tokens per row
    ("bart", "sequence-classification"): "aten.unique_consecutive",
    ("t5", "sequence-classification"): "aten.unique_consecutive",
    # `if torch.all(attention_mask == 1)`-style checks outside transformers' mask helpers
    ("xlm", "sequence-classification"): "aten._local_scalar_dense",
    ("flaubert", "sequence-classification"): "aten._local_scalar_dense",
    ("longformer", "sequence-classification"): "aten._local_scalar_dense",
    # the language adapter selects rows with nonzero(), whose size depends on values
    ("xmod", "sequence-classification"): "aten.index",
    # the expert kernel torch._grouped_mm takes bfloat16 only (the error says dtype=...)
    ("mixtral", "causal-lm"): "aten._grouped_mm",
}
# Where the reference differs for a reason that is not trace's: BigBird swaps its self-
# attention module inside the first forward (block_sparse -> original_full at short
# lengths); FlopCounterMode's module tracker never names the new module, trace does. Totals
# and every enclosing module agree.
UNNAMED_BY_FLOPCOUNTER = {"big_bird": ".attention.self"}


def _ids(config: object, batch: int = 1, seq: int = SEQ) -> object:
    vocab = getattr(config, "vocab_size", None) or 2
    return torch.arange(batch * seq).reshape(batch, seq) % (vocab - 1) + 1


def _reference(model: object, kwargs: dict) -> tuple[dict, dict]:
    from torch.utils.flop_counter import FlopCounterMode

    names = {id(m): n for n, m in reversed(list(model.named_modules()))}
    shapes: dict[str, list] = {}

    def post(mod, args, kw, out):
        shapes.setdefault(names[id(mod)], [tuple(t.shape) for t in _flat(out)])

    handles = [m.register_forward_hook(post, with_kwargs=True) for m in model.modules()]
    counter = FlopCounterMode(display=False, custom_mapping=extra_flop_formulas())
    try:
        with torch.no_grad(), counter:
            model(**kwargs)
    finally:
        for h in handles:
            h.remove()
    root = type(model).__name__
    flops = {("" if k == root else k.removeprefix(root + ".")): sum(v.values())
             for k, v in counter.get_flop_counts().items() if k != "Global"}
    return shapes, flops


def _flat(obj: object) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for x in obj for t in _flat(x)]
    if isinstance(obj, dict):
        return [t for x in obj.values() for t in _flat(x)]
    return []


def _check_against_cpu(model_type: str, task: str, dtype: str | None = None) -> None:
    config = modeldiff.tiny_config(model_type)
    traced = trace(config, task=task, seq=SEQ, dtype=dtype)
    assert traced.device == "meta"
    torch.manual_seed(0)
    real = build_model(config, task=task, device="cpu").eval()
    if dtype is not None:
        real = real.to(getattr(torch, dtype))
    kwargs = {"input_ids": _ids(config)}
    if "use_cache" in inspect.signature(real.forward).parameters:
        kwargs["use_cache"] = False
    if getattr(config, "is_encoder_decoder", False) and task != "causal-lm":
        kwargs["decoder_input_ids"] = kwargs["input_ids"]
    shapes, flops = _reference(real, kwargs)
    ran = {m.path for m in traced.modules}
    assert ran == set(shapes)
    unnamed = UNNAMED_BY_FLOPCOUNTER.get(model_type)
    for m in traced.modules:
        assert [o.shape for o in m.outputs] == shapes[m.path], m.path
        if unnamed and unnamed in m.path and m.path not in flops:
            continue
        assert m.flops == flops.get(m.path, 0), m.path
    assert traced.flops == flops[""] > 0


@pytest.mark.parametrize(("model_type", "task"), CASES, ids=[f"{t}-{k}" for t, k in CASES])
def test_meta_trace_equals_a_real_cpu_forward(model_type, task):
    _check_against_cpu(model_type, task)


# Mixture-of-experts layers run torch._grouped_mm, which (on meta as on CPU) takes bfloat16
# only; its FLOPs (2 x routed rows x K x N) do not depend on where the router sends tokens.
@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "gpt_oss"])
def test_mixture_of_experts_traces_in_bfloat16_and_counts_the_experts(model_type):
    _check_against_cpu(model_type, "causal-lm", dtype="bfloat16")


def test_attention_is_counted_where_plain_flopcounter_on_cpu_counts_zero():
    from torch.utils.flop_counter import FlopCounterMode

    config = modeldiff.tiny_config("llama")
    real = build_model(config, task="causal-lm", device="cpu").eval()
    plain = FlopCounterMode(display=False)
    with torch.no_grad(), plain:
        real(input_ids=_ids(config), use_cache=False)
    traced = trace(config, task="causal-lm", seq=SEQ)
    attn = traced["model.layers.0.self_attn"]
    sdpa = attn.flops - sum(traced[f"model.layers.0.self_attn.{p}"].flops
                            for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
    # 2 matmuls of (heads x seq x seq x head_dim), 2 FLOPs per multiply-add
    assert sdpa == 2 * 2 * 4 * SEQ * SEQ * 8
    assert traced.flops - plain.get_total_flops() == 2 * sdpa  # two layers


@pytest.mark.parametrize(("model_type", "task"), sorted(CANNOT), ids=lambda x: str(x))
def test_a_type_that_cannot_trace_says_which_op_and_module(model_type, task):
    with pytest.raises(MetaTraceError) as info:
        trace(modeldiff.tiny_config(model_type), task=task, seq=SEQ)
    assert info.value.op.startswith(CANNOT[model_type, task])
    assert info.value.module is not None
    assert CANNOT[model_type, task] in str(info.value)
    if "grouped_mm" in info.value.op:
        assert "dtype='bfloat16'" in str(info.value)


def test_data_dependent_mask_checks_are_answered_and_recorded():
    config = modeldiff.tiny_config("llama")
    ids = _ids(config).to("meta")
    model = build_model(config, task="causal-lm")
    t = trace(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert bool(t)
    assert t.findings == len(t.assumptions) >= 1
    assert {a.site.split(".")[0] for a in t.assumptions} == {"masking_utils"}
    assert all("dense, unpadded" in a.assumed for a in t.assumptions)
    assert "assumed True (dense, unpadded" in str(t)


def test_data_flow_of_distilbert_reads_as_its_real_flow(distilbert_config):
    t = trace(distilbert_config, task="sequence-classification", seq=16)
    edges = {(e.src, e.dst) for e in t.edges}
    chain = ["distilbert.embeddings", "distilbert.transformer",
             *[f"distilbert.transformer.layer.{i}" for i in range(6)],
             "distilbert.transformer", "distilbert", "pre_classifier", "dropout", "classifier"]
    for a, b in itertools.pairwise(chain):
        assert (a, b) in edges, (a, b)
    layer = "distilbert.transformer.layer.3"
    # the residual adds: the block's input meets the attention output at sa_layer_norm, and
    # sa_layer_norm's output meets the FFN output at output_layer_norm
    assert {(layer, f"{layer}.sa_layer_norm"), (f"{layer}.attention", f"{layer}.sa_layer_norm"),
            (f"{layer}.sa_layer_norm", f"{layer}.output_layer_norm"),
            (f"{layer}.ffn", f"{layer}.output_layer_norm")} <= edges
    shapes = {(e.src, e.dst): e.label for e in t.edges}
    assert shapes["distilbert", "pre_classifier"] == "[1, 768]"
    assert shapes[f"{layer}.ffn.lin1", f"{layer}.ffn.activation"] == "[1, 16, 3072]"


def _profiled_peak(model, kwargs) -> int:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        out = model(**kwargs)
        del out
    live = peak = 0
    for e in sorted((e for e in p.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start):
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


@pytest.fixture(scope="module")
def real_models(distilbert_config):
    """Full-size DistilBERT and a tiny Llama with (random) real weights, built once."""
    llama = modeldiff.tiny_config("llama")
    return {"distilbert": (distilbert_config, "sequence-classification", {}, build_model(
                distilbert_config, task="sequence-classification", device="cpu").eval()),
            "llama": (llama, "causal-lm", {"use_cache": False},
                      build_model(llama, task="causal-lm", device="cpu").eval())}


@pytest.mark.parametrize("seq", [32, 128])
@pytest.mark.parametrize("which", ["distilbert", "llama"])
def test_activation_peak_is_within_15_percent_of_a_measured_cpu_peak(which, seq, real_models):
    config, task, extra, real = real_models[which]
    measured = _profiled_peak(real, {"input_ids": _ids(config, seq=seq), **extra})
    estimate = trace(config, task=task, seq=seq).activation_peak
    assert abs(estimate - measured) <= 0.15 * measured, (estimate, measured)


def test_parameter_memory_and_the_adam_rule(distilbert_config):
    model = build_model(distilbert_config, task="sequence-classification")
    t = trace(model, seq=8)
    by_dtype: dict[str, int] = {}
    for tensor in {id(x): x for x in (*model.parameters(), *model.buffers())}.values():
        key = str(tensor.dtype).removeprefix("torch.")
        by_dtype[key] = by_dtype.get(key, 0) + tensor.numel() * tensor.element_size()
    assert dict(t.parameter_bytes) == by_dtype
    rows = {r.dtype: r for r in t.memory}
    fp32 = rows["float32"].total
    assert fp32 == by_dtype["float32"] + by_dtype["int64"]  # buffers keep their width
    # accelerate estimate_training_usage: float32 -> 4x (model, grads, 2 Adam states);
    # mixed precision -> the optimizer states, 2x the float32 size; int8/int4 -> N/A
    assert rows["float32"].training_adam == 4 * fp32
    assert rows["float16"].training_adam == rows["bfloat16"].training_adam == 2 * fp32
    assert rows["int8"].training_adam is None
    assert rows["int4"].training_adam is None
    assert (rows["float16"].total, rows["int8"].total, rows["int4"].total) == \
        (fp32 // 2, fp32 // 4, fp32 // 8)
    # largest layer: DistilBERT's no-split module is TransformerBlock; embeddings are larger
    assert rows["float32"].largest_layer == 4 * 30522 * 768
    assert "Training using Adam" in t.memory_table()


def test_summary_table_folds_repeats_with_per_layer_and_total_flops(distilbert_config):
    t = trace(distilbert_config, task="sequence-classification", seq=16)
    table = t.summary(depth=4)
    row = next(line for line in table.splitlines() if "0-5 (x6)" in line)
    one = t["distilbert.transformer.layer.0"].flops
    assert human_flops(one) in row
    assert human_flops(6 * one) in row
    assert "[1, 16, 768]" in row
    assert "output shape" in table
    assert "FLOPs" in table
    assert len(t.summary(depth=1).splitlines()) < len(table.splitlines())


def test_json_round_trip_and_protocol():
    t = trace(modeldiff.tiny_config("bert"), task="sequence-classification", seq=SEQ)
    assert not t  # no assumption needed without an attention mask
    again = Trace.from_json(t.to_json())
    assert again.to_json() == t.to_json()
    assert again["classifier"].output_shape == "[1, 2]"
    assert json.loads(t.to_json())["schema"] == "modeldiff.trace"
    assert repr(t).startswith("<Trace BertForSequenceClassification(input_ids[1, 8])")


def test_diff_of_two_traces_reports_head_shape_and_flops(distilbert_config):
    base = trace(distilbert_config, task="base", seq=16)
    head = trace(distilbert_config, task="sequence-classification", seq=16)
    d = base.diff(head)
    by_path = {c.path: c for c in d.changes}
    assert d
    assert d.after_flops > d.before_flops
    assert by_path["classifier"].before_shape is None
    assert by_path["classifier"].after_shape == "[1, 2]"
    assert by_path["classifier"].after_flops == 2 * 768 * 2


def test_dtype_and_batch_change_what_is_traced():
    t = trace("distilbert", seq=8, batch=3, dtype="bfloat16")
    assert t.inputs[0][1].shape == (3, 8)
    assert t["transformer.layer.0"].outputs[0].dtype == "bfloat16"
    assert dict(t.parameter_bytes)["bfloat16"] == 2 * t.graph.totals.params
    with pytest.raises(InvalidArgumentError, match="seq"):
        trace("distilbert", seq=0)
    with pytest.raises(InvalidArgumentError, match="dtype"):
        trace(torch.nn.Linear(2, 2), torch.ones(1, 2), dtype="float16")


def test_a_plain_module_traces_with_its_inputs():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    t = trace(net, {"input": torch.ones(5, 4)})
    assert t.device == "cpu"
    assert [t[p].output_shape for p in ("0", "1", "2")] == ["[5, 8]", "[5, 8]", "[5, 2]"]
    assert t.flops == 2 * 5 * 4 * 8 + 2 * 5 * 8 * 2
    assert {(e.src, e.dst) for e in t.edges} >= {("0", "1"), ("1", "2"), ("", "0"), ("2", "")}
    with pytest.raises(InvalidArgumentError, match="inputs"):
        trace(net)


def test_cli_trace_and_memory(capsys):
    from modeldiff.cli import main

    assert main(["trace", "distilbert", "--seq", "16", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "DistilBertModel(input_ids[1, 16])" in out
    assert "output shape" in out
    assert "[1, 16, 768]" in out
    assert main(["trace", "bert", "--seq", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "modeldiff.trace"
    assert main(["memory", "distilbert"]) == 0
    assert "| float32  | 93.76 MB      | 265.46 MB  | 1.06 GB             |" in \
        capsys.readouterr().out
    assert main(["trace", "distilbert", "--seq", "0"]) == 2


def test_render_draws_data_flow_with_shapes_and_folded_groups_keep_boundary_arrows(
        distilbert_config):
    t = trace(distilbert_config, task="sequence-classification", seq=16)
    source = modeldiff.render(t, depth=3).source
    assert '"distilbert.embeddings.LayerNorm" -> "distilbert.embeddings.dropout" ' \
           '[label="[1, 16, 768]"' in source
    assert 'pre_classifier -> dropout [label="[1, 768]"' in source
    # the six layers are one box: flow enters the group's box, never member 1..5
    assert 'lhead="cluster:distilbert.transformer"' in source
    assert "layer.1" not in source
    assert modeldiff.render(t).source == modeldiff.render(t).source  # deterministic
