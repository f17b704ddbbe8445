"""Data sets for training and evaluation: KITTI raw, Cityscapes, the synthetic dynamic-scene set, rosbag2.

Every training data set yields samples with the same layout (a dict; torch's default collate batches it):

* ``"color"``: ``{frame_id: 3×H×W float32 in [0, 1]}``, un-augmented, for every id in ``DataConfig.frame_ids``
  (0 = target t, -1 = previous, 1 = next).
* ``"color_aug"``: the same frames with one colour-jitter draw shared by all frames of the sample.
* ``"K"``: 3×3 float32 intrinsics in pixels of the H×W images (scaled to the training size; a horizontal flip
  flips the principal point, ``cx → W − 1 − cx``).
* ``"index"``: int, position of the sample in the data set.

Optional keys, where the data set has them:

* ``"depth_gt"``: 1×H×W float32 metres for frame 0, 0 where unknown (synthetic: exact; KITTI: projected LiDAR).
* ``"instances"``: ``{frame_id: 1×H×W int64}`` per-pixel instance id, 0 = background. Ids are consistent across
  the frames of one sample (the same object has the same id in t−1, t and t+1) and lie in 1..MAX_INSTANCES.
* ``"instance_class"``: (MAX_INSTANCES+1,) int64 COCO class id per instance id (0 = none).
* ``"instance_score"``: (MAX_INSTANCES+1,) float32 detection score per instance id (1 for ground truth).
* ``"instance_moving"``: (MAX_INSTANCES+1,) bool, ground-truth "truly moving" flag (synthetic set only).
* ``"pose_gt"``: ``{frame_id: 4×4 float32}`` ground-truth ``T_{frame}_{0}`` (maps frame-0 camera points into
  that frame's camera; synthetic set only).

Samples exist only where every requested frame exists on disk; loaders never invent neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch.utils.data import Dataset

from mgdepth_core.config import option

MAX_INSTANCES = 32


@dataclass
class DataConfig:
    """Which data set to read and how to prepare samples."""

    dataset: Literal["kitti", "cityscapes", "synthetic", "bag"] = option("kitti", "data set kind")
    path: str = option("", "root folder of the data set (KITTI raw root, Cityscapes preprocessed root, bag path)")
    split: str = option("eigen_zhou", "split name (a folder of mgdepth_core/data/splits) or a path to a split folder")
    height: int = option(192, "training image height in pixels (multiple of 32)")
    width: int = option(640, "training image width in pixels (multiple of 32)")
    frame_ids: list[int] = option([0, -1, 1], "frames per sample, relative to the target frame 0")
    image_ext: str = option(".png", "KITTI image extension, .png or .jpg")
    kitti_intrinsics: Literal["calibration", "monodepth2"] = option(
        "calibration", "KITTI K: P_rect of the date folder's calib_cam_to_cam.txt, or Monodepth2's fixed normalised "
                       "K (0.58, 1.92, 0.5, 0.5) for parity with the original code")
    augment: bool = option(True, "colour jitter and horizontal flip on training samples")
    flip_probability: float = option(0.5, "probability of a horizontal flip (applied to every frame and to K)")
    jitter_probability: float = option(0.5, "probability of colour jitter (one draw shared by all frames)")
    masks_path: str = option("", "folder of precomputed instance masks (mgdepth precompute-masks); empty = none")
    synthetic_seed: int = option(0, "synthetic set: random seed of the first sequence")
    synthetic_sequences: int = option(4, "synthetic set: number of sequences (one seed each)")
    synthetic_frames: int = option(40, "synthetic set: frames per sequence")
    synthetic_cache_mb: float = option(512.0, "synthetic set: memory for rendered frames kept for reuse, MB (each "
                                              "frame is rendered once while they fit; per DataLoader worker)")
    exact_flow: bool = option(False, "synthetic set: every sample carries its exact optical flow (flow_gt), for "
                                     "model.flow = dataset and flow training")
    image_topic: str = option("", "bag: image topic (sensor_msgs/Image or CompressedImage)")
    camera_info_topic: str = option("", "bag: camera_info topic; empty = intrinsics_file if set, else the image "
                                        "topic's sibling camera_info")
    intrinsics_file: str = option("", "bag: YAML/JSON file with K (3×3, pixels) when the bag has no camera_info")
    max_gap_s: float = option(0.25, "bag: largest stamp gap between consecutive frames of one sample, seconds")
    camera_info_tolerance_s: float = option(0.05, "bag: largest stamp difference between a frame and the "
                                                  "camera_info paired with it, seconds")
    num_workers: int = option(2, "DataLoader worker processes")


def build_dataset(config: DataConfig, split: str = "train", training: bool = True) -> Dataset:
    """The data set that ``config.dataset`` names, for ``split`` ("train", "val" or "test")."""
    if config.dataset == "kitti":
        from mgdepth_core.data.kitti import KittiRawDataset
        return KittiRawDataset.from_config(config, split, training)
    if config.dataset == "cityscapes":
        from mgdepth_core.data.cityscapes import CityscapesPreprocessedDataset
        return CityscapesPreprocessedDataset.from_config(config, split, training)
    if config.dataset == "synthetic":
        from mgdepth_core.data.synthetic import SyntheticDynamicDataset
        return SyntheticDynamicDataset.from_config(config, split, training)
    if config.dataset == "bag":
        from mgdepth_core.data.bag import BagDataset
        return BagDataset.from_config(config, split, training)
    raise ValueError(f"unknown data set {config.dataset!r}")
