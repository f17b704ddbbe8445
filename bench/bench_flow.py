"""Optical flow accuracy on held-out synthetic scenes: what Manydepth2's static reference gets from its flow network.

For each flow source, on the test seeds (current frame → previous frame, the model's pair), at the given size:
end-point error (EPE, pixels, mean) on static and on moving-object pixels, the share of pixels with EPE > 3 px, and
the motion mask the static reference would build from it with the TRUE depth and pose (|F − S| > threshold):
recall on pixels whose object motion exceeds the threshold, and the share of static pixels wrongly marked moving.
Sources, all in one process: ``zero`` (no motion), ``random`` (RAFT with random weights) and each ``--weights``
file (``mgdepth train-flow``'s flow.pth or torchvision's RAFT checkpoint).

    python bench/bench_flow.py --weights runs/flow_raft_small/flow.pth
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_io import RESULTS, write_results
from synthetic_pairs import parse_seeds, true_pairs

from mgdepth_core.geometry import rigid_flow
from mgdepth_core.models import ModelConfig
from mgdepth_core.models.flow import FlowEstimator
from mgdepth_core.train.flow_training import endpoint_errors


def score(pairs: list[dict], predict, threshold: float) -> dict:
    """EPE and motion-mask figures of ``predict(image, previous) → B×2×H×W`` over ``pairs`` (pixel-weighted)."""
    sums = {"static_epe": 0.0, "moving_epe": 0.0, "static_outliers": 0, "moving_outliers": 0, "static": 0,
            "moving": 0, "visibly_moving": 0, "detected": 0, "static_flagged": 0}
    start = time.perf_counter()
    with torch.no_grad():
        for pair in pairs:
            flow = predict(pair["image"], pair["reference"])
            epe = endpoint_errors(flow, pair["flow"])
            moving, static = pair["moving"], ~pair["moving"]
            flagged = (flow - pair["rigid"]).norm(dim=1, keepdim=True) > threshold
            visibly_moving = (pair["flow"] - pair["rigid"]).norm(dim=1, keepdim=True) > threshold
            sums["static_epe"] += float(epe[static].sum())
            sums["moving_epe"] += float(epe[moving].sum())
            sums["static_outliers"] += int((epe[static] > 3).sum())
            sums["moving_outliers"] += int((epe[moving] > 3).sum())
            sums["static"] += int(static.sum())
            sums["moving"] += int(moving.sum())
            sums["visibly_moving"] += int(visibly_moving.sum())
            sums["detected"] += int((visibly_moving & flagged).sum())
            sums["static_flagged"] += int((static & flagged).sum())
    return {"static_epe": sums["static_epe"] / max(sums["static"], 1),
            "moving_epe": sums["moving_epe"] / max(sums["moving"], 1),
            "static_outlier_share": sums["static_outliers"] / max(sums["static"], 1),
            "moving_outlier_share": sums["moving_outliers"] / max(sums["moving"], 1),
            "motion_recall": sums["detected"] / max(sums["visibly_moving"], 1),
            "static_marked_moving": sums["static_flagged"] / max(sums["static"], 1),
            "ms_per_pair": 1000 * (time.perf_counter() - start) / max(len(pairs), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="*", default=[], help="RAFT checkpoints to score (flow.pth files)")
    parser.add_argument("--backend", choices=["raft_small", "raft_large"], default="raft_small",
                        help="network the weights belong to")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("2000-2003"),
                        help="synthetic test seeds (held out from training seeds)")
    parser.add_argument("--frames", type=int, default=24, help="frames per sequence")
    parser.add_argument("--stride", type=int, default=3, help="use every Nth frame")
    parser.add_argument("--height", type=int, default=96, help="image height, pixels")
    parser.add_argument("--width", type=int, default=320, help="image width, pixels")
    parser.add_argument("--threshold", type=float, default=ModelConfig().motion_threshold_px,
                        help="motion threshold, pixels (the model's default)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--results", type=Path, default=RESULTS / "flow.json", help="JSON output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = true_pairs(args.seeds, args.frames, args.stride, args.height, args.width)
    for pair in pairs:
        pair["rigid"] = rigid_flow(pair["depth"], pair["T"], pair["K"])
    sources = {"zero": lambda image, previous: torch.zeros_like(image[:, :2]),
               "random": FlowEstimator(args.backend, search_cache=False)}
    for path in args.weights:
        sources[str(path)] = FlowEstimator(args.backend, path)
    rows = {name: score(pairs, predict, args.threshold) for name, predict in sources.items()}
    print(f"\nOptical flow current → previous, {args.width}×{args.height}, {len(pairs)} held-out pairs of seeds "
          f"{args.seeds}; motion mask with true depth and pose, threshold {args.threshold} px")
    print(f"{'flow source':<36}{'EPE static':>11}{'EPE moving':>11}{'>3px static':>12}{'>3px moving':>12}"
          f"{'motion recall':>14}{'static marked':>14}{'ms/pair':>9}")
    for name, row in rows.items():
        print(f"{name[-36:]:<36}{row['static_epe']:>11.2f}{row['moving_epe']:>11.2f}{row['static_outlier_share']:>12.3f}"
              f"{row['moving_outlier_share']:>12.3f}{row['motion_recall']:>14.3f}{row['static_marked_moving']:>14.3f}"
              f"{row['ms_per_pair']:>9.0f}")
    write_results({"command": " ".join(["python", *sys.argv]), "seeds": args.seeds, "height": args.height,
                   "width": args.width, "pairs": len(pairs), "threshold_px": args.threshold, "rows": rows},
                  args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
