"""Every CLI command exits 2 with a one-line message, never a traceback, on bad input."""

from __future__ import annotations

import json

import pytest

from modeldiff.cli import main


@pytest.fixture
def truncated(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    # header length says 16 bytes, the file holds 7: a download that stopped
    (folder / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b'{"a":1}')
    return folder


def _fails(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"modeldiff {argv[0]}: error: ")
    for needle in needles:
        assert needle in err, err
    return err


def test_output_folder_missing_or_a_folder_or_unwritable(capsys, tmp_path):
    _fails(capsys, ["render", "distilbert", "-o", str(tmp_path / "no" / "x.svg")],
           "does not exist")
    (tmp_path / "d.svg").mkdir()
    _fails(capsys, ["render", "distilbert", "-o", str(tmp_path / "d.svg")], "is a folder")
    _fails(capsys, ["render", "distilbert", "-o", "/proc/modeldiff-test.svg"],
           "cannot write /proc/modeldiff-test.svg")
    assert not list(tmp_path.glob("**/.*.tmp"))  # nothing half-written


def test_demo_output_that_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    _fails(capsys, ["demo", "--out", str(tmp_path / "f")], "is a file, not a folder")
    _fails(capsys, ["demo", "--out", str(tmp_path / "no" / "deeper")], "does not exist")


@pytest.mark.parametrize("command", [["summary"], ["render", "-o", "x.svg"], ["roundtrip"],
                                     ["compare", "SELF"], ["diff", "distilbert"]])
def test_truncated_weights(capsys, truncated, command):
    argv = [command[0], str(truncated), *[str(truncated) if a == "SELF" else a
                                          for a in command[1:]]]
    _fails(capsys, argv, "model.safetensors", "corrupt header")


def test_classify_with_truncated_weights(capsys, truncated):
    _fails(capsys, ["classify", "a text", "--model", str(truncated)], "corrupt header")


def test_unknown_model_type_and_missing_path(capsys, tmp_path):
    _fails(capsys, ["summary", "distilbrt"], "unknown model_type 'distilbrt'",
           "did you mean 'distilbert'")
    _fails(capsys, ["summary", str(tmp_path / "nope")], "no such folder")
    _fails(capsys, ["roundtrip", "distilbrt"], "unknown model_type")


def test_unknown_name_without_network_fails_at_once(capsys, monkeypatch):
    from huggingface_hub import constants

    # Not offline by configuration, but the hub's host cannot resolve: no retries.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.modeldiff-test.invalid")
    _fails(capsys, ["summary", "someone/some-model"], "no network", "does not resolve")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _fails(capsys, ["classify", "a text", "--model", "someone/some-model"], "HF_HUB_OFFLINE")
