"""The ROS-free output packing: point clouds, image encodings, camera_info scaling, odometry, object summaries."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mgdepth_core.dynamic_tracking import DynamicObject
from mgdepth_core.outputs import (
    OdometryAccumulator,
    UnsupportedEncodingError,
    colorize_depth,
    decode_compressed,
    decode_image,
    depth_camera_info,
    depth_image,
    depth_image_millimetres,
    mask_image,
    quaternion_from_rotation,
    summarise_objects,
)
from mgdepth_core.pointcloud import XYZRGB_FIELDS, depth_to_points, pack_cloud, unpack_cloud

K = np.array([[50.0, 0.0, 31.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])


def test_points_reproject_onto_their_pixels_with_their_depth():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 30.0, size=(24, 64)).astype(np.float32)
    depth[3, 5] = np.nan
    depth[4, 6] = 0.0
    depth[6, 8] = 90.0
    colour = rng.integers(0, 256, size=(24, 64, 3), dtype=np.uint8)
    points = depth_to_points(depth, K, colour, decimation=2, max_range=80.0)
    assert len(points.xyz) == 12 * 32 - 2  # (4, 6) zero and (6, 8) beyond range dropped; (3, 5) is off the grid
    projected = (K @ points.xyz.T.astype(np.float64)).T
    np.testing.assert_allclose(projected[:, 0] / projected[:, 2], points.cols, atol=1e-3)
    np.testing.assert_allclose(projected[:, 1] / projected[:, 2], points.rows, atol=1e-3)
    np.testing.assert_allclose(points.xyz[:, 2], depth[points.rows, points.cols], rtol=1e-6)
    np.testing.assert_array_equal(points.rgb, colour[points.rows, points.cols])
    assert np.all(points.rows % 2 == 0) and np.all(points.cols % 2 == 0)


def test_packed_cloud_round_trips_xyz_and_rgb():
    depth = np.full((4, 5), 2.0, dtype=np.float32)
    colour = np.zeros((4, 5, 3), dtype=np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 200, 100, 7
    packed = pack_cloud(depth_to_points(depth, K, colour))
    assert packed.fields == XYZRGB_FIELDS and packed.point_step == 16 and packed.width == 20
    assert len(packed.data) == packed.row_step == 320
    first_rgb = np.frombuffer(packed.data[12:16], dtype="<u4")[0]
    assert first_rgb == (200 << 16) | (100 << 8) | 7
    xyz, rgb = unpack_cloud(packed.data, packed.point_step, {f.name: f.offset for f in packed.fields})
    np.testing.assert_allclose(xyz[:, 2], 2.0)
    np.testing.assert_array_equal(rgb, np.tile([200, 100, 7], (20, 1)))


def test_depth_encodings_follow_rep_118():
    depth = np.array([[1.5, np.nan], [0.0012, 70.0]], dtype=np.float32)
    fields = depth_image(depth)
    assert (fields.encoding, fields.step, fields.is_bigendian) == ("32FC1", 8, 0)
    np.testing.assert_array_equal(np.frombuffer(fields.data, "<f4").reshape(2, 2), depth)
    millimetres = np.frombuffer(depth_image_millimetres(depth).data, "<u2").reshape(2, 2)
    np.testing.assert_array_equal(millimetres, [[1500, 0], [1, 0]])  # 70 m does not fit in uint16 mm
    assert mask_image(np.array([[0, 300]], dtype=np.uint16), "mono8").data == bytes([0, 255])
    with pytest.raises(ValueError, match="mask encoding"):
        mask_image(np.zeros((1, 1), np.uint16), "rgb8")


def test_colorized_depth_is_black_where_invalid_and_brighter_near():
    bgr = colorize_depth(np.array([[np.nan, 2.0, 50.0]], dtype=np.float32), 1.0, 80.0)
    assert bgr.shape == (1, 3, 3) and bgr.dtype == np.uint8
    assert bgr[0, 0].sum() == 0 and bgr[0, 1].sum() > bgr[0, 2].sum()
    relative = colorize_depth(np.array([[0.1, 0.2, 0.4, np.nan]], dtype=np.float32))  # per-frame range
    assert relative[0, 0].sum() > relative[0, 1].sum() > relative[0, 2].sum() and relative[0, 3].sum() == 0
    np.testing.assert_array_equal(colorize_depth(np.array([[0.1, 0.2, 0.4]]) * 10), relative[:, :3])


def test_decode_image_handles_encodings_and_row_padding():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    bgr_padded = np.zeros((2, 12), dtype=np.uint8)
    bgr_padded[:, :9] = rgb[:, :, ::-1].reshape(2, 9)
    np.testing.assert_array_equal(decode_image("bgr8", 2, 3, 12, bgr_padded.tobytes()), rgb)
    np.testing.assert_array_equal(decode_image("rgb8", 2, 3, 9, rgb.tobytes()), rgb)
    mono = decode_image("mono8", 2, 3, 3, rgb[:, :, 0].tobytes())
    np.testing.assert_array_equal(mono[..., 2], rgb[:, :, 0])
    with pytest.raises(UnsupportedEncodingError, match="16UC1"):
        decode_image("16UC1", 2, 3, 6, bytes(12))
    with pytest.raises(ValueError, match="needs 18 bytes"):
        decode_image("rgb8", 2, 3, 9, bytes(10))
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    np.testing.assert_array_equal(decode_compressed(png.tobytes()), rgb)
    with pytest.raises(UnsupportedEncodingError):
        decode_compressed(b"not an image")


def test_depth_camera_info_has_p_equal_k_and_keeps_distortion():
    info = depth_camera_info(K, 24, 64, "plumb_bob", d=[0.1, 0, 0, 0, 0])
    assert info.k == K.ravel().tolist() and info.p[:3] == [50.0, 0.0, 31.5] and info.p[3] == 0.0
    assert info.d[0] == 0.1 and (info.height, info.width) == (24, 64)


def test_quaternion_of_known_rotations():
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    Rz90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(quaternion_from_rotation(Rz90), [0, 0, s, c], atol=1e-12)
    Rx180 = np.diag([1.0, -1, -1])
    np.testing.assert_allclose(np.abs(quaternion_from_rotation(Rx180)), [1, 0, 0, 0], atol=1e-12)


def test_odometry_chains_frame_to_frame_motion():
    odometry = OdometryAccumulator()
    step = np.eye(4)
    step[2, 3] = 1.0  # the current camera sits 1 m ahead (along z) of the previous one
    odometry.update(step, 0.1)
    state = odometry.update(step, 0.1)
    np.testing.assert_allclose(state.position, [0, 0, 2.0])
    np.testing.assert_allclose(state.linear_velocity, [0, 0, 10.0])
    np.testing.assert_allclose(state.orientation_xyzw, [0, 0, 0, 1])
    turn = np.eye(4)
    turn[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.1, 0.0]))[0]
    state = odometry.update(turn, 0.5)
    np.testing.assert_allclose(state.angular_velocity, [0, 0.2, 0], atol=1e-9)
    assert odometry.update(None, 0.1).position[2] == pytest.approx(2.0)
    odometry.reset()
    np.testing.assert_allclose(odometry.update(None, 0.1).position, 0)


def test_object_summary_from_mask_and_depth():
    depth = np.full((24, 64), 10.0, dtype=np.float32)
    mask = np.zeros((24, 64), dtype=np.uint16)
    mask[10:14, 30:34] = 2
    depth[10:14, 30:34] = 5.0
    car = DynamicObject(2, 3, "car", 0.9, 0.4, (30.0, 10.0, 34.0, 14.0), 16)
    ghost = DynamicObject(7, 1, "person", 0.8, 0.2, (0.0, 0.0, 1.0, 1.0), 0)
    summary, missing = summarise_objects([car, ghost], mask, depth, K)
    assert summary.median_depth == pytest.approx(5.0)
    np.testing.assert_allclose(summary.centroid, [0.0, 0.0, 5.0], atol=1e-9)  # box centred on (cx, cy)
    np.testing.assert_allclose(summary.size[:2], [4 / 50 * 5, 4 / 40 * 5])
    assert np.isnan(missing.median_depth)
