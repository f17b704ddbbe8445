"""KITTI raw: calibration files, LiDAR projection and the monocular training data set.

On-disk layout (KITTI's own)::

    <root>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <root>/<date>/<date>_drive_<nnnn>_sync/image_02/data/<frame:010d>.png|.jpg   (left colour camera)
    <root>/<date>/<date>_drive_<nnnn>_sync/image_03/data/…                          (right colour camera)
    <root>/<date>/<date>_drive_<nnnn>_sync/velodyne_points/data/<frame:010d>.bin    (float32 N×4)

Split lines are monodepth2's ``<date>/<drive>_sync <frame> <l|r>``. Intrinsics are, by default, the real
``P_rect_02`` / ``P_rect_03`` of the date folder scaled to the training size (``DataConfig.kitti_intrinsics =
"calibration"``); ``"monodepth2"`` gives Monodepth2's fixed normalised K (fx 0.58·W, fy 1.92·H, cx 0.5·W,
cy 0.5·H) for parity with the original code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mgdepth_core.data import MAX_INSTANCES, DataConfig
from mgdepth_core.data.splits import SplitError, SplitLine, read_split, split_file
from mgdepth_core.data.transforms import color_sample, draw_augmentation, maybe_flip, resize_rgb
from mgdepth_core.masks import MaskStore, sample_instances

SIDE_TO_CAMERA = {"l": 2, "r": 3}
MONODEPTH2_K = np.array([[0.58, 0, 0.5], [0, 1.92, 0.5], [0, 0, 1]])  # normalised by width / height


class CalibrationError(ValueError):
    """A KITTI calibration file that is missing, or lacks / cannot parse a field."""


def read_calibration_file(path: str | Path) -> dict[str, str]:
    """``key: values`` lines of a KITTI calibration file, values as raw text (parse with :func:`calibration_field`)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    fields = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise CalibrationError(f"{path}:{number}: expected 'key: values', got {line!r}")
        key, value = line.split(":", 1)
        fields[key.strip()] = value.strip()
    return fields


def calibration_field(fields: dict[str, str], name: str, shape: tuple[int, ...], path: str | Path) -> np.ndarray:
    """Field ``name`` as a float64 array of ``shape``, or a CalibrationError naming the file and the field."""
    if name not in fields:
        raise CalibrationError(f"calibration file {path} has no field {name!r}")
    try:
        values = np.array([float(v) for v in fields[name].split()], dtype=np.float64)
    except ValueError as exc:
        raise CalibrationError(f"calibration file {path}: field {name!r} is not a list of numbers: "
                               f"{fields[name]!r}") from exc
    if values.size != int(np.prod(shape)) or not np.all(np.isfinite(values)):
        raise CalibrationError(f"calibration file {path}: field {name!r} needs {int(np.prod(shape))} finite numbers, "
                               f"got {values.size}")
    return values.reshape(shape)


@dataclass(frozen=True)
class KittiCalibration:
    """The calibration of one KITTI date folder (all drives of that date)."""

    P_rect: dict[int, np.ndarray]  # camera index → 3×4 rectified projection, pixels of the full-size image
    image_size: dict[int, tuple[int, int]]  # camera index → (width, height) of the rectified image (S_rect)
    R_rect_00: np.ndarray  # 3×3 rectifying rotation of camera 0
    T_cam0_velo: np.ndarray  # 4×4, Velodyne points into the (unrectified) camera-0 frame

    @classmethod
    @functools.lru_cache(maxsize=64)
    def load(cls, date_dir: Path) -> KittiCalibration:
        cam_path, velo_path = date_dir / "calib_cam_to_cam.txt", date_dir / "calib_velo_to_cam.txt"
        cam = read_calibration_file(cam_path)
        velo = read_calibration_file(velo_path)
        P_rect, sizes = {}, {}
        for camera in (2, 3):
            P_rect[camera] = calibration_field(cam, f"P_rect_0{camera}", (3, 4), cam_path)
            width, height = calibration_field(cam, f"S_rect_0{camera}", (2,), cam_path)
            sizes[camera] = (int(width), int(height))
        T = np.eye(4)
        T[:3, :3] = calibration_field(velo, "R", (3, 3), velo_path)
        T[:3, 3] = calibration_field(velo, "T", (3,), velo_path)
        return cls(P_rect, sizes, calibration_field(cam, "R_rect_00", (3, 3), cam_path), T)

    def intrinsics(self, camera: int) -> np.ndarray:
        """3×3 intrinsics (pixels of the full-size rectified image) of colour camera 2 or 3."""
        return self.P_rect[camera][:, :3].copy()


def load_velodyne(path: str | Path) -> np.ndarray:
    """KITTI Velodyne scan: float32 N×4 (x, y, z metres, reflectance); an error names a file of the wrong size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Velodyne scan {path} does not exist")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise ValueError(f"Velodyne scan {path} holds {raw.size} floats, not a multiple of 4 (x, y, z, reflectance)")
    return raw.reshape(-1, 4)


def project_velodyne(points: np.ndarray, calibration: KittiCalibration, camera: int = 2,
                     image_size: tuple[int, int] | None = None, scale: tuple[float, float] = (1.0, 1.0),
                     velodyne_depth: bool = False, monodepth2_pixel_offset: bool = True) -> np.ndarray:
    """Sparse depth map (H×W float32 metres, 0 = no point) of a Velodyne scan seen by colour camera ``camera``.

    Follows monodepth2's ``generate_depth_map``: points behind the scanner (x < 0 in Velodyne coordinates) are
    dropped, the rest go through calib_velo_to_cam, R_rect_00 and P_rect_0{camera}; pixels are rounded (and, with
    ``monodepth2_pixel_offset``, shifted by −1 as the original code does); the nearest point wins per pixel.
    ``velodyne_depth`` stores the Velodyne x (forward) coordinate instead of the camera z (monodepth2's
    ``vel_depth``, used for the Eigen ground truth). ``image_size`` (width, height) defaults to S_rect;
    ``scale`` (sx, sy) projects into a resized image (P rows 0 and 1 multiplied).
    """
    width, height = image_size or calibration.image_size[camera]
    R_rect = np.eye(4)
    R_rect[:3, :3] = calibration.R_rect_00
    P = calibration.P_rect[camera].copy()
    P[0] *= scale[0]
    P[1] *= scale[1]
    P_velo_to_image = P @ R_rect @ calibration.T_cam0_velo
    points = points[points[:, 0] >= 0]
    homogeneous = np.concatenate([points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1)
    projected = homogeneous @ P_velo_to_image.T
    z = projected[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(projected[:, 0] / z)
        v = np.round(projected[:, 1] / z)
    if monodepth2_pixel_offset:
        u, v = u - 1, v - 1
    depth = points[:, 0].astype(np.float64) if velodyne_depth else z
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height) & np.isfinite(u) & np.isfinite(v)
    u, v, depth = u[inside].astype(np.int64), v[inside].astype(np.int64), depth[inside]
    depth_map = np.full(height * width, np.inf)
    np.minimum.at(depth_map, v * width + u, depth)
    depth_map[~np.isfinite(depth_map) | (depth_map < 0)] = 0
    return depth_map.reshape(height, width).astype(np.float32)


@dataclass(frozen=True)
class KittiFrame:
    """One split line, resolved: the target frame and every requested neighbour on disk."""

    line: SplitLine
    date_dir: Path
    camera: int
    images: dict[int, Path]  # frame id → image file
    velodyne: Path


def resolve_kitti_line(root: Path, line: SplitLine, frame_ids: list[int], image_ext: str) -> KittiFrame:
    """Paths of a ``folder frame side`` line; a missing image raises an error naming the file and the line."""
    if len(line.fields) < 3:
        raise SplitError(f"{line.where()}: expected 'folder frame side', got {' '.join(line.fields)!r}")
    folder, frame_text, side = line.fields[:3]
    if side not in SIDE_TO_CAMERA:
        raise SplitError(f"{line.where()}: side must be 'l' or 'r', got {side!r}")
    try:
        frame = int(frame_text)
    except ValueError as exc:
        raise SplitError(f"{line.where()}: frame {frame_text!r} is not an integer") from exc
    camera = SIDE_TO_CAMERA[side]
    drive = root / folder
    images = {}
    for frame_id in frame_ids:
        path = drive / f"image_0{camera}" / "data" / f"{frame + frame_id:010d}{image_ext}"
        if frame + frame_id < 0 or not path.is_file():
            raise SplitError(f"{line.where()}: frame {frame_id:+d} of this line, {path}, does not exist")
        images[frame_id] = path
    velodyne = drive / "velodyne_points" / "data" / f"{frame:010d}.bin"
    return KittiFrame(line, root / folder.split("/")[0], camera, images, velodyne)


def read_rgb(path: Path) -> np.ndarray:
    """H×W×3 uint8 RGB from a PNG or JPEG file; an unreadable file raises an error naming it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class KittiRawDataset(Dataset):
    """Monocular KITTI raw samples in the layout of :mod:`mgdepth_core.data` (``depth_gt`` = projected LiDAR)."""

    def __init__(self, root: str | Path, lines: list[SplitLine], height: int, width: int, frame_ids: list[int],
                 image_ext: str = ".png", intrinsics: str = "calibration", augment: bool = False,
                 flip_probability: float = 0.5, jitter_probability: float = 0.5, load_depth: bool = False,
                 masks_path: str | Path = ""):
        self.root = Path(root).expanduser()
        self.masks = MaskStore(masks_path) if masks_path else None  # precomputed instances (Dyna-DM)
        if not self.root.is_dir():
            raise FileNotFoundError(f"KITTI root {self.root} does not exist")
        if image_ext not in (".png", ".jpg"):
            raise ValueError(f"image_ext must be .png or .jpg, got {image_ext!r}")
        if intrinsics not in ("calibration", "monodepth2"):
            raise ValueError(f"intrinsics must be 'calibration' or 'monodepth2', got {intrinsics!r}")
        if 0 not in frame_ids:
            raise ValueError(f"frame_ids {frame_ids} must contain the target frame 0")
        self.height, self.width, self.frame_ids = height, width, list(frame_ids)
        self.intrinsics, self.load_depth = intrinsics, load_depth
        self.augment, self.flip_probability, self.jitter_probability = augment, flip_probability, jitter_probability
        self.frames = [resolve_kitti_line(self.root, line, self.frame_ids, image_ext) for line in lines]
        if intrinsics == "calibration":
            for frame in {f.date_dir: f for f in self.frames}.values():
                KittiCalibration.load(frame.date_dir)  # fail now, naming the file, rather than in a worker

    @classmethod
    def from_config(cls, config: DataConfig, split: str = "train", training: bool = True) -> KittiRawDataset:
        """``split`` picks ``<config.split>/<split>_files.txt``; LiDAR depth is loaded for evaluation only."""
        lines = read_split(split_file(config.split, split), min_fields=3)
        return cls(config.path, lines, config.height, config.width, config.frame_ids, config.image_ext,
                   config.kitti_intrinsics, augment=training and config.augment,
                   flip_probability=config.flip_probability, jitter_probability=config.jitter_probability,
                   load_depth=not training, masks_path=config.masks_path)

    def __len__(self) -> int:
        return len(self.frames)

    def intrinsics_for(self, frame: KittiFrame, original_size: tuple[int, int]) -> np.ndarray:
        """K (3×3, pixels of the height×width training image) of ``frame``; ``original_size`` is (width, height)."""
        if self.intrinsics == "monodepth2":
            K = MONODEPTH2_K.copy()
            K[0] *= self.width
            K[1] *= self.height
            return K
        K = KittiCalibration.load(frame.date_dir).intrinsics(frame.camera)
        K[0] *= self.width / original_size[0]
        K[1] *= self.height / original_size[1]
        return K

    def __getitem__(self, position: int) -> dict:
        frame = self.frames[position]
        originals = {frame_id: read_rgb(path) for frame_id, path in frame.images.items()}
        original_size = (originals[0].shape[1], originals[0].shape[0])
        images = {frame_id: resize_rgb(image, self.height, self.width) for frame_id, image in originals.items()}
        draw = draw_augmentation(self.augment, self.flip_probability, self.jitter_probability)
        sample = color_sample(images, self.intrinsics_for(frame, original_size), draw)
        sample["index"] = position
        if self.masks is not None:  # instance keys of the sample layout, ids associated over the frames once
            keys = {frame_id: path.relative_to(self.root).as_posix() for frame_id, path in frame.images.items()}
            found = sample_instances(self.masks, keys, self.height, self.width, MAX_INSTANCES)
            found["instances"] = {f: maybe_flip(ids, draw) for f, ids in found["instances"].items()}
            sample.update(found)
        if self.load_depth:  # projected LiDAR at the training size; all zeros where the drive has no scan
            depth = np.zeros((self.height, self.width), dtype=np.float32)
            if frame.velodyne.is_file():
                depth = project_velodyne(load_velodyne(frame.velodyne), KittiCalibration.load(frame.date_dir),
                                         frame.camera, image_size=(self.width, self.height),
                                         scale=(self.width / original_size[0], self.height / original_size[1]),
                                         monodepth2_pixel_offset=False)
            sample["depth_gt"] = maybe_flip(torch.from_numpy(depth)[None], draw)
        return sample
