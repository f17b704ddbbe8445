"""Manydepth networks: shapes, official key names, the cost volume on a scene of known depth, ImageNet init."""

import os

import pytest
import torch
import torchvision

from mgdepth_core.geometry import intrinsics_at_scale, pixel_grid, reproject, sample
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.cost_volume import build_cost_volume, depth_bin_values
from mgdepth_core.models.manydepth import ManydepthModel
from mgdepth_core.models.resnet import IMAGENET_WEIGHTS, build_resnet, fold_batch_norms

H, W = 64, 192


def small_model(**overrides) -> ManydepthModel:
    torch.manual_seed(0)
    config = ModelConfig(method="manydepth", height=H, width=W, pretrained=False, num_depth_bins=8, **overrides)
    return build_model(config).eval()


def intrinsics(height: int, width: int, batch: int = 1) -> torch.Tensor:
    K = torch.tensor([[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1.0]])
    return K.repeat(batch, 1, 1)


def test_forward_shapes_and_official_key_names():
    model = small_model()
    image, lookup = torch.rand(2, 3, H, W), torch.rand(2, 3, H, W)
    K = intrinsics(H, W, 2)
    with torch.no_grad():
        T = model.relative_pose(image, lookup, source_is_before=True)
        student = model.multi_frame_forward(image, lookup, T, K)
        teacher = model.teacher_forward(image)
    for s in range(4):
        assert student[("disp", s)].shape == (2, 1, H // 2 ** s, W // 2 ** s)
        assert teacher[("disp", s)].shape == (2, 1, H // 2 ** s, W // 2 ** s)
        assert student[("disp", s)].min() > 0 and student[("disp", s)].max() < 1
    for key in ("lowest_cost", "confidence_mask", "cost_volume_depth"):
        assert student[key].shape == (2, 1, H // 4, W // 4)
    assert student["matching_features"].shape == (2, 64, H // 4, W // 4)
    torch.testing.assert_close(student["lowest_cost"], 1 / student["cost_volume_depth"])
    keys = model.state_dict().keys()
    for key in ("encoder.layer0.0.weight", "encoder.layer0.1.running_var", "encoder.layer1.1.0.conv1.weight",
                "encoder.prematching_conv.0.weight", "encoder.reduce_conv.0.weight", "depth.decoder.0.conv.conv.weight",
                "depth.decoder.13.conv.bias", "mono_encoder.encoder.fc.weight", "pose.net.3.weight"):
        assert key in keys
    assert model.pose_encoder.encoder.conv1.weight.shape[1] == 6
    assert not any("backproject" in key or "pix_coords" in key for key in keys)


def test_pose_order_and_inversion():
    model = small_model()
    a, b = torch.rand(1, 3, H, W), torch.rand(1, 3, H, W)
    with torch.no_grad():
        T_b_a_before = model.relative_pose(a, b, source_is_before=True)  # net sees [b, a], result inverted
        T_a_b_after = model.relative_pose(b, a, source_is_before=False)  # net sees [b, a], not inverted
    torch.testing.assert_close(T_b_a_before @ T_a_b_after, torch.eye(4)[None], atol=1e-6, rtol=0)


def smooth_features(channels: int, height: int, width: int) -> torch.Tensor:
    torch.manual_seed(1)
    coarse = torch.randn(1, channels, height // 4, width // 4)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)


@pytest.mark.parametrize("chunk_elements", [16 * 100, 1 << 24])
def test_cost_volume_finds_the_true_depth_of_a_plane(chunk_elements):
    h, w = 48, 160
    K = intrinsics_at_scale(intrinsics(192, 640), 2)
    T = torch.eye(4)[None]
    T[0, 0, 3] = 0.15  # the lookup camera sits 0.15 m to the side: 14 px disparity at 1 m
    bins = depth_bin_values(1.0, 8.0, 15)  # 1.0, 1.5, ..., 8.0
    true_depth = 4.0
    lookup = smooth_features(16, h, w)
    pixels, _ = reproject(torch.full((1, 1, h, w), true_depth), T, K)
    # A little noise: like the original, an exactly zero cost counts as "no valid match".
    current = sample(lookup, pixels, padding_mode="zeros") + 0.01 * torch.randn(1, 16, h, w)
    volume = build_cost_volume(current, lookup, T, K, bins, chunk_elements=chunk_elements)
    confident = volume.confidence_mask.bool()
    assert confident.float().mean() > 0.6
    assert torch.all(volume.best_depth[confident] == true_depth)
    # Every hypothesis of a confident pixel is valid; elsewhere the volume is zero.
    assert torch.all(volume.volume.permute(0, 2, 3, 1)[confident[:, 0]] > 0)
    assert torch.all(volume.volume.permute(0, 2, 3, 1)[~confident[:, 0]] == 0)
    # A pixel whose far-left hypotheses leave the lookup image is not confident.
    u = pixel_grid(h, w)[0]
    assert not confident[0, 0][:, u[0] >= w - 12].any()


def test_zero_pose_gives_an_empty_volume_for_that_sample_only():
    h, w = 24, 80
    K = intrinsics_at_scale(intrinsics(96, 320, 2), 2)
    T = torch.eye(4).repeat(2, 1, 1)
    T[:, 0, 3] = 0.2
    T[1] = 0
    features = smooth_features(8, h, w).repeat(2, 1, 1, 1)
    volume = build_cost_volume(features + 0.1, features, T, K, depth_bin_values(1.0, 5.0, 6))
    assert volume.volume[1].abs().sum() == 0 and volume.confidence_mask[1].sum() == 0
    assert volume.volume[0].abs().sum() > 0 and volume.confidence_mask[0].sum() > 0


def test_depth_bins_linear_and_inverse():
    torch.testing.assert_close(depth_bin_values(1.0, 4.0, 4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(depth_bin_values(1.0, 4.0, 4, "inverse"), 1 / torch.tensor([1.0, 0.75, 0.5, 0.25]))


def test_student_ignores_lookup_when_pose_is_zero():
    model = small_model()
    image = torch.rand(1, 3, H, W)
    K = intrinsics(H, W)
    with torch.no_grad():
        a = model.multi_frame_forward(image, torch.rand(1, 3, H, W), torch.zeros(1, 4, 4), K)
        b = model.multi_frame_forward(image, torch.rand(1, 3, H, W), torch.zeros(1, 4, 4), K)
    torch.testing.assert_close(a[("disp", 0)], b[("disp", 0)], atol=0, rtol=0)
    assert a["confidence_mask"].sum() == 0


def test_cost_volume_receives_no_gradient_but_features_do():
    model = small_model()
    model.train()
    image = torch.rand(1, 3, H, W)
    T = torch.eye(4)[None]
    T[0, 0, 3] = 0.1
    out = model.multi_frame_forward(image, torch.rand(1, 3, H, W), T, intrinsics(H, W))
    out[("disp", 0)].mean().backward()
    assert model.encoder.layer0[0].weight.grad.abs().sum() > 0
    assert model.encoder.prematching_conv[0].weight.grad is None


def test_imagenet_weights_come_from_the_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    random_init = build_resnet(18, pretrained=True, num_input_images=2)  # nothing cached: random, no download
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    os.makedirs(tmp_path / "checkpoints")
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / os.path.basename(IMAGENET_WEIGHTS[18].url))
    pose_encoder = build_resnet(18, pretrained=True, num_input_images=2)
    torch.testing.assert_close(pose_encoder.conv1.weight, torch.cat([reference.conv1.weight] * 2, 1) / 2)
    torch.testing.assert_close(pose_encoder.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert not torch.equal(random_init.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)


def test_resnet50_student_and_resolution_check():
    model = small_model(num_layers=50)
    assert model.encoder.reduce_conv[0].weight.shape == (256, 256 + 8, 3, 3)
    with torch.no_grad():
        out = model.multi_frame_forward(torch.rand(1, 3, H, W), torch.rand(1, 3, H, W), torch.eye(4)[None],
                                        intrinsics(H, W))
    assert out[("disp", 0)].shape == (1, 1, H, W)
    with pytest.raises(ValueError, match="multiple of 32"):
        ManydepthModel(ModelConfig(method="manydepth", height=100, width=W, pretrained=False))


def test_folding_batch_norms_keeps_every_output():
    model = small_model()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    folded = small_model()
    folded.load_state_dict(model.state_dict())
    assert fold_batch_norms(folded) == 60  # 20 per ResNet-18 (conv1, 16 in blocks, 3 downsamples)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    image, lookup = torch.rand(1, 3, H, W), torch.rand(1, 3, H, W)
    K = intrinsics(H, W)
    with torch.no_grad():
        T = model.relative_pose(image, lookup, True)
        torch.testing.assert_close(folded.relative_pose(image, lookup, True), T, atol=1e-6, rtol=0)
        for net in (model, folded):
            net.outputs = (net.multi_frame_forward(image, lookup, T, K), net.teacher_forward(image))
    for ours, reference in zip(folded.outputs, model.outputs):
        torch.testing.assert_close(ours[("disp", 0)], reference[("disp", 0)], atol=1e-5, rtol=0)
