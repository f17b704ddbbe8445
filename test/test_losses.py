"""Losses on hand-checkable numbers."""

import torch

from mgdepth_core import losses


def test_ssim_identical_images_is_zero_and_constant_shift_is_hand_computed():
    image = torch.rand(1, 3, 8, 8)
    assert losses.ssim_dissimilarity(image, image).abs().max() < 1e-6
    a = torch.full((1, 1, 5, 5), 0.2)
    b = torch.full((1, 1, 5, 5), 0.6)
    # Constant patches: sigma terms vanish, SSIM = (2·0.2·0.6 + c1)/(0.2² + 0.6² + c1).
    c1 = 0.01 ** 2
    ssim = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    expected = (1 - ssim) / 2
    assert torch.allclose(losses.ssim_dissimilarity(a, b), torch.full_like(a, expected), atol=1e-4)
    pe = losses.photometric_error(a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1))
    assert torch.allclose(pe, torch.full_like(a, 0.85 * expected + 0.15 * 0.4), atol=1e-4)


def test_automask_keeps_pixels_where_reprojection_beats_identity():
    reprojection = [torch.tensor([[[[0.1, 0.5]]]]), torch.tensor([[[[0.3, 0.4]]]])]
    identity = [torch.tensor([[[[0.2, 0.2]]]]), torch.tensor([[[[0.25, 0.3]]]])]
    value, mask = losses.min_reprojection_with_automask(reprojection, identity, noise=0.0)
    assert torch.allclose(value, torch.tensor([[[[0.1, 0.2]]]]))
    assert torch.equal(mask, torch.tensor([[[[1.0, 0.0]]]]))
    assert abs(losses.masked_mean(value, mask).item() - 0.1) < 1e-6
    assert losses.masked_mean(value, torch.zeros_like(mask)).item() == 0.0


def test_smoothness_is_zero_for_constant_disparity_and_discounted_at_edges():
    image = torch.zeros(1, 3, 4, 6)
    assert losses.edge_aware_smoothness(torch.ones(1, 1, 4, 6), image) == 0
    disp = torch.ones(1, 1, 4, 6)
    disp[..., 3:] = 3.0  # a step in disparity
    flat = losses.edge_aware_smoothness(disp, image)
    edge_image = image.clone()
    edge_image[..., 3:] = 1.0  # an image edge at the same place
    assert losses.edge_aware_smoothness(disp, edge_image) < flat * 0.5


def test_consistency_and_geometric_terms():
    depth = torch.tensor([[[[2.0, 4.0]]]], requires_grad=True)
    teacher = torch.tensor([[[[3.0, 4.0]]]], requires_grad=True)
    loss = losses.depth_consistency(depth, teacher, torch.ones(1, 1, 1, 2))
    loss.backward()
    assert loss.item() == 0.5 and teacher.grad is None
    geometric = losses.geometric_consistency(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 3.0]))
    assert torch.allclose(geometric, torch.tensor([0.5, 0.0]), atol=1e-6)
