"""Geometry: a warp with known depth and pose reproduces the target image; splatting and poses are exact."""

import math

import torch

from mgdepth_core import geometry


def _scene(height=48, width=64):
    """A textured fronto-parallel plane at 5 m seen by a camera with known K."""
    K = torch.tensor([[[50.0, 0, width / 2 - 0.5], [0, 50.0, height / 2 - 0.5], [0, 0, 1]]])
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    image = torch.stack([0.5 + 0.4 * torch.sin(u / 3), 0.5 + 0.4 * torch.cos(v / 4),
                         0.5 + 0.2 * torch.sin((u + v) / 5)]).unsqueeze(0)
    depth = torch.full((1, 1, height, width), 5.0)
    return image, depth, K


def test_pose_roundtrip_and_inverse():
    axisangle = torch.tensor([[0.01, -0.2, 0.05]])
    translation = torch.tensor([[0.3, -0.1, 1.2]])
    T = geometry.pose_from_axisangle_translation(axisangle, translation)
    T_inv = geometry.pose_from_axisangle_translation(axisangle, translation, invert=True)
    assert torch.allclose(T @ T_inv, torch.eye(4).unsqueeze(0), atol=1e-6)
    assert torch.allclose(geometry.invert_pose(T), T_inv, atol=1e-6)
    back_axis, back_t = geometry.axisangle_translation_from_pose(T)
    assert torch.allclose(back_axis, axisangle, atol=1e-5) and torch.allclose(back_t, translation)
    # A rotation of 90° about y maps the optical axis z onto x.
    R = geometry.pose_from_axisangle_translation(torch.tensor([[0.0, math.pi / 2, 0.0]]), torch.zeros(1, 3))
    assert torch.allclose(R[0, :3, :3] @ torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]), atol=1e-6)


def test_axis_angle_conversions_round_trip_at_every_angle():
    torch.manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(64, 3), dim=1)
    angles = torch.cat([torch.tensor([0.0, 1e-6, 1e-3, math.pi - 1e-3, math.pi]), torch.rand(59) * math.pi])
    R = geometry.axis_angle_to_rotation_matrix(axes * angles[:, None].double().float())
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(64, 3, 3), atol=1e-6)
    back = geometry.rotation_matrix_to_axis_angle(R)
    torch.testing.assert_close(geometry.axis_angle_to_rotation_matrix(back), R, atol=1e-5, rtol=0)
    inside = angles < math.pi - 1e-2  # near π the axis sign is ambiguous
    torch.testing.assert_close(back[inside], (axes * angles[:, None])[inside], atol=1e-4, rtol=0)


def test_backproject_project_roundtrip():
    _, depth, K = _scene()
    depth = depth * torch.linspace(1, 3, 64).view(1, 1, 1, -1)
    points = geometry.backproject(depth, torch.linalg.inv(K))
    pixels, z = geometry.project(points, K)
    grid = geometry.pixel_grid(48, 64)[:2].unsqueeze(0)
    assert torch.allclose(pixels, grid, atol=1e-4)
    assert torch.allclose(z, depth)


def test_inverse_warp_with_true_depth_and_pose_reproduces_target():
    """Shift the camera 0.5 m right: the source sees the plane shifted by f·t/z = 5 px; warping undoes it."""
    image, depth, K = _scene()
    shift_px = 50.0 * 0.5 / 5.0
    # The source camera sits 0.5 m to the right: target points in source coordinates have x − 0.5.
    T_source_target = torch.eye(4).unsqueeze(0)
    T_source_target[0, 0, 3] = -0.5
    height, width = depth.shape[-2:]
    grid = geometry.pixel_grid(height, width)[:2].unsqueeze(0)
    source = geometry.sample(image, grid + torch.tensor([shift_px, 0.0]).view(1, 2, 1, 1), padding_mode="border")
    warped, valid = geometry.inverse_warp(source, depth, T_source_target, K)
    # Target column u is seen at column u − 5 of the source: the first 5 columns fall outside it.
    assert valid[..., 5:].all() and not valid[..., :5].any()
    error = (warped - image).abs()[..., 5:]
    assert error.max() < 1e-4, error.max()


def test_rigid_flow_matches_analytic_shift():
    _, depth, K = _scene()
    T = torch.eye(4).unsqueeze(0)
    T[0, 0, 3] = 0.2
    flow = geometry.rigid_flow(depth, T, K)
    assert torch.allclose(flow[:, 0], torch.full_like(flow[:, 0], 50 * 0.2 / 5), atol=1e-4)
    assert flow[:, 1].abs().max() < 1e-4


def test_forward_splat_moves_mask_and_keeps_nearest():
    _, depth, K = _scene(24, 32)
    mask = torch.zeros(1, 1, 24, 32)
    mask[..., 8:12, 10:14] = 1
    depth = depth.clone()
    depth[..., 8:12, 10:14] = 2.5  # the object is nearer than the background
    T = torch.eye(4).unsqueeze(0)
    T[0, 0, 3] = 0.1  # 50·0.1/2.5 = 2 px for the object, 1 px for the background
    for upscale in (1, 3):
        splatted, splat_depth, valid = geometry.forward_splat(mask, depth, T, K, upscale=upscale)
        expected = torch.zeros_like(mask)
        expected[..., 8:12, 12:16] = 1
        assert torch.equal(splatted, expected), upscale
        assert torch.allclose(splat_depth[..., 8:12, 12:16], torch.full((1, 1, 4, 4), 2.5))
        hole = torch.ones_like(valid)
        hole[..., 0] = False  # nothing lands in column 0 after the shift to the right
        hole[..., 8:12, 11] = False  # background revealed behind the object: a disocclusion
        assert torch.equal(valid, hole), upscale
        assert (splat_depth[~valid] == 0).all()


def test_disparity_to_depth_range():
    scaled, depth = geometry.disparity_to_depth(torch.tensor([0.0, 1.0]))
    assert torch.allclose(depth, torch.tensor([100.0, 0.1]))
    assert torch.allclose(scaled, 1 / depth)
