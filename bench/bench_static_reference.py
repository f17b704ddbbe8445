"""Does the static reference frame carry the signal Manydepth2 needs? A plane sweep with PERFECT geometry.

On held-out synthetic scenes (test seeds) with the true depth, ego-motion and exact optical flow (object motion
included), the target frame t is matched against a lookup image by a plane sweep over log-spaced depth bins at
1/4 resolution, as the student's cost volume is (``models.cost_volume.build_cost_volume``). For each lookup image
the benchmark reports the share of moving-object and of static pixels whose best bin lies within 10 % of the true
depth, and the captured gain on moving pixels = (lookup − plain) / (ideal − plain):

* ``plain``: the previous frame as it is (Manydepth, Manydepth2-NF);
* ``release``: the released Manydepth2 construction (``static_reference: release``);
* ``quarter_alpha0.25``: the earlier default (Î at 1/4 resolution, α = 0.25, threshold 40 px, old copies kept);
* ``quarter_alpha1``, ``full_keep_old``: one change at a time towards ...
* ``default``: the static reference as ``Manydepth2Model`` builds it with ``ModelConfig``'s defaults;
* ``ideal``: the previous camera's view rendered with every object held where it is at time t.

The photometric sweep compares RGB with a 3×3 box-filtered L1 cost. With ``--weights`` (a trained model's weights
folder) the same sweep runs in feature space on the model's own matching features (Manydepth2: HRNet stage 1,
256 channels at 1/4 resolution), without the box filter, exactly the student's cost, at the model's resolution.

    python bench/bench_static_reference.py                                   # 192×640, seeds 2000-2003
    python bench/bench_static_reference.py --weights runs/md2/models/weights_last --feature-only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_io import RESULTS, write_results
from synthetic_pairs import parse_seeds, true_pairs

from mgdepth_core.geometry import intrinsics_at_scale
from mgdepth_core.models import ModelConfig
from mgdepth_core.models.cost_volume import plane_sweep_depth
from mgdepth_core.models.static_reference import build_static_reference

WITHIN = 0.10  # a pixel is found when its best bin is within 10 % of the true depth


def lookup_variants(config: ModelConfig, thresholds: tuple[float, ...] = ()) -> dict:
    """Name → function(pair) → lookup image B×3×H×W. The flow enters at 1/4 resolution (as the model gets it).
    ``thresholds``: extra variants, the default with another motion threshold (full-resolution pixels)."""
    def static(**options):
        def build(pair: dict) -> torch.Tensor:
            flow = F.interpolate(pair["flow"], scale_factor=0.25, mode="bilinear", align_corners=False) / 4
            return build_static_reference(pair["image"], pair["reference"], flow, pair["depth"], pair["T"],
                                          pair["K"], **options).lookup
        return build

    quarter = dict(mode="paper", resolution="quarter", motion_threshold_px=40.0, clear_old_positions=False)
    default = dict(mode=config.static_reference, resolution=config.static_reference_resolution,
                   blend=config.static_reference_blend, clear_old_positions=config.clear_old_positions)
    variants = {
        "plain": lambda pair: pair["reference"],
        "release": static(mode="release"),
        "quarter_alpha0.25": static(blend=0.25, **quarter),
        "quarter_alpha1": static(blend=1.0, **quarter),
        "full_keep_old": static(mode="paper", resolution="full", blend=1.0,
                                motion_threshold_px=config.motion_threshold_px, clear_old_positions=False),
        "default": static(motion_threshold_px=config.motion_threshold_px, **default),
    }
    for threshold in thresholds:
        variants[f"default_{threshold:g}px"] = static(motion_threshold_px=threshold, **default)
    variants["ideal"] = lambda pair: pair["ideal"]
    return variants


def found_shares(best: torch.Tensor, pair: dict, min_depth: float, max_depth: float) -> dict:
    """Share of moving and static pixels (full resolution, true depth within the bins' range) found within 10 %."""
    estimate = F.interpolate(best, size=pair["true_depth"].shape[-2:], mode="nearest")
    depth = pair["true_depth"]
    valid = (depth >= min_depth) & (depth <= max_depth)
    found = ((estimate - depth).abs() < WITHIN * depth) & valid
    moving, static = valid & pair["moving"], valid & ~pair["moving"]
    return {"moving_found": int((found & moving).sum()), "moving": int(moving.sum()),
            "static_found": int((found & static).sum()), "static": int(static.sum())}


def run_sweep(pairs: list[dict], variants: dict, bins: torch.Tensor, box: int, features=None) -> dict:
    """Shares per lookup variant over all pairs (pixel-weighted); ``features``: image → matching features at 1/4
    resolution (None: RGB area-averaged to 1/4 resolution)."""
    def to_quarter(image: torch.Tensor) -> torch.Tensor:
        if features is not None:
            return features(image)
        return F.interpolate(image, scale_factor=0.25, mode="area")

    totals = {name: {"moving_found": 0, "moving": 0, "static_found": 0, "static": 0} for name in variants}
    with torch.no_grad():
        for pair in pairs:
            current = to_quarter(pair["image"])
            K_quarter = intrinsics_at_scale(pair["K"], 2)
            for name, lookup in variants.items():
                best = plane_sweep_depth(current, to_quarter(lookup(pair)), pair["T"], K_quarter, bins, box)
                for key, value in found_shares(best, pair, float(bins[0]), float(bins[-1])).items():
                    totals[name][key] += value
    rows = {}
    for name, total in totals.items():
        rows[name] = {"moving": total["moving_found"] / max(total["moving"], 1),
                      "static": total["static_found"] / max(total["static"], 1),
                      "moving_pixels": total["moving"], "static_pixels": total["static"]}
    plain, ideal = rows["plain"], rows["ideal"]
    for row in rows.values():
        gap = ideal["moving"] - plain["moving"]
        row["captured_gain"] = (row["moving"] - plain["moving"]) / gap if gap > 0 else float("nan")
        row["static_change"] = row["static"] - plain["static"]
    return rows


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"{'lookup image':<20}{'moving':>9}{'static':>9}{'captured gain':>15}{'static Δ':>10}")
    for name, row in rows.items():
        print(f"{name:<20}{row['moving']:>9.3f}{row['static']:>9.3f}{row['captured_gain']:>15.3f}"
              f"{row['static_change']:>+10.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("2000-2003"),
                        help="synthetic test seeds, e.g. 2000-2003 (held out from training seeds)")
    parser.add_argument("--frames", type=int, default=24, help="frames per sequence")
    parser.add_argument("--stride", type=int, default=3, help="use every Nth frame as a target frame")
    parser.add_argument("--height", type=int, default=192, help="photometric sweep image height, pixels")
    parser.add_argument("--width", type=int, default=640, help="photometric sweep image width, pixels")
    parser.add_argument("--bins", type=int, default=64, help="depth hypotheses, log-spaced")
    parser.add_argument("--min-depth", type=float, default=1.0, help="nearest hypothesis, metres")
    parser.add_argument("--max-depth", type=float, default=120.0, help="farthest hypothesis, metres")
    parser.add_argument("--box", type=int, default=3, help="box filter of the photometric cost, pixels")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[],
                        help="also the default with these motion thresholds, full-resolution pixels")
    parser.add_argument("--weights", default="", help="trained weights folder: also sweep its matching features")
    parser.add_argument("--feature-height", type=int, default=0, help="feature sweep image height (0 = the model's)")
    parser.add_argument("--feature-width", type=int, default=0, help="feature sweep image width (0 = the model's)")
    parser.add_argument("--feature-only", action="store_true", help="skip the photometric sweep")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--results", type=Path, default=RESULTS / "static_reference.json", help="JSON output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bins = torch.logspace(np.log10(args.min_depth), np.log10(args.max_depth), args.bins)
    config = ModelConfig()
    result = {"command": " ".join(["python", *sys.argv]), "seeds": args.seeds, "frames": args.frames,
              "stride": args.stride, "bins": args.bins, "depth_range_m": [args.min_depth, args.max_depth],
              "within": WITHIN, "defaults": {"static_reference": config.static_reference,
                                             "static_reference_resolution": config.static_reference_resolution,
                                             "static_reference_blend": config.static_reference_blend,
                                             "motion_threshold_px": config.motion_threshold_px,
                                             "clear_old_positions": config.clear_old_positions}}
    if not args.feature_only:
        start = time.perf_counter()
        pairs = true_pairs(args.seeds, args.frames, args.stride, args.height, args.width)
        rows = run_sweep(pairs, lookup_variants(config, tuple(args.thresholds)), bins, args.box)
        title = (f"Photometric plane sweep, {args.width}×{args.height} (cost at 1/4), {len(pairs)} held-out pairs of "
                 f"seeds {args.seeds}, {args.bins} log bins {args.min_depth}–{args.max_depth} m, {args.box}×"
                 f"{args.box} box L1: share within {WITHIN:.0%} of the true depth")
        print_table(title, rows)
        result["photometric"] = {"height": args.height, "width": args.width, "pairs": len(pairs), "box": args.box,
                                 "rows": rows, "seconds": time.perf_counter() - start}
    if args.weights:
        from mgdepth_core.models.weights import load_weights

        model = load_weights(args.weights).eval()
        height = args.feature_height or model.config.height
        width = args.feature_width or model.config.width
        pairs = true_pairs(args.seeds, args.frames, args.stride, height, width)
        rows = run_sweep(pairs, lookup_variants(config), bins, 1, features=model.matching_features)
        print_table(f"Feature-space sweep on {model.method}'s matching features ({args.weights}, trained at "
                    f"{model.config.width}×{model.config.height}), {width}×{height}, {len(pairs)} pairs, per-pixel L1 "
                    f"(the student's cost)", rows)
        result["features"] = {"weights": str(args.weights), "method": model.method, "height": height,
                              "width": width, "model_height": model.config.height, "model_width": model.config.width,
                              "pairs": len(pairs), "rows": rows}
    write_results(result, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
