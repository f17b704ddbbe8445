"""The static reference frame on synthetic dynamic street scenes with TRUE depth, pose and optical flow.

Paper mode: the motion mask finds the visibly moving objects and not the static scene; in the pseudo-static
reference the moving objects sit where the rigid warp (true depth + camera pose) looks for them and their old
copies are gone; so the plane sweep finds moving objects at their true depth about as often as against the ideal
reference (the previous camera's view rendered with every object where it is now), and static pixels as often as
against the plain previous frame. Release mode: the normalised-coordinate "rigid flow" leaves all but ≤ 4 pixels
of the reference untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mgdepth_core.data.synthetic import SyntheticSequence, true_geometry_pair
from mgdepth_core.geometry import intrinsics_at_scale, inverse_warp, rigid_flow
from mgdepth_core.models.cost_volume import plane_sweep_depth
from mgdepth_core.models.static_reference import build_static_reference

HEIGHT, WIDTH = 96, 320
THRESHOLD_PX = 1.0  # full-resolution pixels; the flows here are exact


def true_pair(seed: int, frame: int) -> dict:
    """Target frame ``frame``, reference frame − 1 with exact depth, pose, flow and the ideal static reference,
    plus the object-induced part of the flow (what a perfect motion detector sees) and the sky."""
    pair = true_geometry_pair(SyntheticSequence(seed, num_frames=frame + 1, height=HEIGHT, width=WIDTH), frame)
    pair["object_motion_px"] = (pair["flow"] - rigid_flow(pair["depth"], pair["T"], pair["K"])).norm(dim=1,
                                                                                                   keepdim=True)
    pair["sky"] = pair["true_depth"] == 0
    return pair


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


def paper_reference(scene: dict, **options):
    options.setdefault("motion_threshold_px", THRESHOLD_PX)
    return build_static_reference(scene["image"], scene["reference"], scene["flow"], scene["depth"], scene["T"],
                                  scene["K"], mode="paper", **options)


def test_paper_mode_motion_mask_covers_moving_objects_and_not_the_static_scene(scenes):
    for scene in scenes:
        result = paper_reference(scene)
        mask = result.motion_mask
        visibly_moving = scene["object_motion_px"] > THRESHOLD_PX
        static = ~scene["moving"] & ~scene["sky"]
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
        result = paper_reference(scene)
        moving = result.motion_mask
        warped_plain, inside = inverse_warp(scene["reference"], scene["depth"], scene["T"], scene["K"])
        warped_static, _ = inverse_warp(result.static_reference, scene["depth"], scene["T"], scene["K"])
        pixels = moving & inside
        assert pixels.sum() > 100
        error_plain = (warped_plain - scene["image"]).abs().mean(1, keepdim=True)[pixels].mean().item()
        error_static = (warped_static - scene["image"]).abs().mean(1, keepdim=True)[pixels].mean().item()
        assert error_static < 0.35 * error_plain
        # α = 1 (default): the lookup is Î; a blend sits in between; outside the redrawn regions Î is the reference
        assert torch.equal(result.lookup, result.static_reference)
        blended = paper_reference(scene, blend=0.25).lookup
        warped_blend, _ = inverse_warp(blended, scene["depth"], scene["T"], scene["K"])
        error_blend = (warped_blend - scene["image"]).abs().mean(1, keepdim=True)[pixels].mean().item()
        assert error_static < error_blend < error_plain
        unchanged = (~(result.transferred_mask | result.cleared_mask)).expand(-1, 3, -1, -1)
        assert torch.equal(result.static_reference[unchanged], scene["reference"][unchanged])
        # the old copies (where the previous frame differs from the ideal view) are redrawn with what is behind them
        old_copy = result.cleared_mask & ((scene["reference"] - scene["ideal"]).abs().amax(1, keepdim=True) > 0.05)
        assert old_copy.sum() > 10
        old_copy = old_copy.expand(-1, 3, -1, -1)
        assert ((result.static_reference - scene["ideal"])[old_copy].abs().mean()
                < 0.5 * (scene["reference"] - scene["ideal"])[old_copy].abs().mean())


def found_within_10_percent(scene: dict, lookup: torch.Tensor) -> tuple[float, float]:
    """Share of moving-object and of static pixels whose plane-sweep depth (RGB at 1/4 resolution, 3×3 box L1,
    32 log bins 1–120 m) is within 10 % of the true depth."""
    bins = torch.logspace(0, np.log10(120), 32)
    current, lookup = (F.interpolate(x, scale_factor=0.25, mode="area") for x in (scene["image"], lookup))
    best = plane_sweep_depth(current, lookup, scene["T"], intrinsics_at_scale(scene["K"], 2), bins, box=3)
    best = F.interpolate(best, size=(HEIGHT, WIDTH), mode="nearest")
    depth = scene["true_depth"]
    valid = (depth >= 1) & (depth <= 120)
    found = (best - depth).abs() < 0.1 * depth
    moving, static = valid & scene["moving"], valid & ~scene["moving"]
    return (found & moving).sum().item() / moving.sum().item(), (found & static).sum().item() / static.sum().item()


def test_static_reference_moves_the_cost_volume_minimum_on_moving_objects_to_their_true_depth(scenes):
    moving, static = {}, {}
    for name in ("plain", "default", "ideal"):
        shares = []
        for scene in scenes:
            lookup = {"plain": scene["reference"], "ideal": scene["ideal"],
                      "default": paper_reference(scene, motion_threshold_px=2.0).lookup}[name]
            shares.append(found_within_10_percent(scene, lookup))
        moving[name], static[name] = np.mean([s[0] for s in shares]), np.mean([s[1] for s in shares])
    assert moving["ideal"] > moving["plain"] + 0.15  # the signal the method exists for
    assert (moving["default"] - moving["plain"]) >= 0.8 * (moving["ideal"] - moving["plain"])
    assert static["default"] >= static["plain"] - 0.01


def test_quarter_resolution_blend_carries_little_of_it(scenes):
    """The earlier default (Î at 1/4 resolution, α = 0.25, 40 px): most moving pixels stay where they were."""
    moving = []
    for scene in scenes:
        old = paper_reference(scene, resolution="quarter", blend=0.25, motion_threshold_px=40.0,
                              clear_old_positions=False)
        assert old.static_reference.shape[-2:] == (HEIGHT // 4, WIDTH // 4)
        moving.append([found_within_10_percent(scene, lookup)[0] for lookup in (scene["reference"], old.lookup,
                                                                                 scene["ideal"])])
    plain, old, ideal = np.mean(moving, 0)
    assert old - plain < 0.3 * (ideal - plain)


def test_release_mode_is_inert_beyond_four_pixels(scenes):
    for scene in scenes:
        flow = F.interpolate(scene["flow"], scale_factor=0.25, mode="bilinear", align_corners=False) / 4
        result = build_static_reference(scene["image"], scene["reference"], flow, scene["depth"], scene["T"],
                                        scene["K"], mode="release", motion_threshold_px=0.1, blend=1.0)
        # the "rigid flow" is normalised coordinates minus pixels: ≈ −(u, v), so nearly everything looks moving
        assert result.motion_mask.float().mean().item() > 0.9
        assert int(result.transferred_mask.sum()) <= 4
        assert bool(result.transferred_mask[..., 2:, :].any()) is False
        assert bool(result.transferred_mask[..., :, 2:].any()) is False
        quarter_reference = F.interpolate(scene["reference"], size=(HEIGHT // 4, WIDTH // 4), mode="bilinear",
                                          align_corners=False)
        changed = (result.static_reference - quarter_reference).abs().amax(1) > 1e-6
        assert int(changed.sum()) <= 4
        # its own constants, whatever is asked: 0.75·I_ref + 0.25·upsample(Î)
        upsampled = F.interpolate(result.static_reference, size=(HEIGHT, WIDTH), mode="bilinear",
                                  align_corners=False)
        assert torch.allclose(result.lookup, 0.75 * scene["reference"] + 0.25 * upsampled, atol=1e-6)


def test_bad_options_and_shapes_are_reported():
    image = torch.rand(1, 3, 16, 16)
    args = (image, image, torch.zeros(1, 2, 16, 16), torch.ones(1, 1, 16, 16), torch.eye(4)[None], torch.eye(3)[None])
    with pytest.raises(ValueError, match="static_reference must be 'paper' or 'release'"):
        build_static_reference(*args, mode="fixed")
    with pytest.raises(ValueError, match="static_reference_resolution must be 'full' or 'quarter'"):
        build_static_reference(*args, resolution="half")
    with pytest.raises(ValueError, match="must both be B×3×H×W"):
        build_static_reference(image, image[..., :8], *args[2:])
