"""The managed depth node over real rclpy (Fast DDS, localhost, the session's ROS_DOMAIN_ID), driven through its
real ``~/change_state`` and ``~/get_state`` services from a client node, with a small weights folder on disk.

configure loads the weights, activate subscribes and publishes depth, deactivate stops processing (no input
subscription, no output) but keeps the model, cleanup frees it, shutdown finalises; a configure whose weights are
missing fails and leaves the node unconfigured.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mgdepth_core.data.synthetic import SyntheticSequence  # noqa: E402
from mgdepth_core.models import ModelConfig, build_model  # noqa: E402
from mgdepth_core.models.weights import save_weights  # noqa: E402
from mgdepth_ros.depth_lifecycle_node import DepthLifecycleNode  # noqa: E402
from mgdepth_ros.harness import FramePlayer, OutputCollector, RosSession, wait_until  # noqa: E402

pytestmark = pytest.mark.ros
H, W = 64, 192
FRAME = "cam0_optical"
PERIOD_NS = 100_000_000


class LifecycleClient(Node):
    """What ``ros2 lifecycle set`` / ``get`` do: calls to a managed node's lifecycle services."""

    def __init__(self, context: Context, target: str = "/mgdepth_depth") -> None:
        super().__init__("mgdepth_lifecycle_client", context=context)
        self.change_state = self.create_client(ChangeState, f"{target}/change_state")
        self.get_state = self.create_client(GetState, f"{target}/get_state")

    def _call(self, client, request, timeout: float = 60.0):
        assert client.wait_for_service(timeout_sec=10.0), f"no service {client.srv_name}"
        future = client.call_async(request)
        assert wait_until(future.done, timeout=timeout), f"no answer from {client.srv_name}"
        return future.result()

    def set(self, transition: str) -> bool:
        """Trigger ``transition`` by label (configure, activate, deactivate, cleanup, shutdown); its success."""
        request = ChangeState.Request()
        request.transition.label = transition
        return self._call(self.change_state, request).success

    def state(self) -> str:
        return self._call(self.get_state, GetState.Request()).current_state.label


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random Manydepth at 64×192 with 8 depth bins, saved as a weights folder: quick to load and run."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=H, width=W, pretrained=False, num_depth_bins=8))
    return save_weights(model, tmp_path_factory.mktemp("lifecycle") / "weights")


@pytest.fixture(scope="module")
def sequence():
    return SyntheticSequence(seed=3, num_frames=3, height=H, width=W)


@pytest.fixture(scope="module")
def ros(weights):
    """The managed depth node (unconfigured, ``weights`` set), a lifecycle client, a frame player and an output
    collector in one rclpy session."""
    with RosSession() as session:
        node = session.add(DepthLifecycleNode(context=session.context, parameter_overrides=[
            Parameter("weights", value=str(weights)), Parameter("method", value="manydepth"),
            Parameter("input_reliability", value="reliable")]))  # the player is reliable: no subscription switch
        client = session.add(LifecycleClient(session.context))
        player = session.add(FramePlayer(session.context))
        collector = session.add(OutputCollector(session.context))
        yield node, client, player, collector


def test_configure_with_missing_weights_fails_and_stays_unconfigured(ros, weights, tmp_path):
    node, client, player, collector = ros
    assert client.state() == "unconfigured"
    node.set_parameters([Parameter("weights", value=str(tmp_path / "missing"))])
    assert not client.set("configure")
    assert client.state() == "unconfigured"
    assert node.estimator is None and node.outputs is None
    assert collector.count_publishers("depth/image_rect") == 0
    node.set_parameters([Parameter("weights", value=str(weights))])


def test_lifecycle_transitions_start_and_stop_processing(ros, sequence):
    node, client, player, collector = ros
    assert client.state() == "unconfigured" and node.estimator is None

    assert client.set("configure")
    assert client.state() == "inactive"
    estimator = node.estimator
    assert (estimator.height, estimator.width) == (H, W)  # the weights folder's model
    assert wait_until(lambda: collector.count_publishers("depth/image_rect") > 0)
    assert player.pub_image.get_subscription_count() == 0  # no input before activation

    def send(index: int, timeout: float = 30.0):
        """Publish frame ``index`` with its camera_info; the depth image of its stamp, or None."""
        frame, stamp = sequence.frame(index), (index + 1) * PERIOD_NS
        player.publish_frame(frame["image"], frame["K"], stamp, FRAME)
        return collector.wait_for("depth/image_rect", stamp, timeout=timeout)

    def subscribed() -> bool:
        return player.pub_image.get_subscription_count() > 0 and player.pub_info.get_subscription_count() > 0

    assert client.set("activate")
    assert client.state() == "active"
    assert wait_until(subscribed)
    depth = send(0)
    assert depth is not None and depth.encoding == "32FC1" and (depth.height, depth.width) == (H, W)

    assert client.set("deactivate")
    assert client.state() == "inactive"
    assert node.estimator is estimator  # the model stays loaded
    assert wait_until(lambda: player.pub_image.get_subscription_count() == 0)
    received = node.totals["received"]
    assert send(1, timeout=1.5) is None  # nothing is processed or published while inactive
    assert node.totals["received"] == received

    assert client.set("activate")  # and it resumes with the same model
    assert wait_until(subscribed)
    assert send(2) is not None

    assert client.set("deactivate") and client.set("cleanup")
    assert client.state() == "unconfigured"
    assert node.estimator is None and node.outputs is None
    assert wait_until(lambda: collector.count_publishers("depth/image_rect") == 0)

    assert client.set("shutdown")
    assert client.state() == "finalized"
    assert node.totals["processed"] == 2 and node.warning_counts["processing_failed"] == 0
