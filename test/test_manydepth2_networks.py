"""Manydepth2 networks: parameter counts of the reference, official key names, HRNet feature shapes, the HR
decoder's duplicated key layout, and the ImageNet HRNet loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from mgdepth_core.models.hr_decoder import HRDepthDecoder, with_both_halves
from mgdepth_core.models.hrnet import HRNetEncoder, HRNetEncoderMatching


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_reference():
    assert count(HRNetEncoder()) == 9_562_260
    assert count(HRNetEncoderMatching()) == 10_374_564
    assert count(HRDepthDecoder()) == 1_334_235


def test_encoder_keys_are_the_official_timm_names():
    keys = set(HRNetEncoderMatching().state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "conv2.weight", "bn2.weight", "layer1.0.conv1.weight",
                "transition1.0.0.weight", "transition1.1.0.0.weight", "stage2.0.branches.0.0.conv1.weight",
                "stage2.0.fuse_layers.0.1.0.weight", "stage4.2.fuse_layers.3.0.0.0.weight",
                "prematching_conv.0.weight", "reduce_conv.0.weight"):
        assert key in keys, key
    assert not any(key.startswith(("incre_modules", "final_layer", "classifier")) for key in keys)
    assert HRNetEncoderMatching().reduce_conv[0].weight.shape == (256, 256 + 96, 3, 3)


def test_hrnet_feature_maps_have_the_documented_shapes():
    encoder = HRNetEncoder().eval()
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, 64, 32, 48), (2, 118, 16, 24), (2, 108, 8, 12),
                                                   (2, 144, 4, 6), (2, 144, 2, 3)]
    with torch.no_grad():
        feat0, stem, stage1 = HRNetEncoderMatching().eval().matching_features(torch.rand(1, 3, 64, 96))
    assert (feat0.shape, stem.shape, stage1.shape) == ((1, 64, 32, 48), (1, 64, 16, 24), (1, 256, 16, 24))


def test_matching_encoder_ignores_a_missing_lookup_frame():
    """A zero pose marks a missing lookup: the volume is empty, so the lookup content cannot matter."""
    torch.manual_seed(0)
    encoder = HRNetEncoderMatching(num_depth_bins=8).eval()
    image = torch.rand(1, 3, 64, 96)
    K = torch.tensor([[[12.0, 0, 12], [0, 12, 8], [0, 0, 1]]])
    bins = torch.linspace(1, 10, 8)
    with torch.no_grad():
        a = encoder(image, torch.rand(1, 256, 16, 24), torch.zeros(1, 4, 4), K, bins)
        b = encoder(image, torch.rand(1, 256, 16, 24), torch.zeros(1, 4, 4), K, bins)
        c = encoder(image, torch.rand(1, 256, 16, 24), torch.eye(4)[None], K, bins)
    assert all(torch.equal(x, y) for x, y in zip(a["features"], b["features"]))
    assert a["confidence_mask"].sum() == 0
    assert not torch.equal(a["features"][-1], c["features"][-1])


def test_hr_decoder_outputs_four_disparity_scales():
    decoder = HRDepthDecoder().eval()
    features = [torch.rand(1, c, 64 // s, 96 // s) for c, s in zip((64, 118, 108, 144, 144), (2, 4, 8, 16, 32))]
    with torch.no_grad():
        outputs = decoder(features)
    for scale in range(4):
        disp = outputs[("disp", scale)]
        assert disp.shape == (1, 1, 64 // 2 ** scale, 96 // 2 ** scale)
        assert disp.min() > 0 and disp.max() < 1


def test_hr_decoder_writes_both_halves_and_loads_either(tmp_path: Path):
    torch.manual_seed(0)
    source = HRDepthDecoder()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(torch.randn_like(parameter))
    state = source.state_dict()
    assert state["convs.72.EfficientNonLocalAttention.gamma"].shape == (1,)
    assert torch.equal(state["convs.72.ca.fc.0.weight"], state["decoder.2.ca.fc.0.weight"])
    assert torch.equal(state["convs.dispConvScale3.conv.weight"], state["decoder.9.conv.weight"])
    assert "convs.up_x9_0.conv.conv.weight" in state and "convs.36.conv_se.bias" in state
    features = [torch.rand(1, c, 64 // s, 96 // s) for c, s in zip((64, 118, 108, 144, 144), (2, 4, 8, 16, 32))]
    with torch.no_grad():
        expected = source(features)[("disp", 0)]
    for half in ("convs.", "decoder."):
        target = HRDepthDecoder()
        target.load_state_dict({k: v for k, v in state.items() if k.startswith(half)})
        with torch.no_grad():
            assert torch.equal(target(features)[("disp", 0)], expected)
    conflicting = dict(state)
    conflicting["decoder.5.conv_se.bias"] = conflicting["decoder.5.conv_se.bias"] + 1
    with pytest.raises(ValueError, match=r"disagree: convs\.9\.conv_se\.bias vs decoder\.5\.conv_se\.bias"):
        with_both_halves(conflicting)


def test_imagenet_hrnet_weights_load_from_a_timm_file(tmp_path: Path):
    torch.manual_seed(0)
    timm_model = timm.create_model("hrnet_w18", pretrained=False)
    path = tmp_path / "hrnet_w18.pth"
    torch.save(timm_model.state_dict(), path)  # timm's full classification checkpoint, head included
    encoder = HRNetEncoder(pretrained=True, weights_path=path)
    assert torch.equal(encoder.stage4[2].fuse_layers[0][3][0].weight, timm_model.stage4[2].fuse_layers[0][3][0].weight)
    assert torch.equal(encoder.bn2.running_var, timm_model.bn2.running_var)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        HRNetEncoder(pretrained=True, weights_path=tmp_path / "nothing.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="not an HRNet-W18 checkpoint: missing bn1.weight"):
        HRNetEncoder(pretrained=True, weights_path=tmp_path / "partial.pth")
