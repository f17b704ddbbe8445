"""Untrusted checkpoints: state.pt is read weights-only; crafted pickles are refused without running; format 1 is
converted only with --trust-legacy-checkpoint."""

from __future__ import annotations

import io
import os
import random
import shlex
import shutil

import numpy as np
import pytest
import torch
import yaml
from test_train_checkpoint import tiny_config, tiny_dict

from mgdepth_core.cli import main
from mgdepth_core.models.weights import WeightsError, load_weights
from mgdepth_core.torch_files import TorchFileError, UnsafeTorchFileError, load_weights_only
from mgdepth_core.train import checkpoints
from mgdepth_core.train.trainer import Trainer


class _Payload:
    """Unpickling this object runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder after one step (format-2 state.pt); tests copy it."""
    root = tmp_path_factory.mktemp("safety")
    Trainer(tiny_config(root, max_steps=1), root / "run").train()
    return root / "run"


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_state_is_tensors_and_plain_values_and_restores_the_generators(trained_run):
    state = torch.load(trained_run / "state.pt", weights_only=True)
    assert state["format"] == checkpoints.STATE_FORMAT == 2
    saved = checkpoints.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    checkpoints.set_rng_state(torch.load(_bytes_roundtrip(saved), weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def _bytes_roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_crafted_state_is_refused_and_never_runs(trained_run, tmp_path, capsys):
    run = _copy(trained_run, tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"format": 2, "weights": "weights_0_1", "x": _Payload(marker)}, run / "state.pt")
    with pytest.raises(UnsafeTorchFileError, match="--trust-legacy-checkpoint"):
        checkpoints.load_checkpoint(run)
    assert main(["train", "--resume", str(run), "--max-steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "state.pt was refused" in err and "could run code" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_every_weights_loader_refuses_code_and_names_the_file(trained_run, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "weights"
    shutil.copytree(trained_run / "models" / "weights_0_1", folder)
    torch.save({"x": _Payload(marker)}, folder / "depth.pth")
    with pytest.raises(WeightsError, match=r"depth\.pth: refused"):
        load_weights(folder)
    (folder / "pose.pth").write_bytes((folder / "encoder.pth").read_bytes()[:100])
    with pytest.raises(TorchFileError, match=r"pose\.pth: not a readable"):
        load_weights_only(folder / "pose.pth")
    assert not marker.exists()


def _write_format1(run):
    """Rewrite ``run``'s state.pt the way format 1 stored it: pickled RNG tuples."""
    state = torch.load(run / "state.pt", weights_only=True)
    rng = [{**ranks, "python": random.getstate(), "numpy": np.random.get_state()} for ranks in state["rng"]]
    torch.save({**state, "rng": rng, "format": 1}, run / "state.pt")
    return rng


def test_format1_is_refused_without_the_flag_and_converted_with_it(trained_run, tmp_path, capsys):
    run = _copy(trained_run, tmp_path)
    legacy_rng = _write_format1(run)
    legacy_bytes = (run / "state.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--max-steps", "1"]) == 1
    assert "mgdepth train --resume" in capsys.readouterr().err
    assert (run / "state.pt").read_bytes() == legacy_bytes

    assert main(["train", "--resume", str(run), "--max-steps", "1", "--trust-legacy-checkpoint"]) == 0
    assert (run / "state.format1.pt").read_bytes() == legacy_bytes
    state, weights = checkpoints.load_checkpoint(run)
    assert (state["format"], state["step"], weights.name) == (2, 1, "weights_0_1")
    checkpoints.set_rng_state(state["rng"][0])
    assert random.getstate() == legacy_rng[0]["python"]
    assert np.array_equal(np.random.get_state()[1], legacy_rng[0]["numpy"][1])
    assert checkpoints.convert_legacy_state(run) is False  # already format 2: nothing to do


def test_trust_flag_needs_resume(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_dict(tmp_path)))
    assert main(["train", "--config", str(config), "--trust-legacy-checkpoint"]) == 1
    assert "needs --resume" in capsys.readouterr().err
