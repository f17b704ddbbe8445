"""Optical flow: GMFlow's official key layout and parameter count, strict loading and its errors, padding, the
matching/upsampling maths on known shifts, and torchvision RAFT with its real weights when cached."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mgdepth_core.models.flow import FlowEstimator, downscale_flow, load_flow_state
from mgdepth_core.models.gmflow import GMFlow, global_matching_flow, merge_windows, split_windows


def official_gmflow_keys() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official single-scale GMFlow (128 channels, 6 blocks, FFN ×4, upsampling ×8),
    derived from its architecture: CNNEncoder with instance norm (no affine), 3 stages of 2 residual blocks
    (64, 96, 128 channels), 1×1 output conv; per block a self-attention layer and a cross-attention + FFN layer;
    flow-propagation q/k projections; the convex-upsampling mask head."""
    keys = {"backbone.conv1.weight": (64, 3, 7, 7)}
    in_channels = 64
    for stage, channels in enumerate((64, 96, 128), start=1):
        for block in range(2):
            prefix = f"backbone.layer{stage}.{block}."
            block_in = in_channels if block == 0 else channels
            keys[prefix + "conv1.weight"] = (channels, block_in, 3, 3)
            keys[prefix + "conv2.weight"] = (channels, channels, 3, 3)
            if block == 0 and (stage > 1):
                keys[prefix + "downsample.0.weight"] = (channels, block_in, 1, 1)
                keys[prefix + "downsample.0.bias"] = (channels,)
        in_channels = channels
    keys["backbone.conv2.weight"] = (128, 128, 1, 1)
    keys["backbone.conv2.bias"] = (128,)
    for layer in range(6):
        for part in ("self_attn", "cross_attn_ffn"):
            prefix = f"transformer.layers.{layer}.{part}."
            for name in ("q_proj", "k_proj", "v_proj", "merge"):
                keys[prefix + name + ".weight"] = (128, 128)
            keys[prefix + "norm1.weight"] = keys[prefix + "norm1.bias"] = (128,)
            if part == "cross_attn_ffn":
                keys[prefix + "mlp.0.weight"] = (1024, 256)
                keys[prefix + "mlp.2.weight"] = (128, 1024)
                keys[prefix + "norm2.weight"] = keys[prefix + "norm2.bias"] = (128,)
    for name in ("q_proj", "k_proj"):
        keys[f"feature_flow_attn.{name}.weight"] = (128, 128)
        keys[f"feature_flow_attn.{name}.bias"] = (128,)
    keys["upsampler.0.weight"] = (256, 130, 3, 3)
    keys["upsampler.0.bias"] = (256,)
    keys["upsampler.2.weight"] = (576, 256, 1, 1)
    keys["upsampler.2.bias"] = (576,)
    return keys


def quiet_estimator(backend: str, **kwargs) -> FlowEstimator:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FlowEstimator(backend, **kwargs)


def test_gmflow_state_dict_matches_the_official_layout_and_parameter_count():
    model = GMFlow()
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == official_gmflow_keys()
    assert sum(p.numel() for p in model.parameters()) == 4_680_288


def test_official_format_checkpoint_loads_strictly_and_reproduces_the_flow(tmp_path: Path):
    torch.manual_seed(0)
    source = GMFlow().eval()
    path = tmp_path / "gmflow_sintel-0c07dcb3.pth"
    torch.save({"model": source.state_dict(), "step": 100, "epoch": 1}, path)
    estimator = FlowEstimator("gmflow", weights=path)
    assert estimator.has_weights
    image1, image2 = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = source(image1, image2)
    assert torch.allclose(estimator(image1, image2), expected, atol=1e-5)


def test_wrong_checkpoints_are_named(tmp_path: Path):
    model = GMFlow()
    raft_path = tmp_path / "raft.pth"
    torch.save(quiet_estimator("raft_small").net.state_dict(), raft_path)
    with pytest.raises(ValueError, match=r"does not match the gmflow network: .*missing keys \(first: backbone"):
        load_flow_state(model, raft_path, "gmflow")
    state = model.state_dict()
    state["upsampler.2.weight"] = torch.zeros(9 * 16, 256, 1, 1)  # a ×4 upsampler
    wrong_shape = tmp_path / "x4.pth"
    torch.save({"model": state}, wrong_shape)
    with pytest.raises(ValueError, match=r"upsampler\.2\.weight: file \(144, 256, 1, 1\) vs network \(576, 256"):
        load_flow_state(model, wrong_shape, "gmflow")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        FlowEstimator("gmflow", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="unknown flow backend"):
        FlowEstimator("pwcnet")


@pytest.mark.parametrize("backend,size", [("gmflow", (37, 53)), ("gmflow", (8, 8)), ("raft_small", (45, 70))])
def test_any_frame_size_is_padded_and_cropped_back(backend, size):
    estimator = quiet_estimator(backend, num_flow_updates=2)
    image1, image2 = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    flow = estimator(image1, image2)
    assert flow.shape == (2, 2, *size) and torch.isfinite(flow).all()
    assert estimator.at_scale(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)).shape == (1, 2, 16, 24)


def test_flow_estimator_stays_frozen_in_eval_mode():
    estimator = quiet_estimator("gmflow")
    torch.nn.Sequential(estimator).train()
    assert not estimator.training and not estimator.net.training
    assert not any(p.requires_grad for p in estimator.parameters())


def test_global_matching_recovers_a_known_integer_shift():
    # Distinct random features; image 1 is image 0 shifted right by 3 and down by 1 (circularly), scaled so the
    # softmax is nearly one-hot.
    torch.manual_seed(1)
    feature0 = torch.randn(1, 64, 12, 16) * 4
    feature1 = torch.roll(feature0, shifts=(1, 3), dims=(2, 3))
    flow = global_matching_flow(feature0, feature1)
    assert torch.allclose(flow[0, 0, 1:-1, 3:-3], torch.full((10, 10), 3.0), atol=1e-3)
    assert torch.allclose(flow[0, 1, 1:-1, 3:-3], torch.full((10, 10), 1.0), atol=1e-3)


def test_convex_upsampling_of_a_constant_flow_is_constant_and_scaled():
    model = GMFlow()
    flow = torch.empty(1, 2, 6, 8)
    flow[:, 0], flow[:, 1] = 1.5, -0.5
    up = model.convex_upsample(flow, torch.randn(1, 128, 6, 8))
    # interior: every 3×3 neighbourhood is constant, so any convex combination gives 8× the flow
    assert up.shape == (1, 2, 48, 64)
    assert torch.allclose(up[0, 0, 8:-8, 8:-8], torch.full((32, 48), 12.0), atol=1e-5)
    assert torch.allclose(up[0, 1, 8:-8, 8:-8], torch.full((32, 48), -4.0), atol=1e-5)


def test_window_split_and_merge_are_inverse():
    x = torch.randn(2, 8, 12, 5)
    windows = split_windows(x, 2)
    assert windows.shape == (8, 4, 6, 5)
    assert torch.equal(windows[1], x[0, :4, 6:])  # second window of the first image: top-right quarter
    assert torch.equal(merge_windows(windows, 2), x)


def test_downscale_flow_divides_by_the_factor():
    flow = torch.full((1, 2, 32, 48), 8.0)
    assert torch.allclose(downscale_flow(flow, 2), torch.full((1, 2, 8, 12), 2.0))


def test_flow_on_downsized_frames_is_returned_in_quarter_resolution_pixels():
    estimator = quiet_estimator("gmflow")
    calls = []

    def constant_flow(image1, image2, features1=None, features2=None, downsample=1):  # 3 px right, 1 px down
        calls.append(tuple(image1.shape[-2:]))  # at input size, returned at 1/downsample in pixels of that grid
        flow = torch.zeros(image1.shape[0], 2, image1.shape[-2] // downsample, image1.shape[-1] // downsample)
        flow[:, 0], flow[:, 1] = 3.0 / downsample, 1.0 / downsample
        return flow

    estimator.forward = constant_flow
    image = torch.rand(1, 3, 64, 96)
    quarter = estimator.at_scale(image, image, 2, input_scale=0.5)
    assert calls == [(32, 48)] and quarter.shape == (1, 2, 16, 24)
    # 3 px at half resolution = 6 px at full = 1.5 px at quarter resolution
    assert torch.allclose(quarter[:, 0], torch.full((1, 16, 24), 1.5)) and torch.allclose(quarter[:, 1],
                                                                                         torch.full((1, 16, 24), 0.5))


def test_raft_small_from_the_torch_hub_cache_recovers_a_known_shift():
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    if not cached.is_file():
        pytest.skip(f"torchvision's RAFT-small weights are not in the torch hub cache ({cached})")
    estimator = FlowEstimator("raft_small")
    assert estimator.has_weights
    torch.manual_seed(0)
    texture = F.interpolate(torch.rand(1, 3, 40, 56), size=(140, 196), mode="bilinear", align_corners=False)
    image1 = texture[..., 6:134, 10:186]
    image2 = texture[..., 4:132, 5:181]  # content moves +5 px in x and +2 px in y from image1 to image2
    flow = estimator(image1, image2)[..., 16:-16, 16:-16]
    assert abs(flow[:, 0].median().item() - 5.0) < 0.5
    assert abs(flow[:, 1].median().item() - 2.0) < 0.5


def test_gmflow_features_passed_back_in_give_the_same_flow_on_padded_frames():
    estimator = quiet_estimator("gmflow")
    torch.manual_seed(5)
    image1, image2 = torch.rand(1, 3, 50, 70), torch.rand(1, 3, 50, 70)  # padded to 64×80 inside
    plain = estimator(image1, image2)
    features1, features2 = estimator.encode(image1), estimator.encode(image2)
    assert features1.shape == (1, 128, 8, 10)
    # features agree to ~4e-6 with the batched pass; random-weight matching amplifies that to ~1e-3 px of ~40 px
    assert torch.allclose(estimator(image1, image2, features1=features1), plain, atol=5e-3)
    assert torch.allclose(estimator(image1, image2, features1, features2), plain, atol=5e-3)
    raft = quiet_estimator("raft_small")
    assert not raft.reuses_features
    with pytest.raises(ValueError, match="cannot be reused"):
        raft.encode(image1)
