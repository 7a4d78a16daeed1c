"""Tiny, valid transformers configs for many model types, built offline.

A tiny config keeps a model type's architecture (its module classes, heads, tied weights,
prefixes) and shrinks every size: hidden 32, 2 layers, 4 heads, vocabulary 256, 2 layers of
everything. Built on the CPU with real initialisation, each model takes a few milliseconds,
so tests can sweep dozens of architectures.

>>> from modeldiff._tiny import tiny_config
>>> cfg = tiny_config("bert")
>>> cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size
(32, 2, 4, 256)
>>> tiny_config("gpt2", n_layer=3).n_layer
3
>>> "mixtral" in TINY_MODEL_TYPES
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldiff.errors import ConfigError, UnknownModelTypeError
from modeldiff.kinds import suggest

__all__ = ["TINY_MODEL_TYPES", "tiny_config"]

HIDDEN = 32
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
FFN = 64
VOCAB = 256
POSITIONS = 128
EMBEDDING = 16  # factorised embeddings (albert, electra...) stay factorised: 16 != 32
EXPERTS = 4
EXPERTS_PER_TOKEN = 2

# Attribute-name families across config classes -> the tiny value. A name is set only when
# the config class has it as a real key (in ``to_dict()``), never through ``attribute_map``
# aliases, so that passing it back to the config's ``__init__`` is meaningful.
_GENERIC: Mapping[str, int] = {
    **dict.fromkeys(("hidden_size", "d_model", "n_embd", "dim", "emb_dim"), HIDDEN),
    **dict.fromkeys(("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers",
                     "decoder_layers", "num_decoder_layers"), LAYERS),
    **dict.fromkeys(("num_attention_heads", "n_head", "n_heads", "num_heads",
                     "encoder_attention_heads", "decoder_attention_heads"), HEADS),
    **dict.fromkeys(("num_key_value_heads", "num_kv_heads"), KV_HEADS),
    **dict.fromkeys(("head_dim", "d_kv", "d_head"), HEAD_DIM),
    **dict.fromkeys(("intermediate_size", "d_ff", "n_inner", "ffn_dim", "encoder_ffn_dim",
                     "decoder_ffn_dim", "d_inner", "dff", "ffn_hidden_size",
                     "shared_expert_intermediate_size"), FFN),
    "moe_intermediate_size": FFN // 2,
    "vocab_size": VOCAB,
    **dict.fromkeys(("max_position_embeddings", "n_positions", "max_seq_len",
                     "max_2d_position_embeddings"), POSITIONS),
    **dict.fromkeys(("embedding_size", "input_embedding_size", "output_embedding_size",
                     "entity_emb_size", "word_embed_proj_dim", "pronunciation_embed_dim",
                     "shape_embed_dim", "true_hidden_size", "intra_bottleneck_size"), EMBEDDING),
    **dict.fromkeys(("entity_vocab_size", "shape_vocab_size", "pronunciation_vocab_size",
                     "num_hash_buckets"), 64),
    **dict.fromkeys(("num_experts", "num_local_experts"), EXPERTS),
    "num_experts_per_tok": EXPERTS_PER_TOKEN,
    "sliding_window": 64,
    # vision: 32x32 images in 4x4 patches (64 tokens), a narrow patch embedding
    "image_size": 32,
    "patch_size": 4,
    **dict.fromkeys(("embed_dim", "vision_hidden_size", "text_hidden_size",
                     "projection_dim", "proj_dim", "mm_hidden_size"), HIDDEN),
    # speech: a short conv front end stays as it is (kernel and stride lists are
    # architecture), its width shrinks
    **dict.fromkeys(("num_conv_pos_embeddings",), 16),
    **dict.fromkeys(("num_conv_pos_embedding_groups",), 4),
    **dict.fromkeys(("num_mel_bins", "feature_size"), 16),
    **dict.fromkeys(("text_intermediate_size", "vision_intermediate_size"), FFN),
}

# List-valued sizes of hierarchical (convolutional, windowed) models: one stage of each kind
# per entry stays, the stage widths and depths shrink.
_LISTS: Mapping[str, Any] = {
    "depths": lambda v: [1] * len(v),
    "hidden_sizes": lambda v: [8 * (i + 1) for i in range(len(v))],
    "num_heads": lambda v: [1] * len(v) if isinstance(v, list) else HEADS,
    "num_attention_heads": lambda v: [1] * len(v) if isinstance(v, list) else HEADS,
    "conv_dim": lambda v: [16] * len(v),
    "embed_dims": lambda v: [8 * (i + 1) for i in range(len(v))],
    "encoder_hidden_sizes": lambda v: [8 * (i + 1) for i in range(len(v))],
    "image_size": lambda v: [32] * len(v),
}

# Where the generic rules are not enough. Why, per entry:
_OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    # funnel pools between blocks: two blocks of one layer, one decoder layer.
    # funnel pools between blocks: two blocks of one layer, one decoder layer. AutoModel maps
    # funnel to two classes (FunnelModel, FunnelBaseModel) and picks by ``architectures``;
    # without it AutoModel.from_config fails, so the tiny config names the full model.
    "funnel": {"block_sizes": [1, 1], "block_repeats": [1, 1], "num_decoder_layers": 1,
               "architectures": ["FunnelModel"]},
    # gpt_neo expands attention_types into one entry per layer; it must match num_layers.
    "gpt_neo": {"attention_types": [[["global", "local"], 1]], "window_size": 16},
    # gptj's rotary_dim must fit in a head.
    "gptj": {"rotary_dim": HEAD_DIM // 2},
    # squeezebert's grouped convolutions need embedding_size == hidden_size.
    "squeezebert": {"embedding_size": HIDDEN},
    # mobilebert's bottleneck: inner width below the hidden width, as in the real model.
    "mobilebert": {"num_feedforward_networks": 2},
    "longformer": {"attention_window": 8},
    "big_bird": {"block_size": 8, "num_random_blocks": 2},
    "modernbert": {"local_attention": 16, "global_attn_every_n_layers": 2},
    "canine": {"local_transformer_stride": 16},
    "markuplm": {"max_depth": 8, "max_xpath_tag_unit_embeddings": 32,
                 "max_xpath_subs_unit_embeddings": 32, "tag_pad_id": 31, "subs_pad_id": 31,
                 "xpath_unit_hidden_size": 8},
    "qwen2_moe": {"decoder_sparse_step": 1, "mlp_only_layers": [], "max_window_layers": LAYERS},
    "xmod": {"languages": ["en_XX", "de_DE"], "default_language": "en_XX"},
    "mpt": {"expansion_ratio": 2},
    "esm": {"vocab_size": 33, "pad_token_id": 1, "mask_token_id": 32},
}

# The types tiny_config is tested on (tests/test_tiny.py): each builds as a base model and as
# at least one of sequence-classification, token-classification, masked-lm.
TINY_MODEL_TYPES: tuple[str, ...] = (
    "albert", "bart", "bert", "big_bird", "bigbird_pegasus", "biogpt", "bloom", "camembert",
    "canine", "convbert", "ctrl", "data2vec-text", "deberta", "deberta-v2", "diffllama",
    "distilbert", "electra", "ernie", "esm", "eurobert", "falcon", "flaubert", "fnet", "funnel",
    "gemma", "gemma2", "gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gpt_oss", "gptj", "gte",
    "ibert", "layoutlm", "lilt", "llama", "longformer", "luke", "markuplm", "mbart",
    "megatron-bert", "mistral", "mixtral", "mobilebert", "modernbert", "mpnet", "mpt", "mra",
    "mt5", "mvp", "nemotron", "nomic_bert", "nystromformer", "olmo", "openai-gpt", "opt",
    "persimmon", "phi", "phi3", "phimoe", "plbart", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "squeezebert",
    "stablelm", "starcoder2", "t5", "tapas", "umt5", "xlm", "xlm-roberta", "xlm-roberta-xl",
    "xlnet", "xmod", "yoso",
)


def tiny_config(model_type: str, **overrides: Any) -> Any:
    """A small, valid ``PretrainedConfig`` for ``model_type``, built offline.

    Sizes shrink to hidden 32, 2 layers, 4 attention heads (2 key/value heads), head size 8,
    feed-forward 64, vocabulary 256, 128 positions and, for mixtures of experts, 4 experts
    with 2 active per token; ``overrides`` win over all of these.

    >>> cfg = tiny_config("distilbert", n_heads=2)
    >>> cfg.dim, cfg.n_layers, cfg.n_heads, cfg.hidden_dim
    (32, 2, 2, 64)
    >>> tiny_config("distilbrt")
    Traceback (most recent call last):
    modeldiff.errors.UnknownModelTypeError: unknown model_type 'distilbrt': did you mean 'distilbert' ...
    """
    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING, AutoConfig

    known = tuple(CONFIG_MAPPING.keys())
    if model_type not in known:
        raise UnknownModelTypeError(model_type, suggestions=suggest(model_type, known))
    defaults = AutoConfig.for_model(model_type).to_dict()
    kwargs = _shrunk(defaults)
    kwargs.update(_OVERRIDES.get(model_type, {}))
    vocab = overrides.get("vocab_size", kwargs.get("vocab_size"))
    if isinstance(vocab, int):
        # Special-token ids of a full-size vocabulary (gpt2's 50256) would index past the
        # tiny one wherever they become an embedding's padding_idx.
        for key, value in defaults.items():
            if key.endswith("_token_id") and key not in kwargs:
                kwargs[key] = _clamp(value, vocab)
    kwargs.update(overrides)
    try:
        return AutoConfig.for_model(model_type, **kwargs)
    # v5 configs validate in strict-dataclass validators, whose errors are no ValueError
    except (ValueError, TypeError, KeyError, StrictDataclassError) as e:
        raise ConfigError(f"tiny_config({model_type!r}) is not a valid "
                          f"{type(AutoConfig.for_model(model_type)).__name__}: {e}; pass the "
                          "offending sizes as keyword overrides") from e


def _shrunk(defaults: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """The generic rules applied to one config's keys, and to its sub-configs (a
    vision-language model's ``text_config`` and ``vision_config``, an encoder-decoder's
    parts), which are passed back as dicts."""
    kwargs: dict[str, Any] = {}
    for key, value in defaults.items():
        if key in _LISTS and isinstance(value, list) and value and \
                all(isinstance(x, int) for x in value):
            kwargs[key] = _LISTS[key](value)
        elif key in _GENERIC and (value is None or (isinstance(value, int)
                                                    and not isinstance(value, bool))):
            kwargs[key] = _GENERIC[key]
        elif isinstance(value, dict) and depth < 3 and (
                key.endswith("_config") or "model_type" in value) and value:
            sub = {**value, **_shrunk(value, depth + 1)}
            vocab = sub.get("vocab_size")
            if isinstance(vocab, int):
                for k, v in value.items():
                    if k.endswith("_token_id"):
                        sub[k] = _clamp(v, vocab)
            kwargs[key] = sub
    if "hidden_dim" in defaults and "dim" in defaults:  # distilbert: hidden_dim is the FFN
        kwargs["hidden_dim"] = FFN
    # per-layer lists (layer_types, moe_layers...) follow the new depth; a backbone's
    # out_features name stages of the full depth, so they go back to the default (last)
    layers = defaults.get("num_hidden_layers")
    if isinstance(layers, int) and "num_hidden_layers" in kwargs:
        for key, value in defaults.items():
            if isinstance(value, list) and len(value) == layers and key not in kwargs:
                kwargs[key] = value[:kwargs["num_hidden_layers"]]
    if isinstance(layers, int) and "num_hidden_layers" in kwargs:
        depth = kwargs["num_hidden_layers"]
        indices = defaults.get("out_indices")
        if isinstance(indices, list) and "out_indices" not in kwargs:
            kwargs["out_indices"] = [i for i in indices if 0 <= i <= depth] or [depth]
        if defaults.get("out_features") is not None and "out_features" not in kwargs:
            kwargs["out_features"] = None
    return kwargs


def _clamp(value: Any, vocab: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value < vocab else vocab - 1
    if isinstance(value, list):
        return [_clamp(v, vocab) for v in value]
    return value
