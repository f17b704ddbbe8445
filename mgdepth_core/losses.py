"""Self-supervised depth losses, in one place (Monodepth2 / Manydepth / Manydepth2 / Dyna-DM).

Images are B×3×H×W in [0, 1]; per-pixel errors are B×1×H×W; scalar losses are 0-d tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim_dissimilarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 − SSIM)/2 per pixel and channel with 3×3 average pools and reflection padding, clamped to [0, 1].

    ``x``, ``y``: B×C×H×W in [0, 1]. Returns B×C×H×W. Constants C1 = 0.01², C2 = 0.03² (Monodepth2).
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def photometric_error(prediction: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """α·(1−SSIM)/2 + (1−α)·|Δ|₁, channel mean. ``prediction``, ``target``: B×3×H×W. Returns B×1×H×W."""
    l1 = (target - prediction).abs().mean(1, keepdim=True)
    ssim = ssim_dissimilarity(prediction, target).mean(1, keepdim=True)
    return alpha * ssim + (1 - alpha) * l1


def min_reprojection_with_automask(reprojection_errors: list[torch.Tensor], identity_errors: list[torch.Tensor],
                                   noise: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel minimum over source frames, with Monodepth2 auto-masking.

    ``reprojection_errors``: one B×1×H×W error per source frame (warped source vs target);
    ``identity_errors``: one per source (unwarped source vs target). A pixel is kept where some reprojection
    beats every identity error (stationary pixels and a static camera are masked out); a tiny random term
    breaks ties. Returns (per-pixel loss B×1×H×W, mask B×1×H×W float where the reprojection won).
    """
    reprojection = torch.cat(reprojection_errors, 1)
    identity = torch.cat(identity_errors, 1)
    identity = identity + torch.randn_like(identity) * noise
    combined = torch.cat([identity, reprojection], 1)
    value, index = combined.min(1, keepdim=True)
    mask = (index >= identity.shape[1]).float()
    return value, mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ(values·mask)/(Σmask + 1e-7): 0 (not NaN) for an empty mask."""
    return (values * mask).sum() / (mask.sum() + 1e-7)


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """First-order edge-aware smoothness of mean-normalised disparity. ``disp``: B×1×H×W; ``image``: B×3×H×W."""
    disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_img_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_img_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()


def depth_consistency(depth: torch.Tensor, teacher_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Manydepth's consistency loss: mean over all pixels of |D − D_teacher.detach()|·mask (B×1×H×W inputs)."""
    return ((depth - teacher_depth.detach()).abs() * mask).mean()


def geometric_consistency(computed_depth: torch.Tensor, projected_depth: torch.Tensor) -> torch.Tensor:
    """SC-SfMLearner depth inconsistency |Z − D̂|/(Z + D̂), clamped to [0, 1]. Inputs B×1×H×W. Returns B×1×H×W."""
    return ((computed_depth - projected_depth).abs() / (computed_depth + projected_depth + 1e-7)).clamp(0, 1)
