"""The theta filter with the geometry a robot has: depth and ego-motion from trained networks, not the truth.

For each weights folder (a model trained here, e.g. a claim run's ``runs/claim/<method>_<seed>_<steps>``), the
Dyna-DM theta filter decides moving vs parked for every object of the held-out synthetic sequences that passes the
size test and has a counterpart (status static or dynamic), with the model's teacher depth of t−1 and the pose net
on background-masked pairs (as the training hook computes them); the same with the true depth and poses as the
reference row. Dice and IoU. Accuracy, recall and precision of "moving" against the ground-truth flags: at the
paper's θ frame by frame, with a temporal vote (median similarity of the object's last ``--vote-frames`` frames,
as the streaming estimator can keep it), and with θ tuned on training sequences (``--tune-seeds``) only. Each
setting of the filter's remedies (``--remedies``: ``object_depth,translation_scale,directions`` triples) is measured
on the same depth and poses.

    python bench/bench_theta_filter.py --runs runs/claim/manydepth_1_1000 runs/claim/manydepth2_oracle_flow_1_1000

Writes one record per (setting, similarity) into ``--results`` (default docs/results/theta_filter.json: a list;
records of the same run, geometry, similarity, steps, θ tuning, vote and remedies are replaced), each with the
command.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dynamic import decide, object_observations, train_config
from results_io import write_results
from synthetic_pairs import parse_seeds

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.models.weights import load_weights
from mgdepth_core.train.dyna_dm import build_training_hook

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "theta_filter.json"


def run_weights(run: Path) -> tuple[Path, int]:
    """(weights folder, training steps) of a run folder: its newest ``models/weights_<epoch>_<step>`` and the step
    in that name (a run stopped between evaluation points saved its weights at the step it reached)."""
    folders = sorted((run / "models").glob("weights_*"), key=lambda folder: folder.stat().st_mtime)
    if not folders:
        raise SystemExit(f"{run} holds no weights folder (models/weights_*)")
    return folders[-1], int(folders[-1].name.split("_")[-1])


def tuned_theta(found: dict, vote_frames: int) -> float:
    """The θ of :data:`THETA_GRID` with the highest accuracy on ``found`` (training sequences), ties to the
    paper's 0.9 side."""
    return max(THETA_GRID, key=lambda theta: (decide(found, theta, vote_frames)["accuracy"], -abs(theta - 0.9)))


THETA_GRID = [round(0.5 + 0.02 * i, 2) for i in range(25)]  # 0.50 … 0.98
REMEDIES = ["own,pose,forward", "ground_contact,pose,forward", "own,photometric,forward",
            "ground_contact,photometric,forward", "own,pose,both", "ground_contact,photometric,both"]
PAPER_INPUTS = {"object_depth": "own", "translation_scale": "pose", "both_directions": False}  # records without them


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders of trained models")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("2000-2003"), help="held-out sequences")
    parser.add_argument("--tune-seeds", type=parse_seeds, default=parse_seeds("0-3"),
                        help="training sequences θ is tuned on (never the held-out ones)")
    parser.add_argument("--frames", type=int, default=20, help="frames per sequence")
    parser.add_argument("--height", type=int, default=64, help="image height (the models' training size)")
    parser.add_argument("--width", type=int, default=192, help="image width")
    parser.add_argument("--theta", type=float, default=DynamicObjectsConfig().theta, help="the paper's threshold")
    parser.add_argument("--vote-frames", type=int, default=3,
                        help="the temporal vote's window: median similarity of an object's last N frames")
    parser.add_argument("--remedies", nargs="+", default=REMEDIES,
                        help="object_depth,translation_scale,directions (forward or both) settings to compare")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--skip-true-geometry", action="store_true",
                        help="leave out the reference rows with true depth and poses (one run of several in parallel)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON list to update")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = " ".join(["python", *sys.argv])
    held_out = [SyntheticSequence(seed, args.frames, args.height, args.width) for seed in args.seeds]
    tuning = [SyntheticSequence(seed, args.frames, args.height, args.width) for seed in args.tune_seeds]
    settings = [] if args.skip_true_geometry else [("true", None, None, 0, None)]
    for run in args.runs:
        weights, steps = run_weights(run)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_weights(weights).eval()
        seed = int(run.name.split("_")[-2]) if run.name.split("_")[-2].isdigit() else None
        settings.append((run.name, model, weights, steps, seed))
    records = []
    print(f"Theta filter on {len(args.seeds)} held-out sequences × {args.frames} frames, {args.width}×{args.height}; "
          f"θ tuned on training sequences {args.tune_seeds}; networks trained here from random weights")
    print(f"{'geometry':<30}{'object depth':>15}{'translation':>12}{'warps':>8}{'steps':>6}{'sim.':>6}{'θ':>6}"
          f"{'vote':>5}{'objects':>8}{'accuracy':>9}{'recall':>8}{'precision':>10}")
    remedies = []
    for triple in args.remedies:
        object_depth, translation_scale, directions = triple.split(",")
        remedies.append({"object_depth": object_depth, "translation_scale": translation_scale,
                         "both_directions": {"forward": False, "both": True}[directions]})
    similarities = ("dice", "iou")
    variants = [(remedy, kind) for remedy in remedies for kind in similarities]
    for name, model, weights, steps, seed in settings:
        configs = [DynamicObjectsConfig(mode="dyna-dm", theta=args.theta, similarity=kind, **remedy)
                   for remedy, kind in variants]
        hook = None if model is None else build_training_hook(train_config(args.height, args.width, 1)).bind(model)
        source = "true" if model is None else "network"
        with torch.no_grad():
            held_out_found = object_observations(held_out, configs, source, model, hook)
            tuning_found = object_observations(tuning, configs, source, model, hook)
        for (remedy, similarity), found, found_tuning in zip(variants, held_out_found, tuning_found):
            for vote_frames in sorted({1, args.vote_frames}):
                tuned = tuned_theta(found_tuning, vote_frames)
                for theta, tuned_on in ((args.theta, None), (tuned, args.tune_seeds)):
                    row = decide(found, theta, vote_frames)
                    records.append({
                        "method": "true geometry" if model is None else model.method, "run": name,
                        "geometry": "true" if model is None else "predicted", "similarity": similarity,
                        **remedy, "theta": theta, "theta_tuned_on": tuned_on, "vote_frames": vote_frames,
                        "steps": steps, "seed": seed, "weights": None if weights is None else str(weights),
                        "objects": row["total"], "accuracy": row["accuracy"], "recall": row["recall_moving"],
                        "precision": row["precision_moving"], "test_seeds": args.seeds,
                        "initialisation": "random (no pretrained weights on this machine)", "command": command})
                    directions = "both" if remedy["both_directions"] else "forward"
                    print(f"{name:<30}{remedy['object_depth']:>15}{remedy['translation_scale']:>12}{directions:>8}"
                          f"{steps:>6}"
                          f"{similarity:>6}{theta:>6.2f}{vote_frames:>5}{row['total']:>8}{row['accuracy']:>9.3f}"
                          f"{row['recall_moving']:>8.3f}{row['precision_moving']:>10.3f}", flush=True)
    previous = json.loads(args.results.read_text()) if args.results.is_file() else []
    keys = ("run", "geometry", "similarity", "steps", "theta_tuned_on", "vote_frames", *PAPER_INPUTS)

    def key(record: dict) -> tuple:
        return tuple(str(record.get(name, PAPER_INPUTS.get(name))) for name in keys)

    replaced = {key(record) for record in records}
    kept = [record for record in previous if key(record) not in replaced]
    write_results(kept + records, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
