"""Streaming speed per configuration with a per-stage profile, every figure a ratio against baselines timed in
the same process on the same frames.

    python bench/bench_speed.py                                  # 640×192, 2 threads, every configuration
    python bench/bench_speed.py --configs manydepth manydepth2 manydepth2_fast --frames 4 --no-rss

Every configuration is a ``DepthEstimator`` (random weights, the same seed for every Manydepth2, camera-motion
threshold 0 so that every frame after the first is multi-frame) on a rendered synthetic sequence; the original
Manydepth code (PyPI ``manydepth==1.0.0``, as its evaluation script runs it, ``bench_inference.OriginalManydepth``)
runs beside them. On every frame all of them run one after another (so machine load hits all alike); figures are
medians over the timed frames after ``--warmup``. Ratios: against our Manydepth and the original Manydepth (each
frame's time divided by the baseline's on the same frame, median over frames). Stages (pose, flow, teacher, static
reference, cost volume, encoder, decoder; ``other`` = pre/post-processing) come from ``mgdepth_core.stages``.
Depth change: the largest |depth − reference depth| (metres at depth_scale 1) over all frames, against
``manydepth2_reference`` (float32, no batch-norm folding, contiguous tensors, every bin, full-size flow).
Peak RSS: each configuration alone in a fresh subprocess for ``--rss-frames`` frames (VmHWM).
Writes docs/results/speed_profile.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import MAX_BIN, MIN_BIN, OriginalManydepth, make_frames, peak_rss_mb
from original_manydepth import save_original_networks  # test/, on the path through bench_inference
from random_networks import calibrate_batch_norms
from results_io import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.stages import STAGES, StageTimer

REPO = Path(__file__).resolve().parents[1]
MD2 = dict(method="manydepth2")
RELEASE = dict(method="manydepth2", static_reference="release")
FAST = dict(flow_input_scale=0.5, cost_volume_bin_step=2, autocast="bfloat16")
UNOPTIMISED = dict(fold_batch_norm=False, channels_last=False, autocast="off")
CONFIGS = {  # name → ModelConfig fields, EstimatorConfig fields, the configuration its depth is compared with
    "manydepth": (dict(method="manydepth"), {}, None),
    "manydepth2_reference": (MD2, UNOPTIMISED, None),
    "manydepth2": (MD2, {}, "manydepth2_reference"),
    "manydepth2_compiled": (MD2, dict(compile="default"), "manydepth2_reference"),
    "manydepth2_bf16": (MD2, dict(autocast="bfloat16"), "manydepth2_reference"),
    "manydepth2_half_flow": (MD2, dict(flow_input_scale=0.5), "manydepth2_reference"),
    "manydepth2_bins_step2": (MD2, dict(cost_volume_bin_step=2), "manydepth2_reference"),
    "manydepth2_fast": (MD2, FAST, "manydepth2_reference"),
    "manydepth2_fast_compiled": (MD2, dict(FAST, compile="default"), "manydepth2_reference"),
    "manydepth2_release": (RELEASE, {}, None),
    "manydepth2_release_no_motion": (RELEASE, dict(skip_release_motion=True), "manydepth2_release"),
    "manydepth2_release_fast": (RELEASE, dict(FAST, skip_release_motion=True), "manydepth2_release"),
    "manydepth2_release_fast_compiled": (RELEASE, dict(FAST, skip_release_motion=True, compile="default"),
                                         "manydepth2_release"),
    "manydepth2_nf": (dict(method="manydepth2", flow="none"), {}, None),
}


def build(name: str, height: int, width: int, threads: int, calibration: tuple | None) -> DepthEstimator:
    """The estimator of configuration ``name`` (random weights, seed 0); ``calibration`` (frames, K): give the
    batch norms those frames' statistics first (unsaturated depth, see test/random_networks.py)."""
    model_fields, estimator_fields, _ = CONFIGS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, no flow checkpoint
        model = build_model(ModelConfig(height=height, width=width, pretrained=False, **model_fields))
    if calibration is not None:
        calibrate_batch_norms(model, *calibration)
    config = EstimatorConfig(device="cpu", min_translation=0.0, num_threads=threads, **estimator_fields)
    return DepthEstimator(model, config, owns_model=True)


def rss_worker(name: str, frames_file: Path, threads: int) -> None:
    """One configuration alone (fresh process): print its peak RSS, MB, as JSON."""
    frames = np.load(frames_file)
    estimator = build(name, frames["images"].shape[1], frames["images"].shape[2], threads, None)
    with torch.inference_mode():
        for image in frames["images"]:
            estimator.process(image, frames["K"])
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def measure_rss(name: str, frames_file: Path, threads: int) -> float:
    command = [sys.executable, __file__, "--rss-worker", name, "--frames-file", str(frames_file),
               "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def median_ratio(times: list[float], baseline: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(times, baseline))


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    images, K = make_frames(args.warmup + args.frames, args.height, args.width)
    estimators = {name: build(name, args.height, args.width, args.threads, (images[:4], K))
                  for name in args.configs}
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        save_original_networks(Path(folder), args.height, args.width, MIN_BIN, MAX_BIN)
        original = OriginalManydepth(Path(folder))
    runners = {**estimators, "original_manydepth": original}
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    stages = {name: [] for name in estimators}
    compared = {name: CONFIGS[name][2] for name in estimators if CONFIGS[name][2] in estimators}
    difference = {name: {"max_abs_m": 0.0, "max_rel": 0.0, "median_rel": []} for name in compared}
    load_before = os.getloadavg()
    for index, image in enumerate(images):
        depths = {}
        for name, runner in runners.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            with StageTimer() as timer:
                result = runner.process(image, K)
            elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
            if name in estimators:
                depths[name] = result.depth
                if index > 0 and not result.multi_frame:
                    raise RuntimeError(f"{name} fell back to single-frame depth; the timing would be wrong")
            if index >= args.warmup:
                wall[name].append(elapsed * 1000)
                cpu[name].append(elapsed_cpu * 1000)
                if name in stages:
                    stages[name].append(dict(timer.ms))
        for name, other in compared.items():
            error = np.abs(depths[name] - depths[other])
            difference[name]["max_abs_m"] = max(difference[name]["max_abs_m"], float(np.nanmax(error)))
            difference[name]["max_rel"] = max(difference[name]["max_rel"], float(np.nanmax(error / depths[other])))
            difference[name]["median_rel"].append(float(np.nanmedian(error / depths[other])))
        print(f"frame {index}: " + ", ".join(f"{name} {times[-1]:.0f}" for name, times in wall.items() if times),
              flush=True)
    rss = {}
    if args.rss:  # after the timing, which the machine's load varies most
        with tempfile.TemporaryDirectory() as folder:
            np.savez(Path(folder) / "frames.npz", images=np.stack(images[:args.rss_frames]), K=K)
            rss = {name: measure_rss(name, Path(folder) / "frames.npz", args.threads) for name in args.configs}
    rows = {}
    for name in wall:
        row = {"ms_per_frame": statistics.median(wall[name]), "cpu_ms_per_frame": statistics.median(cpu[name]),
               "ratio_to_original_manydepth": median_ratio(wall[name], wall["original_manydepth"]),
               "cpu_ratio_to_original_manydepth": median_ratio(cpu[name], cpu["original_manydepth"])}
        for baseline in ("manydepth", CONFIGS.get(name, (0, 0, None))[2]):
            if baseline in wall:
                row[f"ratio_to_{baseline}"] = median_ratio(wall[name], wall[baseline])
                row[f"cpu_ratio_to_{baseline}"] = median_ratio(cpu[name], cpu[baseline])
        if name in stages:
            per_stage = {stage: statistics.median(frame.get(stage, 0.0) for frame in stages[name])
                         for stage in STAGES}
            per_stage["other"] = max(0.0, row["ms_per_frame"] - sum(per_stage.values()))
            row["stages_ms"] = per_stage
            row["stages_share"] = {stage: ms / row["ms_per_frame"] for stage, ms in per_stage.items()}
            row["settings"] = {**CONFIGS[name][0], **CONFIGS[name][1]}
            if name in difference:
                change = difference[name]
                row["depth_change"] = {"against": compared[name], "max_abs_m": change["max_abs_m"],
                                       "max_rel": change["max_rel"],
                                       "median_rel": statistics.median(change["median_rel"])}
            if name in rss:
                row["peak_rss_mb"] = rss[name]
        rows[name] = row
    return {"setup": {"resolution": f"{args.width}x{args.height}", "threads": args.threads, "frames": args.frames,
                      "warmup": args.warmup, "torch": torch.__version__, "cpus": os.cpu_count(),
                      "machine": platform.processor() or platform.machine(),
                      "load_average_before": load_before, "load_average_after": os.getloadavg(),
                      "weights": "random", "command": " ".join(["python", *sys.argv])},
            "rows": rows}


def print_table(results: dict) -> None:
    rows, setup = results["rows"], results["setup"]
    nan = float("nan")
    print(f"\n{setup['resolution']}, {setup['threads']} threads, {setup['frames']} timed frames, load average "
          f"{setup['load_average_before'][0]:.1f} → {setup['load_average_after'][0]:.1f}; ratios = time / baseline "
          f"time on the same frame (median); Δdepth against the configuration named")
    print(f"{'configuration':<30}{'ms':>7}{'CPU ms':>8}{'×MD':>6}{'×orig':>7}{'×orig CPU':>10}"
          f"{'RSS MB':>8}  {'Δdepth: max m / max rel / median rel (against)'}")
    for name, row in rows.items():
        change = row.get("depth_change")
        changed = ""
        if change:
            against = change["against"]
            changed = (f"{change['max_abs_m']:.2g} / {change['max_rel']:.2g} / {change['median_rel']:.2g} "
                       f"({against}; ×{row[f'ratio_to_{against}']:.2f} its time)")
        print(f"{name:<30}{row['ms_per_frame']:>7.0f}{row['cpu_ms_per_frame']:>8.0f}"
              f"{row.get('ratio_to_manydepth', nan):>6.2f}{row['ratio_to_original_manydepth']:>7.2f}"
              f"{row['cpu_ratio_to_original_manydepth']:>10.2f}{row.get('peak_rss_mb', nan):>8.0f}  {changed}")
    print(f"\n{'stages, ms (share)':<30}" + "".join(f"{stage:>18}" for stage in [*STAGES, "other"]))
    for name, row in rows.items():
        if "stages_ms" in row:
            print(f"{name:<30}" + "".join(f"{ms:>11.0f} ({row['stages_share'][stage]:>3.0%})"
                                          for stage, ms in row["stages_ms"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--frames", type=int, default=6, help="timed frames")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak-RSS subprocesses")
    parser.add_argument("--rss-frames", type=int, default=4, help="frames each peak-RSS subprocess streams")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "speed_profile.json")
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    parser.add_argument("--frames-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker:
        torch.set_num_threads(args.threads)
        rss_worker(args.rss_worker, args.frames_file, args.threads)
        return 0
    results = run(args)
    print_table(results)
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
