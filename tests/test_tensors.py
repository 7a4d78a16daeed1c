"""modeldiff._walk.tensors: tensor statistics, checkpoint comparison, weight diffs."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from modeldiff._core.compare import ABSENT
from modeldiff._walk import tensors as tensors_module
from modeldiff._walk.tensors import (
    CHUNK_BYTES,
    CheckpointDiff,
    Difference,
    compare_checkpoints,
    compare_weights,
    tensor_stats,
)
from modeldiff.errors import CheckpointError, ModelDiffError, NotMaterializedError


def tiny_distilbert_config(**kw):
    from transformers import DistilBertConfig

    return DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=1000, **kw)


@pytest.fixture(params=["C module", "torch"])
def one_pass(request, monkeypatch):
    """Run the test through the optional C module, then again without it (the torch path a
    machine without a C compiler takes): both must give the same answers."""
    if request.param == "torch":
        monkeypatch.setattr(tensors_module, "_one_pass", None)
    return request.param


# -- tensor_stats ----------------------------------------------------------------------------
def test_identical_tensors_are_equal_with_exact_stats():
    a = torch.randn(5, 7)
    s = tensor_stats("w", a, a.clone())
    assert (s.equal, s.n_changed, s.max_abs, s.rel_change, s.cosine) == (True, 0, 0.0, 0.0, 1.0)
    assert str(s) == "w: identical"


@pytest.mark.usefixtures("one_pass")
def test_nan_with_same_bits_is_equal_but_signed_zero_is_not():
    a = torch.tensor([float("nan"), 1.0, 0.0])
    assert tensor_stats("w", a, a.clone()).equal
    s = tensor_stats("w", a, torch.tensor([float("nan"), 1.0, -0.0]))
    assert not s.equal
    assert s.n_changed == 0  # same values, other bytes
    assert s.max_abs == 0.0
    assert "same values, different bytes" in str(s)


@pytest.mark.usefixtures("one_pass")
def test_stats_match_a_direct_computation():
    torch.manual_seed(0)
    a = torch.randn(64, 32)
    b = a.clone()
    b[3, :5] += 0.25
    s = tensor_stats("layer.weight", a, b)
    a64, b64 = a.double(), b.double()
    assert s.n_changed == 5
    assert s.max_abs == pytest.approx(float((b64 - a64).abs().max()))
    assert s.rel_change == pytest.approx(float((b64 - a64).norm() / a64.norm()))
    assert s.cosine == pytest.approx(float(torch.nn.functional.cosine_similarity(
        a64.flatten(), b64.flatten(), dim=0)))
    assert s.numel == 64 * 32


@pytest.mark.usefixtures("one_pass")
def test_chunked_statistics_over_tensors_larger_than_one_chunk():
    n = CHUNK_BYTES // 8 * 2 + 123  # three float64 chunks
    torch.manual_seed(1)
    a = torch.randn(n)
    b = a.clone()
    b[0] = 10.0
    b[-1] = -10.0
    s = tensor_stats("big", a, b)
    a64, b64 = a.double(), b.double()
    assert s.n_changed == 2
    assert s.max_abs == pytest.approx(float((b64 - a64).abs().max()))
    assert s.rel_change == pytest.approx(float((b64 - a64).norm() / a64.norm()))


@pytest.mark.usefixtures("one_pass")
def test_zero_vectors_rel_change_and_cosine_are_defined():
    z = torch.zeros(4)
    s = tensor_stats("w", z, torch.tensor([0.0, 3.0, 0.0, 4.0]))
    # Relative to zero the change would be infinite; relative to the new values it is 1.0,
    # "all of b is new", and the note says which norm it is taken against.
    assert s.rel_change == 1.0
    assert "a was all zeros: change relative to b" in s.note
    assert "rel change 1," in str(s)
    assert s.cosine == 0.0
    s = tensor_stats("w", z, -z)  # -0.0 everywhere: other bytes, same (zero) values
    assert (s.equal, s.rel_change, s.cosine) == (False, 0.0, 1.0)


def test_dtype_difference_is_noted_and_values_compared_in_the_wider_dtype():
    a = torch.tensor([1.0, 2.0, 1.0 / 3.0])
    s = tensor_stats("w", a, a.to(torch.bfloat16))
    assert not s.equal
    assert (s.dtype_a, s.dtype_b) == ("float32", "bfloat16")
    assert s.note == "dtype float32 -> bfloat16"
    assert s.n_changed == 1  # 1/3 is not representable in bf16; 1.0 and 2.0 are
    assert s.max_abs == pytest.approx(abs(float(a[2].double() - a[2].bfloat16().double())))


def test_shape_mismatch_is_reported_not_raised():
    s = tensor_stats("w", torch.zeros(2, 3), torch.zeros(2, 4))
    assert not s.equal
    assert not s.comparable
    assert s.max_abs is None
    assert str(s) == "w: shape (2, 3) -> (2, 4)"


def test_meta_tensor_is_refused():
    with pytest.raises(NotMaterializedError, match="meta device"):
        tensor_stats("w", torch.empty(3, device="meta"), torch.zeros(3))


def test_bool_int_and_scalar_tensors():
    assert tensor_stats("m", torch.tensor([True, False]), torch.tensor([True, False])).equal
    s = tensor_stats("i", torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))
    assert (s.n_changed, s.max_abs) == (1, 1.0)
    assert tensor_stats("s", torch.tensor(2.5), torch.tensor(2.5)).equal


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1,
                max_size=50),
       st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64]))
def test_a_tensor_is_always_equal_to_its_copy(values, dtype):
    a = torch.tensor(values, dtype=torch.float32).to(dtype)
    s = tensor_stats("w", a, a.clone())
    assert s.equal
    assert s.n_changed == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=40),
       st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=40))
def test_stats_agree_with_numpy(xs, ys):
    n = min(len(xs), len(ys))
    a = np.array(xs[:n], dtype=np.float64)
    b = np.array(ys[:n], dtype=np.float64)
    s = tensor_stats("w", torch.from_numpy(a), torch.from_numpy(b))
    assert s.n_changed == int((a != b).sum())
    assert s.max_abs == pytest.approx(float(np.abs(b - a).max()))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if s.n_changed and na > 0:
        assert s.rel_change == pytest.approx(np.linalg.norm(b - a) / na)
    if na > 0 and nb > 0:
        assert s.cosine == pytest.approx(float(a @ b / (na * nb)), abs=1e-9)


@pytest.mark.usefixtures("one_pass")
@pytest.mark.parametrize("case", ["tiny change", "rescaled to 1e-4", "sign flipped",
                                  "orthogonal", "values 1e-20", "values 1e25", "bf16", "fp16"])
def test_statistics_of_large_tensors_hold_where_float32_sums_would_not(case):
    # Tensors of 300K values take the chunked fast path; each case is a regime where a
    # shortcut fails (1 - cos lost in rounding, |b| derived by cancellation, float32 sums,
    # squares that underflow or overflow). The reference is float64 throughout.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300_000, generator=g) * 0.05
    noise = torch.randn(300_000, generator=g)
    b = {"tiny change": a + noise * 1e-7, "rescaled to 1e-4": a * 1e-4, "sign flipped": -a,
         "orthogonal": noise - (noise @ a) / (a @ a) * a, "values 1e-20": a * 1e-20,
         "values 1e25": a * 1e25, "bf16": (a + noise * 1e-3).bfloat16().float(),
         "fp16": (a + noise * 1e-3).half().float()}[case]
    if case == "values 1e-20":
        a = a * 1e-20 + noise * 1e-24
    if case == "values 1e25":
        a = a * 1e25 * (1 + noise * 1e-3)
    if case == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    if case == "fp16":
        a, b = a.half(), b.half()
    s = tensor_stats("w", a, b)
    x, y = a.double(), b.double()
    d = y - x
    assert s.n_changed == int((d != 0).sum())
    assert s.max_abs == pytest.approx(float(d.abs().max()), rel=1e-12)
    assert s.rel_change == pytest.approx(float(d.norm() / x.norm()), rel=1e-9)
    cos = float(x @ y / (x.norm() * y.norm()))
    # 1 - cos to 1e-6 of itself where it is small, the cosine to 1e-12 where it is not
    assert 1 - s.cosine == pytest.approx(1 - cos, rel=1e-6, abs=1e-12)
    if case == "tiny change":
        assert 0 < 1 - s.cosine < 1e-8


# -- the C module -----------------------------------------------------------------------------
_KINDS = {torch.float32: "f", torch.float16: "e", torch.bfloat16: "b"}


def _raw(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16).numpy()


@pytest.fixture(params=["AVX2", "portable"])
def kernel(request):
    """The C module's two kernels: AVX2 intrinsics (x86-64 CPUs since about 2013; this
    machine's) and the portable vector loop every other CPU gets."""
    from modeldiff._walk import _sums

    before = _sums.avx2(request.param == "AVX2")
    if request.param == "AVX2" and not _sums.avx2():
        pytest.fail("this CPU has no AVX2, FMA or F16C: the AVX2 kernel cannot be tested here")
    yield request.param
    _sums.avx2(before)


def test_the_c_module_is_built_here():
    # `make` installs modeldiff with MODELDIFF_REQUIRE_SUMS=1, so a failed build stops the
    # set-up; this checks the module also loads. docs/performance.md's weight_diff numbers
    # are with it; without it weight_diff is about three times slower, same answers.
    assert tensors_module._one_pass is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.usefixtures("kernel")
def test_every_half_precision_value_is_read_exactly(dtype):
    # All 65,536 bit patterns, through the vector loop (8 values: two groups of four) and
    # the scalar tail (3 values): a = v, b = 0 gives |v| and sums of v^2 that are exact.
    sums = tensors_module._one_pass
    patterns = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    values = patterns.view(dtype).double().tolist()
    for n in (8, 3):
        zeros = np.zeros(n, np.int16)
        for p, v in zip(patterns.tolist(), values, strict=True):
            got = sums(np.full(n, p, np.int16), zeros, _KINDS[dtype])
            if not math.isfinite(v):
                assert got is None, (hex(p & 0xFFFF), v)
            else:
                assert got == (n * (v != 0), abs(v), n * v * v, n * v * v, -n * v * v), \
                    (hex(p & 0xFFFF), v)


_EDGES = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1.1754944e-38, 6e-8, 65504.0, 65520.0,
                          3.4e38, -3.4e38, 1.0, -1.0, 0.1, float("inf"), float("nan")])


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from(sorted(_KINDS, key=str)), st.integers(0, 40))
@pytest.mark.usefixtures("kernel")
def test_c_module_agrees_with_float64(data, dtype, n):
    values = st.lists(st.floats(width=32) | _EDGES, min_size=n, max_size=n)
    a = torch.tensor(data.draw(values), dtype=torch.float32).to(dtype)
    b = torch.tensor(data.draw(values), dtype=torch.float32).to(dtype)
    got = tensors_module._one_pass(_raw(a), _raw(b), _KINDS[dtype])
    x, y = a.double(), b.double()
    if not (x.isfinite().all() and y.isfinite().all()):
        assert got is None  # the general path redoes such a tensor
        return
    d = y - x
    aa, dd, ad = float(x @ x), float(d @ d), float(x @ d)
    assert got[:2] == (int((d != 0).sum()), float(d.abs().max()) if n else 0.0)
    # the same terms, added in another order: within n roundings of the largest sum
    for g, want, scale in zip(got[2:], (aa, dd, ad), (aa, dd, math.sqrt(aa * dd)),
                              strict=True):
        assert abs(g - want) <= 1e-13 * scale


def test_c_module_refuses_buffers_it_cannot_read_whole():
    sums = tensors_module._one_pass
    with pytest.raises(ValueError, match="not two runs"):
        sums(bytes(8), bytes(12), "f")
    with pytest.raises(ValueError, match="not two runs"):
        sums(bytes(6), bytes(6), "f")
    with pytest.raises(ValueError, match="kind"):
        sums(bytes(8), bytes(8), "d")


@pytest.mark.usefixtures("kernel")
def test_weight_diff_is_the_same_with_and_without_the_c_module(tmp_path, monkeypatch):
    """A few optimizer steps on a small model, saved in float32, bfloat16 and float16: every
    tensor's statistics agree to float64 rounding whichever path computes them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 64)).pow(2).mean().backward()
        opt.step()
    after = model.state_dict()
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        save_file({k: v.to(dtype) for k, v in before.items()}, tmp_path / f"a-{dtype}.safetensors")
        save_file({k: v.to(dtype) for k, v in after.items()}, tmp_path / f"b-{dtype}.safetensors")
        fa, fb = tmp_path / f"a-{dtype}.safetensors", tmp_path / f"b-{dtype}.safetensors"
        names = [(k, k) for k in before]
        with_c = compare_weights(fa, fb, names, svd=False).tensors
        with monkeypatch.context() as m:
            m.setattr(tensors_module, "_one_pass", None)
            without = compare_weights(fa, fb, names, svd=False).tensors
        assert [s.name for s in with_c] == [s.name for s in without]
        assert any(s.moved for s in with_c)
        for s, t in zip(with_c, without, strict=True):
            assert (s.equal, s.n_changed, s.max_abs) == (t.equal, t.n_changed, t.max_abs)
            for f in ("rel_change", "cosine", "norm_a", "norm_b", "norm_diff"):
                assert getattr(s, f) == pytest.approx(getattr(t, f), rel=1e-12), (s.name, f)


# -- compare_checkpoints ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_mlm():
    from transformers import DistilBertForMaskedLM

    torch.manual_seed(0)
    return DistilBertForMaskedLM(tiny_distilbert_config()).eval()


def test_same_model_saved_single_and_sharded_is_identical(tiny_mlm, tmp_path):
    tiny_mlm.save_pretrained(tmp_path / "one")
    tiny_mlm.save_pretrained(tmp_path / "sharded", max_shard_size="60KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    d = compare_checkpoints(tmp_path / "one", tmp_path / "sharded")
    assert not d, str(d)
    n = len(tiny_mlm.state_dict()) - 1  # the tied decoder weight is stored once
    assert d.compared == d.identical == n
    assert f"{n} tensors compared, {n} identical" in str(d)
    assert set(d.ignored_config_keys) == {"transformers_version", "architectures", "dtype"}


def test_changed_missing_unexpected_dtype_shape_and_config(tmp_path):
    torch.manual_seed(0)
    base = {"w": torch.randn(4, 4), "gone": torch.ones(2), "half": torch.ones(3),
            "shape": torch.zeros(2, 2), "same": torch.arange(6.0)}
    other = dict(base)
    other["w"] = base["w"].clone()
    other["w"][0, 0] += 1.0
    del other["gone"]
    other["new"] = torch.ones(1)
    other["half"] = base["half"].half()
    other["shape"] = torch.zeros(4)
    for name, sd, cfg in (("a", base, {"dim": 32, "transformers_version": "5.0.0"}),
                          ("b", other, {"dim": 64, "transformers_version": "5.1.0",
                                        "extra": True})):
        (tmp_path / name).mkdir()
        save_file(sd, tmp_path / name / "model.safetensors")
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    d = compare_checkpoints(tmp_path / "a", tmp_path / "b")
    assert d
    assert d.missing == ("gone",)
    assert d.unexpected == ("new",)
    kinds = {c.name: c.difference for c in d.changed}
    assert kinds == {"w": Difference.VALUES, "half": Difference.DTYPE,
                     "shape": Difference.SHAPE}
    assert d.identical == 1
    assert [(c.key, c.before, c.after, c.added) for c in d.config] == [
        ("dim", 32, 64, False), ("extra", ABSENT, True, True)]
    assert d.ignored_config_keys == ("transformers_version",)
    text = str(d)
    assert "missing in b: gone" in text
    assert "unexpected in b: new" in text
    assert "config dim 32 -> 64" in text
    assert text.splitlines()[-1].startswith("4 tensors compared, 1 identical, 3 changed")
    j = json.loads(d.to_json())
    assert j["findings"] > 0
    assert j["missing"] == ["gone"]
    assert {c["name"] for c in j["changed"]} == {"w", "half", "shape"}


def test_tolerance_turns_small_changes_into_close(tmp_path):
    a = torch.ones(100)
    b = a.clone()
    b[7] += 1e-4
    save_file({"w": a}, tmp_path / "a.safetensors")
    save_file({"w": b}, tmp_path / "b.safetensors")
    strict = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert strict
    assert [c.difference for c in strict.changed] == [Difference.VALUES]
    loose = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors",
                                atol=1e-3)
    assert not loose
    assert [c.name for c in loose.close] == ["w"]
    assert "close (rtol=0, atol=0.001): w" in str(loose)
    too_tight = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors",
                                    atol=1e-6)
    assert too_tight


def test_bin_checkpoints_compare_like_safetensors(tmp_path):
    sd = {"w": torch.randn(3, 3), "b": torch.zeros(3)}
    torch.save(sd, tmp_path / "a.bin")
    sd2 = {"w": sd["w"].clone(), "b": torch.ones(3)}
    torch.save(sd2, tmp_path / "b.bin")
    d = compare_checkpoints(tmp_path / "a.bin", tmp_path / "b.bin")
    assert [c.name for c in d.changed] == ["b"]
    assert d.identical == 1


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_never_runs(tmp_path):
    target = tmp_path / "pwned"
    # what a real attack looks like: torch.save's zip format, the payload in data.pkl
    torch.save({"w": _Evil(str(target))}, tmp_path / "evil.bin")
    torch.save({"w": torch.ones(1)}, tmp_path / "good.bin")
    with pytest.raises(CheckpointError, match=r"evil\.bin") as e:
        compare_checkpoints(tmp_path / "evil.bin", tmp_path / "good.bin")
    assert "refused" in str(e.value)
    assert e.value.path == tmp_path / "evil.bin"
    assert not target.exists()
    # and a bare (pre-zip) pickle: refused too, the payload never runs
    with (tmp_path / "legacy.bin").open("wb") as f:
        pickle.dump({"w": _Evil(str(target))}, f)
    with pytest.raises(CheckpointError, match=r"legacy\.bin"):
        compare_checkpoints(tmp_path / "good.bin", tmp_path / "legacy.bin")
    assert not target.exists()


def _write_safetensors(path: Path, n: int = 16) -> None:
    save_file({"w": torch.arange(float(n))}, path)


def test_truncated_file_names_the_file(tmp_path):
    _write_safetensors(tmp_path / "a.safetensors")
    raw = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "b.safetensors").write_bytes(raw[:-10])
    with pytest.raises(CheckpointError, match=r"b\.safetensors.*truncated") as e:
        compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert e.value.path == tmp_path / "b.safetensors"


def test_corrupt_header_names_the_file(tmp_path):
    _write_safetensors(tmp_path / "a.safetensors")
    junk = b"{not json at all"
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(junk)) + junk + bytes(64))
    with pytest.raises(CheckpointError, match=r"b\.safetensors.*corrupt header"):
        compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")


def test_index_naming_a_missing_shard(tiny_mlm, tmp_path):
    tiny_mlm.save_pretrained(tmp_path / "a", max_shard_size="60KB")
    tiny_mlm.save_pretrained(tmp_path / "b", max_shard_size="60KB")
    shard = sorted((tmp_path / "b").glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"{shard.name}.*does not exist") as e:
        compare_checkpoints(tmp_path / "a", tmp_path / "b")
    assert isinstance(e.value, OSError)
    assert isinstance(e.value, ModelDiffError)


def test_folder_without_weights_and_mixed_kinds(tmp_path):
    (tmp_path / "empty").mkdir()
    _write_safetensors(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="holds no weights"):
        compare_checkpoints(tmp_path / "empty", tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such file"):
        compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "nope.safetensors")


def test_identical_checkpoints_compare_in_a_small_fixed_amount_of_memory(tmp_path):
    # 2 x 48 MB of weights; the comparison must not hold either side in (Python) memory.
    sd = {f"w{i}": torch.full((3 * 2**20,), float(i)) for i in range(4)}
    save_file(sd, tmp_path / "a.safetensors")
    save_file(sd, tmp_path / "b.safetensors")
    del sd
    tracemalloc.start()
    try:
        d = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not d
    assert d.identical == 4
    assert peak < 4 * 2**20, peak


# -- compare_weights -------------------------------------------------------------------------
def test_compare_weights_base_vs_fine_tuned_head(tmp_path):
    from transformers import DistilBertForSequenceClassification, DistilBertModel

    torch.manual_seed(0)
    base = DistilBertModel(tiny_distilbert_config())
    base.save_pretrained(tmp_path / "base")
    head = DistilBertForSequenceClassification.from_pretrained(tmp_path / "base")
    # "fine-tune": freeze everything but the last layer, take one optimiser step
    for p in head.distilbert.parameters():
        p.requires_grad_(False)
    for p in head.distilbert.transformer.layer[1].parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.5)
    ids = torch.randint(0, 1000, (4, 8), generator=torch.Generator().manual_seed(0))
    loss = head(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    opt.step()

    pairs = [(k, f"distilbert.{k}") for k in base.state_dict()]
    for side in (base, tmp_path / "base"):  # a live module or a streamed folder
        wd = compare_weights(side, head, pairs)
        assert len(wd.tensors) == len(pairs)
        assert not wd.missing
        moved = {m.path for m in wd.modules if m.changed}
        assert moved, str(wd)
        assert all(p.startswith("distilbert.transformer.layer.1.") for p in moved), moved
        assert "distilbert.embeddings.word_embeddings" in wd.unchanged_modules
        assert "distilbert.transformer.layer.0.ffn.lin1" in wd.unchanged_modules
        top = wd.modules[0]
        assert top.changed
        assert top.max_rel_change > 0
        assert top.max_rel_change == max(m.max_rel_change for m in wd.modules)
        assert wd.tensors[0].name == pairs[0][1]
        assert wd.summary() in str(wd)
        j = json.loads(wd.to_json())
        assert j["modules"][0]["path"] == top.path


def test_compare_weights_reports_pairs_it_cannot_find():
    m = nn.Linear(2, 2)
    wd = compare_weights(m, m, [("weight", "weight"), ("nope", "bias")])
    assert wd.missing == (("nope", "bias"),)
    assert [s.name for s in wd.tensors] == ["weight"]
    assert wd  # something was asked for and not found


def test_compare_weights_refuses_meta_models():
    with torch.device("meta"):
        m = nn.Linear(2, 2)
    with pytest.raises(NotMaterializedError, match="meta device") as e:
        compare_weights(m, nn.Linear(2, 2), [("weight", "weight")])
    assert "from_pretrained" in str(e.value)


def test_checkpoint_diff_is_a_frozen_value(tmp_path):
    _write_safetensors(tmp_path / "a.safetensors")
    d = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "a.safetensors")
    assert isinstance(d, CheckpointDiff)
    with pytest.raises(AttributeError):
        d.missing = ("x",)  # type: ignore[misc]
    assert d == compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "a.safetensors")


# -- byte-identity pass: verdicts the fast path must not change -------------------------------
def _flip_byte(path: Path, tensor: str, at: int) -> None:
    """Change one byte of ``tensor``'s data in a safetensors file, in place."""
    from modeldiff._walk.checkpoint import read_header

    entry = read_header(path)[tensor]
    offset = entry.start + (at % (entry.end - entry.start))
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _shard_holding(folder: Path, tensor: str) -> Path:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return folder / index["weight_map"][tensor]


@pytest.mark.parametrize("layout", ["one file", "sharded", "re-sharded"])
def test_one_byte_different_is_found_in_exactly_that_tensor(tiny_mlm, tmp_path, layout):
    tiny_mlm.save_pretrained(tmp_path / "a", **({"max_shard_size": "60KB"}
                                                 if layout == "sharded" else {}))
    tiny_mlm.save_pretrained(tmp_path / "b", **({} if layout == "one file"
                                                 else {"max_shard_size": "60KB"}))
    target = "distilbert.transformer.layer.0.ffn.lin1.weight"
    shard = (tmp_path / "b" / "model.safetensors" if layout == "one file"
             else _shard_holding(tmp_path / "b", target))
    _flip_byte(shard, target, at=12_345)
    d = compare_checkpoints(tmp_path / "a", tmp_path / "b")
    assert [c.name for c in d.changed] == [target]
    assert d.changed[0].stats.n_changed == 1
    assert d.identical == d.compared - 1
    assert not d.missing
    assert not d.unexpected


@pytest.mark.parametrize("reads", ["mapped", "pread"])
@pytest.mark.parametrize("where", ["first byte", "last byte", "middle"])
def test_differences_next_to_tensor_and_chunk_boundaries(tmp_path, monkeypatch, where, reads):
    # Tensors smaller and larger than the read chunk, back to back in one file: a difference
    # at a tensor's first or last byte shares a chunk with its neighbours, which stay identical.
    # Both ways of reading: leased mappings, and pread (a writer holding b open makes the
    # lease impossible). The file is cut into pieces compared by two threads, mid-tensor.
    from modeldiff._walk import tensors
    from modeldiff._walk.tensors import READ_CHUNK

    monkeypatch.setattr(tensors, "MAP_CHUNK", READ_CHUNK)
    monkeypatch.setattr(tensors, "_PIECE_BYTES", READ_CHUNK // 2)
    calls: list[bool] = []  # what b's mapping answered, chunk by chunk
    real = tensors._File.mapped

    def spy(self, lo, hi, **kw):
        answer = real(self, lo, hi, **kw)
        if self.path.name == "b.safetensors":
            calls.append(answer)
        return answer

    monkeypatch.setattr(tensors._File, "mapped", spy)
    n = READ_CHUNK // 4
    sd = {"a_small": torch.arange(10, dtype=torch.float32),
          "b_big": torch.arange(n + 3, dtype=torch.float32),
          "c_tiny": torch.ones(1),
          "d_empty": torch.ones(0),
          "e_big": torch.arange(2 * n, dtype=torch.float32)}
    save_file(sd, tmp_path / "a.safetensors")
    for name in sd:
        if not sd[name].numel():
            continue
        b = {k: v.clone() for k, v in sd.items()}
        flat = b[name].view(-1)
        i = {"first byte": 0, "last byte": flat.numel() - 1, "middle": flat.numel() // 2}[where]
        flat[i] += 1
        save_file(b, tmp_path / "b.safetensors")
        with open(tmp_path / "b.safetensors", "r+b") if reads == "pread" else \
                contextlib.nullcontext():
            d = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
        assert [c.name for c in d.changed] == [name], (name, str(d))
        assert d.identical == len(sd) - 1
    assert calls  # the way of reading the test meant:
    assert all(calls) if reads == "mapped" else not any(calls)


@pytest.mark.parametrize("ext", ["safetensors", "bin"])
def test_a_file_truncated_during_a_comparison_is_a_typed_error_never_a_crash(tmp_path, ext):
    # A memory-mapped reader dies with SIGBUS when another process truncates the file under
    # it. Run the race in a child process so a crash shows up as a signal, not a dead suite.
    # safetensors files are mapped by modeldiff, .bin files by torch.load(mmap=True); both
    # are leased first (without the lease the .bin race dies with SIGBUS, exit code 135).
    import subprocess
    import sys

    script = r'''
import os, sys, threading, time
import torch
from safetensors.torch import save_file
from modeldiff import compare_checkpoints
from modeldiff._walk.tensors import compare_weights
from modeldiff.errors import CheckpointError
d, ext = sys.argv[1], sys.argv[2]
save = save_file if ext == "safetensors" else torch.save
a, b = f"{d}/a.{ext}", f"{d}/b.{ext}"
sd = {f"w{i}": torch.full((2**20,), float(i)) for i in range(8)}  # 32 MB
save(sd, a)
sd = {k: v + 1 for k, v in sd.items()}  # every value differs: weight_diff reads them all
outcomes = {"error": 0, "result": 0}
for round in range(12):
    save(sd, b)
    size = os.path.getsize(b)
    def cut():
        time.sleep(0.002 * (round % 6))
        os.truncate(b, size // 3)
    t = threading.Thread(target=cut)
    t.start()
    try:
        if round % 2:  # weight_diff's statistics read values through the leases too
            compare_weights(a, b, [(k, k) for k in sd], svd=False)
        else:
            compare_checkpoints(a, b)
        outcomes["result"] += 1
    except CheckpointError as e:
        assert f"b.{ext}" in str(e), e
        outcomes["error"] += 1
    t.join()
print(outcomes)
'''
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), ext],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    outcomes = json.loads(proc.stdout.replace("'", '"'))
    assert outcomes["error"] + outcomes["result"] == 12  # each round ended one way or the other
    assert outcomes["error"] >= 1  # and the truncation did land during comparisons


@pytest.mark.parametrize("writer_open", [False, True], ids=["leased", "writer-holds-it-open"])
def test_a_file_rewritten_in_place_with_its_size_is_reported(tmp_path, monkeypatch,
                                                             writer_open):
    # Same size, other bytes, newer mtime: what a writer overwriting the file leaves behind,
    # starting once the comparison has begun (at its first read of b) and done before it
    # ends. With no writer around, b is read through a leased mapping, and the writer's
    # open waits until the comparison lets the lease go at its next chunk; a writer that
    # already holds b open makes the lease impossible, so b is read with pread. Either way
    # the rewrite is reported, naming b.
    import fcntl
    import threading
    from time import time_ns

    from modeldiff._walk import tensors

    sd = {f"w{i}": torch.full((2**20,), float(i)) for i in range(8)}
    save_file(sd, tmp_path / "a.safetensors")
    save_file(sd, tmp_path / "b.safetensors")
    b = tmp_path / "b.safetensors"
    held = open(b, "r+b") if writer_open else None  # noqa: SIM115 - closed below
    writers: list[threading.Thread] = []

    def rewrite() -> None:
        with open(b, "r+b") as f:
            f.seek(-4, os.SEEK_END)
            f.write(b"\x00\x00\x80\x7f")
        os.utime(b, ns=(1, time_ns() + 10**9))

    def rewrite_once(self) -> None:
        if self.path != b or writers:
            return
        writers.append(threading.Thread(target=rewrite))
        writers[0].start()
        if self._map is not None:  # leased: wait until the kernel holds the writer back
            deadline = time.monotonic() + 20
            while fcntl.fcntl(self._fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK:
                assert time.monotonic() < deadline
                time.sleep(0.001)

    def written_by_now(self) -> None:
        if writers:
            writers[0].join(timeout=20)
            assert not writers[0].is_alive(), "the writer was still held back at the end"
        check(self)

    mapped, read_into, check = tensors._File.mapped, tensors._File.read_into, tensors._File.check
    monkeypatch.setattr(tensors._File, "mapped",
                        lambda self, lo, hi, **kw: (rewrite_once(self), mapped(self, lo, hi, **kw))[1])
    monkeypatch.setattr(tensors._File, "read_into",
                        lambda self, buf, off: (rewrite_once(self), read_into(self, buf, off))[1])
    monkeypatch.setattr(tensors._File, "check", written_by_now)
    try:
        with pytest.raises(CheckpointError, match=r"b\.safetensors .* changed while"):
            compare_checkpoints(tmp_path / "a.safetensors", b)
    finally:
        if held is not None:
            held.close()
    assert writers


def test_checkpoints_are_compared_through_leased_mappings_and_the_lease_is_let_go(tmp_path):
    # A writer that opens the file during a comparison must not wait for the whole of it:
    # the lease is let go at the next chunk and the rest is read with pread. Here a second
    # process truncates b while the comparison runs; it must finish within a second, and
    # the comparison must end in a typed error or a correct result, never SIGBUS.
    import subprocess
    import sys

    from modeldiff._walk import tensors

    sd = {f"w{i}": torch.full((2**20,), float(i)) for i in range(8)}
    save_file(sd, tmp_path / "a.safetensors")
    save_file(sd, tmp_path / "b.safetensors")
    f = tensors._File(tmp_path / "b.safetensors")
    try:
        assert f.mapped(0, 16), "a file nobody writes is leased and mapped on Linux"
        proc = subprocess.Popen([sys.executable, "-c",
                                 "import os, sys, time; t = time.monotonic(); "
                                 "os.truncate(sys.argv[1], 0); print(time.monotonic() - t)",
                                 str(tmp_path / "b.safetensors")],
                                stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while f.mapped(0, 16):  # until the kernel says the lease is being broken
            assert time.monotonic() < deadline, "the lease break never showed"
            time.sleep(0.01)
        waited = float(proc.communicate(timeout=30)[0])
        assert waited < 20, waited  # let go at the next chunk, not after lease-break-time
        with pytest.raises(CheckpointError, match="changed while"):
            f.check()
        buf = bytearray(16)
        with pytest.raises(CheckpointError, match="ends at byte 0"):
            f.read_into(memoryview(buf), 0)
    finally:
        f.close()


def test_no_lease_is_taken_when_the_program_handles_sigurg(tmp_path):
    # A broken lease is signalled with SIGURG; a program with its own SIGURG handler would
    # see spurious calls, so then files are read with pread (and compared all the same).
    import signal

    from modeldiff._walk import tensors

    sd = {"w": torch.arange(1000, dtype=torch.float32)}
    save_file(sd, tmp_path / "a.safetensors")
    sd["w"][999] = 0
    save_file(sd, tmp_path / "b.safetensors")
    seen: list[int] = []
    before = signal.signal(signal.SIGURG, lambda signum, frame: seen.append(signum))
    try:
        f = tensors._File(tmp_path / "a.safetensors")
        try:
            assert not f.mapped(0, 16)
        finally:
            f.close()
        d = compare_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
        assert [c.stats.n_changed for c in d.changed] == [1]
    finally:
        signal.signal(signal.SIGURG, before)
    f = tensors._File(tmp_path / "a.safetensors")
    try:
        assert f.mapped(0, 16)  # and with the default disposition back, leases are used
    finally:
        f.close()
    assert not seen
