"""Cityscapes loaders on tiny files written here in the real on-disk formats (the data set cannot be shipped)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mgdepth_core.cli import main as cli_main
from mgdepth_core.data import DataConfig, build_dataset
from mgdepth_core.data.cityscapes import (
    CityscapesEvalDataset,
    cityscapes_eval_frames,
    lookup_frame_name,
    read_cam_txt,
)
from mgdepth_core.data.splits import SplitError, read_split

COLOURS = {-1: (200, 30, 30), 0: (30, 200, 30), 1: (30, 30, 200)}  # RGB of the three frames of a strip


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _preprocessed(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes_preprocessed"
    strip = np.zeros((384, 3 * 1024, 3), dtype=np.uint8)
    for i, frame_id in enumerate((-1, 0, 1)):
        strip[:, i * 1024:(i + 1) * 1024] = COLOURS[frame_id]
    _write_rgb(root / "ulm" / "ulm_000002_000025.jpg", strip)
    (root / "ulm" / "ulm_000002_000025_cam.txt").write_text("1104.0,0.0,535.0,0.0,1101.0,190.0,0.0,0.0,1.0\n")
    split = tmp_path / "splits" / "cityscapes_preprocessed"
    split.mkdir(parents=True)
    (split / "train_files.txt").write_text("ulm ulm_000002_000025\n")
    return root


def test_preprocessed_triplets_split_into_frames_with_scaled_intrinsics(tmp_path):
    root = _preprocessed(tmp_path)
    config = DataConfig(dataset="cityscapes", path=str(root), split=str(tmp_path / "splits/cityscapes_preprocessed"),
                        height=192, width=512, augment=False)
    sample = build_dataset(config, "train", training=True)[0]
    for frame_id, colour in COLOURS.items():
        image = sample["color"][frame_id]
        assert image.shape == (3, 192, 512)
        mean = image.mean(dim=(1, 2)) * 255
        assert torch.allclose(mean, torch.tensor(colour, dtype=torch.float32), atol=4)  # JPEG
    # K of one 1024×384 frame, normalised by 1024 and 384, at 512×192
    torch.testing.assert_close(sample["K"], torch.tensor([[1104 / 2, 0, 535 / 2], [0, 1101 / 2, 190 / 2],
                                                          [0, 0, 1.0]]))


def test_preprocessed_rejects_frames_outside_the_triplet_and_missing_files(tmp_path):
    root = _preprocessed(tmp_path)
    split = tmp_path / "splits" / "cityscapes_preprocessed"
    config = DataConfig(dataset="cityscapes", path=str(root), split=str(split), frame_ids=[0, -2])
    with pytest.raises(ValueError, match="frames -1, 0, 1"):
        build_dataset(config, "train")
    (split / "val_files.txt").write_text("ulm ulm_000002_000025\nulm ulm_000002_000099\n")
    with pytest.raises(SplitError, match=r"val_files\.txt:2: .*ulm_000002_000099\.jpg does not exist"):
        build_dataset(DataConfig(dataset="cityscapes", path=str(root), split=str(split)), "val", training=False)
    (root / "ulm" / "bad_cam.txt").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="holds 3 numbers"):
        read_cam_txt(root / "ulm" / "bad_cam.txt")


def _test_set(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "cityscapes"
    name = "berlin_000123_000019"
    for folder, frame_name, value in (("leftImg8bit", name, 120), ("leftImg8bit_sequence", "berlin_000123_000017", 60)):
        image = np.full((1024, 2048, 3), value, dtype=np.uint8)
        image[768:] = 255  # the ego car: must be cut off
        _write_rgb(root / folder / "test" / "berlin" / f"{frame_name}_leftImg8bit.png", image)
    camera = root / "camera_trainvaltest" / "camera" / "test" / "berlin" / f"{name}_camera.json"
    camera.parent.mkdir(parents=True)
    camera.write_text(json.dumps({"extrinsic": {"baseline": 0.209313}, "intrinsic": {
        "fx": 2262.52, "fy": 2265.3017905988554, "u0": 1096.98, "v0": 513.137}}))
    split = tmp_path / "splits" / "cityscapes"
    split.mkdir(parents=True)
    (split / "test_files.txt").write_text(f"berlin {name}\n")
    return root, split


def test_test_frames_use_lookup_minus_two_top_rows_and_camera_json(tmp_path):
    assert lookup_frame_name("berlin_000123_000019") == "berlin_000123_000017"
    root, split = _test_set(tmp_path)
    frames = cityscapes_eval_frames(root, read_split(split / "test_files.txt"))
    assert frames[0].previous.name == "berlin_000123_000017_leftImg8bit.png"
    dataset = CityscapesEvalDataset.from_config(DataConfig(dataset="cityscapes", path=str(root), split=str(split),
                                                           height=192, width=512))
    sample = dataset[0]
    assert sample["color"][0].shape == (3, 192, 512)
    assert sample["color"][0].max() * 255 == pytest.approx(120, abs=0.5)  # no ego-car (white) rows left
    assert sample["color"][-1].max() * 255 == pytest.approx(60, abs=0.5)
    # normalised by 2048 and 0.75·1024, scaled to 512×192
    expected = torch.tensor([[2262.52 * 512 / 2048, 0, 1096.98 * 512 / 2048],
                             [0, 2265.3017905988554 * 192 / 768, 513.137 * 192 / 768], [0, 0, 1]])
    torch.testing.assert_close(sample["K"], expected)
    (root / "leftImg8bit_sequence/test/berlin/berlin_000123_000017_leftImg8bit.png").unlink()
    with pytest.raises(SplitError, match=r"test_files\.txt:1: .*berlin_000123_000017_leftImg8bit\.png"):
        cityscapes_eval_frames(root, read_split(split / "test_files.txt"))


def test_eval_cli_with_cityscapes_ground_truth_folder(tmp_path, capsys):
    _, split = _test_set(tmp_path)
    gt_folder = split / "gt_depths"
    gt_folder.mkdir()
    gt = np.zeros((1024, 2048), dtype=np.float32)
    gt[256:768, 192:1856] = 10.0
    np.save(gt_folder / "000_depth.npy", gt)
    np.savez(tmp_path / "pred.npz", depth=np.full((1, 192, 512), 20.0, dtype=np.float32))
    assert cli_main(["eval", "--predictions", str(tmp_path / "pred.npz"), "--predictions-are", "depth",
                     "--split", str(split), "--no-median-scaling", "--csv", str(tmp_path / "c.csv")]) == 0
    assert "abs_rel" in capsys.readouterr().out
    row = (tmp_path / "c.csv").read_text().splitlines()[1].split(",")
    assert row[1] == "berlin berlin_000123_000019" and int(row[3]) == 512 * 1664
    assert float(row[4]) == pytest.approx(1.0)  # abs_rel |10 − 20| / 10
