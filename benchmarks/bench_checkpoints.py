"""compare_checkpoints vs an mmap + memcmp loop (the limit for "are these bytes equal") and a
safe_open + torch.equal loop, on single files and sharded folders; roundtrip's overhead over
the bare save_pretrained + from_pretrained it wraps.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_checkpoints.py [--quick]

Two identical DistilBERT-sized checkpoints (a seeded default DistilBertModel saved twice, once
as one model.safetensors and once in ~50 MB shards) are compared in the same run by each
method, interleaved (``common.compare``); the files are in the page cache (every method reads
them once before the clock starts). Throughput is the size of one checkpoint over the median
time. Peak memory of compare_checkpoints: tracemalloc peak (Python allocations) and the peak
growth of anonymous RSS (``RssAnon``, sampled; mapped file pages are page cache, not counted).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compare, measure, ms, note, parse_quick, peak_memory, table

_CHUNK = 4 * 2**20


def mmap_memcmp(files_a: list[Path], files_b: list[Path]) -> bool:
    """The competitor: map both files, C memcmp 4 MB at a time, stop at the first difference.

    No parsing, no per-tensor answer: the fastest way to say "these bytes are equal"."""
    import numpy as np

    libc = ctypes.CDLL(None)
    libc.memcmp.restype = ctypes.c_int
    libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    for fa, fb in zip(files_a, files_b, strict=True):
        with open(fa, "rb") as ha, open(fb, "rb") as hb:
            ma = mmap.mmap(ha.fileno(), 0, access=mmap.ACCESS_READ)
            mb = mmap.mmap(hb.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                n = len(ma)
                if n != len(mb):
                    return False
                xa, xb = np.frombuffer(ma, np.uint8), np.frombuffer(mb, np.uint8)
                pa, pb = xa.ctypes.data, xb.ctypes.data
                same = all(libc.memcmp(pa + lo, pb + lo, min(_CHUNK, n - lo)) == 0
                           for lo in range(0, n, _CHUNK))
                del xa, xb
            finally:
                ma.close()
                mb.close()
        if not same:
            return False
    return True


def main(quick: bool = False) -> str:
    import torch
    from safetensors import safe_open
    from transformers import DistilBertConfig, DistilBertModel
    from transformers.utils import logging as hf_logging

    from modeldiff import compare_checkpoints, roundtrip

    hf_logging.disable_progress_bar()
    repeats = 3 if quick else 15
    tmp = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    try:
        torch.manual_seed(0)
        model = DistilBertModel(DistilBertConfig())
        for side in ("a", "b"):
            model.save_pretrained(tmp / side)
            model.save_pretrained(tmp / f"{side}-sharded", max_shard_size="50MB")
        size = (tmp / "a" / "model.safetensors").stat().st_size
        n_shards = len(list((tmp / "a-sharded").glob("*.safetensors")))
        note(f"checkpoint: {size / 1e6:.0f} MB, {n_shards} shards; {repeats} rounds")

        def shards(folder: Path) -> list[Path]:
            return sorted(folder.glob("*.safetensors"))

        def safe_open_loop(files_a: list[Path], files_b: list[Path]) -> bool:
            same = True
            for fa, fb in zip(files_a, files_b, strict=True):
                with safe_open(fa, "pt") as x, safe_open(fb, "pt") as y:
                    for k in x.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                        same &= torch.equal(x.get_tensor(k), y.get_tensor(k))
            return same

        rows = []
        targets = []
        for label, a, b in (("one file (model.safetensors)", tmp / "a", tmp / "b"),
                            (f"sharded folder ({n_shards} shards)", tmp / "a-sharded",
                             tmp / "b-sharded")):
            fa, fb = shards(a), shards(b)
            competitors = {
                "compare_checkpoints": lambda a=a, b=b: compare_checkpoints(a, b),
                "mmap + memcmp loop": lambda fa=fa, fb=fb: mmap_memcmp(fa, fb),
                "safe_open + torch.equal loop": lambda fa=fa, fb=fb: safe_open_loop(fa, fb),
            }
            for name, fn in competitors.items():  # warm the page cache; check the verdicts
                res = fn()
                ok = (not res) if name == "compare_checkpoints" else bool(res)
                assert ok, f"{name} found a difference between identical checkpoints"
            note(f"  {label}")
            got = compare(competitors, repeats=repeats, warmup=1)
            tm, rss = peak_memory(competitors["compare_checkpoints"])
            ours, limit = got["compare_checkpoints"], got["mmap + memcmp loop"]
            for name, st in got.items():
                rows.append((label, name, ms(st.median), ms(st.min), f"{st.spread:.2f}",
                             f"{size / st.median / 1e9:.2f}",
                             f"{limit.median / st.median:.2f}x",
                             f"{tm:.1f} / {rss:.1f}" if name == "compare_checkpoints" else ""))
            targets.append((f"compare_checkpoints >= 0.9x mmap + memcmp, {label}",
                            f"{limit.median / ours.median:.2f}x (min: "
                            f"{limit.min / ours.min:.2f}x)",
                            "met" if limit.median / ours.median >= 0.9 else "NOT met"))

        # a re-sharded pair: same tensors, other files; no byte loop can say "equal" here
        resharded = measure(lambda: compare_checkpoints(tmp / "a", tmp / "b-sharded"),
                            repeats=repeats, warmup=1)
        rows.append(("one file vs sharded (re-sharded)", "compare_checkpoints",
                     ms(resharded.median), ms(resharded.min), f"{resharded.spread:.2f}",
                     f"{size / resharded.median / 1e9:.2f}", "-", ""))

        def bare() -> object:
            with tempfile.TemporaryDirectory() as d:
                model.save_pretrained(d)
                return type(model).from_pretrained(d)

        rt = compare({"save_pretrained + from_pretrained": bare,
                      "roundtrip(model)": lambda: roundtrip(model)},
                     repeats=1 if quick else 3, warmup=0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [f"### compare two identical DistilBERT checkpoints ({size / 1e6:.0f} MB each, page "
           f"cache), median of {repeats} interleaved rounds, load average {load:.1f}",
           "",
           table(("checkpoints", "method", "median ms", "min ms", "max/median", "GB/s",
                  "speed / mmap + memcmp", "tracemalloc / RssAnon +MB"), rows),
           "", "### targets", "",
           table(("target", "median (min)", "verdict"), targets), "",
           "### roundtrip vs the save + load it wraps (DistilBERT, CPU)", "",
           table(("call", "median s", "/ bare"),
                 [(name, f"{st.median:.2f}",
                   f"{st.median / rt['save_pretrained + from_pretrained'].median:.2f}x")
                  for name, st in rt.items()])]
    return "\n".join(out)


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__)))
