"""Manydepth2's static reference frame: the lookup image with moving objects redrawn where they would be if static.

Optical flow F (current → reference) = camera-induced rigid flow S + object motion. With the teacher's coarse depth
and the pose, S(p) is where pixel p would move if the scene were static; pixels with |F − S| above a threshold are
moving. Each current-frame pixel p is forward-splatted to q = p + S(p) in the reference view, carrying its colour
and motion bit; the pseudo-static reference Î takes the current frame's colour at q where a moving pixel landed and
the reference image elsewhere. Plane-sweep matching along the camera-induced epipolar lines then finds moving
objects at their true depth. The cost volume's lookup image is (1 − α)·I_ref + α·upsample(Î).

``mode="paper"`` does this in pixels with a z-buffered splat (nearest point wins, points leaving the image dropped).
``mode="release"`` reproduces the released code (Manydepth2 ``multi_flow_hrnet_encoder00.py``): the "rigid flow" is
the projection's *normalised* [-1, 1] coordinates minus the pixel grid, the splat rounds p + S(p), clamps it to the
image and keeps the last write, and Î samples the current frame at q − S. Its splat targets lie in {0, 1}², so at
most 4 pixels of Î differ from the (down/up-sampled) reference — the published numbers come from that behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mgdepth_core.geometry import forward_splat, pixel_grid, reproject, rigid_flow, sample

STATIC_REFERENCE_MODES = ("paper", "release")


@dataclass
class StaticReference:
    """Everything :func:`build_static_reference` computes; ``h×w`` is the flow's (1/4) resolution."""

    lookup: torch.Tensor  # B×3×H×W blended lookup image for the cost volume, [0, 1]
    static_reference: torch.Tensor  # B×3×h×w pseudo-static reference Î
    motion_mask: torch.Tensor  # B×1×h×w bool, current view: |optical − rigid flow| > threshold
    transferred_mask: torch.Tensor  # B×1×h×w bool, reference view: where a moving pixel landed
    rigid_flow: torch.Tensor  # B×2×h×w, what the mode uses as rigid flow (pixels in "paper")


def _release_splat(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Scatter per-pixel ``values`` (B×C×N) to flat ``targets`` (B×N); when several land on one slot the last
    source index wins (what the release's in-order index assignment does). Empty slots stay 0."""
    batch, channels, n = values.shape
    order = torch.arange(n, device=values.device).expand(batch, n)
    last = torch.full((batch, n), -1, dtype=torch.long, device=values.device)
    last.scatter_reduce_(1, targets, order, reduce="amax")
    filled = last >= 0
    gathered = values.gather(2, last.clamp(min=0).unsqueeze(1).expand(-1, channels, -1))
    return gathered * filled.unsqueeze(1)


def build_static_reference(image: torch.Tensor, reference: torch.Tensor, flow: torch.Tensor,
                           coarse_depth: torch.Tensor, T_reference_current: torch.Tensor, K_flow: torch.Tensor,
                           mode: str = "paper", motion_threshold_px: float = 10.0,
                           blend: float = 0.25) -> StaticReference:
    """Build the pseudo-static reference and the blended lookup image (no gradients).

    ``image`` (current) and ``reference`` (lookup): B×3×H×W in [0, 1]; ``flow``: B×2×h×w optical flow current →
    reference in pixels of the h×w grid (1/4 resolution in Manydepth2); ``coarse_depth``: B×1×h×w metres (teacher);
    ``T_reference_current``: B×4×4; ``K_flow``: B×3×3 intrinsics of the h×w grid; ``motion_threshold_px``: in h×w
    pixels; ``blend`` = α, weight of Î in the lookup.
    """
    if mode not in STATIC_REFERENCE_MODES:
        raise ValueError(f"static_reference must be 'paper' or 'release', got {mode!r}")
    if flow.shape[-2:] != coarse_depth.shape[-2:]:
        raise ValueError(f"flow {tuple(flow.shape)} and coarse_depth {tuple(coarse_depth.shape)} must share h×w")
    with torch.no_grad():
        batch, _, h, w = flow.shape
        image_small = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        reference_small = F.interpolate(reference, size=(h, w), mode="bilinear", align_corners=False)
        grid = pixel_grid(h, w, flow.device, flow.dtype)[:2].unsqueeze(0)
        if mode == "paper":
            rigid = rigid_flow(coarse_depth, T_reference_current, K_flow)
        else:
            pixels, _ = reproject(coarse_depth, T_reference_current, K_flow)
            normalised = torch.stack([pixels[:, 0] / (w - 1), pixels[:, 1] / (h - 1)], 1) * 2 - 1
            rigid = normalised - grid
        motion = (flow - rigid).norm(dim=1, keepdim=True) > motion_threshold_px

        if mode == "paper":
            carried = torch.cat([motion.to(image_small.dtype), image_small], 1)
            splatted, _, _ = forward_splat(carried, coarse_depth, T_reference_current, K_flow)
            transferred = splatted[:, :1] > 0.5
            static = torch.where(transferred, splatted[:, 1:], reference_small)
        else:
            target = (grid + rigid).round()
            u = target[:, 0].clamp(0, w - 1).long()
            v = target[:, 1].clamp(0, h - 1).long()
            slots = (v * w + u).reshape(batch, -1)
            carried = torch.cat([motion.to(flow.dtype), -rigid], 1).reshape(batch, 3, -1)
            splatted = _release_splat(carried, slots).reshape(batch, 3, h, w)
            transferred = splatted[:, :1] > 0.5
            redrawn = sample(image_small, grid + splatted[:, 1:], padding_mode="zeros")
            static = torch.where(transferred, redrawn, reference_small)

        static_full = F.interpolate(static, size=image.shape[-2:], mode="bilinear", align_corners=False)
        lookup = (1 - blend) * reference + blend * static_full
        return StaticReference(lookup=lookup, static_reference=static, motion_mask=motion,
                               transferred_mask=transferred, rigid_flow=rigid)
