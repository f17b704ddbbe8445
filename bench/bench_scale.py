"""Metric scale sources (mgdepth_core.scale) against median scaling: abs_rel WITHOUT per-image median scaling, and
the scale's frame-to-frame spread.

Two settings:

* ``kitti_lidar``: KITTI raw drive 0060 (shared/data, frames 0-39, no oxts), the projected LiDAR depth itself
  divided by a known factor as the "prediction" (no KITTI-trained weights exist here): it validates the
  camera_height source on real road geometry (camera 1.65 m above the road). The odometry source needs oxts,
  which this drive copy lacks.
* ``synthetic_model`` (with ``--weights``): a model trained here on the synthetic street, run on held-out
  sequences; camera_height with the renderer's 1.5 m, odometry with the true translations.

    python bench/bench_scale.py [--shared-data ../shared/data] \
        --weights runs/claim/manydepth_2_600/models/weights_7_400 --output scale.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mgdepth_core.data.kitti import KittiCalibration, load_velodyne, project_velodyne
from mgdepth_core.data.synthetic import CAMERA_HEIGHT, SyntheticSequence
from mgdepth_core.eval.metrics import compute_depth_errors
from mgdepth_core.scale import ScaleEstimator

REPO = Path(__file__).resolve().parents[1]
KITTI_CAMERA_HEIGHT = 1.65  # metres, KITTI's colour cameras above the road
MAX_DEPTH = 80.0


def abs_rel(gt: np.ndarray, pred: np.ndarray) -> float:
    valid = (gt > 1e-3) & (gt < MAX_DEPTH) & np.isfinite(pred) & (pred > 0)
    return float(compute_depth_errors(gt[valid], pred[valid])[0])


def evaluate(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, float | None, float | None]],
             camera_height: float, smoothing: float) -> dict[str, dict]:
    """``frames``: (network depth H×W, K 3×3, true depth H×W metres, network and true translation since the
    previous frame). Per source: mean abs_rel of scale × network depth, mean and max |Δscale| / scale between frames
    that both have a measured scale, and the frames left at the fixed scale (before the first measurement)."""
    rows: dict[str, dict] = {}
    sources = {"fixed": "fixed", f"camera_height (EMA {smoothing})": "camera_height", "camera_height (raw)":
               "camera_height", f"odometry (EMA {smoothing})": "odometry", "odometry (raw)": "odometry"}
    have_odometry = any(f[4] is not None for f in frames)
    for name, source in sources.items():
        if source == "odometry" and not have_odometry:
            continue
        estimator = ScaleEstimator(source, camera_height_m=camera_height,
                                   smoothing=1.0 if "raw" in name else smoothing)
        scales, errors, used = [], [], []
        for depth, K, gt, network_t, true_t in frames:
            scale = estimator.update(torch.from_numpy(depth), torch.from_numpy(K), network_t, true_t)
            scales.append(scale)
            used.append(estimator.source)
            errors.append(abs_rel(gt, depth * scale))
        measured = np.array([u != "fixed" for u in used]) if source != "fixed" else np.ones(len(used), bool)
        steps = (np.abs(np.diff(scales)) / np.asarray(scales[1:]))[measured[1:] & measured[:-1]]
        rows[name] = {"abs_rel": float(np.mean(errors)), "scale_mean": float(np.mean(scales)),
                      "spread_mean": float(steps.mean()), "spread_max": float(steps.max()),
                      "fallback_frames": used.count("fixed") if source != "fixed" else 0}
    medians = [float(np.nanmedian(gt[gt > 0] / depth[gt > 0])) for depth, _, gt, _, _ in frames]
    median_errors = [abs_rel(gt, depth * median) for (depth, _, gt, _, _), median in zip(frames, medians)]
    rows["median scaling (per image)"] = {"abs_rel": float(np.mean(median_errors)),
                                          "scale_mean": float(np.mean(medians))}
    return rows


def kitti_frames(date_dir: Path, factor: float) -> list:
    calibration = KittiCalibration.load(date_dir)
    K = calibration.intrinsics(2)
    frames = []
    for scan in sorted((date_dir / "2011_09_26_drive_0060_sync" / "velodyne_points" / "data").glob("*.bin")):
        gt = project_velodyne(load_velodyne(scan), calibration, camera=2).astype(np.float64)
        frames.append((np.where(gt > 0, gt / factor, np.nan), K, gt, None, None))
    return frames


def synthetic_frames(weights: str, seeds: list[int], num_frames: int) -> list[list]:
    from mgdepth_core.inference import DepthEstimator

    estimator = DepthEstimator.from_weights(weights, device="cpu", min_translation=0.0)
    sequences = []
    for seed in seeds:
        estimator.reset()
        sequence = SyntheticSequence(seed, num_frames, estimator.height, estimator.width)
        frames = []
        for index in range(num_frames):
            frame = sequence.frame(index)
            result = estimator.process(frame["image"], frame["K"], 0.1 * index)
            network_t = true_t = None
            if result.T_prev_current is not None:
                network_t = float(np.linalg.norm(result.T_prev_current[:3, 3]))
                true_t = float(np.linalg.norm(sequence.relative_pose(index - 1, index)[:3, 3]))
            frames.append((result.depth.astype(np.float64), result.K, frame["depth"].astype(np.float64),
                           network_t, true_t))
        sequences.append(frames)
    return sequences


def mean_rows(per_sequence: list[dict[str, dict]]) -> dict[str, dict]:
    return {name: {key: float(np.mean([rows[name][key] for rows in per_sequence])) for key in per_sequence[0][name]}
            for name in per_sequence[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data", help="../shared/data")
    parser.add_argument("--factor", type=float, default=5.0, help="kitti_lidar: LiDAR depth is divided by this")
    parser.add_argument("--smoothing", type=float, default=0.2, help="EMA weight of a new scale measurement")
    parser.add_argument("--weights", default="", help="synthetic_model: a weights folder trained on the synthetic "
                                                      "street (skipped when empty)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2000, 2001, 2002, 2003], help="held-out seeds")
    parser.add_argument("--frames", type=int, default=20, help="frames per synthetic sequence")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, dict] = {}
    date_dir = args.shared_data / "kitti_raw" / "2011_09_26"
    if date_dir.is_dir():
        results["kitti_lidar"] = evaluate(kitti_frames(date_dir, args.factor), KITTI_CAMERA_HEIGHT, args.smoothing)
    if args.weights:
        sequences = synthetic_frames(args.weights, args.seeds, args.frames)
        results["synthetic_model"] = mean_rows([evaluate(frames, CAMERA_HEIGHT, args.smoothing)
                                                for frames in sequences])
    for setting, rows in results.items():
        print(f"\n{setting}")
        for name, row in rows.items():
            print(f"  {name:32s} " + "  ".join(f"{key} {value:.4f}" for key, value in row.items()))
    if args.output:
        args.output.write_text(json.dumps({"command": " ".join(sys.argv), **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
