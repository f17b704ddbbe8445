"""The depth node over real rclpy (Fast DDS, localhost, the session's ROS_DOMAIN_ID), with a real DepthEstimator.

(c) frames of a synthetic dynamic street go in with camera_info; depth, camera_info, mask, cloud, odometry and
markers come out with the input header, and the cloud is the back-projection of the published depth with the
published intrinsics. (d) an unsupported encoding, a size change, a missing camera_info, a NaN in K and a stamp
jumping backwards each give a warning, and the node keeps publishing afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from sensor_msgs.msg import Image  # noqa: E402

from mgdepth_core.data.synthetic import SyntheticSequence  # noqa: E402
from mgdepth_ros import conversions  # noqa: E402
from mgdepth_ros.depth_node import DepthNode  # noqa: E402
from mgdepth_ros.harness import FramePlayer, OutputCollector, RosSession, small_estimator, wait_until  # noqa: E402

pytestmark = pytest.mark.ros
FRAME = "cam0_optical"
PERIOD_NS = 100_000_000
# dynamic_mask is published only when the estimator finds dynamic objects (Dyna-DM stage), checked where present
ALL_TOPICS = ["depth/image_rect", "depth/camera_info", "depth/colorized", "points", "odometry",
              "dynamic_objects/markers"]


@pytest.fixture(scope="module")
def sequence():
    return SyntheticSequence(seed=3, num_frames=12, height=96, width=320)


@pytest.fixture(scope="module")
def ros(sequence):
    """A running depth node (real estimator), a frame player and an output collector in one rclpy session."""
    with RosSession() as session:
        node = DepthNode(small_estimator(), context=session.context,
                         parameter_overrides=[rclpy.parameter.Parameter("cloud_decimation", value=1),
                                              rclpy.parameter.Parameter("warning_period_s", value=0.0)])
        session.add(node)
        player = session.add(FramePlayer(session.context))
        collector = session.add(OutputCollector(session.context))
        assert wait_until(lambda: player.pub_image.get_subscription_count() > 0
                          and collector.count_publishers("points") > 0, timeout=10.0)
        yield node, player, collector


def send(ros, sequence, index: int, stamp: int, **kwargs) -> dict:
    node, player, collector = ros
    frame = sequence.frame(index)
    player.publish_frame(frame["image"], frame["K"], stamp, FRAME, **kwargs)
    return collector.wait_for_all(ALL_TOPICS, stamp, timeout=30.0)


def test_outputs_follow_the_input_and_the_cloud_is_the_backprojected_depth(ros, sequence):
    node, player, collector = ros
    outputs = {}
    for index in range(4):
        outputs = send(ros, sequence, index, (index + 1) * PERIOD_NS)
        missing = [topic for topic, msg in outputs.items() if msg is None]
        assert not missing, f"no output on {missing} for frame {index}"
    stamp = 4 * PERIOD_NS
    depth_msg, info, cloud = outputs["depth/image_rect"], outputs["depth/camera_info"], outputs["points"]
    for topic in ["depth/image_rect", "depth/camera_info", "depth/colorized", "points"]:
        assert outputs[topic].header.frame_id == FRAME, topic
        assert outputs[topic].header.stamp.sec * 10**9 + outputs[topic].header.stamp.nanosec == stamp
    assert depth_msg.encoding == "32FC1" and outputs["depth/colorized"].encoding == "bgr8"
    assert (outputs["depth/colorized"].width, outputs["depth/colorized"].height) == (depth_msg.width, depth_msg.height)
    markers = outputs["dynamic_objects/markers"].markers
    assert markers[0].header.frame_id == FRAME and markers[0].action == markers[0].DELETEALL
    for mask in collector.messages["dynamic_mask"].values():
        assert (mask.encoding, mask.width, mask.height, mask.header.frame_id) == (
            "16UC1", depth_msg.width, depth_msg.height, FRAME)
    assert (info.width, info.height) == (depth_msg.width, depth_msg.height)
    odometry = outputs["odometry"]
    assert odometry.header.frame_id == "odom" and odometry.child_frame_id == FRAME
    orientation = odometry.pose.pose.orientation
    assert np.isclose(np.linalg.norm([orientation.x, orientation.y, orientation.z, orientation.w]), 1.0)

    depth = conversions.image_msg_to_array(depth_msg)
    K = np.asarray(info.k).reshape(3, 3)
    # the depth camera_info is the input K scaled to the depth resolution
    scale_x, scale_y = depth_msg.width / sequence.width, depth_msg.height / sequence.height
    np.testing.assert_allclose(K[0], sequence.K[0] * [scale_x, 1, scale_x], rtol=1e-6)
    np.testing.assert_allclose(K[1], sequence.K[1] * [1, scale_y, scale_y], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], K)

    xyz, rgb = conversions.cloud_msg_to_points(cloud)
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0.1) & (depth <= 80.0))
    assert len(xyz) == len(rows) > 0.5 * depth.size
    expected = np.stack([(cols - K[0, 2]) / K[0, 0] * depth[rows, cols],
                         (rows - K[1, 2]) / K[1, 1] * depth[rows, cols], depth[rows, cols]], axis=1)
    np.testing.assert_allclose(xyz, expected, rtol=1e-5, atol=1e-5)
    assert rgb is not None and rgb.std() > 0  # the colours of the (textured) input image


def test_statistics_reach_diagnostics(ros, sequence):
    diagnostic_msgs = pytest.importorskip("diagnostic_msgs.msg", reason="ros-jazzy-diagnostic-msgs not installed")
    node, player, collector = ros
    reports = []
    collector.create_subscription(diagnostic_msgs.DiagnosticArray, "/diagnostics", reports.append, 10)
    assert send(ros, sequence, 4, 30 * PERIOD_NS)["points"] is not None
    assert wait_until(lambda: any(len(r.status) and r.status[0].values for r in reports), timeout=5.0)
    status = reports[-1].status[0]
    values = {value.key: value.value for value in status.values}
    assert status.name == "mgdepth_depth: depth" and status.hardware_id == "mgdepth"
    assert {"input_rate_hz", "output_rate_hz", "dropped", "latency_ms", "inference_ms", "scale"} <= set(values)
    assert values["scale_source"] == "fixed" and float(values["scale"]) == 1.0
    assert node.totals["received"] >= node.totals["processed"] >= 5


def test_bad_messages_warn_and_the_node_keeps_publishing(ros, sequence):
    node, player, collector = ros
    stamp = 100 * PERIOD_NS
    assert send(ros, sequence, 5, stamp)["points"] is not None

    before = node.warning_counts.copy()
    bad = Image(height=96, width=320, encoding="16UC1", step=640)
    bad.data = bytes(96 * 640)
    stamp += PERIOD_NS
    player.publish_frame(None, sequence.K, stamp, FRAME, image=bad)
    assert wait_until(lambda: node.warning_counts["bad_image"] > before["bad_image"])
    assert send(ros, sequence, 6, stamp + PERIOD_NS)["depth/image_rect"] is not None
    stamp += 2 * PERIOD_NS
    one_pixel = np.zeros((1, 1, 3), np.uint8)  # too small to resize: skipped as a bad image, not a failure
    player.publish_frame(one_pixel, sequence.K, stamp, FRAME)
    assert wait_until(lambda: node.warning_counts["bad_image"] == before["bad_image"] + 2)
    stamp += PERIOD_NS

    small = SyntheticSequence(seed=3, num_frames=2, height=64, width=160)
    frame = small.frame(1)
    stamp += PERIOD_NS
    player.publish_frame(frame["image"], frame["K"], stamp, FRAME)
    assert collector.wait_for("depth/image_rect", stamp) is not None
    assert node.warning_counts["size_change"] == before["size_change"] + 1
    stamp += PERIOD_NS
    assert send(ros, sequence, 7, stamp)["points"] is not None  # and back to the first size
    assert node.warning_counts["size_change"] == before["size_change"] + 2

    stamp += PERIOD_NS
    player.publish_frame(sequence.frame(8)["image"], None, stamp, "another_camera_optical")
    assert wait_until(lambda: node.warning_counts["missing_camera_info"] > before["missing_camera_info"])
    assert collector.wait_for("depth/image_rect", stamp, timeout=1.0) is None  # skipped, not guessed
    stamp += PERIOD_NS
    assert send(ros, sequence, 8, stamp)["depth/image_rect"] is not None

    nan_K = sequence.K.copy()
    nan_K[0, 0] = np.nan
    stamp += PERIOD_NS
    player.publish_frame(sequence.frame(9)["image"], nan_K, stamp, FRAME)
    assert wait_until(lambda: node.warning_counts["bad_camera_info"] > before["bad_camera_info"])
    stamp += PERIOD_NS
    assert send(ros, sequence, 9, stamp)["depth/image_rect"] is not None  # fresh camera_info: back to work

    backwards = 50 * PERIOD_NS
    outputs = send(ros, sequence, 9, backwards)
    assert outputs["depth/image_rect"] is not None
    assert node.warning_counts["stamp_backwards"] == before["stamp_backwards"] + 1
    odometry = outputs["odometry"].pose.pose.position
    assert (odometry.x, odometry.y, odometry.z) == (0.0, 0.0, 0.0)  # odometry restarted at the loop
    assert send(ros, sequence, 10, backwards + PERIOD_NS)["points"] is not None
    assert node.warning_counts["processing_failed"] == 0


def test_lost_and_repeated_frames_are_counted(ros):
    """A gap in the publisher's sequence numbers = frames the subscription queue replaced before the node took
    them (lost); the same frame again is a duplicate. Both reach /diagnostics with the other totals."""
    node, player, collector = ros
    before = node.totals.copy()
    unusable = Image(height=2, width=2, encoding="16UC1", step=4)  # skipped quickly, whatever the stamp
    unusable.data = bytes(8)
    base = node._last_sequence or 0
    for offset, sec in ((1, 901), (5, 902), (6, 902)):  # 3 lost between the first two, then 902 again
        unusable.header.stamp.sec = sec
        node._on_image(unusable, {"publication_sequence_number": base + offset})
    assert node.totals["lost"] - before["lost"] == 3 and node.totals["duplicates"] - before["duplicates"] == 1
    assert node.totals["received"] - before["received"] == 2
    resolved = ("processed", "dropped", "skipped", "failed")
    assert wait_until(lambda: sum(node.totals[k] for k in resolved) == node.totals["received"])


def test_parameter_changes_while_running_apply_to_outputs_only(ros):
    node, player, collector = ros
    result = node.set_parameters([rclpy.parameter.Parameter("publish_colorized", value=False)])[0]
    assert result.successful and node.p["publish_colorized"] is False and node.outputs.p["publish_colorized"] is False
    assert node.set_parameters([rclpy.parameter.Parameter("publish_colorized", value=True)])[0].successful
    method = node.get_parameter("method").value
    other = {"manydepth": "manydepth2", "manydepth2": "manydepth"}[method]
    refused = node.set_parameters([rclpy.parameter.Parameter("method", value=other)])[0]
    assert not refused.successful and "read when the node starts" in refused.reason
    assert node.get_parameter("method").value == node.p["method"] == method
    bad = node.set_parameters([rclpy.parameter.Parameter("cloud_decimation", value=0)])[0]
    assert not bad.successful and "at least 1" in bad.reason and node.p["cloud_decimation"] == 1


def test_node_builds_its_estimator_from_parameters():
    """What `ros2 run mgdepth_ros depth_node` does: method, depth_scale, max_gap_s, the scale source and the speed
    settings reach the DepthEstimator."""
    with RosSession() as session:
        node = DepthNode(context=session.context, parameter_overrides=[
            rclpy.parameter.Parameter("method", value="manydepth"),
            rclpy.parameter.Parameter("depth_scale", value=5.4),
            rclpy.parameter.Parameter("max_gap_s", value=0.25),
            rclpy.parameter.Parameter("scale_source", value="camera_height"),
            rclpy.parameter.Parameter("camera_height_m", value=1.2),
            rclpy.parameter.Parameter("autocast", value="bfloat16"),
            rclpy.parameter.Parameter("cost_volume_bin_step", value=2)])
        session.add(node)
        config = node.estimator.config
        assert (config.method, config.depth_scale, config.max_gap_s, config.weights) == ("manydepth", 5.4, 0.25, "")
        assert (config.scale_source, config.camera_height_m) == ("camera_height", 1.2)
        assert (config.autocast, config.cost_volume_bin_step) == ("bfloat16", 2)
        assert node.estimator.autocast_dtype == torch.bfloat16 and node.estimator.model.encoder.bin_step == 2
        assert node.get_parameter("depth_scale").value == 5.4


def test_odometry_in_gives_the_metric_scale_and_its_absence_warns(sequence):
    """scale_source odometry: without messages on odometry_in the node warns and keeps depth_scale; with them the
    estimator gets the displacement between frames (2 m per frame here) and reports the odometry scale."""
    from nav_msgs.msg import Odometry

    from mgdepth_ros.harness import build_estimator

    estimator = build_estimator(None, "manydepth", "cpu", 64, 192, scale_source="odometry", min_translation=0.0)
    with RosSession() as session:
        node = session.add(DepthNode(estimator, context=session.context, parameter_overrides=[
            rclpy.parameter.Parameter("scale_source", value="odometry"),
            rclpy.parameter.Parameter("warning_period_s", value=0.0)]))
        player = session.add(FramePlayer(session.context))
        odometry = player.create_publisher(Odometry, "odometry_in", 10)
        assert wait_until(lambda: player.pub_image.get_subscription_count() > 0
                          and odometry.get_subscription_count() > 0, timeout=10.0)
        for index in range(1, 7):
            stamp = index * PERIOD_NS
            if index > 2:
                msg = Odometry()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                msg.pose.pose.position.x = 2.0 * index
                odometry.publish(msg)
                assert wait_until(lambda s=stamp: node.odometry_in.at(s * 1e-9) is not None, timeout=5.0)
            frame = sequence.frame(index)
            player.publish_frame(frame["image"], frame["K"], stamp, FRAME)
            # this node's own count: the module's other depth node (same ROS domain) also answers on depth/image_rect
            assert wait_until(lambda n=index: node.totals["processed"] >= n, timeout=30.0)
            if index == 3:
                assert node.warning_counts["missing_odometry_in"] >= 2 and node.scale == (1.0, "fixed")
        assert node.scale[1] == "odometry" and node.scale[0] != 1.0
        assert [measured for measured, _ in estimator.scale._pairs] == pytest.approx([2.0] * 3)
