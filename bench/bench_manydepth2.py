"""Manydepth2 benchmarks: Manydepth vs Manydepth2 trained with the same budget on the synthetic dynamic-scene set,
scored on static and on moving-object pixels of held-out seeds (speed: bench/bench_speed.py).

    python bench/bench_manydepth2.py --part claim --steps 300 --train-sequences 8 --test-seeds 2000-2003
    python bench/bench_manydepth2.py --part claim --methods manydepth --seeds 1-3 --eval-every 100   # learning
    python bench/bench_manydepth2.py --part cold-start --seeds 1-3 --train-sequences 8 --frames-per-sequence 30

Claim: no optical-flow weights can be downloaded here, and a flow network with random weights says nothing, so
the flow variant is trained and tested with the synthetic set's exact optical flow ("oracle flow", an upper bound
on what GMFlow gives); Manydepth2-NF (no flow) and Manydepth use no flow at all. With ``--flow-weights`` the real
GMFlow/RAFT variant is run as well. Colour/flip augmentation is off unless ``--augment`` (the exact flow is flipped
with its sample); the static reference is active from step 0 (``flow_start_epoch`` 0) since short runs have few epochs.
Poses come from the pose net (as the papers), with the auto-masking warm-up that a start from random weights
needs (``--automask-warmup-steps``), or with ``--pose-source dataset`` from the synthetic set's known ego-motion.
Each method is trained once per training seed (``--seeds``), from random weights, and scored on the held-out
seeds before, during (``--eval-every``) and after training; with several seeds the trained/untrained ratio of
static abs_rel is summarised (median and worst). Results go to bench/results/manydepth2.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plot_claim import report_claim
from results_io import RESULTS, write_results
from synthetic_pairs import parse_seeds

from mgdepth_core.data import DataConfig
from mgdepth_core.data.synthetic import CAR, PERSON, SyntheticDynamicDataset
from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.eval.metrics import dynamic_mask_from_instances, evaluate_depth
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.train.trainer import to_device

# --------------------------------------------------------------------------------------------------- claim
CLAIM_METHODS = {  # name → (ModelConfig fields, TrainConfig fields, (method, flow) in docs/results/claim.json)
    "manydepth": (dict(method="manydepth", flow="none"), {}, ("manydepth", "none")),
    "manydepth2_nf": (dict(method="manydepth2", flow="none"), {}, ("manydepth2_nf", "none")),
    "manydepth2_oracle_flow": (dict(method="manydepth2", flow="dataset"), {}, ("manydepth2", "exact")),
    "manydepth2_oracle_flow_dyna_dm": (dict(method="manydepth2", flow="dataset"), dict(dynamic_objects="dyna-dm"),
                                       ("manydepth2_dyna_dm", "exact")),
    # the height prior over every object with h measured from the objects themselves (static ones teach the size)
    "manydepth2_oracle_flow_dyna_dm_sizes": (
        dict(method="manydepth2", flow="dataset"),
        dict(dynamic_objects="dyna-dm", dyna_dm=DynamicObjectsConfig(mode="dyna-dm", height_prior_objects="all",
                                                                     height_prior_source="objects")),
        ("manydepth2_dyna_dm_object_sizes", "exact")),
    # Dyna-DM without the object height prior (issue 16 item 4: does the prior at Insta-DM's units help?)
    "manydepth2_oracle_flow_dyna_dm_no_height_prior": (
        dict(method="manydepth2", flow="dataset"),
        dict(dynamic_objects="dyna-dm", dyna_dm=DynamicObjectsConfig(mode="dyna-dm", height_prior_weight=0.0)),
        ("manydepth2_dyna_dm_no_height_prior", "exact")),
    "manydepth2_flow_net": (dict(method="manydepth2"), {}, ("manydepth2", "trained")),  # --flow-weights/-backend
}


def _train_config(args, name: str, seed: int):
    from mgdepth_core.train.config import LossConfig, OptimConfig, TrainConfig

    model_fields, run_fields, _ = CLAIM_METHODS[name]
    model_fields = {"flow": args.flow_backend, **model_fields}
    model = ModelConfig(height=args.claim_height, width=args.claim_width, pretrained=False,
                        num_depth_bins=args.bins, flow_start_epoch=0, static_reference=args.static_reference,
                        flow_weights=args.flow_weights, **model_fields)
    data = DataConfig(dataset="synthetic", height=args.claim_height, width=args.claim_width, frame_ids=[0, -1, 1],
                      augment=args.augment, synthetic_seed=0, synthetic_sequences=args.train_sequences,
                      synthetic_frames=args.frames_per_sequence, num_workers=0,
                      exact_flow=model.flow == "dataset")
    return TrainConfig(model=model, data=data, optim=OptimConfig(batch_size=args.batch_size, epochs=1000,
                                                                 freeze_teacher_epoch=-1),
                       losses=LossConfig(pose_source=args.pose_source, dataset_pose_scale=args.dataset_pose_scale,
                                         automask_warmup_steps=args.automask_warmup_steps),
                       max_steps=args.steps, seed=seed, **run_fields,
                       log_frequency=10 ** 9, save_frequency=10 ** 6, device=args.device)


def _trainer(args, name: str, run_dir: Path, seed: int, resume: bool = False):
    """A Trainer for method ``name`` on the training sequences with training seed ``seed`` (the oracle variants
    take each sample's exact flow: ``model.flow: dataset``)."""
    from mgdepth_core.train.trainer import Trainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(_train_config(args, name, seed), run_dir, resume=resume)


def _evaluate(args, name: str, trainer) -> dict:
    """Teacher and student depth on the held-out seeds, through the training step in eval mode (so the student
    gets the same pose source and flow as in training), plus two held-out photometric figures at scale 0: the
    loss as trained (auto-masked for the teacher, trust-masked for the student: its mask changes with the network,
    so it is not comparable between networks) and the per-pixel minimum reprojection error over all pixels."""
    dataset = SyntheticDynamicDataset(args.test_seeds, args.frames_per_sequence, args.claim_height,
                                      args.claim_width, [0, -1, 1], augment=False,
                                      with_flow=trainer.config.data.exact_flow)
    step = trainer.step_module.eval()
    depths: dict[str, list[np.ndarray]] = {"teacher": [], "student": []}
    photometric: dict[str, list[float]] = {"teacher": [], "student": []}
    photometric_all: dict[str, list[float]] = {"teacher": [], "student": []}
    ground_truth, masks, classes = [], [], []
    motion_flags: dict[str, list[float]] = {"moving": [], "static": []}
    with torch.no_grad():
        for position in range(0, len(dataset), args.test_stride):
            sample = dataset[position]
            batch = to_device(default_collate([sample]), trainer.device)
            outputs, terms = step(batch, trainer.epoch)
            for network in depths:
                depths[network].append(outputs[f"{network}_depth"][0][0, 0].cpu().numpy())
                photometric[network].append(float(terms[f"{network}/reprojection/0"]))
                errors = step._reprojection_errors(batch, outputs, outputs[f"{network}_depth"][0], outputs["poses"],
                                                   network, 0)
                photometric_all[network].append(float(torch.cat(errors, 1).min(1).values.mean()))
            ground_truth.append(sample["depth_gt"][0].numpy())
            masks.append(dynamic_mask_from_instances(sample["instances"][0][0].numpy(),
                                                     sample["instance_moving"].numpy()))
            classes.append(sample["instance_class"].numpy()[sample["instances"][0][0].numpy()])
            if "motion_mask" in outputs["student"]:
                flagged = torch.nn.functional.interpolate(outputs["student"]["motion_mask"].float(),
                                                          ground_truth[-1].shape, mode="nearest")[0, 0] > 0
                flagged = flagged.cpu().numpy()
                known = ground_truth[-1] > 0
                motion_flags["moving"].append(float(flagged[masks[-1] & known].mean()) if (masks[-1] & known).any()
                                              else float("nan"))
                motion_flags["static"].append(float(flagged[~masks[-1] & known].mean()))
    result = {"images": len(ground_truth)}
    if motion_flags["static"]:  # share of moving-object / static pixels the static reference marks as moving
        result["motion_mask_share"] = {key: float(np.nanmean(values)) for key, values in motion_flags.items()}
    # moving cars drive ahead or oncoming: their motion runs along the epipolar lines of a camera driving forward,
    # where two frames cannot tell it from depth; crossing pedestrians move across them
    by_class = {"moving_car": [m & (c == CAR) for m, c in zip(masks, classes)],
                "moving_person": [m & (c == PERSON) for m, c in zip(masks, classes)]}
    for network, predictions in depths.items():
        report = evaluate_depth(predictions, ground_truth, masks, protocol="none", max_depth=80.0)
        result[network] = {"photometric_loss": float(np.mean(photometric[network])),
                           "photometric_all_pixels": float(np.mean(photometric_all[network]))}
        subsets = {name: getattr(report, name) for name in ("overall", "static", "dynamic")}
        for name, class_masks in by_class.items():
            subsets[name] = evaluate_depth(predictions, ground_truth, class_masks, protocol="none",
                                           max_depth=80.0).dynamic
        for subset, metrics in subsets.items():
            result[network][subset] = None if metrics is None else {
                "abs_rel": metrics.abs_rel, "a1": metrics.a1, "rmse": metrics.rmse, "images": metrics.images}
    return result


def _cell(row: dict, subset: str, key: str) -> str:
    return "n/a" if row[subset] is None else f"{row[subset][key]:.4f}"


PROGRESS_FILE = "claim_progress.json"  # a run folder's held-out scores so far (with --run-root, for --resume)


def _train_and_score(args, name: str, seed: int, run_dir: Path) -> dict:
    """Train method ``name`` from random weights with training seed ``seed``; held-out scores before, during
    (every ``--eval-every`` steps) and after. Each evaluation point ends with a checkpoint in ``run_dir`` and the
    scores so far in ``run_dir/claim_progress.json``; with ``--resume`` a run continues from there. Every point
    is also merged into ``--claim-json`` at once, with the step it reached, so a run cut off keeps its figures."""
    progress_path = run_dir / PROGRESS_FILE
    resume = args.resume and progress_path.is_file()
    trainer = _trainer(args, name, run_dir, seed, resume=resume)
    if resume:
        run = json.loads(progress_path.read_text())
        print(f"    {name} seed {seed}: resumed at step {trainer.step} from {run_dir}", flush=True)
    else:
        run = {"untrained": _evaluate(args, name, trainer), "curve": [], "train_seconds": 0.0}
    checkpoints = list(range(args.eval_every, args.steps, args.eval_every)) if args.eval_every else []
    recorded = run.get("steps_reached", 0)  # a kill between checkpoint and scores: that point is scored again
    for target in [step for step in checkpoints + [args.steps] if step > recorded]:
        trainer.config.max_steps = target
        start = time.perf_counter()
        trainer.train()
        run["train_seconds"] += time.perf_counter() - start
        scores = _evaluate(args, name, trainer)
        run["trained"], run["steps_reached"] = scores, target
        run["curve"].append({"step": target, **{network: {
            "photometric_all_pixels": scores[network]["photometric_all_pixels"],
            "static_abs_rel": scores[network]["static"]["abs_rel"],
            "moving_abs_rel": (scores[network]["dynamic"] or {}).get("abs_rel"),
            "static_a1": scores[network]["static"]["a1"],
            "moving_a1": (scores[network]["dynamic"] or {}).get("a1"),
            **{f"{subset}_abs_rel": (scores[network][subset] or {}).get("abs_rel")
               for subset in ("moving_car", "moving_person")}} for network in ("teacher", "student")},
            "motion_mask_share": scores.get("motion_mask_share")})
        run_dir.mkdir(parents=True, exist_ok=True)
        write_results(run, progress_path)
        if args.claim_json:
            merge_claim_records(args, [(name, seed, run)])
        point, flagged = run["curve"][-1], run["curve"][-1]["motion_mask_share"]
        print(f"    {name} seed {seed} step {target}: abs_rel static / moving teacher "
              f"{point['teacher']['static_abs_rel']:.3f} / {point['teacher']['moving_abs_rel'] or float('nan'):.3f}"
              f", student {point['student']['static_abs_rel']:.3f} / "
              f"{point['student']['moving_abs_rel'] or float('nan'):.3f}"
              + (f"; motion mask on static {flagged['static']:.3f}, moving {flagged['moving']:.3f}" if flagged
                 else ""), flush=True)
    if args.keep_weights:
        from mgdepth_core.models.weights import save_weights

        save_weights(trainer.model, Path(args.keep_weights) / f"{name}_{seed}")
    return run


def _claim_job(args, name: str, seed: int, scratch: str) -> tuple[str, int, dict]:
    """One (method, seed) run; a process of its own with ``--jobs`` > 1."""
    torch.set_num_threads(args.threads)
    print(f"training {name} (seed {seed}): {args.steps} steps, batch {args.batch_size}, {args.claim_width}×"
          f"{args.claim_height}, train seeds 0..{args.train_sequences - 1}, poses from {args.pose_source}", flush=True)
    run = _train_and_score(args, name, seed, Path(scratch) / f"{name}_{seed}_{args.steps}")
    student = run["trained"]["student"]
    print(f"  {name} (seed {seed}) trained in {run['train_seconds']:.0f} s; student abs_rel static "
          f"{_cell(student, 'static', 'abs_rel')}, moving {_cell(student, 'dynamic', 'abs_rel')}", flush=True)
    return name, seed, run


def claim_record(args, name: str, seed: int, run: dict) -> dict:
    """One run in the format of docs/results/claim.json (the student's figures at the last step, held out)."""
    method, flow = CLAIM_METHODS[name][2]
    student = run["trained"]["student"]
    untrained = {"step": 0, **{network: {"static_abs_rel": run["untrained"][network]["static"]["abs_rel"],
                                         "moving_abs_rel": (run["untrained"][network]["dynamic"] or {}).get("abs_rel")}
                               for network in ("teacher", "student")}}
    moving = student["dynamic"] or {}
    return {"method": method, "flow": flow, "seed": seed, "steps": args.steps,
            "steps_reached": run["steps_reached"], "complete": run["steps_reached"] == args.steps,
            "static_abs_rel": student["static"]["abs_rel"], "moving_abs_rel": moving.get("abs_rel"),
            "static_a1": student["static"]["a1"], "moving_a1": moving.get("a1"),
            **{f"{subset}_{key}": (student.get(subset) or {}).get(key) for subset in ("moving_car", "moving_person")
               for key in ("abs_rel", "a1")},
            "teacher": {key: run["trained"]["teacher"].get(key)
                        for key in ("static", "dynamic", "moving_car", "moving_person")},
            "motion_mask_share": run["trained"].get("motion_mask_share"), "curve": [untrained, *run["curve"]],
            "height": args.claim_height, "width": args.claim_width, "batch_size": args.batch_size,
            "train_sequences": args.train_sequences, "test_seeds": args.test_seeds, "test_stride": args.test_stride,
            "pose_source": args.pose_source, "automask_warmup_steps": args.automask_warmup_steps,
            "initialisation": "random (no pretrained weights on this machine)",
            "train_seconds": run["train_seconds"], "command": " ".join(["python", *sys.argv])}


def merge_claim_records(args, finished: list) -> None:
    """Add runs to ``--claim-json`` (a list of records), replacing earlier records of the same method, flow, seed,
    steps and setting; under a file lock (parallel jobs merge as they go) and written atomically."""
    path = Path(args.claim_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = json.loads(path.read_text()) if path.is_file() else []
        new = [claim_record(args, name, seed, run) for name, seed, run in finished]
        keys = ("method", "flow", "seed", "steps", "height", "width", "pose_source")
        replaced = {tuple(record[key] for key in keys) for record in new}
        records = [record for record in records if tuple(record.get(key) for key in keys) not in replaced] + new
        write_results(records, path)
        print("wrote " + ", ".join(str(written) for written in report_claim(records, path)))


def bench_claim(args) -> dict:
    torch.set_num_threads(args.threads)
    if "manydepth2_flow_net" in args.methods and not args.flow_weights:
        raise SystemExit("manydepth2_flow_net needs --flow-weights (a GMFlow or RAFT checkpoint)")
    if args.resume and not args.run_root:
        raise SystemExit("--resume needs --run-root (the folder the interrupted runs were written to)")
    rows: dict[str, dict] = {name: {"runs": {}} for name in args.methods}
    with tempfile.TemporaryDirectory() as scratch:
        root = args.run_root or scratch
        jobs = [(args, name, seed, root) for name in args.methods for seed in args.seeds]
        if args.jobs > 1:
            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                finished = pool.starmap(_claim_job, jobs)
        else:
            finished = [_claim_job(*job) for job in jobs]
    for name, seed, run in finished:
        rows[name]["runs"][seed] = run
    for row in rows.values():
        row["summary"] = _summary(row["runs"])
    print(f"\nHeld-out seeds {args.test_seeds} (one frame in {args.test_stride}), median scaling, depth ≤ 80 m; "
          f"{args.steps} steps, poses from {args.pose_source}; photometric at scale 0: masked = the loss as "
          f"trained, all = min reprojection error over all pixels")
    print(f"{'method':<24}{'seed':>5} {'network':<9}{'state':<11}{'masked':>8}{'all':>8}{'abs_rel static':>15}"
          f"{'a1 static':>11}{'abs_rel moving':>16}{'a1 moving':>11}{'abs_rel all':>13}")
    for name, row in rows.items():
        for seed, run in row["runs"].items():
            for network in ("teacher", "student"):
                for state in ("untrained", "trained"):
                    cells = run[state][network]
                    print(f"{name:<24}{seed:>5} {network:<9}{state:<11}{cells['photometric_loss']:>8.4f}"
                          f"{cells['photometric_all_pixels']:>8.4f}"
                          f"{_cell(cells, 'static', 'abs_rel'):>15}{_cell(cells, 'static', 'a1'):>11}"
                          f"{_cell(cells, 'dynamic', 'abs_rel'):>16}{_cell(cells, 'dynamic', 'a1'):>11}"
                          f"{_cell(cells, 'overall', 'abs_rel'):>13}")
    if len(args.seeds) > 1:
        print(f"\nOver training seeds {args.seeds}: static abs_rel trained / untrained (median, worst)")
        for name, row in rows.items():
            for network, ratios in row["summary"].items():
                print(f"{name:<24}{network:<9} median {ratios['median_ratio']:.3f}  worst {ratios['worst_ratio']:.3f}")
    return {"steps": args.steps, "batch_size": args.batch_size, "height": args.claim_height,
            "width": args.claim_width, "train_seeds": list(range(args.train_sequences)),
            "test_seeds": args.test_seeds, "test_stride": args.test_stride, "seeds": args.seeds,
            "augment": args.augment, "automask_warmup_steps": args.automask_warmup_steps,
            "pose_source": args.pose_source, "dataset_pose_scale": args.dataset_pose_scale,
            "static_reference": args.static_reference, "rows": rows}


def _summary(runs: dict) -> dict:
    """Per network: the trained/untrained ratio of static abs_rel over the training seeds (median and worst)."""
    summary = {}
    for network in ("teacher", "student"):
        ratios = [run["trained"][network]["static"]["abs_rel"] / run["untrained"][network]["static"]["abs_rel"]
                  for run in runs.values()]
        summary[network] = {"ratios": ratios, "median_ratio": float(np.median(ratios)),
                            "worst_ratio": float(max(ratios))}
    return summary


# --------------------------------------------------------------------------------------------------- cold start
def bench_cold_start(args) -> dict:
    """Which way the teacher loss first pushes a randomly initialised pose net: the descent direction of the
    loss w.r.t. the translation of each loss pose T_s_0, compared with the true translation (cosine, mean over
    one batch of training samples), with and without auto-masking, for ``--seeds`` initialisations."""
    from mgdepth_core.train.config import LossConfig, TrainConfig
    from mgdepth_core.train.trainer import TrainingStep

    torch.set_num_threads(args.threads)
    data = SyntheticDynamicDataset(list(range(args.train_sequences)), args.frames_per_sequence, args.claim_height,
                                   args.claim_width, [0, -1, 1], augment=False)
    batch = default_collate([data[i] for i in range(0, len(data), max(len(data) // args.cold_start_samples, 1))])
    model_config = ModelConfig(method="manydepth", height=args.claim_height, width=args.claim_width,
                               pretrained=False, num_depth_bins=args.bins)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for automasking in (True, False):
            torch.manual_seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = TrainConfig(model=model_config, data=DataConfig(dataset="synthetic", height=args.claim_height,
                                                                         width=args.claim_width),
                                     losses=LossConfig(disable_automasking=not automasking))
                step = TrainingStep(build_model(model_config), config).train()
            outputs = step.teacher_pass(batch)
            for pose in outputs["poses"].values():
                pose.retain_grad()
            step.teacher_loss(batch, outputs, {}).backward()
            descent = {f: -outputs["poses"][f].grad[:, :3, 3] for f in (-1, 1)}
            key = "auto_masked" if automasking else "every_pixel"
            row[key] = {"cosine_to_true": float(np.mean([
                torch.nn.functional.cosine_similarity(descent[f], batch["pose_gt"][f][:, :3, 3], dim=1).mean().item()
                for f in (-1, 1)])), "descent_T_1_0": descent[1].mean(0).tolist()}
        row["initial_translation_T_1_0"] = outputs["poses"][1][:, :3, 3].detach().mean(0).tolist()
        rows.append(row)
    print(f"\nCold start: descent direction of the teacher loss w.r.t. the loss poses' translation at random "
          f"initialisation ({len(batch['index'])} samples, {args.claim_width}×{args.claim_height}); cosine to the true "
          f"translation, mean over T_-1_0 and T_1_0")
    print(f"{'seed':>5}{'initial t of T_1_0':>28}{'auto-masked':>13}{'descent (T_1_0)':>28}{'every pixel':>13}"
          f"{'descent (T_1_0)':>28}")

    def vector(values):
        return "(" + ", ".join(f"{v:+.4f}" for v in values) + ")"
    for row in rows:
        print(f"{row['seed']:>5}{vector(row['initial_translation_T_1_0']):>28}"
              f"{row['auto_masked']['cosine_to_true']:>13.3f}{vector(row['auto_masked']['descent_T_1_0']):>28}"
              f"{row['every_pixel']['cosine_to_true']:>13.3f}{vector(row['every_pixel']['descent_T_1_0']):>28}")
    return {"samples": len(batch["index"]), "height": args.claim_height, "width": args.claim_width, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["claim", "cold-start"], default="claim", help="which benchmark to run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="claim: device the runs train and are scored on (jobs share it)")
    claim = parser.add_argument_group("claim")
    claim.add_argument("--steps", type=int, default=200, help="optimisation steps per method (same for all)")
    claim.add_argument("--batch-size", type=int, default=4, help="training batch size")
    claim.add_argument("--claim-height", type=int, default=64, help="training/eval height (multiple of 32)")
    claim.add_argument("--claim-width", type=int, default=192, help="training/eval width (multiple of 32)")
    claim.add_argument("--bins", type=int, default=32, help="cost-volume depth bins")
    claim.add_argument("--train-sequences", type=int, default=8, help="training sequences (seeds 0..N-1)")
    claim.add_argument("--frames-per-sequence", type=int, default=20, help="frames per synthetic sequence")
    claim.add_argument("--test-seeds", type=parse_seeds, default=parse_seeds("2000-2003"),
                       help="held-out sequence seeds, e.g. 2000-2003 or 2000,2005")
    claim.add_argument("--test-stride", type=int, default=2, help="evaluate every Nth test frame")
    claim.add_argument("--methods", nargs="+", default=["manydepth", "manydepth2_nf", "manydepth2_oracle_flow"],
                       choices=list(CLAIM_METHODS), help="methods to train and compare")
    claim.add_argument("--static-reference", choices=["paper", "release"], default="paper",
                       help="static reference construction for the Manydepth2 flow variants")
    claim.add_argument("--flow-weights", default="", help="GMFlow/RAFT checkpoint for manydepth2_flow_net "
                                                           "(e.g. runs/flow_raft_small/flow.pth of mgdepth train-flow)")
    claim.add_argument("--flow-backend", choices=["gmflow", "raft_small", "raft_large"], default="raft_small",
                       help="the network --flow-weights holds")
    claim.add_argument("--seeds", type=parse_seeds, default=[1],
                       help="training seeds, one run per method and seed, e.g. 1-3 (the same for every method)")
    claim.add_argument("--eval-every", type=int, default=0,
                       help="also score the held-out frames every N steps during training (0 = before and after)")
    claim.add_argument("--cold-start-samples", type=int, default=8,
                       help="cold-start part: training samples in the batch whose gradient is measured")
    claim.add_argument("--jobs", type=int, default=1,
                       help="runs trained at once, each in a process of its own with --threads threads")
    claim.add_argument("--automask-warmup-steps", type=int, default=200,
                       help="teacher loss without auto-masking for the first N steps (losses.automask_warmup_steps; "
                            "0 = the release, which locks into a sideways drift from random weights)")
    claim.add_argument("--augment", action="store_true",
                       help="colour jitter and horizontal flips on training samples (the release's default; not "
                            "with manydepth2_oracle_flow)")
    claim.add_argument("--pose-source", choices=["network", "dataset"], default="network",
                       help="poses for the warps and the cost volume: the pose net (self-supervised) or the "
                            "synthetic set's true ego-motion (losses.pose_source)")
    claim.add_argument("--dataset-pose-scale", type=float, default=0.1,
                       help="with --pose-source dataset: network units per metre (losses.dataset_pose_scale)")
    claim.add_argument("--claim-json", default="",
                       help="also merge one record per run into this JSON list (docs/results/claim.json format)")
    claim.add_argument("--run-root", default="",
                       help="keep each run's folder (checkpoints, scores so far) under this folder instead of a "
                            "temporary one; needed by --resume")
    claim.add_argument("--resume", action="store_true",
                       help="continue the runs found under --run-root from their last evaluation point")
    claim.add_argument("--keep-weights", default="",
                       help="save each trained model as a weights folder <DIR>/<method>_<seed> (else discarded)")
    parser.add_argument("--results", type=Path, default=RESULTS / "manydepth2.json",
                        help="JSON file to update (parts merged in)")
    args = parser.parse_args()

    measured = {}
    if args.part == "claim":
        measured["claim"] = bench_claim(args)
    if args.part == "cold-start":
        measured["cold_start"] = bench_cold_start(args)
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results.update(measured)
    write_results(results, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
