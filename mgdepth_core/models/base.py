"""The interface every multi-frame depth model offers to the trainer, the evaluator and the DepthEstimator."""

from __future__ import annotations

import torch
from torch import nn

from mgdepth_core.geometry import intrinsics_at_scale, pose_from_axisangle_translation
from mgdepth_core.models.cost_volume import depth_bin_values
from mgdepth_core.stages import stage


class MultiFrameDepthModel(nn.Module):
    """A Manydepth-family model: multi-frame student, single-frame teacher, pose net, adaptive depth bins.

    Sub-modules (names match the official checkpoint files): ``encoder`` + ``depth`` (student),
    ``mono_encoder`` + ``mono_depth`` (teacher), ``pose_encoder`` + ``pose``. Buffers ``min_depth_bin`` and
    ``max_depth_bin`` (0-d, metres) hold the tracked cost-volume range and are saved with the weights.

    Images are B×3×H×W in [0, 1] at the model's resolution; ``K`` is B×3×3 in pixels of that resolution.
    Outputs are dicts keyed like Monodepth2: ``("disp", s)`` is the sigmoid disparity at 1/2^s resolution,
    s = 0..3.
    """

    method: str

    def depth_bins(self) -> torch.Tensor:
        """The current cost-volume hypotheses, D metres ascending."""
        return depth_bin_values(self.min_depth_bin, self.max_depth_bin, self.config.num_depth_bins,
                                self.config.depth_binning)

    def relative_pose(self, target: torch.Tensor, source: torch.Tensor, source_is_before: bool) -> torch.Tensor:
        """``T_source_target`` (B×4×4) from the pose net, fed in temporal order as Manydepth does."""
        pair = [source, target] if source_is_before else [target, source]
        with stage("pose"):
            axisangle, translation = self.pose_network(torch.cat(pair, 1))
        return pose_from_axisangle_translation(axisangle.float(), translation.float(), invert=source_is_before)

    def pose_network(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose net on two frames stacked in temporal order (B×6×H×W) → (axis-angle B×3, translation B×3)."""
        axisangle, translation = self.pose(self.pose_encoder(pair)[-1])
        return axisangle[:, 0], translation[:, 0]

    def teacher_forward(self, image: torch.Tensor) -> dict:
        """Single-frame teacher: ``{("disp", s): B×1×H/2^s×W/2^s}``."""
        with stage("teacher"):
            return self.mono_depth(self.mono_encoder(image))

    def multi_frame_forward(self, image: torch.Tensor, lookup: torch.Tensor, T_lookup_current: torch.Tensor,
                            K: torch.Tensor, **context) -> dict:
        """Student: disparities plus ``"lowest_cost"`` and ``"confidence_mask"`` (B×1×H/4×W/4).

        ``context`` carries what a method needs beyond Manydepth's inputs and is ignored by those that do not:
        ``teacher_depth`` (B×1×H×W metres, detached), ``raw_image``/``raw_lookup`` (un-augmented frames for
        optical flow), ``flow`` (B×2×H/4×W/4, 1/4-res pixels, when the caller cached it), ``epoch``.
        """
        raise NotImplementedError

    def student_network(self, image: torch.Tensor, lookup_features: torch.Tensor, T_lookup_current: torch.Tensor,
                        K: torch.Tensor) -> dict:
        """The student's networks: encoder with the cost volume against ``lookup_features`` (the lookup frame's
        :meth:`matching_features`) and depth decoder. ``K``: B×3×3 full-resolution pixels. Returns the disparities
        plus ``"matching_features"``, ``"lowest_cost"``, ``"cost_volume_depth"`` and ``"confidence_mask"``."""
        with stage("encoder"):
            encoded = self.encoder(image, lookup_features, T_lookup_current, intrinsics_at_scale(K, 2),
                                   self.depth_bins())
        with stage("decoder"):
            outputs = self.depth(encoded.pop("features"))
        outputs.update(encoded)
        return outputs

    @torch.no_grad()
    def update_depth_bins(self, teacher_depth: torch.Tensor, momentum: float = 0.99) -> None:
        """Track the cost-volume range from the teacher's depth (B×1×H×W metres), Manydepth's EMA rule."""
        d_min = teacher_depth.flatten(1).min(1).values.mean()
        d_max = teacher_depth.flatten(1).max(1).values.mean()
        d_min = torch.clamp(0.9 * d_min, min=0.1)
        d_max = 1.1 * d_max
        self.min_depth_bin.mul_(momentum).add_((1 - momentum) * d_min)
        self.max_depth_bin.mul_(momentum).add_((1 - momentum) * d_max)
