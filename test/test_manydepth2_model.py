"""Manydepth2Model: the multi_frame_forward contract (epoch gate, un-augmented frames for the flow, cached flow,
teacher depth), Manydepth2-NF, gradients, and weights folders (ours and the official layout)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.weights import WeightsError, load_weights, save_weights

HEIGHT, WIDTH = 64, 96


class RecordingFlow(nn.Module):
    """Stands in for the FlowEstimator: a known constant flow, and a record of the frames it was given."""

    def __init__(self, flow_px: tuple[float, float]):
        super().__init__()
        self.flow_px = flow_px
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    reuses_features = False

    def at_scale(self, image1: torch.Tensor, image2: torch.Tensor, scale: int = 2, input_scale: float = 1.0,
                 features1: torch.Tensor | None = None, features2: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((image1, image2))
        flow = torch.zeros(image1.shape[0], 2, image1.shape[-2] // 2 ** scale, image1.shape[-1] // 2 ** scale)
        flow[:, 0], flow[:, 1] = self.flow_px
        return flow


def model_config(**overrides) -> ModelConfig:
    fields = dict(method="manydepth2", height=HEIGHT, width=WIDTH, pretrained=False, flow="none",
                  num_depth_bins=16)
    fields.update(overrides)
    return ModelConfig(**fields)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(model_config()).eval()


@pytest.fixture()
def inputs():
    torch.manual_seed(1)
    K = torch.tensor([[0.58 * WIDTH, 0, WIDTH / 2], [0, 1.92 * HEIGHT, HEIGHT / 2], [0, 0, 1]]).expand(2, 3, 3)
    T = torch.eye(4).repeat(2, 1, 1)
    T[:, 2, 3] = -0.5  # the lookup camera is 0.5 m behind the current one
    return {"image": torch.rand(2, 3, HEIGHT, WIDTH), "lookup": torch.rand(2, 3, HEIGHT, WIDTH), "T": T, "K": K,
            "teacher_depth": torch.full((2, 1, HEIGHT, WIDTH), 8.0)}


def forward(model, inputs, **context):
    with torch.no_grad():
        return model.multi_frame_forward(inputs["image"], inputs["lookup"], inputs["T"], inputs["K"], **context)


def same_outputs(a: dict, b: dict) -> bool:
    return all(torch.equal(a[key], b[key]) for key in [("disp", s) for s in range(4)] + ["lowest_cost"])


def test_flow_variant_uses_the_static_reference_from_flow_start_epoch_and_raw_frames(model, inputs):
    model.flow = RecordingFlow((30.0, 0.0))  # 30 px at 1/4 res: everything moves
    try:
        raw_image, raw_lookup = torch.rand_like(inputs["image"]), torch.rand_like(inputs["lookup"])
        early = forward(model, inputs, teacher_depth=inputs["teacher_depth"], raw_image=raw_image,
                        raw_lookup=raw_lookup, epoch=model.config.flow_start_epoch - 1)
        assert "lookup_image" not in early and not model.flow.calls
        late = forward(model, inputs, teacher_depth=inputs["teacher_depth"], raw_image=raw_image,
                       raw_lookup=raw_lookup, epoch=model.config.flow_start_epoch)
        assert len(model.flow.calls) == 1
        assert model.flow.calls[0][0] is raw_image and model.flow.calls[0][1] is raw_lookup
        assert late["motion_mask"].shape == (2, 1, HEIGHT, WIDTH) and bool(late["motion_mask"].all())
        assert not torch.equal(late["lookup_image"], inputs["lookup"])
        assert not torch.equal(late["lowest_cost"], early["lowest_cost"])
        # test time (no epoch) is always active; a cached flow replaces the flow network
        cached = torch.zeros(2, 2, HEIGHT // 4, WIDTH // 4)
        cached[:, 0] = 30.0
        from_cache = forward(model, inputs, teacher_depth=inputs["teacher_depth"], raw_image=raw_image,
                             raw_lookup=raw_lookup, flow=cached)
        assert len(model.flow.calls) == 1
        assert same_outputs(from_cache, late)
        # a zero pose (missing lookup, single-frame fallback) means an empty volume: no flow, no static reference
        empty = forward(model, {**inputs, "T": torch.zeros(2, 4, 4)}, teacher_depth=inputs["teacher_depth"])
        assert "lookup_image" not in empty and len(model.flow.calls) == 1
    finally:
        model.flow = None


def test_static_reference_leaves_the_lookup_alone_when_nothing_moves(model, inputs):
    """With the optical flow equal to the rigid flow nothing is masked: the lookup is the previous frame itself
    (full resolution, the default), or blended with its own down/up-sampled copy in the earlier quarter-resolution
    construction (α = 0.25)."""
    from mgdepth_core.geometry import rigid_flow

    model.flow = RecordingFlow((0.0, 0.0))
    config = model.config
    try:
        depth = inputs["teacher_depth"]
        flow = rigid_flow(depth, inputs["T"], inputs["K"])
        out = forward(model, inputs, teacher_depth=depth, flow=flow)
        assert not out["motion_mask"].any()
        assert torch.equal(out["lookup_image"], inputs["lookup"])
        model.config = dataclasses.replace(config, static_reference_resolution="quarter", static_reference_blend=0.25)
        out = forward(model, inputs, teacher_depth=depth, flow=flow)
        assert not out["motion_mask"].any()
        blurred = nn.functional.interpolate(
            nn.functional.interpolate(inputs["lookup"], size=(HEIGHT // 4, WIDTH // 4), mode="bilinear"),
            size=(HEIGHT, WIDTH), mode="bilinear")
        assert torch.allclose(out["lookup_image"], 0.75 * inputs["lookup"] + 0.25 * blurred, atol=1e-6)
    finally:
        model.flow = None
        model.config = config


def test_manydepth2_nf_runs_without_flow_and_the_teacher_fills_in_missing_depth(model, inputs):
    out = forward(model, inputs)
    assert "lookup_image" not in out
    for scale in range(4):
        assert out[("disp", scale)].shape == (2, 1, HEIGHT // 2 ** scale, WIDTH // 2 ** scale)
    assert out["lowest_cost"].shape == out["confidence_mask"].shape == (2, 1, HEIGHT // 4, WIDTH // 4)
    with pytest.raises(RuntimeError, match="no optical flow"):
        model.quarter_flow(inputs["image"], inputs["lookup"])
    # streaming: the lookup's stage-1 features, as the previous frame returned them, replace the lookup image
    assert model.accepts_lookup_features
    previous = forward(model, {**inputs, "image": inputs["lookup"]})
    reused = forward(model, {**inputs, "lookup": None}, lookup_features=previous["matching_features"])
    assert same_outputs(reused, out)


def test_student_gradients_reach_encoder_and_decoder_not_the_flow(inputs):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(model_config(flow="gmflow")).train()
    out = model.multi_frame_forward(inputs["image"], inputs["lookup"], inputs["T"], inputs["K"],
                                    teacher_depth=inputs["teacher_depth"], epoch=10)
    out[("disp", 0)].mean().backward()
    assert model.encoder.reduce_conv[0].weight.grad.abs().sum() > 0
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
    assert model.depth.convs["dispConvScale0"].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.flow.parameters())
    assert not model.flow.training
    assert not any(key.startswith("flow.") for key in model.state_dict())


@pytest.mark.slow
def test_weights_folder_round_trip_and_official_layout(model, inputs, tmp_path: Path):
    folder = save_weights(model, tmp_path / "ours")
    assert sorted(p.name for p in folder.iterdir()) == ["depth.pth", "encoder.pth", "mgdepth.yaml", "mono_depth.pth",
                                                       "mono_encoder.pth", "pose.pth", "pose_encoder.pth"]
    depth_file = torch.load(folder / "depth.pth")
    assert "convs.36.conv_se.weight" in depth_file and "decoder.3.conv_se.weight" in depth_file
    loaded = load_weights(folder)
    assert loaded.config.static_reference == "paper" and loaded.config.flow == "none"
    assert same_outputs(forward(loaded, inputs), forward(model, inputs))

    # An official folder: no mgdepth.yaml, decoder files with one half only; read off the tensors.
    (folder / "mgdepth.yaml").unlink()
    torch.save({k: v for k, v in depth_file.items() if k.startswith("decoder.")}, folder / "depth.pth")
    encoder = torch.load(folder / "encoder.pth")
    encoder["backprojector.id_coords"] = torch.zeros(2, 16, 24)  # grids the original stores; skipped
    torch.save(encoder, folder / "encoder.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = load_weights(folder)
    assert official.config.method == "manydepth2" and official.config.static_reference == "release"
    assert official.config.num_depth_bins == 16
    official.flow = None
    assert same_outputs(forward(official, inputs), forward(model, inputs))

    broken = torch.load(folder / "mono_depth.pth")
    broken["convs.18.conv_se.weight"] = broken["convs.18.conv_se.weight"][:32]
    torch.save(broken, folder / "mono_depth.pth")
    with pytest.raises((WeightsError, ValueError), match="18.conv_se.weight"):
        load_weights(folder, config=model_config())


def test_streaming_reuses_the_previous_frames_gmflow_features_and_gives_the_same_depth():
    """The DepthEstimator hands each frame's GMFlow backbone features to the next pair: one backbone pass per
    frame instead of two, and depth equal to the model run on each pair from scratch."""
    from mgdepth_core.data.synthetic import SyntheticSequence
    from mgdepth_core.geometry import disparity_to_depth
    from mgdepth_core.inference import DepthEstimator, EstimatorConfig

    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GMFlow with random weights
        gmflow_model = build_model(model_config(flow="gmflow")).eval()
    backbone_images = []
    gmflow_model.flow.net.backbone.register_forward_hook(lambda m, args, out: backbone_images.append(len(args[0])))
    sequence = SyntheticSequence(seed=11, num_frames=4, height=HEIGHT, width=WIDTH)
    frames = [sequence.frame(i)["image"] for i in range(4)]
    estimator = DepthEstimator(gmflow_model, EstimatorConfig(min_translation=0.0, device="cpu"))
    streamed = []
    for index, frame in enumerate(frames):
        before = sum(backbone_images)
        result = estimator.process(frame, sequence.K)
        assert result.multi_frame == (index > 0)
        streamed.append((result.depth, sum(backbone_images) - before))
    assert [images for _, images in streamed] == [0, 2, 1, 1]  # frames 2 and 3 encode only themselves

    def tensor(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    K = torch.from_numpy(sequence.K).float()[None]
    with torch.no_grad():
        for index in range(1, 4):
            current, previous = tensor(frames[index]), tensor(frames[index - 1])
            T = gmflow_model.relative_pose(current, previous, source_is_before=True)
            disp = gmflow_model.multi_frame_forward(current, previous, T, K)[("disp", 0)]
            depth = disparity_to_depth(disp, gmflow_model.config.min_depth, gmflow_model.config.max_depth)[1]
            assert torch.allclose(torch.from_numpy(streamed[index][0]), depth[0, 0], rtol=1e-4, atol=1e-5)
