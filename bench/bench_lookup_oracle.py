"""Is Manydepth2's gain on moving objects bounded by the depth its static reference frame is built with?

    .venv/bin/python bench/bench_lookup_oracle.py --runs runs/claim/manydepth2_oracle_flow_2_600 ...

For each trained Manydepth2 run folder (the claim bench's, ``--run-root``), the student is scored on held-out
synthetic frames twice with the same networks, poses and flow: with the static reference built from the teacher's
depth (as trained and deployed) and from the ground-truth depth brought to the teacher's scale (per image, the
ratio of medians). Nothing is retrained, so the second row says what the trained student makes of a better
lookup, not what it would learn from one. abs_rel and a1 on static and moving-object pixels (per-image median
scaling, ground truth ≤ 80 m). Writes ``--out`` (default bench/results/lookup_oracle.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_io import RESULTS, write_results
from synthetic_pairs import parse_seeds

from mgdepth_core.config import load_config
from mgdepth_core.data.synthetic import SyntheticDynamicDataset
from mgdepth_core.eval.metrics import dynamic_mask_from_instances, evaluate_depth
from mgdepth_core.models.weights import load_weights
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.trainer import Trainer, to_device

LOOKUP_DEPTHS = ("teacher", "ground_truth")


def oracle_depth(teacher_depth: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """Ground truth (B×1×H×W metres, 0 = unknown) in the teacher's units: × median(teacher) / median(truth) per
    image over the known pixels; the teacher's depth where the truth is unknown."""
    known = ground_truth > 0
    scaled = []
    for teacher, truth, mask in zip(teacher_depth, ground_truth, known):
        ratio = teacher[mask].median() / truth[mask].median()
        scaled.append(torch.where(mask, truth * ratio, teacher))
    return torch.stack(scaled)


def score_run(run: Path, args) -> dict:
    """The student's scores on the held-out frames with each lookup depth of :data:`LOOKUP_DEPTHS`."""
    config = load_config(TrainConfig, run / "config.yaml")
    weights = max((run / "models").glob("weights_*"), key=lambda folder: folder.stat().st_mtime)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")
        trainer = Trainer(config, Path(scratch))  # the training step around the run's networks
        trainer.model.load_state_dict(load_weights(weights).state_dict())
    step = trainer.step_module.eval()
    dataset = SyntheticDynamicDataset(args.test_seeds, args.frames, config.data.height, config.data.width,
                                      [0, -1, 1], with_flow=config.data.exact_flow)
    predictions: dict[str, list[np.ndarray]] = {name: [] for name in LOOKUP_DEPTHS}
    truths, masks = [], []
    with torch.no_grad():
        for position in range(0, len(dataset), args.stride):
            sample = dataset[position]
            batch = to_device(default_collate([sample]), trainer.device)
            outputs = step.teacher_pass(batch, trainer.epoch)
            lookup, T_lookup_current, _ = step.matching_inputs(batch)
            teacher_depth = outputs["teacher_depth"][0]
            depths = {"teacher": teacher_depth, "ground_truth": oracle_depth(teacher_depth, batch["depth_gt"])}
            for name, depth in depths.items():
                student = step.student_forward(batch, lookup, T_lookup_current, depth, trainer.epoch)
                predictions[name].append(step.full_resolution_depths(student)[0][0, 0].cpu().numpy())
            truths.append(sample["depth_gt"][0].numpy())
            masks.append(dynamic_mask_from_instances(sample["instances"][0][0].numpy(),
                                                     sample["instance_moving"].numpy()))
    row = {"weights": str(weights), "steps": int(weights.name.split("_")[-1]), "images": len(truths)}
    for name, predicted in predictions.items():
        report = evaluate_depth(predicted, truths, masks, protocol="none", max_depth=80.0)
        row[name] = {subset: {"abs_rel": getattr(report, key).abs_rel, "a1": getattr(report, key).a1}
                     for subset, key in (("static", "static"), ("moving", "dynamic"))}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="Manydepth2 claim run folders")
    parser.add_argument("--test-seeds", type=parse_seeds, default=parse_seeds("2000-2003"))
    parser.add_argument("--frames", type=int, default=30, help="frames per held-out sequence")
    parser.add_argument("--stride", type=int, default=3, help="score every Nth frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "lookup_oracle.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for run in args.runs:
        rows[run.name] = row = score_run(run, args)
        teacher, truth = row["teacher"], row["ground_truth"]
        print(f"{run.name} ({row['steps']} steps): moving abs_rel with the teacher's depth "
              f"{teacher['moving']['abs_rel']:.3f}, with true depth {truth['moving']['abs_rel']:.3f}; static "
              f"{teacher['static']['abs_rel']:.3f} / {truth['static']['abs_rel']:.3f}", flush=True)
    write_results({"runs": rows, "test_seeds": args.test_seeds, "stride": args.stride,
                   "initialisation": "trained here from random initialisation (no pretrained weights)",
                   "command": " ".join(["python", *sys.argv])}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
