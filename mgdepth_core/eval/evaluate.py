"""Inputs of ``mgdepth eval``: saved predictions, dynamic masks, and a model run over a test split.

A model is run through :class:`mgdepth_core.inference.DepthEstimator` as Manydepth's evaluation does: for each test
line the estimator is reset, fed frame t−1 (KITTI; Cityscapes: the sequence frame −2) and then frame t, and the
depth of frame t is kept. Lines without a previous frame (KITTI frame 0) are fed frame t alone (single-frame mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mgdepth_core.data.kitti import SIDE_TO_CAMERA, KittiCalibration, read_rgb
from mgdepth_core.data.splits import SplitError, SplitLine
from mgdepth_core.eval.metrics import EvaluationInputError, dynamic_mask_from_instances

PREDICTION_KEYS = ("data", "pred_disp", "disp", "disparity", "depth", "pred_depth")


@dataclass(frozen=True)
class EvalFrame:
    """One test frame: its image, the lookup frame fed before it, and K in pixels of the (cropped) image."""

    label: str  # the split line's text
    image: Path
    previous: Path | None
    K: np.ndarray  # 3×3, pixels of the image after keeping the top `keep_top` fraction of rows
    keep_top: float = 1.0  # Cityscapes: 0.75 (the ego car is cut off)


def load_maps(path: str | Path, what: str, keys: tuple[str, ...] = PREDICTION_KEYS) -> list[np.ndarray]:
    """N maps from a ``.npy`` (N×h×w or object array) or ``.npz`` (first of ``keys`` present, else its only array)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if path.suffix == ".npy":
        return list(np.load(path, allow_pickle=True))
    if path.suffix != ".npz":
        raise EvaluationInputError(f"{what} file {path} must be .npy or .npz")
    with np.load(path, allow_pickle=True) as archive:
        for key in keys:
            if key in archive.files:
                return list(archive[key])
        if len(archive.files) == 1:
            return list(archive[archive.files[0]])
        raise EvaluationInputError(f"{what} file {path}: none of the keys {', '.join(keys)} among "
                                   f"{', '.join(archive.files)}")


def load_dynamic_masks(path: str | Path) -> list[np.ndarray]:
    """Dynamic-pixel masks from an ``.npz``: ``data`` (N maps, non-zero = moving object), or ``instances``
    (N instance-id maps) with ``moving`` (N×(max id + 1) bool flags per id)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"masks file {path} does not exist")
    with np.load(path, allow_pickle=True) as archive:
        if "data" in archive.files:
            return [np.asarray(m) != 0 for m in archive["data"]]
        if "instances" in archive.files and "moving" in archive.files:
            instances, moving = list(archive["instances"]), list(archive["moving"])
            if len(instances) != len(moving):
                raise EvaluationInputError(f"masks file {path}: {len(instances)} instance maps but {len(moving)} "
                                           "rows of moving flags")
            return [dynamic_mask_from_instances(i, m) for i, m in zip(instances, moving)]
        raise EvaluationInputError(f"masks file {path} needs key 'data' or keys 'instances' and 'moving' "
                                   f"(has {', '.join(archive.files)})")


def kitti_eval_frames(data_path: str | Path, lines: list[SplitLine], image_ext: str = ".png") -> list[EvalFrame]:
    """Test frames of a KITTI split (``folder frame side``); a missing image raises an error naming the line."""
    root = Path(data_path).expanduser()
    frames = []
    for line in lines:
        if len(line.fields) < 3 or line.fields[2] not in SIDE_TO_CAMERA:
            raise SplitError(f"{line.where()}: expected 'folder frame l|r', got {' '.join(line.fields)!r}")
        folder, frame, side = line.fields[0], int(line.fields[1]), line.fields[2]
        camera = SIDE_TO_CAMERA[side]
        images = root / folder / f"image_0{camera}" / "data"
        image = images / f"{frame:010d}{image_ext}"
        if not image.is_file():
            raise SplitError(f"{line.where()}: {image} does not exist")
        previous = images / f"{frame - 1:010d}{image_ext}"
        K = KittiCalibration.load(root / folder.split("/")[0]).intrinsics(camera)
        frames.append(EvalFrame(" ".join(line.fields), image, previous if previous.is_file() else None, K))
    return frames


def predict_split(estimator, frames: list[EvalFrame], progress: bool = True) -> tuple[list[np.ndarray], int]:
    """Depth (metres up to scale, model resolution) of every frame, and how many had no lookup frame.

    ``estimator``: a DepthEstimator (``reset()``, ``process(image_rgb_uint8, K) -> DepthResult``).
    """
    predictions, single_frame = [], 0
    for frame in tqdm(frames, desc="eval", unit="frame", disable=not progress):
        estimator.reset()
        if frame.previous is not None:
            estimator.process(_load_cropped(frame.previous, frame.keep_top), frame.K)
        else:
            single_frame += 1
        result = estimator.process(_load_cropped(frame.image, frame.keep_top), frame.K)
        depth = np.asarray(result.depth, dtype=np.float32)
        if not np.all(np.isfinite(depth)):
            raise EvaluationInputError(f"the model's depth for {frame.label} holds NaN/inf values")
        predictions.append(depth)
    return predictions, single_frame


def _load_cropped(path: Path, keep_top: float) -> np.ndarray:
    image = read_rgb(path)
    return image[: int(image.shape[0] * keep_top)] if keep_top < 1 else image
