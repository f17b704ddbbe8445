"""Cityscapes as Manydepth uses it: SfMLearner-preprocessed training triplets and the test-set evaluation frames.

Training (split ``cityscapes_preprocessed``, lines ``<city> <frame_name>``)::

    <root>/<city>/<frame_name>.jpg       three frames t−1, t, t+1 side by side (3·1024 × 384, ego car cut off)
    <root>/<city>/<frame_name>_cam.txt   9 comma-separated numbers, K of one 1024×384 frame (row-major)

made by SfMLearner's ``prepare_train_data.py --dataset_name cityscapes --img_height 512 --img_width 1024
--seq_length 3``. K is normalised by the frame's size (1024 × 384) and scaled to the training size (default
192×512 for Cityscapes).

Evaluation (split ``cityscapes``, 1 525 lines ``<city> <city>_<seq>_<frame>``)::

    <root>/leftImg8bit/test/<city>/<name>_leftImg8bit.png
    <root>/leftImg8bit_sequence/test/<city>/<city>_<seq>_<frame − 2>_leftImg8bit.png   (lookup frame)
    <root>/camera_trainvaltest/camera/test/<city>/<name>_camera.json                     (intrinsic fx, fy, u0, v0)

Images keep their top 75 % of rows; K is normalised by 2048 and 0.75·1024. Ground truth: Niantic's
``gt_depths/{i:03d}_depth.npy`` (1024×2048 metres), evaluated with the ``cityscapes`` protocol of
:mod:`mgdepth_core.eval.metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mgdepth_core.data import DataConfig
from mgdepth_core.data.kitti import read_rgb
from mgdepth_core.data.splits import SplitError, SplitLine, read_split, split_file
from mgdepth_core.data.transforms import color_sample, draw_augmentation, resize_rgb
from mgdepth_core.eval.evaluate import EvalFrame

TRIPLET_FRAME_IDS = (-1, 0, 1)  # order of the frames in a preprocessed strip, left to right
KEEP_TOP = 0.75  # fraction of rows kept (the bottom quarter shows the ego car)
LOOKUP_OFFSET = -2  # the evaluation's lookup frame: two sequence frames before the test frame


def read_cam_txt(path: Path) -> np.ndarray:
    """3×3 K from an SfMLearner ``*_cam.txt`` (9 numbers, comma- or space-separated); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"intrinsics file {path} does not exist")
    try:
        values = [float(v) for v in path.read_text().replace(",", " ").split()]
    except ValueError as exc:
        raise ValueError(f"intrinsics file {path} does not hold numbers: {exc}") from exc
    if len(values) != 9:
        raise ValueError(f"intrinsics file {path} holds {len(values)} numbers, expected 9 (a row-major 3×3 K)")
    return np.array(values, dtype=np.float64).reshape(3, 3)


class CityscapesPreprocessedDataset(Dataset):
    """Training samples from SfMLearner-preprocessed Cityscapes triplets (frames −1, 0, 1 only)."""

    def __init__(self, root: str | Path, lines: list[SplitLine], height: int, width: int, frame_ids: list[int],
                 augment: bool = False, flip_probability: float = 0.5, jitter_probability: float = 0.5):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Cityscapes preprocessed root {self.root} does not exist")
        unknown = sorted(set(frame_ids) - set(TRIPLET_FRAME_IDS))
        if unknown or 0 not in frame_ids:
            raise ValueError(f"preprocessed Cityscapes triplets hold frames -1, 0, 1; frame_ids {frame_ids} asks for "
                             f"{unknown or 'no target frame 0'}")
        self.height, self.width, self.frame_ids = height, width, list(frame_ids)
        self.augment, self.flip_probability, self.jitter_probability = augment, flip_probability, jitter_probability
        self.items = []
        for line in lines:
            if len(line.fields) < 2:
                raise SplitError(f"{line.where()}: expected '<city> <frame_name>', got {' '.join(line.fields)!r}")
            city, name = line.fields[:2]
            image, camera = self.root / city / f"{name}.jpg", self.root / city / f"{name}_cam.txt"
            if not image.is_file():
                png = image.with_suffix(".png")
                image = png if png.is_file() else image
            for path in (image, camera):
                if not path.is_file():
                    raise SplitError(f"{line.where()}: {path} does not exist")
            self.items.append((image, camera))

    @classmethod
    def from_config(cls, config: DataConfig, split: str = "train", training: bool = True
                    ) -> CityscapesPreprocessedDataset:
        lines = read_split(split_file(config.split, split), min_fields=2)
        return cls(config.path, lines, config.height, config.width, config.frame_ids,
                   augment=training and config.augment, flip_probability=config.flip_probability,
                   jitter_probability=config.jitter_probability)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> dict:
        image_path, camera_path = self.items[position]
        strip = read_rgb(image_path)
        frame_width = strip.shape[1] // 3
        if strip.shape[1] != 3 * frame_width:
            raise ValueError(f"{image_path}: width {strip.shape[1]} is not three frames side by side")
        frames = {frame_id: strip[:, i * frame_width:(i + 1) * frame_width]
                  for i, frame_id in enumerate(TRIPLET_FRAME_IDS) if frame_id in self.frame_ids}
        K = read_cam_txt(camera_path)
        K[0] *= self.width / frame_width
        K[1] *= self.height / strip.shape[0]
        images = {frame_id: resize_rgb(np.ascontiguousarray(image), self.height, self.width)
                  for frame_id, image in frames.items()}
        draw = draw_augmentation(self.augment, self.flip_probability, self.jitter_probability)
        sample = color_sample(images, K, draw)
        sample["index"] = position
        return sample


def lookup_frame_name(name: str, offset: int = LOOKUP_OFFSET) -> str:
    """``<city>_<seq>_<frame>`` of the sequence frame ``offset`` frames away (frame numbers are 6 digits)."""
    city, sequence, frame = name.rsplit("_", 2)
    return f"{city}_{sequence}_{int(frame) + offset:06d}"


def cityscapes_intrinsics(camera_json: Path) -> np.ndarray:
    """3×3 K (pixels of the 2048×768 top-75 % image) from a Cityscapes ``*_camera.json``."""
    if not camera_json.is_file():
        raise FileNotFoundError(f"camera file {camera_json} does not exist")
    try:
        intrinsic = json.loads(camera_json.read_text())["intrinsic"]
        fx, fy, u0, v0 = (float(intrinsic[k]) for k in ("fx", "fy", "u0", "v0"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"camera file {camera_json}: needs intrinsic.fx, fy, u0, v0 ({exc})") from exc
    # Manydepth normalises by 2048 and 0.75·1024 and scales back to the cropped image: the pixel values stay.
    return np.array([[fx, 0, u0], [0, fy, v0], [0, 0, 1]], dtype=np.float64)


def cityscapes_eval_frames(data_path: str | Path, lines: list[SplitLine], subset: str = "test") -> list[EvalFrame]:
    """Evaluation frames of the ``cityscapes`` split: test frame, lookup frame −2, K; errors name the line."""
    root = Path(data_path).expanduser()
    frames = []
    for line in lines:
        if len(line.fields) < 2:
            raise SplitError(f"{line.where()}: expected '<city> <frame_name>', got {' '.join(line.fields)!r}")
        city, name = line.fields[:2]
        image = root / "leftImg8bit" / subset / city / f"{name}_leftImg8bit.png"
        lookup = root / "leftImg8bit_sequence" / subset / city / f"{lookup_frame_name(name)}_leftImg8bit.png"
        camera = root / "camera_trainvaltest" / "camera" / subset / city / f"{name}_camera.json"
        for path in (image, lookup, camera):
            if not path.is_file():
                raise SplitError(f"{line.where()}: {path} does not exist")
        frames.append(EvalFrame(" ".join(line.fields), image, lookup, cityscapes_intrinsics(camera), KEEP_TOP))
    return frames


class CityscapesEvalDataset(Dataset):
    """Evaluation inputs at the model size: ``color`` {0: test frame, -1: lookup frame} (3×H×W in [0, 1], top
    75 % of rows), ``K`` (3×3 pixels) and ``index``. Ground truth is evaluated separately (see module doc)."""

    def __init__(self, frames: list[EvalFrame], height: int, width: int):
        self.frames, self.height, self.width = frames, height, width

    @classmethod
    def from_config(cls, config: DataConfig, subset: str = "test") -> CityscapesEvalDataset:
        lines = read_split(split_file(config.split, "test"), min_fields=2)
        return cls(cityscapes_eval_frames(config.path, lines, subset), config.height, config.width)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, position: int) -> dict:
        frame = self.frames[position]
        images = {}
        for frame_id, path in ((0, frame.image), (-1, frame.previous)):
            image = read_rgb(path)
            cropped = image[: int(image.shape[0] * frame.keep_top)]
            images[frame_id] = resize_rgb(cropped, self.height, self.width)
        K = frame.K.copy()
        K[0] *= self.width / cropped.shape[1]
        K[1] *= self.height / cropped.shape[0]
        sample = color_sample(images, K, draw_augmentation(False))
        sample["index"] = position
        return sample
