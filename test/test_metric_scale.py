"""Metric scale (mgdepth_core.scale): the camera-height and odometry sources recover an unknown depth scale, bad
input falls back to depth_scale with one warning, smoothing bounds the frame-to-frame spread, and the estimator
applies the scale to depth and motion."""

import logging

import numpy as np
import pytest
import torch

from mgdepth_core.data.kitti import KittiCalibration, load_velodyne, project_velodyne
from mgdepth_core.data.synthetic import CAMERA_HEIGHT, SyntheticSequence
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.scale import PositionHistory, ScaleEstimator, fit_ground_height

H, W = 96, 320
FACTOR = 7.3  # the unknown scale: metres per "network unit"


@pytest.fixture(scope="module")
def sequence():
    return SyntheticSequence(seed=3, num_frames=12, height=H, width=W)


def network_depth(frame: dict) -> torch.Tensor:
    """True depth in units of 1/FACTOR metres, NaN on the sky: what a perfect scale-free network would give."""
    depth = torch.from_numpy(frame["depth"]).double() / FACTOR
    return torch.where(depth > 0, depth, torch.nan)


def test_camera_height_recovers_the_scale_on_the_synthetic_street(sequence):
    estimates = []
    for index in range(0, 12, 3):
        frame = sequence.frame(index)
        ground = fit_ground_height(network_depth(frame), torch.from_numpy(frame["K"]))
        estimates.append(CAMERA_HEIGHT / ground)
    np.testing.assert_allclose(estimates, FACTOR, rtol=0.02)


def test_camera_height_on_a_tilted_noisy_plane_with_an_obstacle():
    """A road pitched by 3° with 1 % depth noise and a wall in half of the lower rows."""
    K = torch.tensor([[200.0, 0, 160], [0, 200, 48], [0, 0, 1]], dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    rays = torch.stack([(u - 160) / 200, (v - 48) / 200, torch.ones_like(u)])
    pitch = np.radians(3.0)
    normal = torch.tensor([0.0, np.cos(pitch), np.sin(pitch)], dtype=torch.float64)
    depth = 1.2 / (normal @ rays.reshape(3, -1)).reshape(H, W)  # plane n·p = 1.2
    depth = torch.where(depth > 0, depth, torch.nan)
    depth = depth * (1 + 0.01 * torch.randn(H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    depth[:, : W // 2] = torch.minimum(depth[:, : W // 2], torch.full((H, W // 2), 3.0, dtype=torch.float64))
    assert fit_ground_height(depth, K) == pytest.approx(1.2, rel=0.02)


def test_camera_height_on_real_kitti_road_geometry(shared_data):
    """KITTI drive 0060: the projected LiDAR depth ÷ FACTOR puts the camera 1.65 m above the road once scaled."""
    date_dir = shared_data / "kitti_raw" / "2011_09_26"
    calibration = KittiCalibration.load(date_dir)
    K = torch.from_numpy(calibration.intrinsics(2))
    for index in (0, 20, 39):
        scan = date_dir / "2011_09_26_drive_0060_sync" / "velodyne_points" / "data" / f"{index:010d}.bin"
        lidar = torch.from_numpy(project_velodyne(load_velodyne(scan), calibration, camera=2)).double()
        ground = fit_ground_height(torch.where(lidar > 0, lidar / FACTOR, torch.nan), K)
        assert 1.65 / ground == pytest.approx(FACTOR, rel=0.02)


def test_odometry_recovers_the_scale_from_the_true_translations(sequence):
    scale = ScaleEstimator("odometry", window=5, smoothing=1.0)
    for index in range(1, 12):
        metres = float(np.linalg.norm(sequence.relative_pose(index - 1, index)[:3, 3]))
        scale.update(network_translation=metres / FACTOR, measured_translation=metres)
    assert scale.source == "odometry" and scale.scale == pytest.approx(FACTOR, rel=1e-6)


@pytest.mark.parametrize("case", ["no_odometry", "standing_still", "camera_height_zero", "no_ground"])
def test_bad_input_falls_back_to_depth_scale_with_one_warning(case, caplog):
    source = "camera_height" if case in ("camera_height_zero", "no_ground") else "odometry"
    scale = ScaleEstimator(source, depth_scale=2.0, camera_height_m=0.0 if case == "camera_height_zero" else 1.5)
    sky = torch.full((H, W), torch.nan, dtype=torch.float64)
    K = torch.eye(3, dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="mgdepth_core.scale"):
        for _ in range(3):
            measured = {"no_odometry": None, "standing_still": 0.0}.get(case)
            assert scale.update(sky, K, network_translation=0.5, measured_translation=measured) == 2.0
    assert scale.source == "fixed"
    assert len([r for r in caplog.records if "depth_scale 2.0" in r.getMessage()]) == 1


def test_a_frame_without_measurement_keeps_the_last_scale():
    scale = ScaleEstimator("odometry", depth_scale=1.0)
    scale.update(network_translation=0.1, measured_translation=0.5)
    assert scale.update(network_translation=0.1, measured_translation=None) == pytest.approx(5.0)
    assert scale.source == "odometry"


def test_smoothing_bounds_the_frame_to_frame_spread():
    noisy = FACTOR * (1 + 0.1 * np.random.default_rng(0).standard_normal(200))
    scale = ScaleEstimator("odometry", window=1, smoothing=0.1)
    smoothed = [scale.update(network_translation=1.0, measured_translation=m) for m in noisy]
    raw_spread, spread = np.abs(np.diff(noisy)).max(), np.abs(np.diff(smoothed)).max()
    assert spread < raw_spread / 5
    assert np.mean(smoothed[50:]) == pytest.approx(FACTOR, rel=0.02)


def test_position_history_interpolates_and_refuses_far_stamps():
    history = PositionHistory(max_extrapolation_s=0.1)
    history.add(0.0, np.zeros(3))
    history.add(1.0, np.array([2.0, 0.0, 0.0]))
    np.testing.assert_allclose(history.at(0.25), [0.5, 0, 0])
    assert history.at(1.5) is None and PositionHistory().at(0.0) is None


def test_estimator_applies_the_odometry_scale_to_depth_and_motion(sequence):
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=64, width=192, pretrained=False, num_depth_bins=12,
                                    min_depth_bin=0.1, max_depth_bin=0.5)).eval()
    frames = [sequence.frame(i)["image"] for i in range(4)]
    config = {"device": "cpu", "min_translation": 0.0}
    plain = DepthEstimator(model, EstimatorConfig(**config))
    scaled = DepthEstimator(model, EstimatorConfig(**config, scale_source="odometry", scale_smoothing=1.0))
    for index, image in enumerate(frames):
        reference = plain.process(image, sequence.K, 0.1 * index)
        moved = None if reference.T_prev_current is None else 3.0 * np.linalg.norm(reference.T_prev_current[:3, 3])
        result = scaled.process(image, sequence.K, 0.1 * index, measured_translation=moved)
        expected = (1.0, "fixed") if index == 0 else (3.0, "odometry")
        assert result.scale == pytest.approx(expected[0], rel=1e-4) and result.scale_source == expected[1]
        np.testing.assert_allclose(result.depth, reference.depth * result.scale, rtol=1e-4)
        if index:
            np.testing.assert_allclose(result.T_prev_current[:3, 3], reference.T_prev_current[:3, 3] * 3.0,
                                       rtol=1e-4)
