"""Manydepth2's static reference frame: the lookup image with moving objects redrawn where they would be if static.

Optical flow F (current → reference) = camera-induced rigid flow S + object motion. With the teacher's depth D and
the pose T, S(p) = π(K·T·D(p)·K⁻¹p̃) − p is where pixel p would move if the scene were static; pixels with
|F − S| above a threshold are moving. The cost volume matches p at depth d against the reference at π(K·T·d·K⁻¹p̃):
for a moving object that point shows whatever was there one frame earlier, never the object. The ideal lookup is
the previous camera's view with every object held where it is now. ``mode="paper"`` builds it:

1. Î(p + S(p)) = I_t(p) for every moving pixel p: the current frame forward-splatted along the rigid flow
   (z-buffer: the nearest point wins, so static things in front of the object still hide it).
2. Where the moving objects *were* in the reference (their pixels carried along the optical flow, q = p + F(p)),
   Î shows what the current frame sees there once the objects have left: the splat of its static pixels
   (``clear_old_positions``). Otherwise the old copy stays and lies on the epipolar line of every object that
   moves along the camera's direction of travel, a second minimum at the wrong depth.
3. Everywhere else Î is the reference itself; the lookup is (1 − α)·I_ref + α·Î.

Built at full resolution (``resolution="full"``), Î equals the reference pixel for pixel outside the redrawn
regions, so static pixels match as in Manydepth. ``resolution="quarter"`` builds it at the flow's 1/4 resolution and
upsamples it (the released code's construction, which blurs the whole lookup).

``mode="release"`` reproduces the released code (Manydepth2 ``multi_flow_hrnet_encoder00.py``) whatever the other
options say: 1/4 resolution, threshold 10 (1/4-res pixels), α = 0.25, the "rigid flow" is the projection's
*normalised* [-1, 1] coordinates minus the pixel grid, the splat rounds p + S(p), clamps it to the image and keeps
the last write, and Î samples the current frame at q − S. Its splat targets lie in {0, 1}², so at most 4 pixels of Î
differ from the (down/up-sampled) reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mgdepth_core.geometry import intrinsics_at_scale, pixel_grid, reproject, sample, splat
from mgdepth_core.models.flow import resize_flow

STATIC_REFERENCE_MODES = ("paper", "release")
STATIC_REFERENCE_RESOLUTIONS = ("full", "quarter")
RELEASE_BLEND = 0.25  # the released lookup: 0.75·I_ref + 0.25·Î
RELEASE_THRESHOLD_QUARTER_PX = 10.0  # hard-coded in the release, 1/4-resolution pixels
QUARTER = 2  # the release works at 1/2² of the image resolution


@dataclass
class StaticReference:
    """Everything :func:`build_static_reference` computes; ``h×w`` is the resolution it worked at (H×W for
    ``resolution="full"``, H/4×W/4 for ``"quarter"`` and the release)."""

    lookup: torch.Tensor  # B×3×H×W lookup image for the cost volume, [0, 1]
    static_reference: torch.Tensor  # B×3×h×w pseudo-static reference Î
    motion_mask: torch.Tensor  # B×1×h×w bool, current view: |optical − rigid flow| > threshold
    transferred_mask: torch.Tensor  # B×1×h×w bool, reference view: where a moving pixel landed
    cleared_mask: torch.Tensor  # B×1×h×w bool, reference view: old object positions redrawn with the static scene
    rigid_flow: torch.Tensor  # B×2×h×w, what the mode uses as rigid flow (h×w pixels in "paper")


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def fill_holes(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``image`` (B×C×H×W) with every pixel outside ``known`` (B×1×H×W bool) replaced by the mean of the nearest
    known pixels, coarse to fine (push-pull: halve until known pixels cover every cell, then fill upwards)."""
    weights = known.to(image.dtype)
    levels = [(image * weights, weights)]
    while min(levels[-1][1].shape[-2:]) > 1 and bool((levels[-1][1] == 0).any()):
        values, weights = levels[-1]
        levels.append((F.avg_pool2d(values, 2, ceil_mode=True), F.avg_pool2d(weights, 2, ceil_mode=True)))
    values, weights = levels.pop()
    estimate = values / weights.clamp(min=1e-12)
    for values, weights in reversed(levels):
        coarse = F.interpolate(estimate, size=values.shape[-2:], mode="bilinear", align_corners=False)
        estimate = torch.where(weights > 0, values / weights.clamp(min=1e-12), coarse)
    return torch.where(known, image, estimate)


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


def _release(image, reference, flow, depth, T_reference_current, K) -> StaticReference:
    """The released construction at 1/4 resolution (normalised-coordinate rigid flow, last-write splat)."""
    h, w = image.shape[-2] // 4, image.shape[-1] // 4
    image_small, reference_small = _resize(image, (h, w)), _resize(reference, (h, w))
    flow, depth = resize_flow(flow, (h, w)), _resize(depth, (h, w))
    K_small = intrinsics_at_scale(K, QUARTER)
    batch = image.shape[0]
    grid = pixel_grid(h, w, flow.device, flow.dtype)[:2].unsqueeze(0)
    pixels, _ = reproject(depth, T_reference_current, K_small)
    normalised = torch.stack([pixels[:, 0] / (w - 1), pixels[:, 1] / (h - 1)], 1) * 2 - 1
    rigid = normalised - grid
    motion = (flow - rigid).norm(dim=1, keepdim=True) > RELEASE_THRESHOLD_QUARTER_PX
    target = (grid + rigid).round()
    u = target[:, 0].clamp(0, w - 1).long()
    v = target[:, 1].clamp(0, h - 1).long()
    slots = (v * w + u).reshape(batch, -1)
    carried = torch.cat([motion.to(flow.dtype), -rigid], 1).reshape(batch, 3, -1)
    splatted = _release_splat(carried, slots).reshape(batch, 3, h, w)
    transferred = splatted[:, :1] > 0.5
    redrawn = sample(image_small, grid + splatted[:, 1:], padding_mode="zeros")
    static = torch.where(transferred, redrawn, reference_small)
    return StaticReference(lookup=_release_blend(reference, static), static_reference=static, motion_mask=motion,
                           transferred_mask=transferred, cleared_mask=torch.zeros_like(transferred), rigid_flow=rigid)


def _release_blend(reference: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    return (1 - RELEASE_BLEND) * reference + RELEASE_BLEND * _resize(static, reference.shape[-2:])


def release_lookup_without_motion(reference: torch.Tensor) -> torch.Tensor:
    """The release's lookup image with nothing transferred: 0.75·reference + 0.25·(reference resized to 1/4 and
    back), B×3×H×W. The release's Î differs from it in at most the 4 top-left pixels of its 1/4-resolution grid
    (its splat targets lie in {0, 1}²), the only place where the optical flow and the teacher's depth reach."""
    with torch.no_grad():
        reference = reference.float()
        small = _resize(reference, (reference.shape[-2] // 4, reference.shape[-1] // 4))
        return _release_blend(reference, small)


def build_static_reference(image: torch.Tensor, reference: torch.Tensor, flow: torch.Tensor, depth: torch.Tensor,
                           T_reference_current: torch.Tensor, K: torch.Tensor, mode: str = "paper",
                           motion_threshold_px: float = 2.0, blend: float = 1.0, resolution: str = "full",
                           clear_old_positions: bool = True) -> StaticReference:
    """Build the pseudo-static reference and the lookup image for the cost volume (no gradients).

    ``image`` (current) and ``reference`` (lookup): B×3×H×W in [0, 1]; ``flow``: B×2×h'×w' optical flow current →
    reference in pixels of its own grid (any resolution, e.g. the 1/4-res flow of the model); ``depth``: B×1×h''×w''
    current-frame depth in the pose's units (the teacher's; resized as needed); ``T_reference_current``: B×4×4;
    ``K``: B×3×3 intrinsics of the H×W image. ``motion_threshold_px``: |F − S| above this (H×W pixels) is motion;
    ``blend`` = α, weight of Î in the lookup; ``resolution``: build Î at ``full`` (H×W) or ``quarter`` resolution;
    ``clear_old_positions``: redraw where moving objects were in the reference with the static scene.
    ``mode="release"`` ignores the last four options (see the module docstring).
    """
    if mode not in STATIC_REFERENCE_MODES:
        raise ValueError(f"static_reference must be 'paper' or 'release', got {mode!r}")
    if resolution not in STATIC_REFERENCE_RESOLUTIONS:
        raise ValueError(f"static_reference_resolution must be 'full' or 'quarter', got {resolution!r}")
    if image.shape != reference.shape or image.shape[1] != 3:
        raise ValueError(f"image {tuple(image.shape)} and reference {tuple(reference.shape)} must both be B×3×H×W")
    with torch.no_grad(), torch.autocast(image.device.type, enabled=False):  # geometry in float32
        image, reference, flow, depth = image.float(), reference.float(), flow.float(), depth.float()
        if mode == "release":
            return _release(image, reference, flow, depth, T_reference_current, K)
        full = tuple(image.shape[-2:])
        size = full if resolution == "full" else (full[0] // 4, full[1] // 4)
        K_work = K if resolution == "full" else intrinsics_at_scale(K, QUARTER)
        threshold = motion_threshold_px * size[1] / full[1]
        image_work, reference_work = _resize(image, size), _resize(reference, size)
        flow, depth = resize_flow(flow, size), _resize(depth, size)

        grid = pixel_grid(*size, device=flow.device, dtype=flow.dtype)[:2].unsqueeze(0)
        pixels, z = reproject(depth, T_reference_current, K_work)
        rigid = pixels - grid
        motion = (flow - rigid).norm(dim=1, keepdim=True) > threshold
        # 1. every current pixel carried along the rigid flow, z-buffered; moving winners are the redrawn objects
        z = torch.where(z > 1e-3, z, torch.full_like(z, float("inf")))
        splatted, _, landed = splat(torch.cat([motion.to(image.dtype), image_work], 1), pixels, z)
        transferred = landed & (splatted[:, :1] > 0.5)
        static = torch.where(transferred, splatted[:, 1:], reference_work)
        # 2. where the moving objects were: carried along the optical flow, one pixel of margin for rounding; what
        # the current frame sees there (its static pixels' splat) or, where it sees nothing, the surrounding scene
        cleared = torch.zeros_like(transferred)
        if clear_old_positions:
            was_there, _, _ = splat(motion.to(image.dtype), grid + flow, (~motion).to(image.dtype))
            cleared = (F.max_pool2d(was_there, 3, stride=1, padding=1) > 0.5) & ~transferred
            seen = cleared & landed
            static = torch.where(seen, splatted[:, 1:], static)
            surroundings = fill_holes(static, ~(cleared & ~seen) & ~transferred)
            static = torch.where(cleared & ~seen, surroundings, static)
        static_full = _resize(static, full)
        lookup = torch.lerp(reference, static_full, blend)  # exact at α = 0 and α = 1
        return StaticReference(lookup=lookup, static_reference=static, motion_mask=motion,
                               transferred_mask=transferred, cleared_mask=cleared, rigid_flow=rigid)
