"""``mgdepth eval``: depth metrics of saved predictions or of a model run over a test split."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from mgdepth_core.data.splits import SplitError, read_split, resolve_split_dir, split_file
from mgdepth_core.eval.evaluate import kitti_eval_frames, load_dynamic_masks, load_maps, predict_split
from mgdepth_core.eval.export_gt import load_ground_truth
from mgdepth_core.eval.metrics import PROTOCOLS, evaluate_depth

HELP = "evaluate depth (7 metrics, Eigen/benchmark/Cityscapes protocols, static vs moving pixels)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", metavar="FILE",
                        help="N×h×w predictions (.npz key 'data'/'disp'/'depth', or .npy), in split order")
    source.add_argument("--weights", metavar="DIR", help="run this model (DepthEstimator) over the split instead")
    parser.add_argument("--predictions-are", choices=("disparity", "depth"), default="disparity",
                        help="what --predictions holds (monodepth2/Manydepth save disparities)")
    parser.add_argument("--split", default="eigen", help="split name (eigen, eigen_benchmark, cityscapes) or folder")
    parser.add_argument("--splits-dir", default=None,
                        help="folder of installed split lists (default $MGDEPTH_SPLITS or ~/.cache/mgdepth/splits)")
    parser.add_argument("--gt", default=None, help="gt_depths.npz from `mgdepth export-gt`, or a folder of "
                                                    "NNN_depth.npy (Cityscapes); default <split folder>/gt_depths.npz")
    parser.add_argument("--masks", default=None,
                        help=".npz of dynamic masks per image ('data': non-zero = moving object, or 'instances' + "
                             "'moving'); adds static / dynamic rows")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=None,
                        help="masking/cropping rules; default from the split name")
    parser.add_argument("--no-median-scaling", action="store_true", help="metric-scale model: no per-image scaling")
    parser.add_argument("--scale-factor", type=float, default=1.0, help="multiply predictions (5.4: stereo models)")
    parser.add_argument("--min-depth", type=float, default=1e-3, help="GT mask lower bound and prediction clamp, m")
    parser.add_argument("--max-depth", type=float, default=80.0, help="GT mask upper bound and prediction clamp, m")
    parser.add_argument("--csv", default=None, help="write per-image metrics to this CSV file")
    parser.add_argument("--data", default=None, help="with --weights: data set root (KITTI raw or Cityscapes)")
    parser.add_argument("--image-ext", default=".png", help="with --weights: KITTI image extension")
    parser.add_argument("--device", default="auto", help="with --weights: torch device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--save-predictions", default=None, help="with --weights: save the depth maps (.npz)")


def _protocol(args: argparse.Namespace) -> str:
    if args.protocol:
        return args.protocol
    name = Path(args.split).name
    if name not in PROTOCOLS:
        raise SplitError(f"no evaluation protocol for split {args.split!r}; pass --protocol "
                         f"({', '.join(PROTOCOLS)})")
    return name


def _default_gt(args: argparse.Namespace, protocol: str) -> Path:
    folder = resolve_split_dir(args.split, args.splits_dir)
    return folder / ("gt_depths" if protocol == "cityscapes" else "gt_depths.npz")


def _labels(args: argparse.Namespace, gt_path: Path, count: int) -> list[str] | None:
    """The split-line text of each evaluated image, where the split and the ground truth agree on the order."""
    try:
        lines = read_split(split_file(args.split, "test", args.splits_dir))
    except SplitError:
        return None
    if gt_path.suffix == ".npz":
        with np.load(gt_path, allow_pickle=True) as archive:
            if "line_numbers" in archive.files:
                by_number = {line.line_number: " ".join(line.fields) for line in lines}
                return [by_number.get(int(n), "") for n in archive["line_numbers"]]
    return [" ".join(line.fields) for line in lines] if len(lines) == count else None


def _predict_with_model(args: argparse.Namespace, protocol: str) -> tuple[list[np.ndarray], list[str]]:
    from mgdepth_core.inference import DepthEstimator

    if not args.data:
        raise SplitError("--weights needs --data (the data set root)")
    lines = read_split(split_file(args.split, "test", args.splits_dir), min_fields=2)
    if protocol == "cityscapes":
        from mgdepth_core.data.cityscapes import cityscapes_eval_frames
        frames = cityscapes_eval_frames(args.data, lines)
    else:
        frames = kitti_eval_frames(args.data, lines, args.image_ext)
    # Manydepth's evaluation always matches frame t against t−1, however little the camera moved
    estimator = DepthEstimator.from_weights(args.weights, device=args.device, min_translation=0.0)
    predictions, single_frame = predict_split(estimator, frames)
    if single_frame:
        print(f"{single_frame} frames had no previous frame and were predicted in single-frame mode")
    if args.save_predictions:
        path = Path(args.save_predictions)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".npz") as handle:
            np.savez_compressed(handle, depth=np.stack(predictions))
        os.replace(handle.name, path)
    return predictions, [frame.label for frame in frames]


def run(args: argparse.Namespace) -> int:
    protocol = _protocol(args)
    gt_path = Path(args.gt) if args.gt else _default_gt(args, protocol)
    ground_truth = load_ground_truth(gt_path)
    masks = load_dynamic_masks(args.masks) if args.masks else None
    if args.weights:
        predictions, labels = _predict_with_model(args, protocol)
        predictions_are = "depth"
    else:
        predictions = load_maps(args.predictions, "predictions")
        predictions_are = args.predictions_are
        labels = _labels(args, gt_path, len(ground_truth))
    report = evaluate_depth(predictions, ground_truth, masks, median_scaling=not args.no_median_scaling,
                            protocol=protocol, predictions_are=predictions_are, min_depth=args.min_depth,
                            max_depth=args.max_depth, scale_factor=args.scale_factor)
    print(report.table())
    if args.csv:
        report.write_csv(args.csv, labels)
        print(f"per-image results: {args.csv}")
    return 0
