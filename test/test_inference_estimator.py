"""DepthEstimator: streaming cache correctness, agreement with the model called directly, fallbacks, resets,
resizing with K, input validation, weights folders."""

import logging

import numpy as np
import pytest
import torch

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.geometry import disparity_to_depth
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.weights import save_weights

H, W = 64, 192


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(method="manydepth", height=H, width=W, pretrained=False, num_depth_bins=12,
                                   min_depth_bin=0.1, max_depth_bin=0.5)).eval()


@pytest.fixture(scope="module")
def frames():
    sequence = SyntheticSequence(seed=4, num_frames=4, height=H, width=W)
    return [sequence.frame(i)["image"] for i in range(4)], sequence.K


def estimator(model, **fields) -> DepthEstimator:
    return DepthEstimator(model, EstimatorConfig(**({"device": "cpu", "min_translation": 0.0} | fields)))


def test_streaming_cache_gives_the_same_depth_as_recomputing(model, frames):
    images, K = frames
    streaming, recomputing = estimator(model), estimator(model)
    recomputing.reuses_features = False  # the lookup features are recomputed from the previous image every frame
    for index, image in enumerate(images):
        cached = streaming.process(image, K, stamp=0.1 * index)
        fresh = recomputing.process(image, K, stamp=0.1 * index)
        assert cached.multi_frame == (index > 0) == fresh.multi_frame
        assert np.abs(cached.depth - fresh.depth).max() < 1e-5
    assert streaming.buffer.features is not None and recomputing.buffer.features is None


def test_results_equal_the_model_called_directly(model, frames):
    images, K = frames
    est = estimator(model, channels_last=False)
    tensors = [torch.from_numpy(i).permute(2, 0, 1)[None].float() / 255 for i in images[:2]]
    K_tensor = torch.from_numpy(K).float()[None]
    with torch.no_grad():
        teacher = disparity_to_depth(model.teacher_forward(tensors[0])[("disp", 0)])[1]
        T = model.relative_pose(tensors[1], tensors[0], source_is_before=True)
        student = disparity_to_depth(model.multi_frame_forward(tensors[1], tensors[0], T, K_tensor)[("disp", 0)])[1]
    first = est.process(images[0], K, 0.0)
    second = est.process(images[1], K, 0.1)
    assert first.T_prev_current is None and not first.multi_frame
    np.testing.assert_allclose(first.depth, teacher[0, 0].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(second.depth, student[0, 0].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(second.T_prev_current, T[0].double().numpy(), atol=1e-7)
    assert second.depth.dtype == np.float32 and second.image.shape == (H, W, 3)
    assert set(second.timings_ms) >= {"preprocess", "pose", "depth", "total"}


def test_gaps_backwards_stamps_and_static_camera_fall_back_to_single_frame(model, frames):
    images, K = frames
    est = estimator(model, max_gap_s=0.5)
    assert [est.process(images[i], K, stamp).multi_frame for i, stamp in enumerate([0.0, 0.1, 2.0, 1.9])] == [
        False, True, False, False]
    est.reset()
    assert est.process(images[0], K).multi_frame is False
    assert est.process(images[1], K).multi_frame is True  # no stamps: no gap checks
    still = estimator(model, min_translation=1e6)  # every motion counts as "not moving"
    still.process(images[0], K)
    result = still.process(images[1], K)
    assert not result.multi_frame and result.T_prev_current is not None


def test_depth_scale_scales_depth_and_translation(model, frames):
    images, K = frames
    plain, scaled = estimator(model), estimator(model, depth_scale=2.5)
    for image in images[:2]:
        a, b = plain.process(image, K), scaled.process(image, K)
    np.testing.assert_allclose(b.depth, 2.5 * a.depth, rtol=1e-6)
    np.testing.assert_allclose(b.T_prev_current[:3, 3], 2.5 * a.T_prev_current[:3, 3], rtol=1e-6)
    np.testing.assert_allclose(b.T_prev_current[:3, :3], a.T_prev_current[:3, :3])


def test_other_sizes_are_resized_with_intrinsics_scaled(model, frames, caplog):
    images, K = frames
    big = np.repeat(np.repeat(images[0], 2, axis=0), 3, axis=1)  # 2× taller, 3× wider: aspect changes
    K_big = K.copy()
    K_big[0] *= 3
    K_big[1] *= 2
    with caplog.at_level(logging.INFO, logger="mgdepth_core.inference"):
        result = estimator(model).process(big, K_big)
    assert result.depth.shape == (H, W) and result.image.shape == (H, W, 3)
    np.testing.assert_allclose(result.K, K)
    assert "aspect ratio changes" in caplog.text


@pytest.mark.parametrize("image, K, message", [
    (np.zeros((H, W, 3), np.float32), np.eye(3), "uint8"),
    (np.zeros((H, W), np.uint8), np.eye(3), "H×W×3"),
    (np.zeros((H, W, 4), np.uint8), np.eye(3), "H×W×3"),
    (np.zeros((H, W, 3), np.uint8), np.zeros((3, 3)), "positive focal"),
    (np.zeros((H, W, 3), np.uint8), np.eye(4), "3×3"),
])
def test_bad_inputs_raise_clear_errors(model, image, K, message):
    est = estimator(model)
    with pytest.raises(ValueError, match=message):
        est.process(image, K)
    assert est.buffer is None


def test_weights_folder_without_teacher_uses_the_empty_cost_volume(model, frames, tmp_path):
    images, K = frames
    save_weights(model, tmp_path)
    (tmp_path / "mono_encoder.pth").unlink()
    (tmp_path / "mono_depth.pth").unlink()
    est = DepthEstimator.from_weights(tmp_path, method="manydepth2", device="cpu")
    assert est.fallback == "empty_cost_volume" and est.config.method == "manydepth"
    result = est.process(images[0], K)
    image = torch.from_numpy(images[0]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = model.multi_frame_forward(image, image, torch.zeros(1, 4, 4), torch.from_numpy(K).float()[None])
    np.testing.assert_allclose(result.depth, disparity_to_depth(expected[("disp", 0)])[1][0, 0].numpy(), atol=1e-5)


def test_random_initialisation_is_announced(caplog):
    with caplog.at_level(logging.WARNING):
        est = DepthEstimator.from_weights(None, method="manydepth", device="cpu", height=H, width=W)
    assert "RANDOM weights" in caplog.text and (est.height, est.width) == (H, W)


def test_known_motion_replaces_the_pose_net_in_metres(model, frames):
    """Odometry instead of the pose net: the multi-frame network gets the given motion (÷ depth_scale) and the
    result reports it back in metres."""
    images, K = frames
    est = estimator(model, channels_last=False, depth_scale=4.0)
    motion = np.eye(4)
    motion[:3, 3] = [0.05, 0.0, -0.9]  # the previous camera 0.9 m behind
    tensors = [torch.from_numpy(i).permute(2, 0, 1)[None].float() / 255 for i in images[:2]]
    T = torch.from_numpy(motion).float()[None]
    T[:, :3, 3] /= 4.0
    with torch.no_grad():
        disp = model.multi_frame_forward(tensors[1], tensors[0], T, torch.from_numpy(K).float()[None])[("disp", 0)]
    expected = 4.0 * disparity_to_depth(disp)[1][0, 0].numpy()
    est.process(images[0], K, 0.0, known_motion=motion)
    result = est.process(images[1], K, 0.1, known_motion=motion)
    assert result.multi_frame
    np.testing.assert_allclose(result.T_prev_current, motion, atol=1e-6)
    np.testing.assert_allclose(result.depth, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="known_motion must be a finite 4×4"):
        est.process(images[2], K, 0.2, known_motion=np.full((4, 4), np.nan))
    assert est.process(images[2], K, 0.2).multi_frame  # the bad call lost nothing: the buffer still holds frame 1


def test_lookup_image_is_what_the_cost_volume_matched(model, frames):
    """Manydepth matches the previous frame itself (Manydepth2's static reference: test_ros_demo, strips)."""
    images, K = frames
    est = estimator(model)
    first = est.process(images[0], K, 0.0)
    second = est.process(images[1], K, 0.1)
    assert first.lookup_image is None and first.motion_mask is None  # single-frame depth: nothing matched
    np.testing.assert_array_equal(second.lookup_image, first.image)
    assert second.motion_mask is None
