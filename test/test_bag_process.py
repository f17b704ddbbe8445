"""`mgdepth process-bag`: the output bag's topics, counts, headers, encodings, camera_info-consistent clouds,
odometry, markers; frame-buffer restarts at gaps and loops; atomic writing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from test_bag_io import T0, small_frames, small_intrinsics, write_bag

from mgdepth_core.bagio import BagError, index_bag
from mgdepth_core.cli import main
from mgdepth_core.commands.process_bag import BagOutputOptions, process_bag
from mgdepth_core.dynamic_tracking import DynamicObject
from mgdepth_core.inference import DepthResult
from mgdepth_core.pointcloud import unpack_cloud

# 7 frames: 0.0–0.3 s, a 0.5 s gap to 0.8 s, then a loop back to −1.0 s and −0.9 s.
STAMPS = [0.0, 0.1, 0.2, 0.3, 0.8, -1.0, -0.9]
FRAME_ID = "camera_optical"


class PlaneEstimator:
    """A stand-in with known outputs: depth at half the input size, 4 + row/10 m, NaN in the top-left 2×2;
    the camera moves 1 m forward per frame; one dynamic object (instance 1) in a 4×6 block."""

    def __init__(self, interrupt_at: int = -1):
        self.resets = 0
        self.calls = 0
        self.has_previous = False
        self.interrupt_at = interrupt_at

    def reset(self) -> None:
        self.resets += 1
        self.has_previous = False

    def process(self, image_rgb: np.ndarray, K: np.ndarray, stamp: float) -> DepthResult:
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        height, width = image_rgb.shape[0] // 2, image_rgb.shape[1] // 2
        depth = np.repeat(4.0 + np.arange(height, dtype=np.float32)[:, None] / 10.0, width, axis=1)
        depth[:2, :2] = np.nan
        mask = np.zeros((height, width), np.uint16)
        mask[8:12, 10:16] = 1
        T = None
        if self.has_previous:
            T = np.eye(4)
            T[2, 3] = 1.0
        self.has_previous = True
        obj = DynamicObject(1, 3, "car", 0.9, 0.4, (10.0, 8.0, 16.0, 12.0), 24)
        return DepthResult(depth=depth, K=K * np.array([[0.5], [0.5], [1.0]]),
                           image=cv2.resize(image_rgb, (width, height)), T_prev_current=T,
                           multi_frame=T is not None, dynamic_mask=mask, objects=[obj])


def read_bag(path: Path) -> dict[str, list]:
    """topic → [(receive time, message)] of every message in the bag."""
    found: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for connection, log_time, raw in reader.messages():
            found.setdefault(connection.topic, []).append((log_time, reader.deserialize(raw, connection.msgtype)))
    return found


def stamp(msg) -> int:
    """Header stamp in nanoseconds (of the first marker for a MarkerArray)."""
    hdr = msg.markers[0].header if hasattr(msg, "markers") else msg.header
    return hdr.stamp.sec * 1_000_000_000 + hdr.stamp.nanosec


@pytest.mark.parametrize(("storage", "compressed", "out_storage"),
                         [("mcap", False, "mcap"), ("sqlite3", True, "sqlite3")])
def test_process_bag_writes_every_output_with_input_headers(shared_data, tmp_path, storage, compressed, out_storage):
    frames = small_frames(shared_data, len(STAMPS))
    topic, info_topic = write_bag(tmp_path / "in", storage, frames, STAMPS, compressed=compressed, frame_id=FRAME_ID)
    index = index_bag(tmp_path / "in", topic, info_topic, max_gap_s=0.25)
    estimator = PlaneEstimator()
    options = BagOutputOptions(namespace="/mg", cloud_decimation=2, max_gap_s=0.25)
    counts = process_bag(index, tmp_path / "out", estimator, options, storage=out_storage)
    assert estimator.calls == 7 and estimator.resets == 3  # start, after the gap, after the loop
    assert not (tmp_path / "out.partial").exists()

    out = read_bag(tmp_path / "out")
    expected_topics = {topic, info_topic, "/mg/depth/image_rect", "/mg/depth/camera_info", "/mg/depth/colorized",
                       "/mg/dynamic_mask", "/mg/points", "/mg/odometry", "/mg/dynamic_objects/markers"}
    assert set(out) == expected_topics
    assert all(len(out[t]) == 7 for t in expected_topics) and all(n == 7 for n in counts.values())
    order = [T0 + round(s * 1e9) for s in sorted(STAMPS[:5]) + STAMPS[5:]]  # processing order = index order
    input_log_times = {f.stamp_ns: f.log_time_ns for f in index.frames}
    for name in expected_topics - {"/mg/odometry"}:
        assert sorted(stamp(m) for _, m in out[name]) == sorted(order)
        assert all((m.markers[0] if hasattr(m, "markers") else m).header.frame_id == FRAME_ID for _, m in out[name])
        assert all(log_time == input_log_times[stamp(m)] for log_time, m in out[name])

    with AnyReader([tmp_path / "in"]) as reader:  # the input image messages are copied byte for byte
        originals = {t: raw for c, t, raw in reader.messages([c for c in reader.connections if c.topic == topic])}
    with AnyReader([tmp_path / "out"]) as reader:
        copies = {t: raw for c, t, raw in reader.messages([c for c in reader.connections if c.topic == topic])}
    assert copies == originals

    depth_by_stamp = {stamp(m): m for _, m in out["/mg/depth/image_rect"]}
    info_by_stamp = {stamp(m): m for _, m in out["/mg/depth/camera_info"]}
    for _, cloud in out["/mg/points"]:
        depth_msg, info = depth_by_stamp[stamp(cloud)], info_by_stamp[stamp(cloud)]
        assert depth_msg.encoding == "32FC1" and (depth_msg.width, depth_msg.height) == (64, 20)
        depth = np.frombuffer(depth_msg.data.tobytes(), "<f4").reshape(20, 64)
        assert np.isnan(depth[:2, :2]).all() and depth[5, 7] == pytest.approx(4.5)
        K = info.k.reshape(3, 3)
        np.testing.assert_allclose(K, small_intrinsics() * np.array([[0.5], [0.5], [1.0]]))
        assert (info.width, info.height) == (64, 20)
        # back-project every 2nd pixel of the written depth with the written camera_info, by hand
        rows, cols = np.mgrid[0:20:2, 0:64:2]
        z = depth[rows, cols]
        keep = np.isfinite(z)
        expected = np.stack([(cols[keep] - K[0, 2]) / K[0, 0] * z[keep], (rows[keep] - K[1, 2]) / K[1, 1] * z[keep],
                             z[keep]], axis=1)
        xyz, rgb = unpack_cloud(cloud.data.tobytes(), cloud.point_step, {f.name: f.offset for f in cloud.fields})
        assert cloud.width == keep.sum() == len(xyz) and rgb is not None
        np.testing.assert_allclose(xyz, expected, rtol=1e-6, atol=1e-6)

    colorized = out["/mg/depth/colorized"][0][1]
    assert colorized.encoding == "bgr8" and colorized.step == 64 * 3
    mask = out["/mg/dynamic_mask"][0][1]
    assert mask.encoding == "16UC1"
    assert (np.frombuffer(mask.data.tobytes(), "<u2").reshape(20, 64) == 1).sum() == 24

    odometry = {stamp(m): m for _, m in out["/mg/odometry"]}
    z_by_stamp = [odometry[s].pose.pose.position.z for s in order]
    assert z_by_stamp == [0.0, 1.0, 2.0, 3.0, 3.0, 0.0, 1.0]  # gap: buffer restarts, pose kept; loop: pose reset
    first = odometry[order[1]]
    assert first.header.frame_id == "odom" and first.child_frame_id == FRAME_ID
    assert first.twist.twist.linear.z == pytest.approx(10.0)  # 1 m in 0.1 s

    markers = out["/mg/dynamic_objects/markers"][0][1].markers
    assert [m.action for m in markers] == [3, 0, 0] and [m.type for m in markers[1:]] == [1, 9]
    assert markers[1].pose.position.z == pytest.approx(4.95) and markers[2].text.startswith("car 0.90")
    assert all(m.pose.orientation.w == 1.0 for m in markers)  # identity quaternions, as ROS's default


def test_output_mcap_embeds_schemas_for_foxglove(shared_data, tmp_path):
    frames = small_frames(shared_data, 3)
    topic, info_topic = write_bag(tmp_path / "in", "mcap", frames, [0.0, 0.1, 0.2])
    process_bag(index_bag(tmp_path / "in", topic, info_topic), tmp_path / "out", PlaneEstimator())
    with open(next((tmp_path / "out").glob("*.mcap")), "rb") as stream:
        summary = make_reader(stream).get_summary()
    schemas = {s.name: s for s in summary.schemas.values()}
    for name in ("sensor_msgs/msg/Image", "sensor_msgs/msg/PointCloud2", "nav_msgs/msg/Odometry",
                 "visualization_msgs/msg/MarkerArray", "sensor_msgs/msg/CameraInfo"):
        assert schemas[name].encoding == "ros2msg" and len(schemas[name].data) > 0
    assert {c.topic for c in summary.channels.values()} >= {"/depth/image_rect", "/points", "/odometry"}


def test_existing_output_is_refused_and_an_interrupt_leaves_nothing(shared_data, tmp_path):
    frames = small_frames(shared_data, 4)
    topic, info_topic = write_bag(tmp_path / "in", "mcap", frames, [0.0, 0.1, 0.2, 0.3])
    index = index_bag(tmp_path / "in", topic, info_topic)
    process_bag(index, tmp_path / "out", PlaneEstimator())
    with pytest.raises(BagError, match="exists; pass --overwrite"):
        process_bag(index, tmp_path / "out", PlaneEstimator())
    with pytest.raises(KeyboardInterrupt):
        process_bag(index, tmp_path / "out", PlaneEstimator(interrupt_at=2), overwrite=True)
    assert not (tmp_path / "out.partial").exists()
    assert len(read_bag(tmp_path / "out")["/points"]) == 4  # the earlier complete bag is untouched
    with pytest.raises(KeyboardInterrupt):
        process_bag(index, tmp_path / "new", PlaneEstimator(interrupt_at=1))
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()
    counts = process_bag(index, tmp_path / "out", PlaneEstimator(), storage="sqlite3", overwrite=True,
                         max_frames=2)
    assert counts["/points"] == 2 and len(read_bag(tmp_path / "out")["/points"]) == 2


def test_cli_with_a_tiny_random_init_model(shared_data, tmp_path, capsys):
    frames = small_frames(shared_data, 5)
    topic, info_topic = write_bag(tmp_path / "in", "mcap", frames, [0.1 * i for i in range(5)], frame_id=FRAME_ID)
    arguments = ["process-bag", str(tmp_path / "in"), str(tmp_path / "out"), "--method", "manydepth",
                 "--height", "64", "--width", "128", "--device", "cpu", "--storage", "sqlite3"]
    assert main(arguments) == 0
    out = read_bag(tmp_path / "out")
    for name in ("/depth/image_rect", "/depth/camera_info", "/points", "/odometry", topic, info_topic):
        assert len(out[name]) == 5
    assert [stamp(m) for _, m in out["/points"]] == [T0 + i * 100_000_000 for i in range(5)]
    depth_msg, info = out["/depth/image_rect"][3][1], out["/depth/camera_info"][3][1]
    assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("32FC1", 128, 64)
    depth = np.frombuffer(depth_msg.data.tobytes(), "<f4").reshape(64, 128)
    assert np.isfinite(depth).all() and (depth > 0).all()
    K = info.k.reshape(3, 3)
    np.testing.assert_allclose(K, small_intrinsics() * np.array([[128 / 128], [64 / 40], [1.0]]), rtol=1e-6)
    cloud = out["/points"][3][1]
    xyz, _ = unpack_cloud(cloud.data.tobytes(), cloud.point_step, {f.name: f.offset for f in cloud.fields})
    rows, cols = np.mgrid[0:64:2, 0:128:2]
    z = depth[rows, cols]
    keep = (z > 0.1) & (z <= 80.0)
    expected = np.stack([(cols[keep] - K[0, 2]) / K[0, 0] * z[keep], (rows[keep] - K[1, 2]) / K[1, 1] * z[keep],
                         z[keep]], axis=1)
    np.testing.assert_allclose(xyz, expected, rtol=1e-5, atol=1e-5)
    positions = [m.pose.pose.position for _, m in out["/odometry"]]
    assert (positions[0].x, positions[0].y, positions[0].z) == (0.0, 0.0, 0.0)
    assert all(np.isfinite([p.x, p.y, p.z]).all() for p in positions)
    capsys.readouterr()
    assert main(arguments) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    write_bag(tmp_path / "no_info", "mcap", frames, [0.0, 0.1, 0.2, 0.3, 0.4], camera_info=False)
    assert main(["process-bag", str(tmp_path / "no_info"), str(tmp_path / "out2")]) == 1
    assert "--intrinsics" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_written_messages_deserialise_as_ros_messages(shared_data, tmp_path):
    """What `ros2 bag play` publishes (the stored CDR bytes) reads back with the rclpy message classes."""
    serialization = pytest.importorskip("rclpy.serialization", reason="needs rclpy (ROS 2 Jazzy from PyPI)")
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from visualization_msgs.msg import MarkerArray

    frames = small_frames(shared_data, 3)
    topic, info_topic = write_bag(tmp_path / "in", "mcap", frames, [0.0, 0.1, 0.2], frame_id=FRAME_ID)
    process_bag(index_bag(tmp_path / "in", topic, info_topic), tmp_path / "out", PlaneEstimator())
    classes = {"/depth/image_rect": Image, "/depth/camera_info": CameraInfo, "/points": PointCloud2,
               "/odometry": Odometry, "/dynamic_objects/markers": MarkerArray}
    with AnyReader([tmp_path / "out"]) as reader:
        connections = [c for c in reader.connections if c.topic in classes]
        for connection, _, raw in reader.messages(connections):
            msg = serialization.deserialize_message(bytes(raw), classes[connection.topic])
            if connection.topic == "/depth/image_rect":
                assert msg.encoding == "32FC1" and msg.header.frame_id == FRAME_ID and len(msg.data) == 64 * 20 * 4
            if connection.topic == "/points":
                assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.point_step == 16
                assert msg.row_step == msg.width * 16 and len(msg.data) == msg.row_step
            if connection.topic == "/odometry":
                assert msg.child_frame_id == FRAME_ID and msg.pose.pose.orientation.w == pytest.approx(1.0)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_compressed_output_reads_back_identical_and_smaller(shared_data, tmp_path, storage):
    frames = small_frames(shared_data, 3)
    topic, info_topic = write_bag(tmp_path / "in", "mcap", frames, [0.0, 0.1, 0.2])
    index = index_bag(tmp_path / "in", topic, info_topic)
    process_bag(index, tmp_path / "plain", PlaneEstimator(), storage=storage)
    process_bag(index, tmp_path / "zstd", PlaneEstimator(), storage=storage, compress=True)
    plain, packed = read_bag(tmp_path / "plain"), read_bag(tmp_path / "zstd")
    assert set(plain) == set(packed)
    for name in ("/depth/image_rect", "/points", topic):
        assert [m.data.tobytes() for _, m in plain[name]] == [m.data.tobytes() for _, m in packed[name]]
    size = {name: sum(f.stat().st_size for f in (tmp_path / name).iterdir()) for name in ("plain", "zstd")}
    assert size["zstd"] < 0.8 * size["plain"]
