"""tiny_config: every listed model type builds, small and fast, for its base model and a head."""

from __future__ import annotations

import pytest

from modeldiff._tiny import TINY_MODEL_TYPES, tiny_config
from modeldiff.errors import ConfigError, ModelDiffError, UnknownModelTypeError

HEAD_TASKS = ("sequence-classification", "token-classification", "masked-lm")


def _heads_for(model_type: str) -> list[str]:
    from transformers.models.auto import modeling_auto as auto

    mappings = {
        "sequence-classification": auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "token-classification": auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
        "masked-lm": auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    }
    return [task for task, names in mappings.items() if model_type in names]


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    """The first build in a process pays for importing torch and transformers' model code;
    the per-model time limit below is about the model, not the imports."""
    from modeldiff._inputs import build_model

    build_model(tiny_config("bert"), device="cpu")


def test_list_is_broad_unique_and_sorted() -> None:
    assert len(TINY_MODEL_TYPES) >= 45
    assert len(set(TINY_MODEL_TYPES)) == len(TINY_MODEL_TYPES)
    assert list(TINY_MODEL_TYPES) == sorted(TINY_MODEL_TYPES)


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_builds_small(model_type: str) -> None:
    """Small in parameters and widths (what makes it fast; build times belong in
    benchmarks/, not in assertions on a shared machine)."""
    import torch

    from modeldiff._inputs import build_model

    config = tiny_config(model_type)
    assert config.model_type == model_type
    # attribute_map aliases make these names work on every listed config class
    assert config.hidden_size == 32
    assert config.num_hidden_layers == 2
    heads = _heads_for(model_type)
    assert heads, f"{model_type} offers none of {HEAD_TASKS}"
    for task in ("base", *heads):
        torch.manual_seed(0)
        model = build_model(config, task=task, device="cpu")
        params = list(model.parameters())
        total = sum(p.numel() for p in params)
        assert total < 200_000, f"{model_type} {task}: {total} parameters"
        widest = max(max(p.shape, default=1) for p in params)
        assert widest <= 256, f"{model_type} {task}: a parameter is {widest} wide"
        assert all(p.device.type == "cpu" and not p.isnan().any() for p in params)


def test_overrides_win_over_the_tiny_sizes() -> None:
    cfg = tiny_config("bert", num_hidden_layers=3, vocab_size=1000, hidden_size=48)
    assert (cfg.num_hidden_layers, cfg.vocab_size, cfg.hidden_size) == (3, 1000, 48)
    # names the config knows only through attribute_map work too
    assert tiny_config("gpt2", num_hidden_layers=4).n_layer == 4


def test_same_arguments_give_equal_configs() -> None:
    assert tiny_config("mixtral").to_dict() == tiny_config("mixtral").to_dict()


def test_mixture_of_experts_keeps_several_experts() -> None:
    cfg = tiny_config("mixtral")
    assert (cfg.num_local_experts, cfg.num_experts_per_tok) == (4, 2)
    cfg = tiny_config("qwen2_moe")
    assert (cfg.num_experts, cfg.num_experts_per_tok) == (4, 2)


def test_special_token_ids_fit_the_tiny_vocabulary() -> None:
    cfg = tiny_config("gpt2")  # full-size eos/bos is 50256
    assert cfg.eos_token_id < cfg.vocab_size
    assert cfg.bos_token_id < cfg.vocab_size


def test_funnel_builds_its_full_model_as_the_base() -> None:
    from modeldiff._inputs import build_model

    assert type(build_model(tiny_config("funnel"))).__name__ == "FunnelModel"


def test_unknown_model_type_suggests_close_names() -> None:
    with pytest.raises(UnknownModelTypeError) as info:
        tiny_config("distilbrt")
    assert "distilbert" in info.value.suggestions
    assert isinstance(info.value, (ModelDiffError, ValueError))
    assert "distilbert" in str(info.value)


def test_invalid_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tiny_config"):
        tiny_config("esmc")  # its validator refuses grouped-query attention
