"""Depth metrics and the evaluation protocols (KITTI Eigen, eigen_benchmark, Cityscapes), overall and split into
static and moving-object pixels.

Per image: the prediction is resized (cv2 bilinear) to the ground truth's size, the protocol's mask is applied
(Eigen: min_depth < gt < max_depth inside the Garg crop; eigen_benchmark: gt > 0; Cityscapes: the top 75 % of the
1024×2048 ground truth, then rows 256: and cols 192:1856, then min < gt < max), the prediction is multiplied by
median(gt)/median(pred) over the masked pixels (``median_scaling``), clamped to [min_depth, max_depth], and the
seven metrics are computed. Reported numbers are means over images. With dynamic masks (True on moving-object
pixels) the same metrics are computed on masked static and masked dynamic pixels, using the image's overall
scaling ratio; images without dynamic pixels do not count towards the dynamic mean.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # rows top, bottom; cols left, right (fractions)
CITYSCAPES_CROP = (256, None, 192, 1856)  # rows 256:, cols 192:1856 of the 768×2048 ground truth


class EvaluationInputError(ValueError):
    """Predictions, ground truth or masks that cannot be evaluated (named in the message)."""


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The seven metrics (order of METRIC_NAMES) of matching 1-D arrays of positive depths, metres."""
    gt = gt.astype(np.float64)
    pred = pred.astype(np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    a1, a2, a3 = (ratio < 1.25).mean(), (ratio < 1.25 ** 2).mean(), (ratio < 1.25 ** 3).mean()
    squared = (gt - pred) ** 2
    rmse = np.sqrt(squared.mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = (np.abs(gt - pred) / gt).mean()
    sq_rel = (squared / gt).mean()
    return np.array([abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3])


@dataclass
class MetricSet:
    """Means over ``images`` images of the seven metrics (depths in metres)."""

    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    a1: float
    a2: float
    a3: float
    images: int

    @classmethod
    def mean_of(cls, rows: list[np.ndarray]) -> MetricSet | None:
        if not rows:
            return None
        return cls(*(float(v) for v in np.mean(rows, axis=0)), images=len(rows))

    def values(self) -> list[float]:
        return [getattr(self, name) for name in METRIC_NAMES]


@dataclass(frozen=True)
class Protocol:
    """How ground truth is masked and cropped."""

    name: str
    garg_crop: bool = False  # Eigen's crop (fractions of the GT size)
    fixed_crop: tuple[int, int | None, int, int] | None = None  # rows r0:r1, cols c0:c1 applied to gt and pred
    cap_gt: bool = True  # mask min_depth < gt < max_depth; otherwise gt > 0 only
    keep_top: float = 1.0  # fraction of GT rows kept first (Cityscapes: 0.75, the ego car is cut off)


PROTOCOLS = {
    "eigen": Protocol("eigen", garg_crop=True),
    "eigen_benchmark": Protocol("eigen_benchmark", cap_gt=False),
    "cityscapes": Protocol("cityscapes", fixed_crop=CITYSCAPES_CROP, keep_top=0.75),
    "none": Protocol("none"),
}


@dataclass
class ImageResult:
    """Per-image numbers (metric arrays in the order of METRIC_NAMES; None where the subset is empty)."""

    index: int
    ratio: float
    pixels: int
    overall: np.ndarray
    static_pixels: int = 0
    static: np.ndarray | None = None
    dynamic_pixels: int = 0
    dynamic: np.ndarray | None = None


@dataclass
class EvalReport:
    """Means over images, the median-scaling ratios' median and normalised std, and the per-image rows."""

    protocol: str
    overall: MetricSet
    static: MetricSet | None
    dynamic: MetricSet | None
    median_scaling: bool
    ratio_median: float
    ratio_std: float
    per_image: list[ImageResult] = field(default_factory=list)

    def table(self) -> str:
        """Monodepth2-style text table, one row per pixel subset."""
        header = f"{'pixels':>8} | " + " | ".join(f"{name:>8}" for name in METRIC_NAMES) + " | images"
        lines = []
        if self.median_scaling:
            lines.append(f"Scaling ratios | med: {self.ratio_median:0.3f} | std: {self.ratio_std:0.3f}")
        lines.append(header)
        for label, metrics in (("all", self.overall), ("static", self.static), ("dynamic", self.dynamic)):
            if metrics is not None:
                lines.append(f"{label:>8} | " + " | ".join(f"{v:8.3f}" for v in metrics.values())
                             + f" | {metrics.images}")
        return "\n".join(lines)

    def write_csv(self, path: str | Path, labels: Sequence[str] | None = None) -> None:
        """One row per image (index, label, ratio, pixel counts, metrics of each subset); written atomically."""
        path = Path(path)
        columns = ["index", "label", "ratio", "pixels", *METRIC_NAMES]
        with_split = any(r.static is not None or r.dynamic is not None for r in self.per_image)
        if with_split:
            columns += ["static_pixels", *(f"static_{n}" for n in METRIC_NAMES),
                        "dynamic_pixels", *(f"dynamic_{n}" for n in METRIC_NAMES)]
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", suffix=".csv") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in self.per_image:
                label = labels[row.index] if labels is not None else ""
                values = [row.index, label, f"{row.ratio:.6f}", row.pixels, *(f"{v:.6f}" for v in row.overall)]
                if with_split:
                    for count, metrics in ((row.static_pixels, row.static), (row.dynamic_pixels, row.dynamic)):
                        values += [count, *([f"{v:.6f}" for v in metrics] if metrics is not None else [""] * 7)]
                writer.writerow(values)
        os.replace(handle.name, path)


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """H×W bool, True inside Garg et al.'s crop (rows 0.408·h..0.992·h, cols 0.036·w..0.964·w, truncated)."""
    top, bottom, left, right = (np.array(GARG_CROP) * [height, height, width, width]).astype(np.int32)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def resize_prediction(prediction: np.ndarray, height: int, width: int) -> np.ndarray:
    """h×w map → height×width with cv2 bilinear interpolation (as monodepth2's evaluation)."""
    if prediction.shape == (height, width):
        return prediction.astype(np.float32)
    return cv2.resize(prediction.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def _as_map_list(name: str, maps) -> list[np.ndarray]:
    """N maps (an N×h×w array, N×1×h×w array, object array or list) as a list of 2-D float arrays."""
    if isinstance(maps, np.ndarray) and maps.dtype != object:
        if maps.ndim == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if maps.ndim == 2:
            maps = maps[None]
        if maps.ndim != 3:
            raise EvaluationInputError(f"{name}: expected N×h×w maps, got an array of shape {maps.shape}")
    result = []
    for i, m in enumerate(maps):
        m = np.asarray(m)
        m = m.squeeze(0) if m.ndim == 3 and m.shape[0] == 1 else m
        if m.ndim != 2:
            raise EvaluationInputError(f"{name}[{i}]: expected an h×w map, got shape {m.shape}")
        result.append(m)
    return result


def check_inputs(predictions, ground_truth, dynamic_masks=None, disparity: bool = False
                 ) -> tuple[list, list, list | None]:
    """Validate everything before any number is computed: counts, shapes, finite non-negative predictions
    (strictly positive for disparities)."""
    predictions = _as_map_list("predictions", predictions)
    ground_truth = _as_map_list("ground truth", ground_truth)
    if not predictions:
        raise EvaluationInputError("no predictions to evaluate (the prediction set is empty)")
    if len(predictions) != len(ground_truth):
        raise EvaluationInputError(f"{len(predictions)} predictions but {len(ground_truth)} ground-truth maps; "
                                   "they must match one to one (same split, same order)")
    for i, prediction in enumerate(predictions):
        if not np.all(np.isfinite(prediction)):
            raise EvaluationInputError(f"prediction {i} holds {int((~np.isfinite(prediction)).sum())} NaN/inf values")
        if np.any(prediction < 0):
            raise EvaluationInputError(f"prediction {i} holds negative values (min {prediction.min():.4g})")
        if disparity and np.any(prediction == 0):
            raise EvaluationInputError(f"prediction {i} holds zero disparities (infinite depth)")
    if dynamic_masks is not None:
        dynamic_masks = _as_map_list("masks", dynamic_masks)
        if len(dynamic_masks) != len(ground_truth):
            raise EvaluationInputError(f"{len(dynamic_masks)} dynamic masks for {len(ground_truth)} images")
    return predictions, ground_truth, dynamic_masks


def dynamic_mask_from_instances(instances: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """H×W bool: pixels whose instance id (H×W int, 0 = background) is flagged moving in ``moving`` (by id)."""
    return np.asarray(moving, dtype=bool)[np.asarray(instances, dtype=np.int64)]


def evaluate_depth(predictions, ground_truth, masks=None, median_scaling: bool = True,
                   protocol: str = "eigen", predictions_are: Literal["depth", "disparity"] = "depth",
                   min_depth: float = 1e-3, max_depth: float = 80.0, scale_factor: float = 1.0) -> EvalReport:
    """Evaluate N predicted maps against N ground-truth maps (metres, 0 = unknown).

    ``predictions``: N maps h×w of depth (metres up to scale) or disparity, any resolution; ``ground_truth``: N maps
    H_i×W_i; ``masks``: optional N dynamic masks (H_i×W_i or any size, nearest-resized), True on moving-object
    pixels.
    ``scale_factor`` multiplies every prediction first (e.g. 5.4 for stereo-trained models). Returns an EvalReport
    with overall / static / dynamic MetricSets. Raises EvaluationInputError before computing anything on bad input.
    """
    if protocol not in PROTOCOLS:
        raise EvaluationInputError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if predictions_are not in ("depth", "disparity"):
        raise EvaluationInputError(f"predictions_are must be 'depth' or 'disparity', got {predictions_are!r}")
    predictions, ground_truth, masks = check_inputs(predictions, ground_truth, masks,
                                                    disparity=predictions_are == "disparity")
    rule = PROTOCOLS[protocol]
    per_image, ratios = [], []
    for i, (prediction, gt) in enumerate(zip(predictions, ground_truth)):
        gt = gt.astype(np.float32)
        dynamic = None if masks is None else masks[i].astype(np.uint8)
        if rule.keep_top < 1:
            kept_rows = int(round(gt.shape[0] * rule.keep_top))
            if dynamic is not None and dynamic.shape == gt.shape:
                dynamic = dynamic[:kept_rows]
            gt = gt[:kept_rows]
        height, width = gt.shape
        prediction = resize_prediction(prediction, height, width)
        if predictions_are == "disparity":
            prediction = 1.0 / prediction
        if dynamic is not None:
            dynamic = cv2.resize(dynamic, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
        if rule.fixed_crop is not None:
            r0, r1, c0, c1 = rule.fixed_crop
            gt, prediction = gt[r0:r1, c0:c1], prediction[r0:r1, c0:c1]
            dynamic = dynamic[r0:r1, c0:c1] if dynamic is not None else None
        mask = (gt > min_depth) & (gt < max_depth) if rule.cap_gt else gt > 0
        if rule.garg_crop:
            mask &= garg_crop_mask(height, width)
        if not mask.any():
            raise EvaluationInputError(f"ground truth {i} has no valid pixel under the {protocol} protocol")
        pred = prediction * scale_factor
        ratio = 1.0
        if median_scaling:
            ratio = float(np.median(gt[mask]) / np.median(pred[mask]))
            ratios.append(ratio)
            pred = pred * ratio
        pred = np.clip(pred, min_depth, max_depth)
        result = ImageResult(i, ratio, int(mask.sum()), compute_depth_errors(gt[mask], pred[mask]))
        if dynamic is not None:
            for name, subset in (("static", mask & ~dynamic), ("dynamic", mask & dynamic)):
                count = int(subset.sum())
                setattr(result, f"{name}_pixels", count)
                setattr(result, name, compute_depth_errors(gt[subset], pred[subset]) if count else None)
        per_image.append(result)
    ratios_array = np.array(ratios) if ratios else np.ones(1)
    median_ratio = float(np.median(ratios_array))
    return EvalReport(
        protocol=protocol,
        overall=MetricSet.mean_of([r.overall for r in per_image]),
        static=MetricSet.mean_of([r.static for r in per_image if r.static is not None]),
        dynamic=MetricSet.mean_of([r.dynamic for r in per_image if r.dynamic is not None]),
        median_scaling=median_scaling, ratio_median=median_ratio,
        ratio_std=float(np.std(ratios_array / median_ratio)), per_image=per_image)
