"""rosbag2 reading: real KITTI bags (MCAP raw Image, sqlite3 JPEG), and small bags written here with stamp
jumps, gaps, a missing camera_info, corrupt messages and bad topics."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from mgdepth_core.bagio import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    STORAGES,
    TYPESTORE,
    BagError,
    BagFrameSource,
    camera_info_message,
    decode_image,
    header,
    image_message,
    index_bag,
    intrinsics_for_size,
    load_intrinsics_file,
    sample_windows,
    split_sequences,
)

KITTI_FX, KITTI_CX, KITTI_CY = 721.5377, 609.5593, 172.854
KITTI_SIZE = (1242, 375)
RAW_BAG = "bags/kitti_0060_raw_mcap"
JPEG_BAG = "bags/kitti_0060_jpeg_sqlite3"
RAW_TOPIC = "/kitti/camera_color_left/image_raw"
JPEG_TOPIC = "/kitti/camera_color_left/image_raw/compressed"
INFO_TOPIC = "/kitti/camera_color_left/camera_info"
T0 = 1_317_038_400_000_000_000
SMALL = (128, 40)  # width, height of the frames in the bags the tests write
REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"


def kitti_frame(shared_data: Path, number: int) -> np.ndarray:
    path = shared_data / "kitti_raw/2011_09_26/2011_09_26_drive_0060_sync/image_02/data" / f"{number:010d}.png"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def small_frames(shared_data: Path, count: int) -> list[np.ndarray]:
    return [cv2.resize(kitti_frame(shared_data, i), SMALL, interpolation=cv2.INTER_AREA) for i in range(count)]


def small_intrinsics() -> np.ndarray:
    K = np.array([[KITTI_FX, 0, KITTI_CX], [0, KITTI_FX, KITTI_CY], [0, 0, 1]])
    K[0] *= SMALL[0] / KITTI_SIZE[0]
    K[1] *= SMALL[1] / KITTI_SIZE[1]
    return K


def write_bag(path: Path, storage: str, frames: list[np.ndarray], stamps_s: list[float], *,
              compressed: bool = False, camera_info: bool = True, info_offsets_s: dict[int, float] | None = None,
              corrupt: tuple[int, ...] = (), frame_id: str = "camera_optical") -> tuple[str, str]:
    """A rosbag2 (version 9, Jazzy typestore) with one image topic and its camera_info; returns the topics.

    ``stamps_s``: header stamp of each frame, seconds after T0; receive times increase in list order.
    ``info_offsets_s``: frame index → camera_info stamp offset (None drops that frame's camera_info).
    ``corrupt``: frame indices written as broken messages (truncated CDR for Image, garbage JPEG bytes).
    """
    image_topic = "/cam/image_raw/compressed" if compressed else "/cam/image_raw"
    info_topic = "/cam/camera_info"
    info_offsets_s = info_offsets_s or {}
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        msgtype = COMPRESSED_IMAGE if compressed else IMAGE
        image_conn = writer.add_connection(image_topic, msgtype, typestore=TYPESTORE)
        info_conn = writer.add_connection(info_topic, CAMERA_INFO, typestore=TYPESTORE) if camera_info else None
        for i, (frame, stamp_s) in enumerate(zip(frames, stamps_s)):
            stamp = T0 + round(stamp_s * 1e9)
            log_time = T0 + 10_000_000_000 + i * 100_000_000
            if compressed:
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                assert ok
                data = np.frombuffer(b"\x00\x01garbage" * 20, np.uint8) if i in corrupt else jpeg.reshape(-1)
                msg = TYPESTORE.types[COMPRESSED_IMAGE](header=header(stamp, frame_id),
                                                        format="rgb8; jpeg compressed bgr8", data=data)
                raw = TYPESTORE.serialize_cdr(msg, msgtype)
            else:
                raw = TYPESTORE.serialize_cdr(image_message(header(stamp, frame_id), frame, "rgb8"), msgtype)
                if i in corrupt:
                    raw = raw[: len(raw) // 2]
            writer.write(image_conn, log_time, raw)
            offset = info_offsets_s.get(i, 0.0)
            if info_conn is not None and offset is not None:
                info_header = header(stamp + round(offset * 1e9), frame_id)
                info = camera_info_message(info_header, small_intrinsics(), *frame.shape[1::-1])
                writer.write(info_conn, log_time, TYPESTORE.serialize_cdr(info, CAMERA_INFO))
    return image_topic, info_topic


# --- the real bags in ../shared/data --------------------------------------------------------------------------

def test_real_mcap_raw_frames_match_kitti_pngs_bit_for_bit(shared_data):
    index = index_bag(shared_data / RAW_BAG, RAW_TOPIC, INFO_TOPIC)
    assert index.image_msgtype == IMAGE and len(index) == 20 and not index.skipped
    assert [f.stamp_ns - T0 for f in index.frames] == [i * 100_000_000 for i in range(20)]
    source = BagFrameSource(index)
    for i in (0, 7, 19):
        np.testing.assert_array_equal(source.image(i), kitti_frame(shared_data, i))
    frame = index.frames[0]
    assert frame.K_size == KITTI_SIZE and frame.frame_id == "camera_color_left"
    K = intrinsics_for_size(frame, *KITTI_SIZE)
    np.testing.assert_allclose(K, [[KITTI_FX, 0, KITTI_CX], [0, KITTI_FX, KITTI_CY], [0, 0, 1]])
    K_small = intrinsics_for_size(frame, 621, 150)  # half width, 0.4 height
    np.testing.assert_allclose(K_small[0], [KITTI_FX / 2, 0, KITTI_CX / 2])
    np.testing.assert_allclose(K_small[1], [0, KITTI_FX * 0.4, KITTI_CY * 0.4])
    windows = sample_windows(split_sequences(index.frames, 0.25), [0, -1, 1])
    assert len(windows) == 18 and windows[0] == {0: 1, -1: 0, 1: 2} and windows[-1] == {0: 18, -1: 17, 1: 19}


def test_real_sqlite3_jpeg_frames_within_a_few_grey_levels(shared_data):
    index = index_bag(shared_data / JPEG_BAG, JPEG_TOPIC)  # camera_info found as the sibling topic
    assert index.camera_info_topic == INFO_TOPIC and index.image_msgtype == COMPRESSED_IMAGE and len(index) == 40
    source = BagFrameSource(index)
    for i in (0, 39):
        decoded = source.image(i)
        reference = kitti_frame(shared_data, i)
        assert decoded.shape == reference.shape and decoded.dtype == np.uint8
        error = np.abs(decoded.astype(int) - reference)
        assert error.mean() < 4.0 and np.median(error) <= 3
    assert index.frames[5].K[0] == KITTI_FX
    assert index_bag(shared_data / JPEG_BAG, "").image_topic == JPEG_TOPIC  # the bag's only image topic
    assert len(sample_windows(split_sequences(index.frames, 0.25), [0, -1, 1])) == 38
    # a 5-frame window needs two neighbours on each side
    assert len(sample_windows(split_sequences(index.frames, 0.25), [0, -2, -1, 1, 2])) == 36


# --- bags written here ---------------------------------------------------------------------------------------

# 15 messages: a run 0.0–0.5 s (0.2 s arrives before 0.1 s; the message at 0.25 s is corrupt; the frame at 0.3 s
# pairs with a camera_info 20 ms off), a 0.5 s gap, a run 1.0–1.3 s (1.1 s lacks camera_info), then a jump back to
# −2.0 s (a bag loop) and 4 more frames.
STAMPS = [0.0, 0.2, 0.1, 0.25, 0.3, 0.4, 0.5, 1.0, 1.1, 1.2, 1.3, -2.0, -1.9, -1.8, -1.7]
CORRUPT = (3,)
INFO_OFFSETS = {4: 0.02, 8: None}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True], ids=["image", "compressed"])
def test_written_bag_sequences_split_at_gaps_jumps_corrupt_and_missing_camera_info(shared_data, tmp_path, storage,
                                                                                   compressed, caplog):
    frames = small_frames(shared_data, len(STAMPS))
    topic, info_topic = write_bag(tmp_path / "bag", storage, frames, STAMPS, compressed=compressed,
                                  info_offsets_s=INFO_OFFSETS, corrupt=CORRUPT)
    with caplog.at_level(logging.WARNING):
        index = index_bag(tmp_path / "bag", topic, info_topic, max_gap_s=0.25)
    assert index.skipped == {"corrupt message": 1, "no camera_info within tolerance": 1}
    assert "corrupt" in caplog.text or "truncated" in caplog.text
    kept = [s for i, s in enumerate(STAMPS) if i not in CORRUPT and i != 8]
    # bag order, segment 0 sorted by stamp, then segment 1 (the loop back in time)
    expected = sorted(s for s in kept if s >= 0) + [s for s in kept if s < 0]
    assert [round((f.stamp_ns - T0) / 1e9, 3) for f in index.frames] == expected
    assert [f.segment for f in index.frames] == [0] * 9 + [1] * 4
    sequences = split_sequences(index.frames, 0.25)
    assert [len(s) for s in sequences] == [6, 3, 4]  # 0.0–0.5 | 1.0, 1.2, 1.3 (1.1 dropped) | −2.0…−1.7
    windows = sample_windows(sequences, [0, -1, 1])
    assert len(windows) == 4 + 1 + 2
    assert all(index.frames[w[1]].stamp_ns > index.frames[w[0]].stamp_ns > index.frames[w[-1]].stamp_ns
               for w in windows)
    source = BagFrameSource(index)
    position = expected.index(0.3)
    decoded = source.image(position)
    reference = frames[STAMPS.index(0.3)]
    if compressed:
        assert np.abs(decoded.astype(int) - reference).mean() < 3.0
    else:
        np.testing.assert_array_equal(decoded, reference)
    np.testing.assert_allclose(intrinsics_for_size(index.frames[position], *SMALL), small_intrinsics())


def test_camera_info_paired_to_nearest_stamp_within_tolerance(shared_data, tmp_path):
    frames = small_frames(shared_data, 4)
    topic, info_topic = write_bag(tmp_path / "bag", "mcap", frames, [0.0, 0.1, 0.2, 0.3],
                                  info_offsets_s={1: 0.03, 2: 0.08})
    index = index_bag(tmp_path / "bag", topic, info_topic, camera_info_tolerance_s=0.05)
    # frame 2 (0.2 s): its own camera_info is at 0.28 s, the nearest (frame 1's) at 0.13 s: both beyond 50 ms
    assert len(index) == 3 and index.skipped == {"no camera_info within tolerance": 1}
    assert len(index_bag(tmp_path / "bag", topic, info_topic, camera_info_tolerance_s=0.2)) == 4


def test_bad_topics_and_missing_intrinsics_give_errors_naming_the_fix(shared_data, tmp_path):
    frames = small_frames(shared_data, 3)
    topic, info_topic = write_bag(tmp_path / "bag", "sqlite3", frames, [0.0, 0.1, 0.2])
    with pytest.raises(BagError, match=r"no topic '/nope'.*/cam/image_raw \(sensor_msgs/msg/Image, 3 msgs\)"):
        index_bag(tmp_path / "bag", "/nope", info_topic)
    with pytest.raises(BagError, match=r"/cam/camera_info carries sensor_msgs/msg/CameraInfo, expected"):
        index_bag(tmp_path / "bag", info_topic)
    with pytest.raises(BagError, match=r"carries sensor_msgs/msg/Image, expected sensor_msgs/msg/CameraInfo"):
        index_bag(tmp_path / "bag", topic, topic)
    write_bag(tmp_path / "no_info", "mcap", frames, [0.0, 0.1, 0.2], camera_info=False)
    with pytest.raises(BagError, match=r"--camera-info-topic.*--intrinsics"):
        index_bag(tmp_path / "no_info", topic)
    with pytest.raises(BagError, match="does not exist"):
        index_bag(tmp_path / "missing", topic)


def test_unsupported_encoding_is_named(tmp_path):
    with Writer(tmp_path / "bag", version=9, storage_plugin=STORAGES["mcap"]) as writer:
        msg = image_message(header(T0, "cam"), np.ones((4, 6), np.float32), "32FC1")
        for topic in ("/depth", "/depth_copy"):
            connection = writer.add_connection(topic, IMAGE, typestore=TYPESTORE)
            writer.write(connection, T0, TYPESTORE.serialize_cdr(msg, IMAGE))
    with pytest.raises(BagError, match="unsupported image encoding '32FC1'"):
        index_bag(tmp_path / "bag", "/depth", intrinsics_file=str(_intrinsics_yaml(tmp_path)))
    with pytest.raises(BagError, match="pass --image-topic; its image topics: /depth, /depth_copy"):
        index_bag(tmp_path / "bag", "", intrinsics_file=str(_intrinsics_yaml(tmp_path)))


def _intrinsics_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "intrinsics.yaml"
    path.write_text("fx: 100.0\nfy: 90.0\ncx: 63.5\ncy: 19.5\nwidth: 128\nheight: 40\n")
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_a_clear_error_naming_the_file(shared_data, tmp_path, storage):
    frames = small_frames(shared_data, 3)
    topic, info_topic = write_bag(tmp_path / "bag", storage, frames, [0.0, 0.1, 0.2])
    storage_file = next((tmp_path / "bag").glob("*.mcap" if storage == "mcap" else "*.db3"))
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) // 3])
    with pytest.raises(BagError, match=re.escape(str(tmp_path / "bag"))):
        index_bag(tmp_path / "bag", topic, info_topic)


def test_intrinsics_file_replaces_camera_info_and_is_scaled_to_the_image(shared_data, tmp_path):
    frames = small_frames(shared_data, 3)
    topic, _ = write_bag(tmp_path / "bag", "mcap", frames, [0.0, 0.1, 0.2], camera_info=False)
    index = index_bag(tmp_path / "bag", topic, intrinsics_file=str(_intrinsics_yaml(tmp_path)))
    assert index.camera_info_topic == "" and len(index) == 3
    np.testing.assert_allclose(intrinsics_for_size(index.frames[0], 256, 80),
                               [[200.0, 0, 127.0], [0, 180.0, 39.0], [0, 0, 1]])
    json_file = tmp_path / "k.json"
    json_file.write_text(json.dumps({"K": [[0.58, 0, 0.5], [0, 1.92, 0.5], [0, 0, 1]], "normalized": True,
                                     "width": 640, "height": 192}))
    K, size = load_intrinsics_file(json_file)
    np.testing.assert_allclose(K, [[0.58 * 640, 0, 320], [0, 1.92 * 192, 96], [0, 0, 1]])
    assert size == (640, 192)
    (tmp_path / "bad.yaml").write_text("fx: 0\nfy: 1\ncx: 1\ncy: 1\n")
    with pytest.raises(BagError, match="bad.yaml.*positive fx"):
        load_intrinsics_file(tmp_path / "bad.yaml")


def test_decode_image_encodings_and_padded_rows():
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    hdr = header(T0, "cam")
    np.testing.assert_array_equal(decode_image(image_message(hdr, rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(decode_image(image_message(hdr, rgb[..., ::-1], "bgr8")), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode_image(image_message(hdr, rgba, "rgba8")), rgb)
    np.testing.assert_array_equal(decode_image(image_message(hdr, rgba[..., [2, 1, 0, 3]], "bgra8")), rgb)
    grey = rgb[..., 0]
    np.testing.assert_array_equal(decode_image(image_message(hdr, grey, "mono8")), np.repeat(grey[..., None], 3, 2))
    padded = np.zeros((5, 32), np.uint8)  # rows of 21 bytes padded to a 32-byte step
    padded[:, :21] = rgb.reshape(5, 21)
    msg = image_message(hdr, padded, "rgb8")
    msg.width = 7
    np.testing.assert_array_equal(decode_image(msg), rgb)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].reshape(-1)
    compressed = TYPESTORE.types[COMPRESSED_IMAGE](header=hdr, format="png", data=png)
    np.testing.assert_array_equal(decode_image(compressed), rgb)
    with pytest.raises(BagError, match="unsupported CompressedImage format 'h264'"):
        decode_image(TYPESTORE.types[COMPRESSED_IMAGE](header=hdr, format="h264", data=png))
