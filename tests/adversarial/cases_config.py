"""config.json values and remote code: sizes refused before a model is built,
architectures that only ever name a model class, no checkpoint code ever runs."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.adversarial.cases import add, raises, typed_or_ok

BERT = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 20,
        "max_position_embeddings": 16, "type_vocab_size": 2}


def _folder(config: Any, *, raw: bytes | None = None, code: bool = False) -> Path:
    d = Path(tempfile.mkdtemp(prefix="adv-cfg-"))
    (d / "config.json").write_bytes(raw if raw is not None else json.dumps(config).encode())
    if code:  # the checkpoint's own code: running it leaves a marker
        marker = d.parent / f"{d.name}-code-ran"
        for name in ("custom.py", "modeling_custom.py", "configuration_custom.py"):
            (d / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    return d


def _ran(d: Path) -> bool:
    return (d.parent / f"{d.name}-code-ran").exists()


def _config_error(name: str, config: dict[str, Any], match: str | None = None,
                  error: str = "ConfigError") -> None:
    def run() -> None:
        import modeldiff
        from modeldiff import errors

        d = _folder(config, code=True)
        raises(getattr(errors, error), modeldiff.walk, d, match=match)
        assert not _ran(d)
    add("hf", f"config-{name}", run)


def _walks(name: str, config: dict[str, Any]) -> None:
    def run() -> None:
        import modeldiff

        d = _folder(config, code=True)
        g = modeldiff.walk(d)
        assert len(g) > 1
        assert not _ran(d)
    add("hf", f"config-valid-{name}", run)


# -- sizes -----------------------------------------------------------------------------------
for key, bad in [("num_hidden_layers", 200_000), ("num_hidden_layers", -1),
                 ("num_hidden_layers", 10**30), ("hidden_size", 0), ("hidden_size", -8),
                 ("hidden_size", 10**12), ("intermediate_size", 10**9), ("vocab_size", 10**9),
                 ("vocab_size", 0), ("num_attention_heads", 0), ("num_attention_heads", 10**6),
                 ("max_position_embeddings", 10**12), ("type_vocab_size", None)]:
    if bad is None:
        continue
    _config_error(f"{key}={bad}", {**BERT, key: bad}, key)
for key, bad in [("num_hidden_layers", "12"), ("num_hidden_layers", 12.5),
                 ("num_hidden_layers", True), ("num_hidden_layers", [12]),
                 ("hidden_size", "768"), ("hidden_size", 8.0), ("vocab_size", {"n": 20}),
                 ("num_attention_heads", False)]:
    _config_error(f"{key}-as-{type(bad).__name__}-{str(bad)[:6]}", {**BERT, key: bad},
                  "must be an integer")
for model_type, key in [("gpt2", "n_layer"), ("distilbert", "n_layers"), ("t5", "num_layers"),
                        ("bart", "encoder_layers"), ("llama", "num_hidden_layers"),
                        ("gpt2", "n_embd"), ("t5", "d_ff"), ("distilbert", "n_heads"),
                        ("gpt2", "n_positions"), ("llama", "num_key_value_heads")]:
    _config_error(f"{model_type}-{key}-huge", {"model_type": model_type, key: 10**9}, key)
_config_error("nested-text-config-huge", {**BERT, "text_config": {"num_hidden_layers": 10**6}},
              r"text_config\.num_hidden_layers")
_config_error("bert-heads-do-not-divide-width", {**BERT, "num_attention_heads": 3},
              "cannot build")
_config_error("unknown-activation", {**BERT, "hidden_act": "no-such-activation"}, None)
_config_error("layer-norm-eps-string", {**BERT, "layer_norm_eps": "tiny"}, None)


def _typed_or_walks(name: str, config: dict[str, Any]) -> None:
    def run() -> None:
        import modeldiff
        d = _folder(config, code=True)
        typed_or_ok(modeldiff.walk, d)
        assert not _ran(d)
    add("hf", f"config-{name}", run)


for label, extra in [("position-type-number", {"position_embedding_type": 7}),
                     ("id2label-list", {"id2label": [1, 2]}),
                     ("id2label-huge-keys", {"id2label": {"9" * 5000: "x"}}),
                     ("torch-dtype-bogus", {"torch_dtype": "float1024"}),
                     ("dtype-object", {"dtype": {"a": 1}}),
                     ("pad-token-negative", {"pad_token_id": -5}),
                     ("rope-scaling-garbage", {"rope_scaling": {"type": 3, "factor": "x"}}),
                     ("quantization-config", {"quantization_config": {"quant_method": "nope"}}),
                     ("unknown-keys", {"zzz": [[[1]]], "__class__": "x"}),
                     ("problem-type-bogus", {"problem_type": "everything"})]:
    _typed_or_walks(label, {**BERT, **extra})


def _limit_raised() -> None:
    import modeldiff
    import modeldiff.limits as limits

    d = _folder({**BERT, "num_hidden_layers": 3})
    with limits.raised(MAX_CONFIG_LAYERS=2):
        raises(modeldiff.errors.ConfigError, modeldiff.walk, d, match="MAX_CONFIG_LAYERS")
    assert modeldiff.walk(d)["encoder.layer.2"] is not None


add("hf", "config-layers-over-a-lowered-limit", _limit_raised)

# -- architectures ----------------------------------------------------------------------------
for arch, match in [("pipeline", "not a model class"), ("AutoTokenizer", "not a model class"),
                    ("AutoModel", "not a model class"), ("BertTokenizer", "not a model class"),
                    ("BertConfig", "not a model class"), ("logging", "not a model class"),
                    ("os", None), ("__class__", "not a class name"),
                    ("__import__", "not a class name"), ("_LazyModule", "not a class name"),
                    ("os.system", "not a class name"), ("BertModel; import os", "not a class"),
                    ("", "not a class name"), ("Trainer", "not a model class"),
                    ("set_seed", "not a model class")]:
    def _arch(arch: str = arch, match: str | None = match) -> None:
        import modeldiff

        d = _folder({**BERT, "architectures": [arch]})
        if match is not None:
            raises(modeldiff.errors.ConfigError, modeldiff.walk, d, match=match)
            return
        # only a name transformers does not have falls back to the task's auto class
        result = typed_or_ok(modeldiff.walk, d)
        assert not isinstance(result, modeldiff.ModelGraph) or result.root.cls == "BertModel"
    add("hf", f"config-architectures-{arch or 'empty'}", _arch)
_config_error("architectures-string", {**BERT, "architectures": "BertModel"}, "architectures")
_config_error("architectures-int", {**BERT, "architectures": [1]}, "architectures")
_config_error("architectures-object", {**BERT, "architectures": {"a": 1}}, "architectures")
_walks("architectures-unknown-name-falls-back", {**BERT, "architectures": ["MyBert"]})
_walks("architectures-real-class", {**BERT, "architectures": ["BertForMaskedLM"]})
_walks("architectures-null", {**BERT, "architectures": None})

# -- remote code ------------------------------------------------------------------------------
AUTO_MAP = {"AutoConfig": "configuration_custom.CustomConfig",
            "AutoModel": "modeling_custom.CustomModel"}
_config_error("custom-model-type-with-auto-map",
              {"model_type": "custom", "auto_map": AUTO_MAP, "hidden_size": 8},
              "custom code", error="RemoteCodeError")
_config_error("no-model-type-with-auto-map", {"auto_map": AUTO_MAP}, "custom code",
              error="RemoteCodeError")
_config_error("unknown-model-type", {"model_type": "bertt"}, "bert",
              error="UnknownModelTypeError")
_config_error("model-type-number", {"model_type": 3}, "model_type")
_config_error("model-type-huge", {"model_type": "x" * 100_000}, None,
              error="UnknownModelTypeError")


def _known_type_with_auto_map() -> None:
    """A bert config that also carries an auto_map: walked as bert, its code never run."""
    import modeldiff

    d = _folder({**BERT, "auto_map": AUTO_MAP, "architectures": ["CustomModel"]}, code=True)
    modeldiff.walk(d)
    assert not _ran(d)


add("hf", "config-known-type-with-auto-map-runs-no-code", _known_type_with_auto_map)


def _load_paths_never_run_code() -> None:
    """Every path that loads weights (the CLI's roundtrip, classify) refuses custom code."""
    from modeldiff._inputs import load_model, load_tokenizer
    from modeldiff.errors import ModelDiffError, RemoteCodeError

    d = _folder({"model_type": "custom", "auto_map": {**AUTO_MAP,
                 "AutoTokenizer": ["tokenization_custom.T", None]}}, code=True)
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_custom.T", None]}}))
    (d / "tokenization_custom.py").write_text((d / "custom.py").read_text())
    raises(RemoteCodeError, load_model, d)
    with contextlib.suppress(ModelDiffError, OSError, ValueError):
        load_tokenizer(d)
    assert not _ran(d)


add("hf", "config-load-paths-refuse-custom-code", _load_paths_never_run_code)


def _classify_custom_code() -> None:
    import modeldiff
    from modeldiff.errors import ModelDiffError

    d = _folder({"model_type": "custom", "auto_map": AUTO_MAP}, code=True)
    with contextlib.suppress(ModelDiffError, TypeError):
        modeldiff.classify("a text", model=str(d))
    assert not _ran(d)


add("hf", "config-classify-refuses-custom-code", _classify_custom_code)


def _build_model_architecture() -> None:
    import transformers

    from modeldiff._inputs import build_model
    from modeldiff.errors import ConfigError

    for arch in ("pipeline", "AutoTokenizer", "__class__"):
        raises(ConfigError, build_model, transformers.BertConfig(**{k: v for k, v in BERT.items()
                                                                     if k != "model_type"}),
               architecture=arch)


add("hf", "config-build-model-refuses-non-model-architectures", _build_model_architecture)


def _cli_roundtrip_refuses() -> None:
    from modeldiff.cli import main
    from modeldiff.errors import ModelDiffError

    d = _folder({"model_type": "custom", "auto_map": AUTO_MAP}, code=True)
    code: object = 0
    try:
        code = main(["roundtrip", str(d)])
    except ModelDiffError:
        code = 1
    except SystemExit as e:
        code = e.code
    assert code != 0
    assert not _ran(d)


add("hf", "config-cli-roundtrip-refuses-custom-code", _cli_roundtrip_refuses)
