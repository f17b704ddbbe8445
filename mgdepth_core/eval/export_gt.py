"""Ground-truth depth for a KITTI evaluation split, as monodepth2's ``export_gt_depth.py`` writes it.

``eigen``: the Velodyne scan of each test frame projected into the left colour camera (camera 2) at full
resolution with ``vel_depth`` (the Velodyne x coordinate as depth) and the original code's −1 pixel offset;
``eigen_benchmark``: the KITTI depth benchmark's annotated maps (``proj_depth/groundtruth/image_02/*.png`` / 256).
The result is one compressed ``.npz`` with key ``data``: an object array of per-frame H×W float32 maps
(load with ``allow_pickle=True``), and ``line_numbers``: the 1-based split-file line of each map.
Finished frames are kept in ``<out>.parts/`` so an interrupted export resumes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mgdepth_core.data.kitti import KittiCalibration, load_velodyne, project_velodyne
from mgdepth_core.data.splits import SplitError, SplitLine, read_split, split_file

GROUND_TRUTH_KINDS = ("eigen", "eigen_benchmark")


@dataclass
class ExportResult:
    path: Path
    frames: int
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of every skipped split line


def ground_truth_source(root: Path, line: SplitLine, benchmark: bool) -> Path:
    """The file a split line's ground truth comes from (Velodyne scan, or benchmark PNG)."""
    if len(line.fields) < 2:
        raise SplitError(f"{line.where()}: expected 'folder frame [side]', got {' '.join(line.fields)!r}")
    folder, frame = line.fields[0], int(line.fields[1])
    if benchmark:
        return root / folder / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png"
    return root / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"


def ground_truth_map(root: Path, line: SplitLine, benchmark: bool, velodyne_depth: bool = True) -> np.ndarray:
    """H×W float32 metres (0 = no measurement) of one split line."""
    source = ground_truth_source(root, line, benchmark)
    if benchmark:
        raw = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16:
            raise ValueError(f"{line.where()}: {source} is not a 16-bit KITTI depth PNG")
        return raw.astype(np.float32) / 256.0
    calibration = KittiCalibration.load(root / line.fields[0].split("/")[0])
    return project_velodyne(load_velodyne(source), calibration, camera=2, velodyne_depth=velodyne_depth,
                            monodepth2_pixel_offset=True)


def export_ground_truth(data_path: str | Path, split: str = "eigen", splits_dir: str | Path | None = None,
                        out: str | Path | None = None, skip_missing: bool = False, velodyne_depth: bool = True,
                        progress: bool = True, kind: str | None = None) -> ExportResult:
    """Write ``<split folder>/gt_depths.npz`` (or ``out``) for the split's ``test_files.txt``.

    A line whose source file is missing raises an error naming the line, unless ``skip_missing``: then the export
    holds the frames that exist and ``ExportResult.skipped`` lists the others (their order is kept otherwise).
    ``split`` may also be a folder path. ``kind`` (eigen: LiDAR, eigen_benchmark: annotated maps) defaults to
    eigen_benchmark for a split of that name and to eigen otherwise.
    """
    root = Path(data_path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"KITTI root {root} does not exist")
    test_list = split_file(split, "test", splits_dir)
    kind = kind or ("eigen_benchmark" if Path(split).name == "eigen_benchmark" else "eigen")
    if kind not in GROUND_TRUTH_KINDS:
        raise SplitError(f"export-gt knows the kinds {', '.join(GROUND_TRUTH_KINDS)}, got {kind!r}")
    benchmark = kind == "eigen_benchmark"
    lines = read_split(test_list, min_fields=2)
    out = Path(out) if out else test_list.parent / "gt_depths.npz"
    skipped, present = [], []
    for line in lines:
        source = ground_truth_source(root, line, benchmark)
        if source.is_file():
            present.append(line)
        elif skip_missing:
            skipped.append(f"{line.where()}: {source} does not exist")
        else:
            raise SplitError(f"{line.where()}: {source} does not exist (use --skip-missing to export the rest)")
    if not present:
        raise SplitError(f"none of the {len(lines)} frames of {test_list} has its ground-truth file under {root}")
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    maps = []
    for line in tqdm(present, desc=f"export-gt {kind}", unit="frame", disable=not progress):
        part = parts / f"{line.line_number:06d}.npy"
        if part.is_file():
            maps.append(np.load(part))
            continue
        depth = ground_truth_map(root, line, benchmark, velodyne_depth)
        _save_atomic(part, lambda handle, d=depth: np.save(handle, d))
        maps.append(depth)
    data = np.empty(len(maps), dtype=object)
    for index, depth in enumerate(maps):
        data[index] = depth
    line_numbers = np.array([line.line_number for line in present], dtype=np.int64)
    _save_atomic(out, lambda handle: np.savez_compressed(handle, data=data, line_numbers=line_numbers))
    shutil.rmtree(parts)
    return ExportResult(out, len(maps), skipped)


def load_ground_truth(path: str | Path) -> list[np.ndarray]:
    """Per-frame maps of a ``gt_depths.npz`` (key ``data``), or of a folder of ``NNN_depth.npy`` files."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*_depth.npy"), key=lambda f: int(f.name.split("_")[0]))
        if not files:
            raise FileNotFoundError(f"ground-truth folder {path} holds no *_depth.npy files")
        return [np.load(f) for f in files]
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file {path} does not exist (make it with `mgdepth export-gt`)")
    with np.load(path, allow_pickle=True) as archive:
        if "data" not in archive:
            raise ValueError(f"ground-truth file {path} has no key 'data' (keys: {', '.join(archive.files)})")
        return list(archive["data"])


def _save_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=f".{path.name}.") as handle:
        write(handle)
    os.replace(handle.name, path)
