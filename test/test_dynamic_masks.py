"""Precomputed instance masks: the store, `mgdepth precompute-masks` (resume) and the KITTI loader's instance keys."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mgdepth_core.commands import precompute_masks
from mgdepth_core.data.kitti import KittiRawDataset
from mgdepth_core.data.splits import SplitLine
from mgdepth_core.dynamic import FrameInstances
from mgdepth_core.masks import MaskStore

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def instances_with_box(height, width, x0, local_id=1, class_id=3, score=0.9) -> FrameInstances:
    ids = np.zeros((height, width), dtype=np.uint8)
    ids[4:12, x0:x0 + 10] = local_id
    classes = np.zeros(local_id + 1, dtype=np.int64)
    scores = np.zeros(local_id + 1, dtype=np.float32)
    boxes = np.zeros((local_id + 1, 4), dtype=np.float32)
    classes[local_id], scores[local_id], boxes[local_id] = class_id, score, (x0, 4, x0 + 10, 12)
    return FrameInstances(ids, classes, scores, boxes)


def test_store_round_trip_atomic_and_clear_errors(tmp_path):
    store = MaskStore(tmp_path / "masks")
    key = f"{DRIVE}/image_02/data/0000000001.png"
    assert not store.has(key)
    written = instances_with_box(16, 32, 5, local_id=2)
    path = store.write(key, written)
    assert path == tmp_path / "masks" / DRIVE / "image_02" / "data" / "0000000001.npz"
    assert store.has(key) and not list(path.parent.glob(".*.tmp"))
    read = store.read(key)
    assert np.array_equal(read.ids, written.ids) and read.ids.dtype == np.uint8
    assert read.classes.tolist() == [0, 0, 3] and read.boxes[2].tolist() == [5, 4, 15, 12]
    (path.parent / ".0000000002.abc.tmp").write_bytes(b"half a file")  # an interrupted write
    assert not store.has(f"{DRIVE}/image_02/data/0000000002.png")
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        store.read(key)
    with pytest.raises(FileNotFoundError, match="precompute-masks"):
        store.read("other.png")
    with pytest.raises(ValueError, match="relative path"):
        store.path_for("../escape.png")


class StubSegmenter:
    """Stands in for Mask R-CNN: one box whose position is the image's mean red value."""

    calls = 0

    def to(self, device):
        return self

    def __call__(self, images: torch.Tensor) -> list[FrameInstances]:
        StubSegmenter.calls += 1
        x0 = int(round(float(images[0, 0].mean()) * 255)) % 20
        return [instances_with_box(images.shape[-2], images.shape[-1], x0)]


def write_kitti_frames(root: Path, count: int, height: int = 16, width: int = 32) -> None:
    folder = root / DRIVE / "image_02" / "data"
    folder.mkdir(parents=True)
    for index in range(count):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[..., 2] = 3 * index  # red channel (BGR on disk) encodes the box position
        cv2.imwrite(str(folder / f"{index:010d}.png"), image)


def command_args(**values) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    precompute_masks.add_arguments(parser)
    argv = []
    for key, value in values.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return parser.parse_args(argv)


def test_precompute_masks_writes_every_frame_and_resumes(tmp_path, monkeypatch):
    from mgdepth_core.models import instance_segmentation

    monkeypatch.setattr(instance_segmentation.InstanceSegmenter, "from_config", lambda config: StubSegmenter())
    write_kitti_frames(tmp_path / "kitti", 4)
    out = tmp_path / "masks"
    StubSegmenter.calls = 0
    assert precompute_masks.run(command_args(data=tmp_path / "kitti", dataset="kitti", out=out)) == 0
    assert StubSegmenter.calls == 4
    store = MaskStore(out)
    assert store.read(f"{DRIVE}/image_02/data/0000000002.png").boxes[1].tolist() == [6, 4, 16, 12]
    (out / DRIVE / "image_02" / "data" / "0000000003.npz").unlink()  # as if interrupted before the last frame
    assert precompute_masks.run(command_args(data=tmp_path / "kitti", dataset="kitti", out=out)) == 0
    assert StubSegmenter.calls == 5  # only the missing frame was segmented again
    split = tmp_path / "split"
    split.mkdir()
    (split / "train_files.txt").write_text(f"{DRIVE} 1 l\n")
    assert precompute_masks.kitti_frames(tmp_path / "kitti", str(split), ["train", "val"], ".png") == [
        f"{DRIVE}/image_02/data/{i:010d}.png" for i in range(3)]
    assert len(precompute_masks.folder_frames(tmp_path / "kitti")) == 4


def test_kitti_loader_fills_consistent_instance_keys(tmp_path):
    write_kitti_frames(tmp_path / "kitti", 3)
    store = MaskStore(tmp_path / "masks")
    for index, (x0, local_id) in enumerate([(4, 1), (6, 2), (8, 1)]):  # one car sliding right, ids differ per file
        store.write(f"{DRIVE}/image_02/data/{index:010d}.png", instances_with_box(16, 32, x0, local_id))
    line = SplitLine((DRIVE, "1", "l"), tmp_path / "train_files.txt", 1)
    dataset = KittiRawDataset(tmp_path / "kitti", [line], 32, 64, [0, -1, 1], intrinsics="monodepth2",
                              masks_path=tmp_path / "masks")
    sample = dataset[0]
    ids = sample["instances"]
    assert ids[0].shape == (1, 32, 64) and ids[0].dtype == torch.int64
    for frame_id, x0 in ((-1, 4), (0, 6), (1, 8)):  # resized ×2 (nearest), one id across the triplet
        assert set(ids[frame_id].unique().tolist()) == {0, 1}
        assert ids[frame_id][0, 8:24, 2 * x0:2 * x0 + 20].eq(1).all()
        assert ids[frame_id].eq(1).sum() == 16 * 20
    assert sample["instance_class"][1] == 3 and sample["instance_score"][1] == pytest.approx(0.9)
    flipped = KittiRawDataset(tmp_path / "kitti", [line], 32, 64, [0, -1, 1], intrinsics="monodepth2",
                              augment=True, flip_probability=1.0, jitter_probability=0.0,
                              masks_path=tmp_path / "masks")[0]
    assert torch.equal(flipped["instances"][0], ids[0].flip(-1))
