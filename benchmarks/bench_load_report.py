"""load_report on a Llama-3.1-405B-shaped sharded checkpoint, against transformers' own
loading machinery run on the meta device.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_load_report.py [--quick]

The checkpoint is what ``save_pretrained`` writes for LlamaForCausalLM at the 405B shape
(bf16, 1,137 tensors, 812 GB) in 191 shards with an index, except that every shard holds
only its safetensors header: the bytes after it are a sparse hole (the file has its full
logical size, the disk holds a few KB). Target: LlamaForSequenceClassification (``score`` is
new, ``lm_head`` unused), built from the folder's config.json as ``from_pretrained`` would.

Competitors, interleaved, medians of the timed calls:

- ``load_report(folder, "sequence-classification")``: end to end, headers read by modeldiff,
  target class built on meta, transformers' rename rules, the prediction;
- ``load_report`` with the target walked once (a ModelGraph), the headers read each call;
- transformers on meta: ``AutoConfig.from_pretrained``, the class built in the contexts
  ``from_pretrained`` builds it in (``get_init_context``: the meta device), the shards
  opened with ``safe_open`` and turned into meta tensors of their header shapes
  (transformers cannot read 812 GB of holes in a benchmark, and ``from_pretrained`` needs
  ``accelerate`` for a meta ``device_map``), then its own
  ``convert_and_load_state_dict_in_model``, ``tie_weights(missing_keys=...)`` and
  ``_adjust_missing_and_unexpected_keys``: everything ``from_pretrained`` does to produce
  its report, without initialising or reading a weight.

The two reports are checked equal (missing, unexpected, mismatched) before timing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LLAMA_405B, compare, ms, note, parse_quick, table

SHARDS = 191  # the real Llama-3.1-405B checkpoint's shard count
TARGET = "sequence-classification"


def write_holes_checkpoint(folder: Path, shape: dict[str, int], shards: int) -> tuple[int, int]:
    """A sharded safetensors checkpoint of LlamaForCausalLM at ``shape``: real headers, data
    as sparse holes. Returns (tensors, logical bytes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    entries = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    per = math.ceil(len(entries) / shards)
    weight_map: dict[str, str] = {}
    total = 0
    for i in range(shards):
        part = entries[i * per:(i + 1) * per]
        if not part:
            break
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for key, dims in part:
            size = math.prod(dims) * 2  # bf16
            header[key] = {"dtype": "BF16", "shape": list(dims),
                           "data_offsets": [offset, offset + size]}
            offset += size
            weight_map[key] = name
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / name, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + offset)  # a hole: no data is written
        total += offset
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}))
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    return len(entries), total


def transformers_on_meta(folder: Path) -> Any:
    """What from_pretrained reports, by transformers' own functions on meta tensors."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import convert_and_load_state_dict_in_model
    from transformers.modeling_utils import LoadStateDictConfig

    config = AutoConfig.from_pretrained(folder)
    cls = AutoModelForSequenceClassification._model_mapping[type(config)]
    with contextlib.ExitStack() as stack:  # the contexts from_pretrained builds the model in
        for context in cls.get_init_context(torch.bfloat16, False, False, False):
            stack.enter_context(context)
        model = cls(config)
    state_dict = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                piece = f.get_slice(key)
                state_dict[key] = torch.empty(piece.get_shape(), dtype=torch.bfloat16,
                                              device="meta")
    load_config = LoadStateDictConfig(pretrained_model_name_or_path=str(folder),
                                      device_map={"": "meta"},
                                      weight_mapping=get_model_conversion_mapping(model))
    info, _ = convert_and_load_state_dict_in_model(model, state_dict, load_config)
    model.tie_weights(missing_keys=info.missing_keys, recompute_mapping=False)
    model._adjust_missing_and_unexpected_keys(info)
    return info


def main(quick: bool = False) -> str:
    from transformers.utils import logging as tf_logging

    import modeldiff

    tf_logging.disable_progress_bar()  # convert_and_load_state_dict_in_model's tqdm

    repeats = 3 if quick else 11
    shape = LLAMA_405B if not quick else {**LLAMA_405B, "num_hidden_layers": 8}
    shards = SHARDS if not quick else 12
    folder = Path(tempfile.mkdtemp(prefix="modeldiff-bench-405b-"))
    try:
        note(f"writing a {shape['num_hidden_layers']}-layer 405B-shaped checkpoint of holes...")
        n, size = write_holes_checkpoint(folder, shape, shards)
        on_disk = sum(os.stat(p).st_blocks * 512 for p in folder.iterdir())
        target_graph = modeldiff.walk(folder, task=TARGET)
        ours = modeldiff.load_report(folder, TARGET)
        theirs = transformers_on_meta(folder)
        assert set(ours.missing) == set(theirs.missing_keys), (ours.missing, theirs.missing_keys)
        assert set(ours.unexpected) == set(theirs.unexpected_keys)
        assert not ours.mismatched
        assert not theirs.mismatched_keys
        note(f"reports agree: missing {sorted(ours.missing)}, unexpected {sorted(ours.unexpected)}")
        stats = compare({
            "load_report (folder, task)": lambda: modeldiff.load_report(folder, TARGET),
            "load_report (folder, walked target)":
                lambda: modeldiff.load_report(folder, target_graph),
            "transformers on meta": lambda: transformers_on_meta(folder),
        }, repeats=repeats, warmup=1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours_s = stats["load_report (folder, task)"].median
    theirs_s = stats["transformers on meta"].median
    rows = [[name, ms(s.median), ms(s.cpu_median), f"{s.spread:.2f}"]
            for name, s in stats.items()]
    label = "Llama-3.1-405B shape" if not quick else "405B widths, 8 layers (--quick)"
    lines = [
        f"### load_report: {label}, {n:,} tensors, {size / 1e9:,.0f} GB logical "
        f"({on_disk / 1e6:,.1f} MB on disk), {shards} shards, into "
        f"LlamaForSequenceClassification; median of {repeats}",
        "",
        table(["competitor", "median ms", "CPU ms", "max/median"], rows),
        "",
        f"transformers on meta / load_report: {theirs_s / ours_s:.1f}x; "
        f"load_report end to end: {ours_s:.2f} s (target: < 1 s)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(parse_quick(description=__doc__)))
