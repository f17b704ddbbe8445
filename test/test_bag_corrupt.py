"""Broken rosbag2 files (truncated, bit-flipped, wrong message types; sqlite3 and MCAP) given to the bag reader,
`mgdepth process-bag` and `mgdepth train --bag`: one-line errors naming the file, never a traceback or a hang."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Writer
from test_bag_io import REPO_CONFIG, T0, small_frames, small_intrinsics, write_bag
from test_bag_process import PlaneEstimator, read_bag

from mgdepth_core.bagio import (
    CAMERA_INFO,
    IMAGE,
    STORAGES,
    TYPESTORE,
    BagError,
    BagFrameSource,
    camera_info_message,
    header,
    index_bag,
)
from mgdepth_core.cli import error_message, main
from mgdepth_core.commands.process_bag import process_bag

STORAGE_SUFFIX = {"mcap": "*.mcap", "sqlite3": "*.db3"}
FRAMES = 4


@pytest.fixture(scope="module")
def frames(shared_data):
    return small_frames(shared_data, FRAMES)


def _bag(tmp_path, storage, frames, name="bag"):
    topics = write_bag(tmp_path / name, storage, frames, [0.1 * i for i in range(FRAMES)])
    return tmp_path / name, next((tmp_path / name).glob(STORAGE_SUFFIX[storage])), topics


def _cli_error(capsys, arguments: list[str]) -> str:
    """Runs the CLI, asserts exit status 1 and a single stderr line; returns that line."""
    capsys.readouterr()
    assert main(arguments) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def _train_arguments(bag, topics, run_dir) -> list[str]:
    return ["train", "--config", str(REPO_CONFIG / "train_bag.yaml"), "--method", "manydepth", "--bag", str(bag),
            "--image-topic", topics[0], "--camera-info-topic", topics[1], "--run-dir", str(run_dir),
            "--set", "data.height=64", "--set", "data.width=128", "--set", "model.height=64",
            "--set", "model.width=128", "--set", "model.pretrained=false", "--max-steps", "1"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_fails_on_one_line_in_both_commands(frames, tmp_path, storage, capsys):
    bag, storage_file, topics = _bag(tmp_path, storage, frames)
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) // 2])
    line = _cli_error(capsys, ["process-bag", str(bag), str(tmp_path / "out"), "--image-topic", topics[0]])
    assert str(bag) in line and ("truncated" in line or "corrupt" in line)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    line = _cli_error(capsys, _train_arguments(bag, topics, tmp_path / "run"))
    assert str(bag) in line and ("truncated" in line or "corrupt" in line)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_flipped_bytes_in_a_message_skip_that_frame(frames, tmp_path, storage, caplog):
    """The string length in front of a frame_id near the middle of the file is garbled: that message (an image or
    its camera_info) does not deserialise, so one frame is skipped and named in the log; the rest decode."""
    bag, storage_file, topics = _bag(tmp_path, storage, frames)
    data = bytearray(storage_file.read_bytes())
    positions = [i for i in range(len(data)) if data.startswith(b"camera_optical", i)]
    middle = min(positions, key=lambda i: abs(i - len(data) // 2))
    data[middle - 4:middle] = b"\xff\xff\xff\x7f"
    storage_file.write_bytes(bytes(data))
    index = index_bag(bag, *topics)
    assert len(index) == FRAMES - 1 and sum(index.skipped.values()) == 1
    assert str(bag) in caplog.text
    source = BagFrameSource(index)
    assert all(source.image(i).shape == (40, 128, 3) for i in range(len(index)))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_random_bit_flips_read_or_fail_with_a_bag_error(frames, tmp_path, storage):
    """Never a hang or a foreign exception: either the frames read (pixels are not checksummed) or BagError."""
    bag, storage_file, topics = _bag(tmp_path, storage, frames)
    clean = storage_file.read_bytes()
    rng = np.random.default_rng(14)
    outcomes = set()
    for _ in range(20):
        data = bytearray(clean)
        for position in rng.integers(len(data) // 4, 3 * len(data) // 4, 30):
            data[position] ^= int(rng.integers(1, 256))
        storage_file.write_bytes(bytes(data))
        try:
            source = BagFrameSource(index_bag(bag, *topics))
            for i in range(len(source)):
                source.image(i)
            source.close()
            outcomes.add("read")
        except BagError as exc:
            assert str(bag) in str(exc) and "\n" not in str(exc)
            outcomes.add("error")
    assert outcomes


def _wrong_type_bag(path, storage: str, second_type: str | None) -> None:
    """CameraInfo CDR bytes written on an Image topic (or, with ``second_type``, a second connection of that type
    on the image topic)."""
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        image = writer.add_connection("/cam/image_raw", IMAGE, typestore=TYPESTORE)
        info = writer.add_connection("/cam/camera_info", CAMERA_INFO, typestore=TYPESTORE)
        other = writer.add_connection("/cam/image_raw", second_type, typestore=TYPESTORE) if second_type else None
        for i in range(3):
            msg = camera_info_message(header(T0 + i, "cam"), small_intrinsics(), 128, 40)
            raw = TYPESTORE.serialize_cdr(msg, CAMERA_INFO)
            writer.write(other or image, T0 + i, raw)
            writer.write(info, T0 + i, raw)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_wrong_message_types_on_the_image_topic_are_named(tmp_path, storage, capsys):
    _wrong_type_bag(tmp_path / "payload", storage, None)
    line = _cli_error(capsys, ["process-bag", str(tmp_path / "payload"), str(tmp_path / "out"),
                               "--image-topic", "/cam/image_raw"])
    assert str(tmp_path / "payload") in line and "no usable frames" in line and "'corrupt message': 3" in line
    _wrong_type_bag(tmp_path / "declared", storage, CAMERA_INFO)
    line = _cli_error(capsys, _train_arguments(tmp_path / "declared", ("/cam/image_raw", "/cam/camera_info"),
                                               tmp_path / "run"))
    assert str(tmp_path / "declared") in line and "/cam/image_raw carries sensor_msgs/msg/CameraInfo" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "run" / "state.pt").exists()


def test_undecodable_frame_stops_process_bag_and_leaves_no_output(frames, tmp_path):
    bag, _, topics = _bag(tmp_path, "mcap", frames)
    index = index_bag(bag, *topics)
    with pytest.MonkeyPatch.context() as patch:
        original = BagFrameSource.decode

        def fail_at_two(self, i, msgtype, raw):
            if i == 2:
                raise BagError(f"bag {bag}, {topics[0]}: Image message is corrupt")
            return original(self, i, msgtype, raw)

        patch.setattr(BagFrameSource, "decode", fail_at_two)
        with pytest.raises(BagError, match="corrupt"):
            process_bag(index, tmp_path / "out", PlaneEstimator())
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert process_bag(index, tmp_path / "out", PlaneEstimator())["/points"] == FRAMES  # a rerun completes
    assert len(read_bag(tmp_path / "out")["/points"]) == FRAMES


class _BrokenFrames(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise BagError("bag /data/x.mcap, /cam/image_raw at stamp 5 ns: CompressedImage (jpeg) does not decode")


def test_an_error_in_a_dataloader_worker_is_reported_on_one_line():
    with pytest.raises(BagError) as caught:
        next(iter(torch.utils.data.DataLoader(_BrokenFrames(), num_workers=1)))
    assert "Traceback" in str(caught.value)
    assert error_message(caught.value) == ("bag /data/x.mcap, /cam/image_raw at stamp 5 ns: CompressedImage (jpeg) "
                                           "does not decode")
