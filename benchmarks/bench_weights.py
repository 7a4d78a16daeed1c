"""weight_diff on two 265 MB DistilBERT checkpoints: what fine-tuning moved, and at what cost.

Checkpoint A is a seeded default ``DistilBertModel``; B is A after every weight moved a
little (Gaussian noise of 1e-3 on every float tensor: the worst case, every tensor needs
its statistics); C is A saved again (identical). Competitors, interleaved, medians:

- the issue's floor, ``safetensors.torch.load_file`` on both files + ``torch.equal`` per
  tensor, on A and B. safetensors maps files lazily and ``torch.equal`` stops at the first
  differing value, so on this pair it reads a page or two per tensor: a floor for nothing.
  The same on A and C, where ``torch.equal`` must read every byte of both, is the cost of
  reading both checkpoints once: the floor the ratios are taken against;
- ``modeldiff.weight_diff(folder_a, folder_b, svd=False)``: bit-identity, ||dW||, relative
  change, cosine, max abs change and the per-module, folded, per-block rows and verdict;
  and the same on A and C (identical: bytes only);
- the same without modeldiff's optional C module (``modeldiff/_walk/_sums.c``), as where
  setup.py found no C compiler: the statistics in torch;
- a hand-written torch loop computing the same numbers (load_file both, float64 per
  tensor): what a user would write instead;
- both again with the rank / top-8 energy of every changed 2-D weight (randomized SVD:
  ``torch.svd_lowrank``, q=40, 2 power iterations);
- modeldelta 0.4.4's ``compare_models`` (when installed: the `dev` extra), which computes
  norms, cosine, sparsity and the singular values of every 2-D delta (full ``svdvals``).

Memory: the peak growth of anonymous RSS while weight_diff compares A and B saved in 5
shards each, against the largest tensor pair (the bound the issue sets).

    .venv/bin/python benchmarks/bench_weights.py [--quick]
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import compare, ms, note, parse_quick, peak_memory, table  # noqa: E402


def _torch_loop(fa: Path, fb: Path, *, svd: bool) -> dict[str, tuple[float, ...]]:
    """The same per-tensor numbers, written the obvious way."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(fa), load_file(fb)
    out = {}
    for k, x in a.items():
        y = b[k]
        if torch.equal(x, y):
            out[k] = (0.0,)
            continue
        x64, y64 = x.double(), y.double()
        d = y64 - x64
        nd, na, nb = float(d.norm()), float(x64.norm()), float(y64.norm())
        rel = nd / na if na else nd / nb  # a zero tensor that moved: against the new values
        cos = float(torch.dot(x64.flatten(), y64.flatten())) / (na * nb) if na and nb else 0.0
        row: tuple[float, ...] = (int((d != 0).sum()), float(d.abs().max()), rel, cos)
        if svd and d.ndim == 2:
            _, s, _ = torch.svd_lowrank(d.float(), q=40, niter=2)
            s = s[:32]  # the rank is counted among the top 32, as weight_diff does
            row += (int((s >= s[0] * 1e-3).sum()), float((s[:8] ** 2).sum()) / nd ** 2)
        out[k] = row
    return out


def _without_c_module(a: Path, b: Path) -> Any:
    """weight_diff as it runs where setup.py found no C compiler: the torch path."""
    import modeldiff
    from modeldiff._walk import tensors

    kept = tensors._one_pass
    tensors._one_pass = None
    try:
        return modeldiff.weight_diff(a, b, svd=False)
    finally:
        tensors._one_pass = kept


def main(quick: bool = False) -> str:
    import torch
    from safetensors.torch import load_file
    from transformers import DistilBertConfig, DistilBertModel
    from transformers.utils import logging as hf_logging

    import modeldiff

    hf_logging.disable_progress_bar()
    repeats = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-weights-"))
    try:
        torch.manual_seed(0)
        model = DistilBertModel(DistilBertConfig())
        model.save_pretrained(tmp / "a")
        model.save_pretrained(tmp / "c")
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
        model.save_pretrained(tmp / "b")
        model.save_pretrained(tmp / "b5", max_shard_size="60MB")
        del model
        fa, fb = tmp / "a" / "model.safetensors", tmp / "b" / "model.safetensors"
        fc = tmp / "c" / "model.safetensors"
        size = fa.stat().st_size

        def floor(x: Path, y: Path) -> Any:
            a, b = load_file(x), load_file(y)
            return [torch.equal(a[k], b[k]) for k in a]

        competitors: dict[str, Any] = {
            FLOOR: lambda: floor(fa, fc),
            "load_file x2 + torch.equal, A vs B (stops at the first difference)":
                lambda: floor(fa, fb),
            "modeldiff.weight_diff(svd=False), A vs B":
                lambda: modeldiff.weight_diff(tmp / "a", tmp / "b", svd=False),
            "modeldiff.weight_diff(svd=False), A vs C (identical)":
                lambda: modeldiff.weight_diff(tmp / "a", tmp / "c", svd=False),
            "modeldiff.weight_diff(svd=False), A vs B, without the C module":
                lambda: _without_c_module(tmp / "a", tmp / "b"),
            "torch loop, same numbers, A vs B": lambda: _torch_loop(fa, fb, svd=False),
        }
        with_svd: dict[str, Any] = {
            "modeldiff.weight_diff (with SVD)":
                lambda: modeldiff.weight_diff(tmp / "a", tmp / "b"),
            "torch loop + svd_lowrank": lambda: _torch_loop(fa, fb, svd=True),
        }
        try:
            from modeldelta.core.weight_diff import compare_models
            from modeldelta.utils.model_loader import get_tensor_map

            ma, mb = get_tensor_map(str(tmp / "a")), get_tensor_map(str(tmp / "b"))
            if not quick:  # minutes per call: not a CI-sized run
                with_svd["modeldelta 0.4.4 compare_models"] = lambda: compare_models(ma, mb)
        except ImportError:
            note("modeldelta is not installed (pip install -e '.[dev]'): left out")

        # the numbers agree before they are timed
        wd = modeldiff.weight_diff(tmp / "a", tmp / "b")
        loop = _torch_loop(fa, fb, svd=True)
        for s in wd.tensors:
            row = loop[s.name]
            if len(row) == 1:
                assert s.equal, s.name
                continue
            assert s.n_changed == row[0]
            assert math.isclose(s.rel_change or 0, row[2], rel_tol=1e-9), s.name
            if s.rank is not None:
                assert abs(s.rank - row[4]) <= 2, (s.name, s.rank, row[4])
        note(f"weights: {size / 1e6:.0f} MB per checkpoint, {len(wd.tensors)} tensors, "
             f"{len(wd.moved)} moved, verdict {wd.verdict.pattern if wd.verdict else '?'}")

        note("timing the statistics without SVD ...")
        plain = compare(competitors, repeats=repeats, warmup=1)
        note("timing with SVD ...")
        # one round, no warm-up: modeldelta's full SVDs take minutes per call here
        svd = compare(with_svd, repeats=1, warmup=0)
        note("memory of weight_diff on 5 shards each ...")
        traced, anon = peak_memory(lambda: modeldiff.weight_diff(tmp / "a", tmp / "b5"))
        largest = max(t.numel() * t.element_size() for t in load_file(fa).values())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = plain[FLOOR].median
    rows = [(name, ms(st.median), f"{st.median / base:.2f}x", f"{st.spread:.2f}")
            for name, st in plain.items()]
    rows += [(name, ms(st.median), f"{st.median / base:.2f}x", f"{st.spread:.2f}")
             for name, st in svd.items()]
    ours = plain["modeldiff.weight_diff(svd=False), A vs B"].median / base
    same = plain["modeldiff.weight_diff(svd=False), A vs C (identical)"].median / base
    ours_svd = svd["modeldiff.weight_diff (with SVD)"].median
    return "\n".join([
        f"### weight_diff: two {size / 1e6:.0f} MB DistilBERT checkpoints, every tensor moved",
        "",
        table(["method", "median ms", "x floor", "max/median"], rows),
        "",
        f"weight_diff without SVD: {ours:.2f}x the cost of reading both checkpoints (load_file"
        f" + torch.equal on an identical pair; target <= 1.5x), {same:.2f}x on an identical "
        f"pair; with SVD on every changed 2-D weight: {ours_svd:.1f} s (target < 10 s). "
        f"Median of {repeats} interleaved rounds (SVD rows: one round)"
        + (" (quick run: rough numbers)" if quick else "") + ".",
        "",
        f"Memory, weight_diff with SVD, 5 shards each: anonymous RSS grew by at most "
        f"{anon:.0f} MB (tracemalloc peak {traced:.1f} MB); the largest tensor is "
        f"{largest / 2**20:.0f} MB, so a pair of them {2 * largest / 2**20:.0f} MB. "
        f"Each checkpoint is {size / 2**20:.0f} MB.",
    ])


FLOOR = "load_file x2 + torch.equal, A vs C (identical: reads every byte)"


if __name__ == "__main__":
    print(main(parse_quick(sys.argv[1:], __doc__ or "")))
