"""The speed paths give the reference path's results: window attention through SDPA, GMFlow's quarter-resolution
convex upsampling, the interpolated cost volume at the bins it computes, the estimator's default settings against
the model called plainly (random tiny Manydepth2 with GMFlow), and the per-stage timer."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from random_networks import calibrate_batch_norms

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.geometry import disparity_to_depth, intrinsics_at_scale
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.cost_volume import build_cost_volume, depth_bin_values
from mgdepth_core.models.flow import FlowEstimator, resize_flow
from mgdepth_core.models.gmflow import shifted_window_mask, split_windows, window_attention
from mgdepth_core.models.static_reference import build_static_reference, release_lookup_without_motion
from mgdepth_core.stages import STAGES, StageTimer

H, W = 64, 96
# Depth of the default (fast) path against the plain model: folded batch norms, channels-last convolutions and
# GMFlow's quarter-resolution upsampling only change the rounding.
DEPTH_RTOL = 1e-4  # ~1e-6 seen


def test_window_attention_equals_the_softmax_formula():
    torch.manual_seed(0)
    height, width, splits, channels = 8, 12, 2, 16
    q, k, v = (torch.randn(2, height * width, channels) for _ in range(3))
    mask = shifted_window_mask(height, width, splits, q.device)
    for shift in (False, True):
        out = window_attention(q, k, v, height, width, splits, shift, mask)
        offset = (-(height // splits // 2), -(width // splits // 2)) if shift else (0, 0)
        windows = [split_windows(torch.roll(t.view(2, height, width, channels), offset, (1, 2)), splits).flatten(1, 2)
                   for t in (q, k, v)]
        scores = windows[0] @ windows[1].transpose(1, 2) / math.sqrt(channels)
        if shift:
            scores = scores + mask.repeat(2, 1, 1)
        expected = torch.softmax(scores, -1) @ windows[2]
        expected = expected.view(2, splits, splits, height // splits, width // splits, channels)
        expected = expected.permute(0, 1, 3, 2, 4, 5).reshape(2, height, width, channels)
        expected = torch.roll(expected, (-offset[0], -offset[1]), (1, 2)).reshape(2, -1, channels)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def gmflow():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        return FlowEstimator("gmflow")


@pytest.mark.parametrize("size, scale, input_scale", [((64, 96), 2, 1.0), ((64, 96), 1, 1.0), ((64, 96), 3, 1.0),
                                                      ((72, 112), 2, 1.0), ((64, 96), 2, 0.5)])
def test_quarter_resolution_gmflow_equals_resizing_the_full_flow(gmflow, size, scale, input_scale):
    """(72, 112) is padded to 80×112 inside the network; input_scale 0.5 reads every fine pixel (factor 2)."""
    torch.manual_seed(1)
    image1, image2 = torch.rand(1, 3, *size), torch.rand(1, 3, *size)
    full = gmflow(gmflow.resize_input(image1, input_scale), gmflow.resize_input(image2, input_scale))
    expected = resize_flow(full, (size[0] // 2 ** scale, size[1] // 2 ** scale))
    fast = gmflow.at_scale(image1, image2, scale, input_scale)
    torch.testing.assert_close(fast, expected, atol=1e-4 * float(full.abs().max()), rtol=0)


def test_cost_volume_with_a_bin_step_computes_exact_costs_at_its_bins_and_keeps_validity_exact():
    torch.manual_seed(0)
    current, lookup = torch.rand(2, 8, 16, 24), torch.rand(2, 8, 16, 24)
    K = intrinsics_at_scale(torch.tensor([[[0.58 * 96, 0, 48.0], [0, 1.92 * 64, 32.0], [0, 0, 1]]]), 2).repeat(2, 1, 1)
    T = torch.eye(4).repeat(2, 1, 1)
    T[0, :3, 3] = torch.tensor([0.2, -0.05, 0.3])
    T[1] = 0  # missing lookup frame: empty either way
    bins = depth_bin_values(0.5, 5.0, 11)
    exact = build_cost_volume(current, lookup, T, K, bins)
    stepped = build_cost_volume(current, lookup, T, K, bins, bin_step=3)  # bins 0, 3, 6, 9 and 10
    computed = [0, 3, 6, 9, 10]
    valid_everywhere = exact.confidence_mask.bool().expand_as(exact.cost)
    torch.testing.assert_close(stepped.cost[:, computed][valid_everywhere[:, computed]],
                               exact.cost[:, computed][valid_everywhere[:, computed]])
    assert torch.equal(stepped.confidence_mask, exact.confidence_mask) and not stepped.volume[1].any()
    between = stepped.cost[:, 1:3]  # interpolated between bins 0 and 3 where all are valid
    low, high = stepped.cost[:, :1], stepped.cost[:, 3:4]
    inside = (between >= torch.minimum(low, high) - 1e-6) & (between <= torch.maximum(low, high) + 1e-6)
    assert inside[valid_everywhere[:, 1:3]].all()


def test_cost_volume_of_confident_pixels_only_has_the_same_volume():
    torch.manual_seed(0)
    current, lookup = torch.rand(1, 8, 16, 24), torch.rand(1, 8, 16, 24)
    K = intrinsics_at_scale(torch.tensor([[[0.58 * 96, 0, 48.0], [0, 1.92 * 64, 32.0], [0, 0, 1]]]), 2)
    T = torch.eye(4)[None].clone()
    T[0, 2, 3] = -0.8  # forward motion: near bins leave the lookup frame at the image sides
    bins = depth_bin_values(2.0, 60.0, 12)
    exact = build_cost_volume(current, lookup, T, K, bins)
    shortcut = build_cost_volume(current, lookup, T, K, bins, confident_only=True)
    assert 0.1 < exact.confidence_mask.mean() < 0.9
    assert torch.equal(shortcut.volume, exact.volume) and torch.equal(shortcut.confidence_mask, exact.confidence_mask)


def _frames(count: int):
    sequence = SyntheticSequence(seed=5, num_frames=count, height=H, width=W)
    return [sequence.frame(i)["image"] for i in range(count)], sequence.K


def _manydepth2():
    """The same random model every call, batch norms calibrated on the test frames (unsaturated depth)."""
    torch.manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GMFlow with random weights
        model = build_model(ModelConfig(method="manydepth2", height=H, width=W, pretrained=False,
                                        num_depth_bins=16))
    calibrate_batch_norms(model, *_frames(4))
    return model


def test_default_estimator_gives_the_depth_of_the_plain_model_calls():
    """Reference: the model (no folded batch norms, contiguous tensors) called pair by pair with the full-resolution
    GMFlow flow resized to 1/4 by resize_flow, the teacher and pose net run from scratch."""
    images, K = _frames(4)
    reference_model = _manydepth2()
    estimator = DepthEstimator(_manydepth2(), EstimatorConfig(device="cpu", min_translation=0.0), owns_model=True)
    K_tensor = torch.from_numpy(K).float()[None]

    def tensor(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    for index, image in enumerate(images):
        depth = estimator.process(image, K).depth
        if index == 0:
            continue
        current, previous = tensor(image), tensor(images[index - 1])
        with torch.no_grad():
            T = reference_model.relative_pose(current, previous, source_is_before=True)
            flow = resize_flow(reference_model.flow(current, previous), (H // 4, W // 4))
            disp = reference_model.multi_frame_forward(current, previous, T, K_tensor, flow=flow)[("disp", 0)]
        expected = disparity_to_depth(disp)[1][0, 0].numpy()
        assert (np.abs(depth - expected) / expected).max() < DEPTH_RTOL


def test_stage_timer_covers_every_stage_of_a_manydepth2_frame():
    images, K = _frames(2)
    estimator = DepthEstimator(_manydepth2(), EstimatorConfig(device="cpu", min_translation=0.0), owns_model=True)
    estimator.process(images[0], K)
    with StageTimer() as timer:
        result = estimator.process(images[1], K)
    assert set(timer.ms) == set(STAGES) and all(ms > 0 for ms in timer.ms.values())
    assert sum(timer.ms.values()) <= result.timings_ms["total"]
    with StageTimer() as idle:
        pass
    assert not idle.ms


def test_bfloat16_autocast_keeps_the_geometry_in_float32():
    images, K = _frames(3)
    plain = DepthEstimator(_manydepth2(), EstimatorConfig(device="cpu", min_translation=0.0), owns_model=True)
    mixed = DepthEstimator(_manydepth2(), EstimatorConfig(device="cpu", min_translation=0.0, autocast="bfloat16"),
                           owns_model=True)
    for image in images:
        expected, result = plain.process(image, K), mixed.process(image, K)
    assert result.depth.dtype == np.float32 and np.isfinite(result.depth).all()
    np.testing.assert_allclose(result.T_prev_current, expected.T_prev_current, atol=1e-2)


def test_release_static_reference_differs_from_the_motionless_lookup_only_in_the_top_left_corner():
    """The release's unit bug: its splat lands on the 4 top-left pixels of the 1/4 grid, whatever the flow and the
    depth, so skipping both (skip_release_motion) changes the lookup there only (≤ 3 quarter pixels after the
    bilinear upsampling, 12 full-resolution pixels)."""
    torch.manual_seed(3)
    image, reference = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    K = torch.tensor([[[0.58 * 96, 0, 48.0], [0, 1.92 * 64, 32.0], [0, 0, 1]]]).repeat(2, 1, 1)
    T = torch.eye(4).repeat(2, 1, 1)
    T[:, :3, 3] = torch.tensor([0.1, 0.0, -0.5])
    flow = 30 * torch.randn(2, 2, 16, 24)  # large, so that the release marks nearly everything as moving
    depth = 1 + 20 * torch.rand(2, 1, 64, 96)
    static = build_static_reference(image, reference, flow, depth, T, K, mode="release")
    assert static.motion_mask.float().mean() > 0.5 and static.transferred_mask.any()
    changed = (static.lookup - release_lookup_without_motion(reference)).abs().amax((0, 1)) > 1e-6
    rows, columns = changed.nonzero(as_tuple=True)
    assert changed.any() and rows.max() < 12 and columns.max() < 12
