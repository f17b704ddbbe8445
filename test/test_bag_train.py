"""`mgdepth train --bag`: the KITTI trainer runs a few steps on a bag written here, with the bag options filling
DataConfig."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_bag_io import REPO_CONFIG, small_frames, write_bag

from mgdepth_core.cli import build_parser, main
from mgdepth_core.commands._bag_options import bag_overrides
from mgdepth_core.config import apply_overrides


def test_bag_options_become_data_overrides(tmp_path):
    args = build_parser().parse_args(["train", "--bag", str(tmp_path / "my bag: 1"), "--image-topic", "/cam/image",
                                      "--intrinsics", "k.yaml", "--max-gap", "0.3"])
    data = apply_overrides({}, bag_overrides(args))["data"]
    assert data == {"dataset": "bag", "path": str(tmp_path / "my bag: 1"), "image_topic": "/cam/image",
                    "intrinsics_file": "k.yaml", "max_gap_s": 0.3}


@pytest.mark.slow
def test_train_two_steps_from_a_compressed_image_bag(shared_data, tmp_path):
    frames = small_frames(shared_data, 8)
    topic, info_topic = write_bag(tmp_path / "bag", "sqlite3", frames, [0.1 * i for i in range(8)], compressed=True)
    run_dir = tmp_path / "run"
    code = main(["train", "--config", str(REPO_CONFIG / "train_bag.yaml"), "--method", "manydepth",
                 "--bag", str(tmp_path / "bag"), "--image-topic", topic, "--camera-info-topic", info_topic,
                 "--set", "model.height=64", "--set", "model.width=128", "--set", "data.height=64",
                 "--set", "data.width=128", "--set", "model.pretrained=false", "--set", "model.num_depth_bins=4",
                 "--set", "optim.batch_size=2", "--set", "data.num_workers=0", "--set", "log_frequency=1",
                 "--max-steps", "2", "--run-dir", str(run_dir)])
    assert code == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["dataset"] == "bag" and saved["data"]["path"] == str(tmp_path / "bag")
    assert saved["data"]["image_topic"] == topic and saved["data"]["camera_info_topic"] == info_topic
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["method"] == "manydepth"
    assert (run_dir / "models" / "weights_0_2").is_dir()
