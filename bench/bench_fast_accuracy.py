"""What the inference speed settings cost in accuracy, with a trained model on held-out frames.

    .venv/bin/python bench/bench_fast_accuracy.py --weights ~/.cache/mgdepth/models/manydepth2-<key>/weights

``bench/bench_speed.py`` states each approximation's depth change on random weights; this streams held-out
synthetic sequences (seeds ``--seeds``, at the weights' own size) through the ``DepthEstimator`` of a trained
Manydepth2 (e.g. the one ``make demo`` trains and caches) with each setting, and reports abs_rel and a1 on static
and moving-object pixels (per-image median scaling, ground truth ≤ 80 m) and the largest relative depth change
against the default settings on the same frames. Writes ``--out`` (default bench/results/fast_accuracy.json).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_io import RESULTS, write_results
from synthetic_pairs import parse_seeds

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.inference import DepthEstimator
from mgdepth_ros.demo_report import depth_scores

SETTINGS = {  # name → EstimatorConfig fields
    "default": {},
    "bfloat16": dict(autocast="bfloat16"),
    "half_size_flow": dict(flow_input_scale=0.5),
    "bin_step_2": dict(cost_volume_bin_step=2),
    "fast": dict(autocast="bfloat16", flow_input_scale=0.5, cost_volume_bin_step=2),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="a trained Manydepth2 weights folder")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("2000-2003"), help="held-out sequences")
    parser.add_argument("--frames", type=int, default=20, help="frames per sequence")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "fast_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, depths = {}, {}
    for name, settings in SETTINGS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = DepthEstimator.from_weights(args.weights, min_translation=0.0, **settings)
        frames, predicted = [], []
        for seed in args.seeds:
            sequence = SyntheticSequence(seed, args.frames, estimator.height, estimator.width)
            estimator.reset()
            for index in range(args.frames):
                frame = sequence.frame(index)
                result = estimator.process(frame["image"], frame["K"], stamp=index * 0.1)
                if index > 0:  # multi-frame depth only
                    frames.append(frame)
                    predicted.append(result.depth)
        depths[name] = predicted
        rows[name] = {"settings": settings, **depth_scores(predicted, frames)}
        change = [np.nanmax(np.abs(p - d) / d) for p, d in zip(predicted, depths["default"])]
        rows[name]["max_relative_depth_change"] = float(np.max(change))
        rows[name]["median_relative_depth_change"] = float(np.median(
            np.concatenate([(np.abs(p - d) / d).ravel() for p, d in zip(predicted, depths["default"])])))
        row = rows[name]
        print(f"{name:<16} static abs_rel {row['static_abs_rel']:.4f} a1 {row['static_a1']:.4f} | moving abs_rel "
              f"{row['moving_abs_rel']:.4f} a1 {row['moving_a1']:.4f} | depth change vs default: max "
              f"{row['max_relative_depth_change']:.2%}, median {row['median_relative_depth_change']:.3%}", flush=True)
    write_results({"weights": str(args.weights), "seeds": args.seeds, "frames_per_sequence": args.frames,
                   "initialisation": "trained here from random initialisation (no pretrained weights)",
                   "command": " ".join(["python", *sys.argv]), "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
