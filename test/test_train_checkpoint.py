"""Checkpoints and resume: exact continuation, run-folder layout, atomic saves, and the bad-input errors."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import yaml

from mgdepth_core.cli import main
from mgdepth_core.config import ConfigError, from_dict, load_config, to_dict
from mgdepth_core.train import checkpoints
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.trainer import DynamicObjectsHook, Trainer, TrainingDivergedError

NETWORK_FILES = {"encoder.pth", "depth.pth", "mono_encoder.pth", "mono_depth.pth", "pose_encoder.pth", "pose.pth"}


def tiny_dict(tmp_path) -> dict:
    """2 sequences × 4 targets = 8 samples, batch 2 → 4 steps per epoch; teacher frozen from epoch 1."""
    return {"model": {"method": "manydepth", "height": 64, "width": 64, "pretrained": False, "num_depth_bins": 8},
            "data": {"dataset": "synthetic", "height": 64, "width": 64, "num_workers": 0,
                     "synthetic_sequences": 2, "synthetic_frames": 6},
            "optim": {"batch_size": 2, "epochs": 2, "freeze_teacher_epoch": 1},
            "log_dir": str(tmp_path), "log_frequency": 2, "device": "cpu"}


def tiny_config(tmp_path, **top) -> TrainConfig:
    return from_dict(TrainConfig, {**tiny_dict(tmp_path), **top})


@pytest.mark.slow
def test_resume_continues_exactly_across_the_freeze(tmp_path):
    """6 steps in one go == 3 steps, stop, resume, 3 more (through the epoch end and the teacher freeze)."""
    straight = Trainer(tiny_config(tmp_path, max_steps=6), tmp_path / "straight")
    initial = {key: value.clone() for key, value in straight.model.state_dict().items()}
    straight.train()
    Trainer(tiny_config(tmp_path, max_steps=3), tmp_path / "split").train()
    state, weights = checkpoints.load_checkpoint(tmp_path / "split")
    assert (state["epoch"], state["batch_in_epoch"], state["step"], state["frozen"]) == (0, 3, 3, False)
    assert weights.name == "weights_0_3" and {p.name for p in weights.glob("*.pth")} == NETWORK_FILES
    resumed = Trainer(tiny_config(tmp_path, max_steps=6), tmp_path / "split", resume=True)
    resumed.train()
    assert (resumed.epoch, resumed.step, resumed.step_module.teacher_frozen) == (1, 6, True)
    expected, actual = straight.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        assert torch.allclose(expected[key].float(), actual[key].float(), atol=1e-6), key
    assert not torch.equal(initial["depth.decoder.13.conv.weight"], expected["depth.decoder.13.conv.weight"])
    # Layout: the epoch-0 folder replaced the mid-epoch one, and the run stops mid-epoch 1.
    assert sorted(p.name for p in (tmp_path / "split" / "models").iterdir()) == ["weights_0", "weights_1_6"]
    saved = load_config(TrainConfig, tmp_path / "split" / "config.yaml")
    assert to_dict(saved) == to_dict(tiny_config(tmp_path, max_steps=6))
    assert list((tmp_path / "split").glob("events.out.tfevents.*"))


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    Trainer(tiny_config(tmp_path, max_steps=1), run).train()
    state_bytes = (run / "state.pt").read_bytes()

    def crash(model, folder):
        (folder / "encoder.pth").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("mgdepth_core.models.weights.save_weights", crash)
    trainer = Trainer(tiny_config(tmp_path, max_steps=2), run, resume=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert (run / "state.pt").read_bytes() == state_bytes
    assert sorted(os.listdir(run / "models")) == ["weights_0_1"]  # no temporary folder left behind
    assert checkpoints.load_checkpoint(run)[1].name == "weights_0_1"


def test_what_a_killed_save_leaves_is_never_a_loadable_name_and_goes_on_restart(tmp_path, monkeypatch):
    """A process killed while saving leaves temporaries (weights folder being written, state.pt.tmp, a folder
    being deleted); none carries a checkpoint name, and the next start removes them."""
    run = tmp_path / "run"
    Trainer(tiny_config(tmp_path, max_steps=1, save_every_steps=1), run).train()

    def killed_while_deleting(path, ignore_errors=False):
        raise KeyboardInterrupt  # as if the process died in the middle of deleting the older mid-epoch folder

    monkeypatch.setattr(checkpoints.shutil, "rmtree", killed_while_deleting)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(tmp_path, max_steps=2, save_every_steps=1), run, resume=True).train()
    monkeypatch.undo()
    models = sorted(os.listdir(run / "models"))
    assert models == [f".weights_0_1.old-{os.getpid()}", "weights_0_2"]  # never a half-deleted weights_0_1
    (run / "models" / ".weights_0_3.k2j4_x").mkdir()  # a weights folder being written
    (run / "models" / ".weights_0_3.k2j4_x" / "encoder.pth").write_bytes(b"half")
    (run / ".state.pt.abc123.tmp").write_bytes(b"half")
    (run / ".config.yaml.999.tmp").write_text("half")

    resumed = Trainer(tiny_config(tmp_path, max_steps=3, save_every_steps=1), run, resume=True)
    assert resumed.step == 2
    resumed.train()
    assert sorted(os.listdir(run / "models")) == ["weights_0_3"]
    assert not list(run.glob(".*"))
    assert checkpoints.load_checkpoint(run)[0]["step"] == 3


class _NaNAfter(DynamicObjectsHook):
    def __init__(self, calls: int):
        self.calls = calls

    def extra_losses(self, inputs, outputs):
        self.calls -= 1
        return {"poison": torch.tensor(float("nan") if self.calls < 0 else 0.0)}


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(tmp_path, save_every_steps=2), run)
    trainer.step_module.hook = _NaNAfter(calls=3)
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at epoch 0, step 3 in extra/poison.*weights_0_2"):
        trainer.train()
    state, weights = checkpoints.load_checkpoint(run)
    assert state["step"] == 2 and weights.name == "weights_0_2"
    assert sorted(os.listdir(run / "models")) == ["weights_0_2"]


class _InterruptAt(DynamicObjectsHook):
    def __init__(self, call: int):
        self.call = call

    def extra_losses(self, inputs, outputs):
        self.call -= 1
        if self.call == 0:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a step
        return {}


def test_ctrl_c_finishes_the_step_and_writes_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(tmp_path), run)
    trainer.step_module.hook = _InterruptAt(call=2)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (nohup ignores it)
    try:
        with pytest.raises(KeyboardInterrupt, match="step 2.*--resume"):
            trainer.train()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    finally:
        signal.signal(signal.SIGINT, previous)
    state, weights = checkpoints.load_checkpoint(run)
    assert state["step"] == 2 and weights.name == "weights_0_2"


def test_bad_inputs_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="no training samples"):
        Trainer(tiny_config(tmp_path), tmp_path / "run", dataset=[])
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        Trainer(tiny_config(tmp_path), tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="model.height/width"):
        Trainer(tiny_config(tmp_path, data={**tiny_dict(tmp_path)["data"], "height": 96}), tmp_path / "run")

    config = tiny_dict(tmp_path)
    config["optim"]["batch_sise"] = 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(bad)]) == 1
    assert "optim.batch_sise" in capsys.readouterr().err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["train", "--resume", str(empty)]) == 1
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_refuses_to_overwrite_and_resumes_auto(tmp_path, capsys):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_dict(tmp_path)))
    args = ["train", "--method", "manydepth", "--config", str(config_file), "--set", "run_name=cli"]
    assert main(args + ["--max-steps", "1"]) == 0
    assert main(args + ["--max-steps", "2"]) == 1
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(args + ["--max-steps", "2", "--resume", "auto"]) == 0
    assert checkpoints.load_checkpoint(tmp_path / "cli")[0]["step"] == 2
    assert main(["train", "--resume", str(tmp_path / "cli"), "--max-steps", "3"]) == 0
    assert checkpoints.load_checkpoint(tmp_path / "cli")[0]["step"] == 3


def test_cli_flags_fill_the_config(tmp_path):
    """--method, --dynamic-objects, --data and --max-steps land in the TrainConfig the trainer gets."""
    from mgdepth_core.cli import build_parser
    from mgdepth_core.commands.train import resolve_run

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_dict(tmp_path)))
    args = build_parser().parse_args(["train", "--config", str(config_file), "--method", "manydepth2",
                                      "--dynamic-objects", "dyna-dm", "--data", "/data/x", "--max-steps", "7"])
    config, _, resume = resolve_run(args)
    assert (config.model.method, config.dynamic_objects, config.data.path, config.max_steps) == (
        "manydepth2", "dyna-dm", "/data/x", 7)
    assert resume is False
