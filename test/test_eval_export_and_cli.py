"""export-gt on the real drive-0060 scans, and `mgdepth eval` on saved predictions (real numbers end to end)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from mgdepth_core.cli import main as cli_main
from mgdepth_core.data.kitti import KittiCalibration, load_velodyne, read_rgb
from mgdepth_core.data.splits import SplitError, read_split
from mgdepth_core.eval.evaluate import kitti_eval_frames, predict_split
from mgdepth_core.eval.export_gt import export_ground_truth, load_ground_truth
from mgdepth_core.eval.metrics import garg_crop_mask

DRIVE = "2011_09_26/2011_09_26_drive_0060_sync"


def _split(tmp_path: Path, frames: list[int], name: str = "eigen") -> Path:
    folder = tmp_path / "splits" / name
    folder.mkdir(parents=True)
    (folder / "test_files.txt").write_text("".join(f"{DRIVE} {f:010d} l\n" for f in frames))
    return folder


def test_export_matches_an_independent_projection_of_frame_0(shared_data, tmp_path):
    split = _split(tmp_path, [0, 7, 21])
    result = export_ground_truth(shared_data / "kitti_raw", str(split), progress=False)
    assert result.path == split / "gt_depths.npz" and result.frames == 3 and not result.skipped
    maps = load_ground_truth(result.path)
    assert len(maps) == 3 and maps[0].shape == (375, 1242) and maps[0].dtype == np.float32
    assert not (split / "gt_depths.npz.parts").exists()
    # independent projection, written out step by step: velo → cam0 → rectified → P_rect_02, nearest per pixel
    calibration = KittiCalibration.load(shared_data / "kitti_raw" / "2011_09_26")
    points = load_velodyne(shared_data / "kitti_raw" / DRIVE / "velodyne_points/data/0000000000.bin")
    points = points[points[:, 0] >= 0]
    cam0 = calibration.T_cam0_velo[:3, :3] @ points[:, :3].T.astype(np.float64) + calibration.T_cam0_velo[:3, 3:]
    rectified = calibration.R_rect_00 @ cam0
    image = calibration.P_rect[2] @ np.vstack([rectified, np.ones(len(points))])
    u = np.round(image[0] / image[2]) - 1
    v = np.round(image[1] / image[2]) - 1
    inside = (u >= 0) & (v >= 0) & (u < 1242) & (v < 375)
    expected = np.zeros((375, 1242))
    for col, row, depth in sorted(zip(u[inside], v[inside], points[inside, 0]), key=lambda p: -p[2]):
        expected[int(row), int(col)] = depth  # nearest last, so it wins
    np.testing.assert_allclose(maps[0], expected, rtol=1e-6)
    # README: 16,333 points fall inside the image; the −1 pixel shift moves the window by a pixel, and nearest
    # per pixel merges a few points
    assert 16_200 < (maps[0] > 0).sum() < 16_400
    valid = maps[0][maps[0] > 0]
    assert 3.0 < valid.min() < 3.5 and 75 < valid.max() < 80  # vel_depth: Velodyne x, metres


def test_missing_scans_raise_naming_the_line_or_are_skipped(shared_data, tmp_path):
    split = _split(tmp_path, [3, 45, 4])  # scan 45 is not in the shared copy
    with pytest.raises(SplitError, match=r"test_files\.txt:2: .*0000000045\.bin does not exist"):
        export_ground_truth(shared_data / "kitti_raw", str(split), progress=False)
    result = export_ground_truth(shared_data / "kitti_raw", str(split), out=tmp_path / "gt.npz", skip_missing=True,
                                 progress=False)
    assert result.frames == 2 and len(result.skipped) == 1 and "test_files.txt:2" in result.skipped[0]
    with np.load(tmp_path / "gt.npz", allow_pickle=True) as archive:
        assert list(archive["line_numbers"]) == [1, 3]


def test_interrupted_export_resumes_from_finished_frames(shared_data, tmp_path):
    split = _split(tmp_path, [5, 6])
    parts = split / "gt_depths.npz.parts"
    parts.mkdir()
    marker = np.full((375, 1242), 7.0, dtype=np.float32)
    np.save(parts / "000001.npy", marker)  # frame of line 1 "already exported"
    result = export_ground_truth(shared_data / "kitti_raw", str(split), progress=False)
    maps = load_ground_truth(result.path)
    np.testing.assert_array_equal(maps[0], marker)
    assert (maps[1] > 0).sum() > 15_000


def test_eval_cli_on_predictions_and_masks(shared_data, tmp_path, capsys):
    split = _split(tmp_path, [2, 3, 4])
    assert cli_main(["export-gt", "--data", str(shared_data / "kitti_raw"), "--split", str(split)]) == 0
    gt = load_ground_truth(split / "gt_depths.npz")
    # predictions: the GT's scale-free structure is unknown, so predict a constant disparity per image → known
    # numbers after median scaling (every valid pixel predicted at the median GT depth)
    predictions = np.full((3, 96, 320), 0.25, dtype=np.float32)
    np.savez(tmp_path / "pred.npz", data=predictions)
    dynamic = np.zeros((3, 375, 1242), dtype=bool)
    dynamic[:, 200:, 500:800] = True
    np.savez(tmp_path / "masks.npz", data=dynamic)
    code = cli_main(["eval", "--predictions", str(tmp_path / "pred.npz"), "--split", str(split),
                     "--masks", str(tmp_path / "masks.npz"), "--csv", str(tmp_path / "per_image.csv")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "abs_rel" in printed and "static" in printed and "dynamic" in printed
    rows = list(csv.DictReader((tmp_path / "per_image.csv").read_text().splitlines()))
    assert [r["label"] for r in rows] == [f"{DRIVE} {f:010d} l" for f in (2, 3, 4)]
    for row, depth in zip(rows, gt):
        valid = depth[(depth > 1e-3) & (depth < 80) & garg_crop_mask(*depth.shape)]
        median = np.median(valid)
        assert float(row["ratio"]) == pytest.approx(median * 0.25, rel=1e-5)
        assert float(row["abs_rel"]) == pytest.approx(np.mean(np.abs(valid - median) / valid), rel=1e-4)


def test_eval_cli_rejects_bad_predictions_before_printing_metrics(shared_data, tmp_path, capsys):
    split = _split(tmp_path, [2, 3])
    export_ground_truth(shared_data / "kitti_raw", str(split), progress=False)
    np.save(tmp_path / "three.npy", np.ones((3, 8, 16), dtype=np.float32))
    broken = np.ones((2, 8, 16), dtype=np.float32)
    broken[1, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", broken)
    np.savez(tmp_path / "empty.npz", data=np.zeros((0, 8, 16), dtype=np.float32))
    for name, message in (("three.npy", "3 predictions but 2 ground-truth"), ("nan.npy", "prediction 1 holds 1 NaN"),
                          ("empty.npz", "empty")):
        assert cli_main(["eval", "--predictions", str(tmp_path / name), "--split", str(split)]) == 1
        captured = capsys.readouterr()
        assert message in captured.err and "abs_rel" not in captured.out


class RecordingEstimator:
    """Follows the DepthEstimator contract (reset, process(image, K) -> result with .depth) and records calls."""

    def __init__(self):
        self.calls = []

    def reset(self):
        self.calls.append("reset")

    def process(self, image, K):
        self.calls.append(int(image[..., 0].sum() % 100_003))  # a fingerprint of the frame fed
        return type("Result", (), {"depth": np.full((4, 8), float(len(self.calls)), dtype=np.float32)})()


def test_model_evaluation_feeds_previous_then_current_frame_per_line(shared_data, tmp_path):
    split = _split(tmp_path, [0, 5])
    frames = kitti_eval_frames(shared_data / "kitti_raw", read_split(split / "test_files.txt"))
    assert frames[0].previous is None and frames[1].previous.name == "0000000004.png"
    assert frames[1].K[0, 0] == pytest.approx(721.5377)
    estimator = RecordingEstimator()
    predictions, single_frame = predict_split(estimator, frames, progress=False)
    fingerprint = {f: int(read_rgb(shared_data / "kitti_raw" / DRIVE / f"image_02/data/{f:010d}.png")[..., 0].sum()
                          % 100_003) for f in (0, 4, 5)}
    assert estimator.calls == ["reset", fingerprint[0], "reset", fingerprint[4], fingerprint[5]]
    assert single_frame == 1 and [p[0, 0] for p in predictions] == [2.0, 5.0]



def test_benchmark_ground_truth_reads_annotated_pngs(tmp_path):
    drive = tmp_path / "kitti" / DRIVE
    annotated = drive / "proj_depth" / "groundtruth" / "image_02"
    annotated.mkdir(parents=True)
    depth = np.zeros((6, 10), dtype=np.uint16)
    depth[2, 3], depth[4, 7] = 256 * 12 + 128, 256 * 70  # 12.5 m and 70 m
    cv2.imwrite(str(annotated / "0000000005.png"), depth)
    split = _split(tmp_path, [5], name="eigen_benchmark")
    result = export_ground_truth(tmp_path / "kitti", str(split), progress=False)
    (gt,) = load_ground_truth(result.path)
    assert gt[2, 3] == 12.5 and gt[4, 7] == 70.0 and (gt > 0).sum() == 2
