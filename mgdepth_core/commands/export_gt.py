"""``mgdepth export-gt``: LiDAR (eigen) or annotated (eigen_benchmark) ground truth of a KITTI test split."""

from __future__ import annotations

import argparse

from mgdepth_core.eval.export_gt import GROUND_TRUTH_KINDS, export_ground_truth

HELP = "export KITTI ground-truth depth of a test split to gt_depths.npz (as monodepth2's export_gt_depth.py)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="KITTI raw root (holds <date>/<drive>_sync folders)")
    parser.add_argument("--split", default="eigen", help="split name (eigen, eigen_benchmark) or a folder with "
                                                         "test_files.txt (lines 'folder frame side')")
    parser.add_argument("--kind", choices=GROUND_TRUTH_KINDS, default=None,
                        help="eigen: projected LiDAR; eigen_benchmark: annotated PNGs (default: from the split name, "
                             "eigen unless the split is eigen_benchmark)")
    parser.add_argument("--splits-dir", default=None,
                        help="folder of installed split lists (default $MGDEPTH_SPLITS or ~/.cache/mgdepth/splits)")
    parser.add_argument("--out", default=None, help="output .npz (default <split folder>/gt_depths.npz)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="export the frames that exist and list the split lines whose files are missing")
    parser.add_argument("--camera-z", action="store_true",
                        help="store the camera z as depth instead of the Velodyne x (monodepth2 uses vel_depth)")


def run(args: argparse.Namespace) -> int:
    result = export_ground_truth(args.data, args.split, args.splits_dir, args.out, skip_missing=args.skip_missing,
                                 velodyne_depth=not args.camera_z, kind=args.kind)
    for reason in result.skipped:
        print(f"skipped {reason}")
    print(f"wrote {result.frames} ground-truth maps to {result.path}"
          + (f" ({len(result.skipped)} split lines skipped)" if result.skipped else ""))
    return 0
