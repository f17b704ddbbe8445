"""The rclpy message adapters: images, camera_info, odometry, markers for dynamic objects."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from visualization_msgs.msg import Marker

from mgdepth_core.dynamic_tracking import DynamicObject
from mgdepth_core.outputs import (
    OdometryAccumulator,
    depth_camera_info,
    depth_image,
    mask_image,
    summarise_objects,
)
from mgdepth_ros import conversions

pytestmark = pytest.mark.ros
K = np.array([[40.0, 0.0, 20.0], [0.0, 40.0, 10.0], [0.0, 0.0, 1.0]])


def header(frame_id: str = "cam_optical"):
    result = conversions.Header(frame_id=frame_id)
    result.stamp.sec, result.stamp.nanosec = 7, 250
    return result


def test_depth_and_mask_images_round_trip_with_the_header():
    depth = np.random.default_rng(0).uniform(1, 50, size=(20, 40)).astype(np.float32)
    depth[0, 0] = np.nan
    msg = conversions.image_msg(depth_image(depth), header())
    assert (msg.encoding, msg.step, msg.header.frame_id, msg.header.stamp.nanosec) == ("32FC1", 160, "cam_optical", 250)
    np.testing.assert_array_equal(conversions.image_msg_to_array(msg), depth)
    mask = np.zeros((20, 40), np.uint16)
    mask[3:5, 6:9] = 300
    np.testing.assert_array_equal(conversions.image_msg_to_array(conversions.image_msg(mask_image(mask), header())),
                                  mask)


def test_camera_info_and_odometry_messages():
    info = conversions.camera_info_msg(depth_camera_info(K, 20, 40), header())
    np.testing.assert_allclose(conversions.camera_info_intrinsics(info), K)
    assert (info.width, info.height, info.header.frame_id) == (40, 20, "cam_optical")
    step = np.eye(4)
    step[:3, 3] = [0.0, 0.0, 2.0]
    state = OdometryAccumulator().update(step, 0.5)
    odometry = conversions.odometry_msg(state, header(), "odom", "cam_optical")
    assert (odometry.header.frame_id, odometry.child_frame_id, odometry.header.stamp.sec) == ("odom", "cam_optical", 7)
    assert (odometry.pose.pose.position.z, odometry.twist.twist.linear.z, odometry.pose.pose.orientation.w) == (
        2.0, 4.0, 1.0)


def test_markers_box_each_dynamic_object_at_its_centroid():
    depth = np.full((20, 40), 30.0, np.float32)
    mask = np.zeros((20, 40), np.uint16)
    mask[8:12, 18:22] = 5
    depth[8:12, 18:22] = 10.0
    car = DynamicObject(5, 3, "car", 0.87, 0.42, (18.0, 8.0, 22.0, 12.0), 16)
    unseen = DynamicObject(6, 1, "person", 0.6, 0.1, (0.0, 0.0, 1.0, 1.0), 0)  # no pixels: no marker
    summaries = summarise_objects([car, unseen], mask, depth, K)
    markers = conversions.markers_msg(summaries, header(), lifetime_s=1.5).markers
    assert [m.action for m in markers] == [Marker.DELETEALL, Marker.ADD, Marker.ADD]
    cube, label = markers[1], markers[2]
    assert (cube.type, cube.id, cube.header.frame_id) == (Marker.CUBE, 5, "cam_optical")
    np.testing.assert_allclose([cube.pose.position.x, cube.pose.position.y, cube.pose.position.z],
                               summaries[0].centroid)
    np.testing.assert_allclose([cube.scale.x, cube.scale.y], [4 / 40 * 10, 4 / 40 * 10])
    assert (cube.lifetime.sec, cube.lifetime.nanosec) == (1, 500_000_000)
    assert label.type == Marker.TEXT_VIEW_FACING and label.text == "car 0.87, dice 0.42"
    if conversions.HAVE_OBJECT_MESSAGES:
        objects = conversions.objects_msg(summaries, header())
        assert [o.instance_id for o in objects.objects] == [5, 6]
        assert objects.objects[0].median_depth == pytest.approx(10.0)
    else:
        with pytest.raises(RuntimeError, match="mgdepth_msgs is not built"):
            conversions.objects_msg(summaries, header())
