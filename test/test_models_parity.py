"""Parity with the original Manydepth (PyPI ``manydepth==1.0.0``, test oracle only) through a released-format
weights folder: same random weights, same inputs → same pose, teacher depth and multi-frame depth."""

import pytest
import torch
from original_manydepth import save_original_networks

from mgdepth_core.geometry import disparity_to_depth
from mgdepth_core.models.weights import load_weights

original = pytest.importorskip("manydepth.networks", reason="the original manydepth package (dev extra) is absent")
original_layers = pytest.importorskip("manydepth.layers")

H, W, BINS = 64, 192, 16
MIN_BIN, MAX_BIN = 0.7, 12.0


def randomise_batch_norm(network: torch.nn.Module) -> None:
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)


@pytest.fixture(scope="module")
def released_folder(tmp_path_factory):
    """The original networks with random weights (BatchNorm statistics too), saved as the original trainer saves
    them."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("released")
    nets = save_original_networks(folder, H, W, MIN_BIN, MAX_BIN, num_depth_bins=BINS, prepare=randomise_batch_norm)
    return folder, nets


def test_released_folder_gives_the_original_depth(released_folder):
    folder, nets = released_folder
    model = load_weights(folder)
    assert (model.config.height, model.config.width, model.config.num_depth_bins) == (H, W, BINS)
    assert float(model.min_depth_bin) == pytest.approx(MIN_BIN) and float(model.max_depth_bin) == pytest.approx(MAX_BIN)

    torch.manual_seed(1)
    current = torch.rand(2, 3, H, W)
    previous = (current + 0.1 * torch.randn(2, 3, H, W)).clamp(0, 1)
    K = torch.tensor([[0.58 * W, 0, 0.5 * W, 0], [0, 1.92 * H, 0.5 * H, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    K = K.repeat(2, 1, 1)
    K_quarter = K.clone()
    K_quarter[:, :2] /= 4
    with torch.no_grad():
        axisangle, translation = nets["pose"]([nets["pose_encoder"](torch.cat([previous, current], 1))])
        T_original = original_layers.transformation_from_parameters(axisangle[:, 0], translation[:, 0], invert=True)
        T_original[:, :3, 3] += torch.tensor([0.05, 0.0, 0.2])  # random nets move little: make the volume matter
        T_original[1] = 0  # sample 1: missing lookup frame, empty cost volume
        features, lowest_cost, confidence = nets["encoder"](current, previous[:, None], T_original[:, None],
                                                            K_quarter, torch.linalg.pinv(K_quarter), MIN_BIN, MAX_BIN)
        disp_original = nets["depth"](features)[("disp", 0)]
        teacher_original = nets["mono_depth"](nets["mono_encoder"](current))[("disp", 0)]

        T_ours = model.relative_pose(current, previous, source_is_before=True)
        T_ours[:, :3, 3] += torch.tensor([0.05, 0.0, 0.2])
        T_ours[1] = 0
        ours = model.multi_frame_forward(current, previous, T_ours, K[:, :3, :3])
        teacher_ours = model.teacher_forward(current)[("disp", 0)]

    torch.testing.assert_close(T_ours, T_original, atol=1e-6, rtol=0)
    assert 0.2 < confidence[0].mean() < 1.0 and confidence[1].sum() == 0  # the test exercises both cases
    torch.testing.assert_close(ours["confidence_mask"][:, 0], confidence, atol=0, rtol=0)
    torch.testing.assert_close(ours["lowest_cost"][:, 0], lowest_cost, atol=1e-5, rtol=1e-5)
    for disp_ours, disp_reference in ((ours[("disp", 0)], disp_original), (teacher_ours, teacher_original)):
        depth_ours = disparity_to_depth(disp_ours)[1]
        depth_reference = disparity_to_depth(disp_reference)[1]
        assert (depth_ours - depth_reference).abs().max() < 1e-4
