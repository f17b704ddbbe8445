"""KITTI raw loader on the real frames in ../shared/data: shapes, intrinsics, flips, jitter, errors, splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest
import torch
import torchvision.transforms.functional as TF

from mgdepth_core.cli import main as cli_main
from mgdepth_core.data import DataConfig, build_dataset
from mgdepth_core.data.kitti import (
    CalibrationError,
    KittiCalibration,
    KittiRawDataset,
    load_velodyne,
    project_velodyne,
)
from mgdepth_core.data.splits import SplitError, read_split, resolve_split_dir
from mgdepth_core.data.transforms import apply_color_jitter, draw_augmentation

DRIVE = "2011_09_26/2011_09_26_drive_0060_sync"
FX = 721.5377  # P_rect_02 of 2011_09_26
CX, CY = 609.5593, 172.854


@pytest.fixture
def sample_split(shared_data: Path) -> Path:
    return shared_data / "splits" / "shared_kitti_sample"


def _dataset(shared_data, split_dir, **kwargs) -> KittiRawDataset:
    lines = read_split(split_dir / "files.txt", min_fields=3)[:4]
    return KittiRawDataset(shared_data / "kitti_raw", lines, 96, 320, [0, -1, 1], **kwargs)


def test_shapes_and_intrinsics_from_p_rect_scaled_to_training_size(shared_data, sample_split):
    dataset = _dataset(shared_data, sample_split)
    sample = dataset[0]
    assert set(sample["color"]) == {0, -1, 1}
    assert sample["color"][0].shape == (3, 96, 320) and sample["color"][0].dtype == torch.float32
    assert sample["color"][0].min() >= 0 and sample["color"][0].max() <= 1
    expected = torch.tensor([[FX * 320 / 1242, 0, CX * 320 / 1242], [0, FX * 96 / 375, CY * 96 / 375], [0, 0, 1]])
    torch.testing.assert_close(sample["K"], expected)
    # neighbours really are the neighbouring files: frame 1's "-1" is frame 0 on disk
    frame_0 = cv2.cvtColor(cv2.imread(str(shared_data / "kitti_raw" / DRIVE / "image_02/data/0000000000.png")),
                           cv2.COLOR_BGR2RGB)
    resized = cv2.resize(frame_0, (320, 96), interpolation=cv2.INTER_AREA)
    torch.testing.assert_close(sample["color"][-1], torch.from_numpy(resized).permute(2, 0, 1).float() / 255)
    assert not torch.equal(sample["color"][-1], sample["color"][1])


def test_monodepth2_fixed_intrinsics_option(shared_data, sample_split):
    sample = _dataset(shared_data, sample_split, intrinsics="monodepth2")[0]
    torch.testing.assert_close(sample["K"], torch.tensor([[0.58 * 320, 0, 160], [0, 1.92 * 96, 48], [0, 0, 1.0]]))


def test_flip_applies_to_every_frame_and_to_the_principal_point(shared_data, sample_split):
    plain = _dataset(shared_data, sample_split)[2]
    flipped = _dataset(shared_data, sample_split, augment=True, flip_probability=1.0, jitter_probability=0.0)[2]
    for frame_id in (0, -1, 1):
        torch.testing.assert_close(flipped["color"][frame_id], plain["color"][frame_id].flip(-1))
        torch.testing.assert_close(flipped["color_aug"][frame_id], flipped["color"][frame_id])
    assert flipped["K"][0, 2].item() == pytest.approx(319 - plain["K"][0, 2].item())
    assert flipped["K"][0, 0] == plain["K"][0, 0] and flipped["K"][1, 2] == plain["K"][1, 2]


def test_one_colour_jitter_draw_is_shared_by_all_frames(shared_data, sample_split):
    dataset = _dataset(shared_data, sample_split, augment=True, flip_probability=0.0, jitter_probability=1.0)
    torch.manual_seed(5)
    sample = dataset[1]
    torch.manual_seed(5)
    draw = draw_augmentation(True, 0.0, 1.0)
    assert draw.jitter is not None and not draw.flip
    for frame_id in (0, -1, 1):
        assert not torch.equal(sample["color_aug"][frame_id], sample["color"][frame_id])
        torch.testing.assert_close(sample["color_aug"][frame_id], apply_color_jitter(sample["color"][frame_id],
                                                                                     draw.jitter))


def test_lidar_projection_matches_the_reference_count_and_depths(shared_data):
    date = shared_data / "kitti_raw" / "2011_09_26"
    calibration = KittiCalibration.load(date)
    points = load_velodyne(date / "2011_09_26_drive_0060_sync/velodyne_points/data/0000000000.bin")
    depth = project_velodyne(points, calibration, camera=2, monodepth2_pixel_offset=False)
    assert depth.shape == (375, 1242)
    # README: 16,333 points fall inside the image at 3.0–78.1 m; nearest-per-pixel merges a few of them
    assert 16_000 <= (depth > 0).sum() <= 16_333
    assert depth[depth > 0].min() == pytest.approx(3.05, abs=0.01)
    assert depth[depth > 0].max() == pytest.approx(78.10, abs=0.01)
    assert (depth[:100] > 0).sum() < (depth[200:] > 0).sum()  # the scanner sees the road, not the sky


def test_evaluation_samples_carry_projected_lidar_depth(shared_data, sample_split):
    sample = _dataset(shared_data, sample_split, load_depth=True)[0]
    depth = sample["depth_gt"]
    assert depth.shape == (1, 96, 320)
    valid = depth[depth > 0]
    assert valid.numel() > 2000 and valid.min() > 2.5 and valid.max() < 80


def test_jpeg_images_load_like_png(shared_data, tmp_path):
    source = shared_data / "kitti_raw" / "2011_09_26"
    date = tmp_path / "2011_09_26"
    (date / "2011_09_26_drive_0060_sync/image_02/data").mkdir(parents=True)
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        shutil.copy(source / name, date / name)
    for frame in range(3):
        image = cv2.imread(str(source / f"2011_09_26_drive_0060_sync/image_02/data/{frame:010d}.png"))
        cv2.imwrite(str(date / f"2011_09_26_drive_0060_sync/image_02/data/{frame:010d}.jpg"), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "test_files.txt").write_text(f"{DRIVE} 1 l\n")
    config = DataConfig(dataset="kitti", path=str(tmp_path), split=str(tmp_path / "split"), height=96, width=320,
                        image_ext=".jpg")
    jpeg = build_dataset(config, "test", training=False)[0]
    png = _dataset(shared_data, shared_data / "splits" / "shared_kitti_sample")[0]
    assert (jpeg["color"][0] - png["color"][0]).abs().mean() < 0.02
    torch.testing.assert_close(jpeg["K"], png["K"])


def test_split_line_naming_a_missing_frame_raises_with_file_and_line(shared_data, tmp_path):
    split = tmp_path / "files.txt"
    split.write_text(f"{DRIVE} 5 l\n\n{DRIVE} 39 l\n")  # frame 40 (the +1 neighbour of 39) is not shipped
    with pytest.raises(SplitError, match=r"files\.txt:3: frame \+1 .*0000000040\.png, does not exist"):
        KittiRawDataset(shared_data / "kitti_raw", read_split(split), 96, 320, [0, -1, 1])
    split.write_text(f"{DRIVE} 0 l\n")
    with pytest.raises(SplitError, match=r"files\.txt:1: frame -1"):
        KittiRawDataset(shared_data / "kitti_raw", read_split(split), 96, 320, [0, -1, 1])
    split.write_text(f"{DRIVE} 7 x\n")
    with pytest.raises(SplitError, match="side must be 'l' or 'r'"):
        KittiRawDataset(shared_data / "kitti_raw", read_split(split), 96, 320, [0, -1, 1])


def test_unparsable_calibration_names_file_and_field(shared_data, tmp_path):
    source = shared_data / "kitti_raw" / "2011_09_26"
    date = tmp_path / "2011_09_26"
    date.mkdir()
    shutil.copy(source / "calib_velo_to_cam.txt", date / "calib_velo_to_cam.txt")
    text = (source / "calib_cam_to_cam.txt").read_text()
    (date / "calib_cam_to_cam.txt").write_text(text.replace("P_rect_02: 7.215377e+02", "P_rect_02: seven"))
    with pytest.raises(CalibrationError, match=r"calib_cam_to_cam\.txt: field 'P_rect_02' is not a list of numbers"):
        KittiCalibration.load(date)
    (date / "calib_cam_to_cam.txt").write_text(text.replace("R_rect_00:", "R_rect_zero:"))
    with pytest.raises(CalibrationError, match=r"calib_cam_to_cam\.txt has no field 'R_rect_00'"):
        KittiCalibration.load(date)


def test_split_names_resolve_in_the_user_splits_folder(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MGDEPTH_SPLITS", str(tmp_path / "installed"))
    with pytest.raises(SplitError, match="mgdepth data splits"):
        resolve_split_dir("eigen_zhou")
    assert cli_main(["data", "splits", "--from", str(shared_data / "splits"), "--names", "eigen", "eigen_zhou"]) == 0
    folder = resolve_split_dir("eigen_zhou")
    assert folder == tmp_path / "installed" / "eigen_zhou"
    assert (folder / "train_files.txt").read_bytes() == (shared_data / "splits/eigen_zhou/train_files.txt").read_bytes()
    lines = read_split(tmp_path / "installed" / "eigen" / "test_files.txt")
    assert len(lines) == 697 and lines[0].fields == ("2011_09_26/2011_09_26_drive_0002_sync", "0000000069", "l")
    assert cli_main(["data", "splits", "--from", str(tmp_path / "nowhere")]) == 1
    assert len(read_split(folder / "val_files.txt")) == 4424


@pytest.mark.parametrize("seed", range(4))
def test_colour_jitter_matches_torchvision_color_jitter_semantics(seed):
    torch.manual_seed(seed)
    image = torch.rand(3, 24, 40)
    draw = draw_augmentation(True, 0.0, 1.0)
    order, brightness, contrast, saturation, hue = draw.jitter
    assert abs(hue) <= 0.1 and 0.8 <= brightness <= 1.2
    expected = image
    for index in order.tolist():  # torchvision's ColorJitter.forward, written out
        expected = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue][index](
            expected, [brightness, contrast, saturation, hue][index])
    torch.testing.assert_close(apply_color_jitter(image, draw.jitter), expected, atol=1e-5, rtol=0)
