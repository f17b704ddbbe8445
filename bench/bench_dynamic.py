"""Dyna-DM on the synthetic dynamic-street set: theta-filter accuracy, and the cost of object motion.

1. Accuracy of the theta filter at telling moving from parked objects (ground-truth ``moving`` flags) on the
   synthetic *test* sequences, every object of frame t that passes the size test and has a counterpart in t−1 and
   t+1 (status static or dynamic):
   (a) with the TRUE depth of t−1 and the true poses;
   (b) with the networks' depth (Manydepth teacher) and background ego-pose (pose net on masked images), either
       untrained (random initialisation) or after ``--train-steps`` Manydepth + Dyna-DM steps on the synthetic
       training sequences (the row says which).
2. One Dyna-DM training step (Manydepth, batch ``--batch``) with object motion for the truly dynamic objects only
   (the theta filter) against object motion for EVERY potentially dynamic object (Insta-DM-like): median step
   CPU time (process time, robust on a shared machine; wall time too) and peak resident memory, each mode in a
   fresh child process (a process's peak cannot be reset), same data and seed, as ratios.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_dynamic.py [--height 96 --width 320] [--train-steps 0]

Prints a table and writes bench/results/dynamic.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from results_io import RESULTS, write_results  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from mgdepth_core import geometry  # noqa: E402
from mgdepth_core.config import from_dict  # noqa: E402
from mgdepth_core.data import build_dataset  # noqa: E402
from mgdepth_core.data.synthetic import HELD_OUT_SEED_OFFSET, SyntheticSequence  # noqa: E402
from mgdepth_core.dynamic import (  # noqa: E402
    BEYOND_LIMIT,
    DYNAMIC,
    SMALL,
    STATIC,
    UNMATCHED,
    DynamicObjectsConfig,
    theta_filter,
)
from mgdepth_core.models import build_model  # noqa: E402
from mgdepth_core.train.config import TrainConfig  # noqa: E402


def train_config(height: int, width: int, batch: int, **dyna) -> TrainConfig:
    config = from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": height, "width": width, "pretrained": False, "num_depth_bins": 16},
        "data": {"dataset": "synthetic", "height": height, "width": width, "num_workers": 0,
                 "synthetic_sequences": 4, "synthetic_frames": 40},
        "optim": {"batch_size": batch}, "losses": {"num_scales": 4}, "device": "cpu", "dynamic_objects": "dyna-dm"})
    config.dyna_dm = DynamicObjectsConfig(mode="dyna-dm", **dyna)
    return config


def to_tensor(frame: dict) -> dict:
    return {"image": torch.from_numpy(frame["image"]).permute(2, 0, 1)[None].float() / 255,
            "ids": torch.from_numpy(frame["instances"])[None, None],
            "depth": torch.from_numpy(frame["depth"])[None, None]}


def network_depth_and_pose(model, hook, frames: dict, K: torch.Tensor, compare: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher depth of t−1 and of the comparison frame (compare = 1 or 0) and T_{compare}_{t−1} from the pose net
    on background-masked pairs, as the training hook computes them."""
    inputs = {"color": {f: frames[f]["image"] for f in frames}, "color_aug": {f: frames[f]["image"] for f in frames},
              "instances": {f: frames[f]["ids"] for f in frames}, "K": K}
    with torch.no_grad():
        poses = {}
        for f in (-1, 1):
            target, source = hook.background_images(inputs, f, frames[0]["image"], frames[f]["image"])
            poses[f] = model.relative_pose(target, source, source_is_before=f < 0)
        depth = hook.teacher_depth(model, frames[-1]["image"])
        compare_depth = hook.teacher_depth(model, frames[compare]["image"])
    T = (poses[1] if compare == 1 else torch.eye(4)[None]) @ geometry.invert_pose(poses[-1])
    return depth, compare_depth, T


def true_depth(frame: dict) -> torch.Tensor:
    """A rendered frame's depth with the sky (0) at 1000 m."""
    return torch.where(frame["depth"] > 0, frame["depth"], torch.full_like(frame["depth"], 1000.0))


def object_observations(sequences: list[SyntheticSequence], configs: list[DynamicObjectsConfig], source: str,
                        model=None, hook=None) -> list[dict]:
    """The theta filter's similarity for every object of every frame t that passes the size test and has a
    counterpart, one result per config (each frame's depth and poses are computed once for all of them):
    ``observations`` [(sequence index, instance id, t, similarity, truly moving)], in frame order, plus the counts
    of small and unmatched objects. ``source``: "true" geometry or the "network"'s. The configs share
    ``extra_distance`` (it decides which pose is computed)."""
    compare = 1 if configs[0].extra_distance else 0
    if any(config.extra_distance != configs[0].extra_distance for config in configs):
        raise ValueError("object_observations: the configs must share extra_distance")
    found = [{"observations": [], "small": 0, "unmatched": 0} for _ in configs]
    for index, sequence in enumerate(sequences):
        K = torch.from_numpy(sequence.K).float()[None]
        rendered = {}
        for t in range(1, sequence.num_frames - 1):
            for i in (t - 1, t, t + 1):
                if i not in rendered:
                    rendered[i] = to_tensor(sequence.frame(i))
            frames = {f: rendered[t + f] for f in (-1, 0, 1)}
            if source == "true":
                depth, compare_depth = true_depth(frames[-1]), true_depth(frames[compare])
                T = torch.from_numpy(sequence.relative_pose(t + compare, t - 1)).float()[None]
            else:
                model.eval()
                depth, compare_depth, T = network_depth_and_pose(model, hook, frames, K, compare)
            for config, result in zip(configs, found):
                filtered = theta_filter(frames[0]["ids"], frames[-1]["ids"], depth, T, K, frames[compare]["ids"],
                                        config, source_image=frames[-1]["image"],
                                        compare_image=frames[compare]["image"], compare_depth=compare_depth)
                status, similarity = filtered.status[0], filtered.similarity[0]
                for instance_id in range(1, status.shape[0]):
                    code = int(status[instance_id])
                    result["small"] += code == SMALL
                    result["unmatched"] += code == UNMATCHED
                    if code in (STATIC, DYNAMIC, BEYOND_LIMIT):
                        result["observations"].append((index, instance_id, t, float(similarity[instance_id]),
                                                       bool(sequence.moving[instance_id])))
            rendered.pop(t - 1, None)
    return found


def decide(found: dict, theta: float, vote_frames: int = 1) -> dict:
    """Accuracy, recall and precision of "moving" when an object is called moving if the median similarity of its
    last ``vote_frames`` observations (this frame and earlier ones of the same object, as a stream has them) is
    below ``theta``; ``vote_frames`` 1 is the paper's per-frame decision."""
    history: dict[tuple, list[float]] = {}
    counts = {"correct": 0, "total": 0, "true_positive": 0, "moving": 0, "flagged": 0}
    for index, instance_id, _, similarity, moving in found["observations"]:
        recent = history.setdefault((index, instance_id), [])
        recent.append(similarity)
        flagged = float(np.median(recent[-vote_frames:])) < theta
        counts["total"] += 1
        counts["correct"] += moving == flagged
        counts["moving"] += moving
        counts["flagged"] += flagged
        counts["true_positive"] += moving and flagged
    total = max(counts["total"], 1)
    return {**counts, "small": found["small"], "unmatched": found["unmatched"],
            "accuracy": counts["correct"] / total,
            "recall_moving": counts["true_positive"] / max(counts["moving"], 1),
            "precision_moving": counts["true_positive"] / max(counts["flagged"], 1)}


def filter_accuracy(sequences: list[SyntheticSequence], config: DynamicObjectsConfig, source: str,
                    model=None, hook=None) -> dict:
    """The theta filter's per-frame decisions at ``config.theta`` (:func:`decide` with one frame)."""
    return decide(object_observations(sequences, [config], source, model, hook)[0], config.theta)


def briefly_trained(config: TrainConfig, steps: int, seed: int = 0):
    """Manydepth + Dyna-DM trained for ``steps`` Adam steps on the synthetic training sequences (teacher and pose
    net train throughout; nothing is saved)."""
    from mgdepth_core.train.dyna_dm import build_training_hook
    from mgdepth_core.train.trainer import TrainingStep

    torch.manual_seed(seed)
    data = build_dataset(config.data, "train", training=True)
    model = build_model(config.model)
    hook = build_training_hook(config).bind(model)
    step = TrainingStep(model, config, hook).train()
    optimizer = torch.optim.Adam([{"params": list(model.parameters())}, *hook.parameter_groups(1e-4)], lr=1e-4)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    batch = config.optim.batch_size
    started = time.perf_counter()
    for i in range(steps):
        inputs = default_collate([data[order[(i * batch + j) % len(data)]] for j in range(batch)])
        _, losses = step(inputs, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
    return model, hook, time.perf_counter() - started


def step_cost(height: int, width: int, batch: int, object_motion_all: bool, steps: int, seed: int = 0) -> dict:
    """Median seconds of a training step (forward + backward + Adam) and objects given motion per step."""
    from mgdepth_core.train.dyna_dm import build_training_hook
    from mgdepth_core.train.trainer import TrainingStep

    torch.manual_seed(seed)
    config = train_config(height, width, batch, object_motion_all=object_motion_all)
    data = build_dataset(config.data, "train", training=True)
    model = build_model(config.model)
    hook = build_training_hook(config).bind(model)
    step = TrainingStep(model, config, hook)
    optimizer = torch.optim.Adam([{"params": list(model.parameters())}, *hook.parameter_groups(1e-4)], lr=1e-4)
    times, cpu_times, objects = [], [], []
    for i in range(steps + 1):
        inputs = default_collate([data[(i * batch + j) % len(data)] for j in range(batch)])
        started, started_cpu = time.perf_counter(), time.process_time()
        outputs, losses = step(inputs, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - started_cpu)
            objects.append(int(outputs["dyna_dm"].motion_ids.sum()))
    return {"median_step_s": statistics.median(times), "median_step_cpu_s": statistics.median(cpu_times),
            "objects_with_motion_per_step": statistics.mean(objects)}


def child_peak(args: argparse.Namespace, object_motion_all: bool) -> dict:
    command = [sys.executable, __file__, "--child", "all" if object_motion_all else "dynamic", "--height",
               str(args.height), "--width", str(args.width), "--batch", str(args.batch), "--steps", str(args.steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ}).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per mode (after one warm-up)")
    parser.add_argument("--sequences", type=int, default=4, help="synthetic test sequences for the accuracy")
    parser.add_argument("--frames", type=int, default=20, help="frames per test sequence")
    parser.add_argument("--train-steps", type=int, default=0, help="train the networks this long before (b)")
    parser.add_argument("--child", choices=["all", "dynamic"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cost = step_cost(args.height, args.width, args.batch, args.child == "all", args.steps)
        cost["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(cost))
        return

    filter_config = DynamicObjectsConfig(mode="dyna-dm")
    seeds = [2 * HELD_OUT_SEED_OFFSET + i for i in range(args.sequences)]
    sequences = [SyntheticSequence(seed, args.frames, args.height, args.width) for seed in seeds]
    rows = {}
    started = time.perf_counter()
    rows["true depth and pose"] = filter_accuracy(sequences, filter_config, "true")
    rows["true depth and pose"]["seconds"] = time.perf_counter() - started
    config = train_config(args.height, args.width, 2)
    if args.train_steps:
        model, hook, seconds = briefly_trained(config, args.train_steps)
        label = f"network depth and pose, trained {args.train_steps} steps"
    else:
        from mgdepth_core.train.dyna_dm import build_training_hook

        torch.manual_seed(0)
        model = build_model(config.model)
        hook = build_training_hook(config).bind(model)
        seconds, label = 0.0, "network depth and pose, untrained (random init)"
    rows[label] = filter_accuracy(sequences, filter_config, "network", model, hook)
    rows[label]["training_seconds"] = seconds

    costs = {mode: child_peak(args, mode == "all") for mode in ("dynamic", "all")}
    ratio = {"step_cpu_time": costs["dynamic"]["median_step_cpu_s"] / costs["all"]["median_step_cpu_s"],
             "step_wall_time": costs["dynamic"]["median_step_s"] / costs["all"]["median_step_s"],
             "peak_rss": costs["dynamic"]["peak_rss_mb"] / costs["all"]["peak_rss_mb"]}

    print(f"\nTheta filter (θ={filter_config.theta}, {filter_config.similarity}, extra distance "
          f"{filter_config.extra_distance}) on {len(seeds)} synthetic test sequences × {args.frames} frames, "
          f"{args.height}×{args.width}")
    print(f"{'depth and pose':58s} {'objects':>8s} {'accuracy':>9s} {'recall':>7s} {'precision':>9s} {'small':>6s} "
          f"{'unmatched':>9s}")
    for name, row in rows.items():
        print(f"{name:58s} {row['total']:8d} {row['accuracy']:9.3f} {row['recall_moving']:7.3f} "
              f"{row['precision_moving']:9.3f} {row['small']:6d} {row['unmatched']:9d}")
    print(f"\nTraining step (Manydepth + Dyna-DM, batch {args.batch}, {args.height}×{args.width}, CPU)")
    print(f"{'object motion for':32s} {'objects/step':>12s} {'step CPU s':>10s} {'step wall s':>11s} "
          f"{'peak RSS MB':>12s}")
    for mode, label in (("dynamic", "truly dynamic only (theta)"), ("all", "every potentially dynamic")):
        cost = costs[mode]
        print(f"{label:32s} {cost['objects_with_motion_per_step']:12.1f} {cost['median_step_cpu_s']:10.2f} "
              f"{cost['median_step_s']:11.2f} {cost['peak_rss_mb']:12.0f}")
    print(f"ratio theta / every: step CPU time {ratio['step_cpu_time']:.2f}, wall {ratio['step_wall_time']:.2f}, "
          f"peak RSS {ratio['peak_rss']:.2f} (paper: 0.71 GPU memory vs Insta-DM)")

    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "omp_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
                          "load_average": os.getloadavg()},
              "settings": vars(args) | {"theta": filter_config.theta, "min_area_fraction":
                                        filter_config.min_area_fraction, "seeds": seeds},
              "filter_accuracy": rows, "training_step": costs, "ratios_theta_over_every": ratio}
    write_results(result, RESULTS / "dynamic.json")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
