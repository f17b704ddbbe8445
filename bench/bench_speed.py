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
from bench_inference import MIN_BIN, MAX_BIN, OriginalManydepth, make_frames, peak_rss_mb
from results_io import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.stages import STAGES, StageTimer

REPO = Path(__file__).resolve().parents[1]
APPROXIMATE = dict(flow_input_scale=0.5, cost_volume_bin_step=2)
CONFIGS = {  # name → (ModelConfig fields, EstimatorConfig fields)
    "manydepth": (dict(method="manydepth"), {}),
    "manydepth2_reference": (dict(method="manydepth2"), dict(fold_batch_norm=False, channels_last=False,
                                                            autocast="off")),
    "manydepth2": (dict(method="manydepth2"), {}),
    "manydepth2_compiled": (dict(method="manydepth2"), dict(compile="default")),
    "manydepth2_bf16": (dict(method="manydepth2"), dict(autocast="bfloat16")),
    "manydepth2_half_flow": (dict(method="manydepth2"), dict(flow_input_scale=0.5)),
    "manydepth2_bins_step2": (dict(method="manydepth2"), dict(cost_volume_bin_step=2)),
    "manydepth2_fast": (dict(method="manydepth2"), dict(APPROXIMATE, autocast="bfloat16")),
    "manydepth2_nf": (dict(method="manydepth2", flow="none"), {}),
}
REFERENCE = "manydepth2_reference"


def build(name: str, height: int, width: int, threads: int) -> DepthEstimator:
    model_fields, estimator_fields = CONFIGS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, no flow checkpoint
        model = build_model(ModelConfig(height=height, width=width, pretrained=False, **model_fields))
    config = EstimatorConfig(device="cpu", min_translation=0.0, num_threads=threads, **estimator_fields)
    return DepthEstimator(model, config, owns_model=True)


def rss_worker(name: str, frames_file: Path, threads: int) -> None:
    """One configuration alone (fresh process): print its peak RSS, MB, as JSON."""
    frames = np.load(frames_file)
    estimator = build(name, frames["images"].shape[1], frames["images"].shape[2], threads)
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
    estimators = {name: build(name, args.height, args.width, args.threads) for name in args.configs}
    with tempfile.TemporaryDirectory() as folder:
        from original_manydepth import save_original_networks

        torch.manual_seed(0)
        save_original_networks(Path(folder), args.height, args.width, MIN_BIN, MAX_BIN)
        original = OriginalManydepth(Path(folder))
        rss = {}
        if args.rss:
            np.savez(Path(folder) / "frames.npz", images=np.stack(images[:args.rss_frames]), K=K)
            rss = {name: measure_rss(name, Path(folder) / "frames.npz", args.threads) for name in args.configs}
    wall = {name: [] for name in [*args.configs, "original_manydepth"]}
    stages = {name: [] for name in args.configs}
    difference = {name: 0.0 for name in args.configs}
    load_before = os.getloadavg()
    for index, image in enumerate(images):
        depths = {}
        for name, estimator in estimators.items():
            with StageTimer() as timer:
                result = estimator.process(image, K)
            depths[name] = result.depth
            if index > 0 and not result.multi_frame:
                raise RuntimeError(f"{name} fell back to single-frame depth; the timing would be wrong")
            if index >= args.warmup:
                wall[name].append(result.timings_ms["total"])
                stages[name].append(dict(timer.ms))
        started = time.perf_counter()
        original.process(image, K)
        if index >= args.warmup:
            wall["original_manydepth"].append((time.perf_counter() - started) * 1000)
        if REFERENCE in depths:
            for name, depth in depths.items():
                difference[name] = max(difference[name], float(np.nanmax(np.abs(depth - depths[REFERENCE]))))
        print(f"frame {index}: " + ", ".join(f"{name} {times[-1]:.0f}" for name, times in wall.items() if times),
              flush=True)
    rows = {}
    for name in wall:
        row = {"ms_per_frame": statistics.median(wall[name]),
               "ratio_to_original_manydepth": median_ratio(wall[name], wall["original_manydepth"])}
        if "manydepth" in wall:
            row["ratio_to_manydepth"] = median_ratio(wall[name], wall["manydepth"])
        if REFERENCE in wall:
            row["ratio_to_reference"] = median_ratio(wall[name], wall[REFERENCE])
        if name in stages:
            per_stage = {stage: statistics.median(frame.get(stage, 0.0) for frame in stages[name])
                         for stage in STAGES}
            per_stage["other"] = max(0.0, row["ms_per_frame"] - sum(per_stage.values()))
            row["stages_ms"] = per_stage
            row["stages_share"] = {stage: ms / row["ms_per_frame"] for stage, ms in per_stage.items()}
            row["settings"] = {**CONFIGS[name][0], **CONFIGS[name][1]}
            if REFERENCE in depths:
                row["max_abs_depth_difference_m"] = difference[name]
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
    rows = results["rows"]
    setup = results["setup"]
    print(f"\n{setup['resolution']}, {setup['threads']} threads, {setup['frames']} timed frames, load average "
          f"{setup['load_average_before'][0]:.1f} → {setup['load_average_after'][0]:.1f}")
    header = f"{'configuration':<24}{'ms/frame':>9}{'×MD':>7}{'×orig MD':>9}{'×ref':>7}{'Δdepth m':>10}{'RSS MB':>8}"
    print(header + "  " + " / ".join([*STAGES, "other"]) + " (ms, share)")
    for name, row in rows.items():
        stages = row.get("stages_ms")
        parts = " / ".join(f"{ms:.0f} ({row['stages_share'][stage]:.0%})" for stage, ms in stages.items()) \
            if stages else ""
        print(f"{name:<24}{row['ms_per_frame']:>9.0f}{row.get('ratio_to_manydepth', float('nan')):>7.2f}"
              f"{row['ratio_to_original_manydepth']:>9.2f}{row.get('ratio_to_reference', float('nan')):>7.2f}"
              f"{row.get('max_abs_depth_difference_m', float('nan')):>10.1e}"
              f"{row.get('peak_rss_mb', float('nan')):>8.0f}  {parts}")


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
