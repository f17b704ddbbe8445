"""Networks: encoders, cost volumes, decoders, pose and object-motion nets, optical flow, instance segmentation.

:func:`build_model` returns a :class:`~mgdepth_core.models.base.MultiFrameDepthModel` for
``ModelConfig.method`` ("manydepth" or "manydepth2"); the trainer, the evaluator and the DepthEstimator only talk
to that interface, so the two methods are a flag apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mgdepth_core.config import option


@dataclass
class ModelConfig:
    """Architecture of the multi-frame depth model (student), its single-frame teacher and the pose net."""

    method: Literal["manydepth", "manydepth2"] = option("manydepth2", "manydepth (ResNet + cost volume) or "
                                                        "manydepth2 (flow, static reference, HRNet)")
    height: int = option(192, "network input height in pixels (multiple of 32)")
    width: int = option(640, "network input width in pixels (multiple of 32)")
    num_layers: int = option(18, "ResNet depth of Manydepth's multi-frame encoder: 18 or 50")
    teacher_num_layers: int = option(18, "ResNet depth of Manydepth's single-frame teacher and of the pose "
                                         "encoder: 18 (as in the release) or 50")
    pretrained: bool = option(True, "initialise encoders from ImageNet weights when they are on disk")
    num_depth_bins: int = option(96, "number of depth hypotheses in the cost volume")
    depth_binning: Literal["linear", "inverse"] = option("linear", "bins spaced linearly in depth or in inverse depth")
    min_depth: float = option(0.1, "smallest depth the disparity head can express, metres")
    max_depth: float = option(100.0, "largest depth the disparity head can express, metres")
    min_depth_bin: float = option(0.1, "initial nearest cost-volume bin, metres (tracked during training)")
    max_depth_bin: float = option(10.0, "initial farthest cost-volume bin, metres (tracked during training)")
    flow: Literal["gmflow", "raft_small", "raft_large", "none", "dataset"] = option(
        "gmflow", "Manydepth2 optical flow network (none = Manydepth2-NF; dataset = the samples' exact flow, "
                  "synthetic set with data.exact_flow: an upper bound, no network)")
    flow_weights: str = option("", "optical flow checkpoint; empty = torchvision's RAFT weights or the GMFlow "
                                   "Sintel checkpoint from the usual places")
    static_reference: Literal["paper", "release"] = option(
        "paper", "paper: the method as intended (rigid flow in pixels, moving objects redrawn where a static object "
                 "would be); release: reproduce the released code, whose unit bug leaves the lookup almost the "
                 "previous frame (official Manydepth2 checkpoints' published numbers)")
    static_reference_resolution: Literal["full", "quarter"] = option(
        "full", "build the static reference at the image's resolution (full) or at the flow's 1/4 resolution and "
                "upsample it (quarter, blurs the whole lookup); paper mode only")
    static_reference_blend: float = option(1.0, "α: lookup = (1 − α)·previous frame + α·static reference; paper "
                                                "mode only (the release uses 0.25)")
    motion_threshold_px: float = option(2.0, "optical-minus-rigid flow above this many full-resolution pixels is "
                                             "motion (2 = half a pixel of the 1/4-res cost volume); paper mode only "
                                             "(the release uses 10 at 1/4 resolution)")
    clear_old_positions: bool = option(True, "redraw where moving objects were in the previous frame with the "
                                             "static scene the current frame sees there; paper mode only")
    flow_start_epoch: int = option(6, "epoch from which the static reference frame is used during training")
    flow_input_scale: float = option(1.0, "optical flow runs on frames resized by this factor (1 = full "
                                          "resolution as the release; 0.5 = 4× fewer pixels, the flow is used at "
                                          "1/4 resolution anyway)")


def build_model(config: ModelConfig):
    """The multi-frame depth model for ``config.method``."""
    if config.method == "manydepth":
        from mgdepth_core.models.manydepth import ManydepthModel
        return ManydepthModel(config)
    if config.method == "manydepth2":
        from mgdepth_core.models.manydepth2 import Manydepth2Model
        return Manydepth2Model(config)
    raise ValueError(f"unknown method {config.method!r}; choose manydepth or manydepth2")
