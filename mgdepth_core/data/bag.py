"""Self-supervised training samples from a rosbag2 (sqlite3 or MCAP) camera topic.

Frames come from :mod:`mgdepth_core.bagio` (indexed once, decoded lazily, one reader per DataLoader worker).
A sample exists for every frame whose neighbours ``frame_ids`` lie in the same sequence (no backwards jump, no
stamp gap above ``max_gap_s`` in between). Train/val split, deterministic: the samples are numbered in bag order
and every 10th (numbers 9, 19, 29, …) is validation, the others training; split "test" (or "all") is every sample.
The sample layout, resizing and augmentation are those of every other data set (:mod:`mgdepth_core.data`,
:mod:`mgdepth_core.data.transforms`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mgdepth_core.bagio import (
    BagFrameSource,
    BagIndex,
    index_bag,
    intrinsics_for_size,
    sample_windows,
    split_sequences,
)
from mgdepth_core.data import DataConfig
from mgdepth_core.data.transforms import color_sample, draw_augmentation, resize_rgb
from mgdepth_core.geometry import scale_intrinsics

VAL_EVERY = 10  # every VAL_EVERY-th sample (in bag order) is a validation sample


@functools.lru_cache(maxsize=4)
def _cached_index(path: str, modified_ns: int, image_topic: str, camera_info_topic: str, intrinsics_file: str,
                  camera_info_tolerance_s: float, max_gap_s: float) -> BagIndex:
    return index_bag(path, image_topic, camera_info_topic, intrinsics_file, camera_info_tolerance_s, max_gap_s)


def cached_index(config: DataConfig) -> BagIndex:
    """The bag index for ``config``, read once per process even when train and val sets are both built."""
    path = Path(config.path)
    modified = path.stat().st_mtime_ns if path.exists() else 0
    return _cached_index(str(path), modified, config.image_topic, config.camera_info_topic, config.intrinsics_file,
                         config.camera_info_tolerance_s, config.max_gap_s)


class BagDataset(Dataset):
    """Samples of consecutive frames of one image topic (see the module doc for the split rule)."""

    def __init__(self, index: BagIndex, split: str = "train", frame_ids: list[int] | None = None,
                 height: int = 192, width: int = 640, training: bool = True, augment: bool = True,
                 flip_probability: float = 0.5, jitter_probability: float = 0.5, max_gap_s: float = 0.25):
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"bag data set: unknown split {split!r}; choose train, val, test or all")
        self.frame_ids = list(frame_ids or [0, -1, 1])
        if 0 not in self.frame_ids:
            raise ValueError(f"bag data set: frame_ids {self.frame_ids} must contain the target frame 0")
        self.height, self.width = height, width
        self.augment = training and augment
        self.flip_probability, self.jitter_probability = flip_probability, jitter_probability
        self.source = BagFrameSource(index)
        windows = sample_windows(split_sequences(index.frames, max_gap_s), self.frame_ids)
        if split == "train":
            windows = [w for n, w in enumerate(windows) if n % VAL_EVERY != VAL_EVERY - 1]
        elif split == "val":
            windows = [w for n, w in enumerate(windows) if n % VAL_EVERY == VAL_EVERY - 1]
        self.windows = windows
        if not windows:
            raise ValueError(f"bag {index.path}: no {split} samples of frames {self.frame_ids} on {index.image_topic} "
                             f"({len(index.frames)} frames; is max_gap_s={max_gap_s} s smaller than the frame period?)")

    @classmethod
    def from_config(cls, config: DataConfig, split: str = "train", training: bool = True) -> BagDataset:
        if not config.path:
            raise ValueError("bag data set: data.path (the bag) is empty; pass --bag PATH")
        return cls(cached_index(config), split, config.frame_ids, config.height, config.width, training,
                   config.augment, config.flip_probability, config.jitter_probability, config.max_gap_s)

    def __len__(self) -> int:
        return len(self.windows)

    def stamp_ns(self, index: int) -> int:
        """Header stamp of sample ``index``'s target frame, nanoseconds."""
        return self.source.index.frames[self.windows[index][0]].stamp_ns

    def __getitem__(self, index: int) -> dict:
        window = self.windows[index]
        images = {}
        for frame_id, frame_index in window.items():
            image = self.source.image(frame_index)
            if frame_id == 0:
                native_height, native_width = image.shape[:2]
            images[frame_id] = resize_rgb(image, self.height, self.width)
        K = intrinsics_for_size(self.source.index.frames[window[0]], native_width, native_height)
        K = scale_intrinsics(torch.from_numpy(K), self.width / native_width, self.height / native_height)
        draw = draw_augmentation(self.augment, self.flip_probability, self.jitter_probability)
        sample = color_sample(images, K.numpy(), draw)
        sample["index"] = index
        return sample
