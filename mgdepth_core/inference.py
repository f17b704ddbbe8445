"""Streaming inference: :class:`DepthEstimator` turns frames, one at a time, into :class:`DepthResult`.

The ROS node, ``mgdepth process-bag``, ``mgdepth infer`` and the benchmarks all use it. It keeps a frame buffer
(the previous frame's image, features, flow and masks) so that nothing is computed twice in a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DynamicObject:
    """One truly dynamic object in a frame (Dyna-DM theta filter)."""

    instance_id: int  # value of this object's pixels in DepthResult.dynamic_mask
    class_id: int  # COCO category id (torchvision numbering: 1 person, 3 car, ...)
    class_name: str
    score: float  # detection score, 0..1
    dice: float  # Sørensen–Dice of the ego-motion-warped mask against the observed mask (< theta = moving)
    box_xyxy: tuple[float, float, float, float]  # pixels of the depth image
    pixel_count: int


@dataclass
class DepthResult:
    """Everything the estimator knows about one frame. Arrays are at the depth image's resolution."""

    depth: np.ndarray  # H×W float32, metres (times EstimatorConfig.depth_scale), NaN where invalid
    K: np.ndarray  # 3×3 float64 intrinsics of `depth`, pixels
    image: np.ndarray  # H×W×3 uint8 RGB, the input resized to the depth resolution (for coloured clouds)
    T_prev_current: np.ndarray | None  # 4×4 camera motion: current-camera points into the previous camera
    multi_frame: bool  # False where the single-frame teacher produced depth (first frame, gap, static camera)
    dynamic_mask: np.ndarray | None = None  # H×W uint16 instance ids of truly dynamic objects, 0 = static
    objects: list[DynamicObject] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
