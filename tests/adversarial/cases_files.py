"""Checkpoint folders: only regular files, capped sizes, shard indexes that stay inside the
folder, and only the files from_pretrained reads (never training_args.bin & co.)."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.adversarial.cases import add, raises

CONFIG = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
          "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 20,
          "max_position_embeddings": 16, "type_vocab_size": 2}


def _st(path: Path, tensors: dict[str, list[int]] | None = None) -> Path:
    tensors = tensors if tensors is not None else {"w": [2]}
    header, at = {}, 0
    for k, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + n]}
        at += n
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + bytes(at))
    return path


def _folder(config: dict[str, object] | None = None) -> Path:
    d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
    (d / "config.json").write_text(json.dumps(config if config is not None else CONFIG))
    return d


def _read_index(d: Path) -> object:
    from modeldiff._walk.checkpoint import read_tensor_index

    return read_tensor_index(d)


def _checkpoint_error(name: str, make: Callable[[], Path], *, match: str | None = None,
                      read: Callable[[Path], object] = _read_index) -> None:
    def run() -> None:
        from modeldiff.errors import CheckpointError

        raises(CheckpointError, read, make(), match=match)
    add("torch", f"files-{name}", run)


# -- not regular files ------------------------------------------------------------------------
def _fifo_weights() -> Path:
    d = _folder()
    os.mkfifo(d / "model.safetensors")
    return d


def _dev_zero_weights() -> Path:
    d = _folder()
    os.symlink("/dev/zero", d / "model.safetensors")
    return d


def _dir_weights() -> Path:
    d = _folder()
    (d / "model.safetensors").mkdir()
    return d


def _dir_bin() -> Path:
    d = _folder()
    (d / "pytorch_model.bin").mkdir()
    return d


def _dangling() -> Path:
    d = _folder()
    os.symlink(d / "nowhere", d / "model.safetensors")
    return d


def _symlink_loop() -> Path:
    d = _folder()
    os.symlink(d / "model.safetensors", d / "model.safetensors")
    return d


_checkpoint_error("weights-are-a-fifo", _fifo_weights, match="FIFO")
_checkpoint_error("weights-are-dev-zero", _dev_zero_weights, match="character device")
_checkpoint_error("weights-are-a-directory", _dir_weights, match="directory")
_checkpoint_error("bin-is-a-directory", _dir_bin, match="directory")
_checkpoint_error("weights-dangling-symlink", _dangling)
_checkpoint_error("weights-symlink-loop", _symlink_loop)


def _walk(d: Path) -> object:
    from modeldiff import walk

    return walk(d)


def _config_fifo() -> Path:
    d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
    os.mkfifo(d / "config.json")
    return d


def _config_dev_zero() -> Path:
    d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
    os.symlink("/dev/zero", d / "config.json")
    return d


def _config_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
    (d / "config.json").mkdir()
    return d


def _config_sparse_17MB() -> Path:
    d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
    with (d / "config.json").open("wb") as f:
        f.truncate(17 * 2**20)  # sparse: its size is refused before a byte is read
    return d


_checkpoint_error("config-is-a-fifo", _config_fifo, match="FIFO", read=_walk)
_checkpoint_error("config-is-dev-zero", _config_dev_zero, match="device", read=_walk)
_checkpoint_error("config-is-a-directory", _config_dir, match="directory", read=_walk)
_checkpoint_error("config-over-MAX_CONFIG_BYTES", _config_sparse_17MB, match="MAX_CONFIG_BYTES",
                  read=_walk)


def _config_error(name: str, text: bytes, match: str | None = None) -> None:
    def run() -> None:
        from modeldiff import walk
        from modeldiff.errors import ConfigError

        d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
        (d / "config.json").write_bytes(text)
        raises(ConfigError, walk, d, match=match)
    add("torch", f"files-config-{name}", run)


_config_error("depth-bomb", b'{"a":' + b"[" * 500_000 + b"]" * 500_000 + b"}", "nested deeper")
_config_error("not-json", b"{model_type: bert}", "not valid JSON")
_config_error("not-utf8", b'{"model_type": "\xff"}', "UTF-8")
_config_error("nul-bytes", b'{"model_type": "bert"\x00}', "not valid JSON")
_config_error("array", b"[1, 2]", "JSON object")
_config_error("empty", b"", "not valid JSON")
_config_error("huge-number", b'{"model_type": "bert", "x": ' + b"9" * 5000 + b"}", "JSON")


# -- shard indexes ----------------------------------------------------------------------------
def _indexed(weight_map: object, *, shards: dict[str, dict[str, list[int]]] | None = None,
             raw: bytes | None = None, name: str = "model.safetensors.index.json") -> Path:
    d = _folder()
    for shard, tensors in (shards or {}).items():
        _st(d / shard, tensors)
    text = raw if raw is not None else json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    (d / name).write_bytes(text)
    return d


def _outside_shard() -> Path:
    outside = Path(tempfile.mkdtemp(prefix="adv-out-"))
    _st(outside / "secret.safetensors")
    return _indexed({"w": f"../{outside.name}/secret.safetensors"})


def _absolute_shard() -> Path:
    outside = Path(tempfile.mkdtemp(prefix="adv-out-"))
    _st(outside / "secret.safetensors")
    return _indexed({"w": str(outside / "secret.safetensors")})


def _symlink_out() -> Path:
    outside = Path(tempfile.mkdtemp(prefix="adv-out-"))
    _st(outside / "secret.safetensors")
    d = _indexed({"w": "s.safetensors"})
    os.symlink(outside / "secret.safetensors", d / "s.safetensors")
    return d


def _symlinked_dir_out() -> Path:
    outside = Path(tempfile.mkdtemp(prefix="adv-out-"))
    _st(outside / "secret.safetensors")
    d = _indexed({"w": "sub/secret.safetensors"})
    os.symlink(outside, d / "sub")
    return d


_checkpoint_error("index-dotdot", _outside_shard, match="not a plain file name")
_checkpoint_error("index-absolute", _absolute_shard, match="not a plain file name")
_checkpoint_error("index-symlink-out", _symlink_out, match="outside the folder")
_checkpoint_error("index-symlinked-dir-out", _symlinked_dir_out, match="outside the folder")
_checkpoint_error("index-dev-zero-shard",
                  lambda: (lambda d: (os.symlink("/dev/zero", d / "z.safetensors"), d)[1])(
                      _indexed({"w": "z.safetensors"})), match="outside the folder")
for label, value in [("int", 3), ("null", None), ("list", ["a.safetensors"]),
                     ("object", {"f": "a.safetensors"}), ("bool", True)]:
    _checkpoint_error(f"index-value-{label}",
                      lambda value=value: _indexed({"w": value}, shards={"a.safetensors": {}}),
                      match="must be a file name string")
_checkpoint_error("index-empty-name", lambda: _indexed({"w": ""}), match="plain file name")
_checkpoint_error("index-nul-name", lambda: _indexed({"w": "a\x00.safetensors"}),
                  match="plain file name")
_checkpoint_error("index-missing-shard", lambda: _indexed({"w": "gone.safetensors"}),
                  match="does not exist")
_checkpoint_error("index-shard-lacks-key",
                  lambda: _indexed({"w": "a.safetensors", "v": "a.safetensors"},
                                   shards={"a.safetensors": {"w": [2]}}), match="does not hold")
_checkpoint_error("index-key-in-other-shard",
                  lambda: _indexed({"w": "a.safetensors", "v": "a.safetensors"},
                                   shards={"a.safetensors": {"w": [2]},
                                           "b.safetensors": {"v": [2]}}), match="does not hold")
_checkpoint_error("index-weight-map-list", lambda: _indexed(["a.safetensors"]),
                  match="weight_map")
_checkpoint_error("index-no-weight-map", lambda: _indexed(None, raw=b'{"metadata": {}}'),
                  match="weight_map")
_checkpoint_error("index-not-json", lambda: _indexed(None, raw=b"{weight_map"),
                  match="not valid JSON")
_checkpoint_error("index-depth-bomb", lambda: _indexed(None, raw=b"[" * 300_000),
                  match="nested deeper")
_checkpoint_error("index-is-a-fifo",
                  lambda: (lambda d: (os.mkfifo(d / "model.safetensors.index.json"), d)[1])(
                      _folder()), match="FIFO")
_checkpoint_error("bin-index-dotdot",
                  lambda: _indexed({"w": "../x.bin"}, name="pytorch_model.bin.index.json"),
                  match="plain file name")


def _index_over_cap() -> None:
    import modeldiff.limits as limits
    from modeldiff.errors import CheckpointError

    d = _indexed({f"w{i}": "a.safetensors" for i in range(100)}, shards={"a.safetensors": {}})
    with limits.raised(MAX_INDEX_BYTES=500):
        raises(CheckpointError, _read_index, d, match="MAX_INDEX_BYTES")


add("torch", "files-index-over-MAX_INDEX_BYTES", _index_over_cap)


def _index_inside_subfolder_is_fine() -> None:
    d = _folder()
    (d / "shards").mkdir()
    _st(d / "shards" / "a.safetensors", {"w": [2]})
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "shards/a.safetensors"}}))
    assert _read_index(d) == {"w": ("float32", (2,))}


add("torch", "files-index-valid-subfolder", _index_inside_subfolder_is_fine)


# -- which files count -------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.marker, "w"))


def _evil_pickle(path: Path, marker: Path, *, wrap_in_dict: bool = True) -> None:
    import pickle

    payload = {"w": _Evil(str(marker))} if wrap_in_dict else _Evil(str(marker))
    with path.open("wb") as f:
        pickle.dump(payload, f)


for other in ("training_args.bin", "optimizer.bin", "scheduler.pt", "rng_state.pth",
              "optimizer.pt", "adapter_model.bin", "model.bin", "consolidated.00.pth"):
    def _ignored(other: str = other) -> None:
        from modeldiff import walk
        from modeldiff._walk.checkpoint import checkpoint_files

        d = _folder()
        _st(d / "model.safetensors", {"bert.embeddings.word_embeddings.weight": [20, 8]})
        marker = d.parent / f"{d.name}-ran"
        _evil_pickle(d / other, marker)
        assert checkpoint_files(d) == (d / "model.safetensors",)
        g = walk(d)
        assert g["embeddings.word_embeddings"].params[0].dtype == "float32"
        assert not marker.exists(), "pickle code ran"
    add("torch", f"files-ignores-{other}", _ignored)


def _only_other_files() -> None:
    from modeldiff import compare_checkpoints
    from modeldiff.errors import CheckpointError

    d = _folder()
    marker = d.parent / f"{d.name}-ran"
    _evil_pickle(d / "training_args.bin", marker)
    raises(CheckpointError, compare_checkpoints, d, d, match="holds no weights")
    assert not marker.exists()


add("torch", "files-only-training-args-is-no-weights", _only_other_files)


def _bin_case(name: str, write: Callable[[Path, Path], None], match: str | None = None) -> None:
    def run() -> None:
        from modeldiff._walk.checkpoint import load_bin
        from modeldiff.errors import CheckpointError

        d = _folder()
        marker = d.parent / f"{d.name}-ran"
        write(d / "pytorch_model.bin", marker)
        raises(CheckpointError, load_bin, d / "pytorch_model.bin", match=match)
        raises(CheckpointError, _read_index, d)
        assert not marker.exists(), "pickle code ran"
    add("torch", f"files-bin-{name}", run)


def _torch_save(obj_fn: Callable[[], object]) -> Callable[[Path, Path], None]:
    def write(path: Path, marker: Path) -> None:
        import torch

        torch.save(obj_fn(), path)
    return write


_bin_case("evil-pickle-legacy", lambda p, m: _evil_pickle(p, m), "refused")
_bin_case("evil-pickle-bare", lambda p, m: _evil_pickle(p, m, wrap_in_dict=False), "refused")


def _evil_zip(p: Path, m: Path) -> None:
    import torch

    torch.save({"w": _Evil(str(m))}, p)


_bin_case("evil-pickle-zip", _evil_zip, "refused")
_bin_case("list", _torch_save(lambda: [1, 2, 3]), "state dict")
_bin_case("tensor", _torch_save(lambda: __import__("torch").ones(2)), "state dict")
_bin_case("int", _torch_save(lambda: 3), "state dict")
_bin_case("int-keys", _torch_save(lambda: {1: __import__("torch").ones(2)}), "state dict")
_bin_case("string-values", _torch_save(lambda: {"w": "x"}), "state dict")
_bin_case("nested-dict", _torch_save(lambda: {"w": {"v": __import__("torch").ones(2)}}),
          "state dict")
_bin_case("empty-file", lambda p, m: p.write_bytes(b""), None)
_bin_case("garbage", lambda p, m: p.write_bytes(os.urandom(4096)), None)
_bin_case("truncated-zip", lambda p, m: (_torch_save(lambda: {"w": __import__("torch").ones(64)})(
    p, m), p.write_bytes(p.read_bytes()[:300])), None)


def _zip_bomb() -> None:
    """A deflated member that would inflate past the cap is refused from the zip directory,
    before torch reads it (the cap lowered to keep the file small)."""
    import zipfile

    import modeldiff.limits as limits
    from modeldiff._walk.checkpoint import load_bin
    from modeldiff.errors import CheckpointError

    d = _folder()
    with zipfile.ZipFile(d / "pytorch_model.bin", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", bytes(200_000))
    assert (d / "pytorch_model.bin").stat().st_size < 5_000
    with limits.raised(MAX_BIN_UNCOMPRESSED_BYTES=100_000):
        raises(CheckpointError, load_bin, d / "pytorch_model.bin", match="inflate")


add("torch", "files-bin-zip-bomb", _zip_bomb)


def _legacy_over_cap() -> None:
    import torch

    import modeldiff.limits as limits
    from modeldiff._walk.checkpoint import load_bin
    from modeldiff.errors import CheckpointError

    d = _folder()
    torch.save({"w": torch.ones(64)}, d / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    assert load_bin(d / "pytorch_model.bin")["w"].shape == (64,)
    with limits.raised(MAX_BIN_FILE_BYTES=100):
        raises(CheckpointError, load_bin, d / "pytorch_model.bin", match="MAX_BIN_FILE_BYTES")


add("torch", "files-bin-legacy-over-MAX_BIN_FILE_BYTES", _legacy_over_cap)


def _compare_fifo_file() -> None:
    from modeldiff import compare_checkpoints
    from modeldiff.errors import CheckpointError

    d = Path(tempfile.mkdtemp(prefix="adv-ckpt-"))
    os.mkfifo(d / "a.safetensors")
    _st(d / "b.safetensors")
    raises(CheckpointError, compare_checkpoints, d / "a.safetensors", d / "b.safetensors",
           match="FIFO")


add("torch", "files-compare-a-fifo", _compare_fifo_file)
