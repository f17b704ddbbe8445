"""Metric scale for self-supervised monocular depth, in one place.

Network depth is only known up to scale: ``metres = scale × network units``. :class:`ScaleEstimator` measures the
scale per frame from one source and smooths it over time:

* ``fixed``: ``depth_scale``, set by hand.
* ``camera_height``: a ground plane fitted (RANSAC) to the back-projected depth of the lower image rows; the
  scale puts the camera ``camera_height_m`` above it.
* ``odometry``: the pose net's translation matched to an external odometry's translation over a sliding window.

A frame without a measurement keeps the smoothed scale; before the first measurement ``depth_scale`` is used.
Each reason for a missing measurement is logged once.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Literal

import numpy as np
import torch

from mgdepth_core.geometry import backproject

log = logging.getLogger(__name__)

ScaleSource = Literal["fixed", "camera_height", "odometry"]
SCALE_SOURCES: tuple[str, ...] = ("fixed", "camera_height", "odometry")


def fit_ground_height(depth: torch.Tensor, K: torch.Tensor, ground_rows: float = 0.35, max_tilt_deg: float = 15.0,
                      inlier_tolerance: float = 0.05, min_inlier_fraction: float = 0.3, max_points: int = 4000,
                      iterations: int = 128, seed: int = 0) -> float | None:
    """Distance from the camera to the ground plane, in the units of ``depth``, or None where no ground is found.

    ``depth``: H×W (units of any scale; NaN or ≤ 0 = invalid, e.g. sparse LiDAR); ``K``: 3×3 pixels. The points of
    the lowest ``ground_rows`` fraction of rows are fitted by RANSAC with planes whose upward normal is within
    ``max_tilt_deg`` of the camera's −y axis (optical frame, y down); a point is an inlier within
    ``inlier_tolerance`` × plane distance (scale-free). The best plane is refined by least squares on its inliers;
    it must hold ``min_inlier_fraction`` of the points.
    """
    depth = depth.detach().double().cpu()
    height = depth.shape[-2]
    first_row = int(round(height * (1.0 - ground_rows)))
    points = backproject(depth.reshape(1, 1, *depth.shape[-2:]),
                         torch.linalg.inv(K.detach().double().cpu()).reshape(1, 3, 3))[0, :, first_row:]
    points = points.reshape(3, -1).T
    z = depth[first_row:].reshape(-1)
    points = points[torch.isfinite(z) & (z > 0) & (points[:, 1] > 0)]  # below the optical centre
    if len(points) < 50:
        return None
    generator = torch.Generator().manual_seed(seed)
    if len(points) > max_points:
        points = points[torch.randperm(len(points), generator=generator)[:max_points]]
    samples = points[torch.randint(len(points), (iterations, 3), generator=generator)]  # I×3×3
    normals = torch.linalg.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    normals = normals / normals.norm(dim=1, keepdim=True).clamp_min(1e-12)
    normals = normals * torch.where(normals[:, 1:2] < 0, -1.0, 1.0)  # towards +y: from the camera to the ground
    distances = (normals * samples[:, 0]).sum(1)  # plane n·p = d, d > 0 below the camera
    upright = (normals[:, 1] >= math.cos(math.radians(max_tilt_deg))) & (distances > 0)
    if not upright.any():
        return None
    residuals = (points @ normals[upright].T - distances[upright]).abs()  # N×I'
    inliers = residuals < inlier_tolerance * distances[upright]
    best = int(inliers.sum(0).argmax())
    chosen = points[inliers[:, best]]
    if len(chosen) < max(min_inlier_fraction * len(points), 3):
        return None
    centroid = chosen.mean(0)
    normal = torch.linalg.svd(chosen - centroid, full_matrices=False).Vh[-1]
    normal = normal if normal[1] > 0 else -normal
    if normal[1] < math.cos(math.radians(max_tilt_deg)):
        return None
    distance = float(normal @ centroid)
    return distance if distance > 0 else None


class PositionHistory:
    """Positions of an external odometry by stamp, interpolated linearly to a frame's stamp."""

    def __init__(self, max_age_s: float = 2.0, max_extrapolation_s: float = 0.05):
        """Keep ``max_age_s`` seconds of history; a stamp further than ``max_extrapolation_s`` outside it has no
        position."""
        self.max_age_s, self.max_extrapolation_s = max_age_s, max_extrapolation_s
        self._stamps: deque[float] = deque()
        self._positions: deque[np.ndarray] = deque()

    def add(self, stamp: float, position: np.ndarray) -> None:
        """``stamp``: seconds; ``position``: (3,) metres. A stamp going backwards clears the history."""
        if self._stamps and stamp < self._stamps[-1]:
            self.clear()
        self._stamps.append(stamp)
        self._positions.append(np.asarray(position, dtype=np.float64))
        while self._stamps and self._stamps[0] < stamp - self.max_age_s:
            self._stamps.popleft()
            self._positions.popleft()

    def clear(self) -> None:
        self._stamps.clear()
        self._positions.clear()

    def at(self, stamp: float) -> np.ndarray | None:
        """(3,) metres at ``stamp`` (clamped to the ends within max_extrapolation_s), or None."""
        if not self._stamps or not (self._stamps[0] - self.max_extrapolation_s <= stamp
                                    <= self._stamps[-1] + self.max_extrapolation_s):
            return None
        stamps = np.fromiter(self._stamps, np.float64)
        positions = np.stack(self._positions)
        return np.array([np.interp(stamp, stamps, positions[:, i]) for i in range(3)])


class ScaleEstimator:
    """Per-frame metric scale (metres per network unit) from one source, smoothed by an exponential moving average.

    Call :meth:`update` once per frame with what the source needs; :attr:`scale` and :attr:`source` are the
    current values (``source`` is ``fixed`` while no measurement has arrived).
    """

    def __init__(self, source: str = "fixed", depth_scale: float = 1.0, camera_height_m: float = 1.65,
                 window: int = 10, smoothing: float = 0.2, ground_rows: float = 0.35, min_translation: float = 0.01):
        """``window``: frames of the odometry match; ``smoothing``: EMA weight of a new measurement (1 = none);
        ``min_translation``: odometry translation (metres per frame) below which the camera counts as standing
        still and the frame is left out of the window."""
        if source not in SCALE_SOURCES:
            raise ValueError(f"scale_source must be one of {', '.join(SCALE_SOURCES)}, got {source!r}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"scale_smoothing must be in (0, 1], got {smoothing}")
        if depth_scale <= 0 or window < 1:
            raise ValueError(f"depth_scale must be > 0 and scale_window >= 1, got {depth_scale}, {window}")
        self.configured, self.fixed, self.camera_height_m = source, depth_scale, camera_height_m
        self.smoothing, self.ground_rows, self.min_translation = smoothing, ground_rows, min_translation
        self._pairs: deque[tuple[float, float]] = deque(maxlen=window)  # (measured metres, network units)
        self._warned: set[str] = set()
        self.scale, self.source = depth_scale, "fixed"
        if source == "camera_height" and camera_height_m <= 0:
            self._warn("camera_height", f"camera_height_m is {camera_height_m} (must be > 0)")

    def _warn(self, reason: str, text: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("scale_source %s: %s; %s", self.configured, text,
                        "keeping the last scale" if self.source != "fixed"
                        else f"using the fixed depth_scale {self.fixed}")

    def update(self, depth: torch.Tensor | None = None, K: torch.Tensor | None = None,
               network_translation: float | None = None, measured_translation: float | None = None) -> float:
        """Fold one frame in and return the smoothed scale.

        ``depth``: H×W network depth (network units) and ``K``: 3×3 pixels (camera_height); ``network_translation``:
        the pose net's translation norm since the previous frame (network units) and ``measured_translation``: the
        external odometry's (metres) (odometry; None where either is unknown).
        """
        measured = None
        if self.configured == "camera_height" and self.camera_height_m > 0 and depth is not None:
            ground = fit_ground_height(depth, K, self.ground_rows)
            if ground is None:
                self._warn("no_ground", "no ground plane found in the lower image")
            else:
                measured = self.camera_height_m / ground
        elif self.configured == "odometry":
            measured = self._odometry_ratio(network_translation, measured_translation)
        if measured is not None and math.isfinite(measured) and measured > 0:
            first = self.source == "fixed"
            self.scale = measured if first else (1 - self.smoothing) * self.scale + self.smoothing * measured
            self.source = self.configured
        return self.scale

    def _odometry_ratio(self, network: float | None, measured: float | None) -> float | None:
        """Σ measured / Σ network translation over the window, or None (warned) without input or motion."""
        if network is None:
            return None  # first frame of a stream: no pose yet
        if measured is None:
            self._warn("no_odometry", "no odometry translation for this frame")
            return None
        if measured < self.min_translation:  # the pose net's noise would bias the ratio: skip the frame
            self._warn("standing_still", f"the camera is standing still (odometry translation below "
                       f"{self.min_translation} m per frame)")
            return None
        self._pairs.append((measured, network))
        total_measured = sum(m for m, _ in self._pairs)
        total_network = sum(n for _, n in self._pairs)
        if total_network <= 0:
            return None
        return total_measured / total_network
