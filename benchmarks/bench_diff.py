"""diff() against walk(), and weight diffs against plain torch loops, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_diff.py [--quick]

1. Structure: diff of two Llama-3-70B-shaped graphs built on the meta device (separately, so
   no object is shared), identical and with every layer changed (num_key_value_heads 8 -> 16,
   folded into one entry per projection), against walking one of the models. Target: diff
   takes no longer than walk.
2. Weights: two DistilBERT-sized checkpoints (seeded DistilBertModel, the second with two
   layers perturbed). ``weight_diff`` on the folders (streamed, statistics where bytes
   differ) against ``safetensors.torch.load_file`` of both + a ``torch.equal`` loop (which
   only says equal or not); and on in-memory modules against a ``torch.equal`` loop over
   their state dicts.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import LLAMA_70B, build_llama, compare, ms, note, parse_quick, table  # noqa: E402


def structure(quick: bool) -> str:
    import modeldiff

    note("bench_diff: building three Llama-3-70B-shaped models on meta")
    a, b, c = (build_llama(LLAMA_70B), build_llama(LLAMA_70B),
               build_llama(LLAMA_70B, num_key_value_heads=16))
    ga, gb, gc = modeldiff.walk(a), modeldiff.walk(b), modeldiff.walk(c)
    changed = modeldiff.diff(ga, gc)
    assert not modeldiff.diff(ga, gb)
    assert len(changed.changed) == 2, changed  # k_proj and v_proj, each folded x80
    repeats = 5 if quick else 31
    note(f"bench_diff: {repeats} interleaved rounds")
    stats = compare({
        "walk(model)": lambda: modeldiff.walk(a),
        "diff(graph, graph), identical": lambda: modeldiff.diff(ga, gb),
        "diff(graph, graph), 80 layers changed": lambda: modeldiff.diff(ga, gc),
    }, repeats=repeats, warmup=2)
    base = stats["walk(model)"].median
    rows = [(name, ms(s.median), f"{s.median / base:.2f}x", f"{s.spread:.2f}")
            for name, s in stats.items()]
    return ("### diff vs walk, Llama-3-70B shape (meta, 1,047 modules)\n\n"
            + table(("call", "median ms", "/ walk", "max/median"), rows))


def weights(quick: bool) -> str:
    import torch
    from safetensors.torch import load_file
    from transformers import DistilBertConfig, DistilBertModel

    import modeldiff

    tmp = Path(tempfile.mkdtemp(prefix="bench-diff-"))
    try:
        torch.manual_seed(0)
        a = DistilBertModel(DistilBertConfig())
        b = DistilBertModel(DistilBertConfig())
        b.load_state_dict(a.state_dict())
        with torch.no_grad():
            for i in (1, 4):
                for p in b.transformer.layer[i].parameters():
                    p.add_(1e-3)
        a.save_pretrained(tmp / "a")
        b.save_pretrained(tmp / "b")
        size = (tmp / "a" / "model.safetensors").stat().st_size

        def loop_folders() -> list[str]:
            sa = load_file(tmp / "a" / "model.safetensors")
            sb = load_file(tmp / "b" / "model.safetensors")
            return [k for k in sa if not torch.equal(sa[k], sb[k])]

        def loop_modules() -> list[str]:
            sa, sb = a.state_dict(), b.state_dict()
            return [k for k in sa if not torch.equal(sa[k], sb[k])]

        wd = modeldiff.weight_diff(tmp / "a", tmp / "b")
        assert {s.name for s in wd.changed} == set(loop_folders())
        repeats = 3 if quick else 11
        note(f"bench_diff: weights, {repeats} interleaved rounds on {size / 1e6:.0f} MB")
        stats = compare({
            "weight_diff(folder, folder)": lambda: modeldiff.weight_diff(tmp / "a", tmp / "b"),
            "load_file x2 + torch.equal loop": loop_folders,
            "weight_diff(module, module)": lambda: modeldiff.weight_diff(a, b),
            "state_dict torch.equal loop": loop_modules,
        }, repeats=repeats, warmup=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [(name, ms(s.median), f"{size / s.median / 1e9:.2f}") for name, s in stats.items()]
    return (f"### weight diff, two DistilBERT checkpoints ({size / 1e6:.0f} MB each, 2 of 6 "
            "layers moved)\n\n" + table(("method", "median ms", "GB/s per side"), rows)
            + "\n\nweight_diff also computes max |b-a|, relative change and cosine for every "
            "changed tensor and a per-module summary; the loops only say equal or not.")


def main(quick: bool = False) -> str:
    return structure(quick) + "\n\n" + weights(quick)


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__)))
