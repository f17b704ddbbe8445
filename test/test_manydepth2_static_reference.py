"""The static reference frame on synthetic dynamic street scenes with TRUE depth, pose and optical flow.

Paper mode: the motion mask finds the visibly moving objects and not the static scene, and in the pseudo-static
reference the moving objects sit where the rigid warp (true depth + camera pose) looks for them. Release mode:
the normalised-coordinate "rigid flow" leaves all but ≤ 4 pixels of the reference untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.geometry import inverse_warp
from mgdepth_core.models.static_reference import build_static_reference

HEIGHT, WIDTH = 96, 320
SKY_DEPTH = 1000.0  # metres given to sky pixels (depth 0 in the renderer) so that they warp like the far field
THRESHOLD_PX = 1.0  # flows here are at full resolution


def true_pair(seed: int, frame: int) -> dict:
    """Target frame ``frame``, reference frame − 1, exact depth, pose, optical flow target → reference and the
    object-induced part of that flow (what a perfect motion detector would see)."""
    sequence = SyntheticSequence(seed, num_frames=frame + 1, height=HEIGHT, width=WIDTH)
    target, reference = sequence.frame(frame), sequence.frame(frame - 1)
    depth = np.where(target["depth"] > 0, target["depth"], SKY_DEPTH).astype(np.float64)
    K = sequence.K
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    points_world = (rays * depth[..., None]) @ target["T_world_camera"][:3, :3].T + target["T_world_camera"][:3, 3]
    motion = np.zeros((HEIGHT, WIDTH, 3))
    for obj in sequence.objects:
        if obj.moving:
            motion[target["instances"] == obj.instance_id] = obj.velocity
    T_camera_world = np.linalg.inv(reference["T_world_camera"])

    def project(points: np.ndarray) -> np.ndarray:
        camera = points @ T_camera_world[:3, :3].T + T_camera_world[:3, 3]
        pixels = camera @ K.T
        return pixels[..., :2] / pixels[..., 2:]

    static_position = project(points_world)
    true_position = project(points_world - motion)  # where each target point was one frame earlier
    grid = np.stack([u, v], -1)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).float()

    return {
        "image": tensor(target["image"]).permute(2, 0, 1)[None] / 255,
        "reference": tensor(reference["image"]).permute(2, 0, 1)[None] / 255,
        "depth": tensor(depth)[None, None],
        "K": tensor(K)[None],
        "T": tensor(sequence.relative_pose(frame - 1, frame))[None],
        "flow": tensor(true_position - grid).permute(2, 0, 1)[None],
        "object_motion_px": tensor(np.linalg.norm(true_position - static_position, axis=-1))[None, None],
        "moving_object": tensor(np.isin(target["instances"], [o.instance_id for o in sequence.objects
                                                              if o.moving]).astype(np.float32))[None, None] > 0,
        "sky": tensor(target["depth"] == 0)[None, None] > 0,
    }


@pytest.fixture(scope="module")
def scenes() -> list[dict]:
    """Frames where some moving object moves visibly (≥ 3 px beyond the camera-induced flow)."""
    found = []
    for seed in range(12):
        pair = true_pair(seed, 8)
        if int((pair["object_motion_px"] > 3 * THRESHOLD_PX).sum()) >= 150:
            found.append(pair)
        if len(found) == 3:
            break
    assert len(found) == 3, "the synthetic set should contain visibly moving objects"
    return found


def test_paper_mode_motion_mask_covers_moving_objects_and_not_the_static_scene(scenes):
    for scene in scenes:
        result = build_static_reference(scene["image"], scene["reference"], scene["flow"], scene["depth"],
                                        scene["T"], scene["K"], mode="paper", motion_threshold_px=THRESHOLD_PX)
        mask = result.motion_mask
        visibly_moving = scene["object_motion_px"] > THRESHOLD_PX
        static = ~scene["moving_object"] & ~scene["sky"]
        iou = (mask & visibly_moving).sum().item() / (mask | visibly_moving).sum().item()
        assert iou > 0.95
        clearly_moving = scene["object_motion_px"] > 2 * THRESHOLD_PX
        assert (mask & clearly_moving).sum().item() / clearly_moving.sum().item() > 0.99
        assert (mask & static).float().sum().item() / static.sum().item() < 0.005
        # the rigid flow it used is the true static flow: on static pixels it equals the optical flow
        residual = (result.rigid_flow - scene["flow"]).norm(dim=1, keepdim=True)
        assert residual[static].max().item() < 0.05


def test_paper_mode_moves_objects_to_where_the_rigid_warp_expects_them(scenes):
    for scene in scenes:
        result = build_static_reference(scene["image"], scene["reference"], scene["flow"], scene["depth"],
                                        scene["T"], scene["K"], mode="paper", motion_threshold_px=THRESHOLD_PX)
        moving = result.motion_mask
        warped_plain, inside = inverse_warp(scene["reference"], scene["depth"], scene["T"], scene["K"])
        warped_static, _ = inverse_warp(result.static_reference, scene["depth"], scene["T"], scene["K"])
        pixels = moving & inside
        assert pixels.sum() > 100
        error_plain = (warped_plain - scene["image"]).abs().mean(1, keepdim=True)[pixels].mean().item()
        error_static = (warped_static - scene["image"]).abs().mean(1, keepdim=True)[pixels].mean().item()
        assert error_static < 0.35 * error_plain
        # the blended lookup (α = 0.25) sits in between; the static scene is left as it was
        warped_lookup, _ = inverse_warp(result.lookup, scene["depth"], scene["T"], scene["K"])
        error_lookup = (warped_lookup - scene["image"]).abs().mean(1, keepdim=True)[pixels].mean().item()
        assert error_static < error_lookup < error_plain
        unchanged = (~result.transferred_mask).expand(-1, 3, -1, -1)
        assert torch.allclose(result.static_reference[unchanged], scene["reference"][unchanged])


def test_release_mode_is_inert_beyond_four_pixels(scenes):
    for scene in scenes:
        result = build_static_reference(scene["image"], scene["reference"], scene["flow"], scene["depth"],
                                        scene["T"], scene["K"], mode="release", motion_threshold_px=10.0)
        # the "rigid flow" is normalised coordinates minus pixels: ≈ −(u, v), so nearly everything looks moving
        assert result.motion_mask.float().mean().item() > 0.9
        assert int(result.transferred_mask.sum()) <= 4
        assert bool(result.transferred_mask[..., 2:, :].any()) is False
        assert bool(result.transferred_mask[..., :, 2:].any()) is False
        changed = (result.static_reference - scene["reference"]).abs().amax(1) > 1e-6
        assert int(changed.sum()) <= 4


def test_missing_pixels_and_bad_inputs_are_reported():
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="static_reference must be 'paper' or 'release'"):
        build_static_reference(image, image, torch.zeros(1, 2, 16, 16), torch.ones(1, 1, 16, 16),
                               torch.eye(4)[None], torch.eye(3)[None], mode="fixed")
    with pytest.raises(ValueError, match="must share h×w"):
        build_static_reference(image, image, torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 8, 8),
                               torch.eye(4)[None], torch.eye(3)[None])
