"""Streaming Manydepth inference: our DepthEstimator against the original Manydepth code, same weights and frames.

    .venv/bin/python bench/bench_inference.py [--frames 20] [--warmup 3] [--threads 2] [--width 640 --height 192]

Both run the per-frame work of Manydepth's evaluation script: pose net on (previous, current), multi-frame
encoder with the 96-bin cost volume against the previous frame, depth decoder, disparity → depth. The original is
the PyPI package ``manydepth==1.0.0`` (dev extra; a test/benchmark oracle only). Both load the same random weights
(the original networks are saved in the released folder layout and loaded by ``load_weights``), so the depths must
agree; the largest difference is reported. The frames are a rendered synthetic sequence (moving camera).

Time: the two are called alternately on each frame in this process (so machine load hits both alike); median
wall time per frame after ``--warmup`` frames, plus median process CPU time. Ours includes uint8 → tensor
conversion and everything ``process`` does; the original starts from ready tensors. The camera-motion
threshold is 0 so that every frame after the first takes the multi-frame path (random weights barely move).
Memory: each side runs alone on 6 frames in a fresh subprocess, started before this process loads any model;
peak RSS is the subprocess's ``VmHWM`` (/proc/self/status) at the end (``ru_maxrss`` would include this
process's peak, inherited over fork), and the table also shows the peak minus the RSS after loading (the
inference working set).
With onnxruntime installed, ours also runs with ``backend: onnxruntime`` (the graphs of ``mgdepth export``,
exported at start-up, on onnxruntime's CPU provider with the same thread count), called in the same loop; the
table adds its time as a ratio against ours on torch and its largest depth difference from it.
Writes bench/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from results_io import RESULTS, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from original_manydepth import save_original_networks  # the test oracle's builder, shared with the parity test

MIN_BIN, MAX_BIN = 0.1, 10.0  # the trackers' initial values in Manydepth


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM peak), MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def current_rss_mb() -> float:
    return status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak RSS of this process image. ``ru_maxrss`` is not used: after fork + exec it keeps the parent's peak."""
    return status_mb("VmHWM")


def make_frames(count: int, height: int, width: int) -> tuple[list[np.ndarray], np.ndarray]:
    from mgdepth_core.data.synthetic import SyntheticSequence

    sequence = SyntheticSequence(seed=7, num_frames=count, height=height, width=width)
    return [sequence.frame(i)["image"] for i in range(count)], sequence.K


class OriginalManydepth:
    """The original code's per-frame evaluation work on a weights folder (as ``evaluate_depth.py`` runs it)."""

    def __init__(self, folder: Path):
        from manydepth import networks
        from manydepth.layers import disp_to_depth, transformation_from_parameters

        self.disp_to_depth, self.transformation = disp_to_depth, transformation_from_parameters
        encoder_state = torch.load(folder / "encoder.pth", weights_only=True)
        self.height, self.width = encoder_state["height"], encoder_state["width"]
        self.min_bin, self.max_bin = float(encoder_state["min_depth_bin"]), float(encoder_state["max_depth_bin"])
        self.encoder = networks.ResnetEncoderMatching(18, False, input_height=self.height, input_width=self.width,
                                                      adaptive_bins=True)
        self.encoder.load_state_dict({k: v for k, v in encoder_state.items() if k in self.encoder.state_dict()})
        self.decoder = networks.DepthDecoder(self.encoder.num_ch_enc)
        self.decoder.load_state_dict(torch.load(folder / "depth.pth", weights_only=True))
        self.pose_encoder = networks.ResnetEncoder(18, False, num_input_images=2)
        self.pose_encoder.load_state_dict(torch.load(folder / "pose_encoder.pth", weights_only=True))
        self.pose_decoder = networks.PoseDecoder(self.pose_encoder.num_ch_enc, num_input_features=1,
                                                 num_frames_to_predict_for=2)
        self.pose_decoder.load_state_dict(torch.load(folder / "pose.pth", weights_only=True))
        for net in (self.encoder, self.decoder, self.pose_encoder, self.pose_decoder):
            net.eval()
        self.previous = None

    def process(self, image: np.ndarray, K: np.ndarray) -> np.ndarray:
        current = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
        K_quarter = torch.eye(4).unsqueeze(0)
        K_quarter[0, :3, :3] = torch.from_numpy(K).float()
        K_quarter[:, :2] /= 4
        with torch.no_grad():
            previous = current if self.previous is None else self.previous
            axisangle, translation = self.pose_decoder([self.pose_encoder(torch.cat([previous, current], 1))])
            pose = self.transformation(axisangle[:, 0], translation[:, 0], invert=True)
            features, _, _ = self.encoder(current, previous.unsqueeze(1), pose.unsqueeze(1), K_quarter,
                                          torch.linalg.pinv(K_quarter), self.min_bin, self.max_bin)
            disp = self.decoder(features)[("disp", 0)]
            depth = self.disp_to_depth(disp, 0.1, 100.0)[1]
        self.previous = current
        return depth[0, 0].numpy()


def build_ours(folder: Path, backend: str = "torch", threads: int = 0):
    from mgdepth_core.inference import DepthEstimator

    return DepthEstimator.from_weights(folder, device="cpu", min_translation=0.0, backend=backend,
                                       num_threads=threads)


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def worker(side: str, folder: Path, threads: int) -> None:
    """One side alone (fresh process): print its peak RSS and the RSS after loading, as JSON."""
    torch.set_num_threads(threads)
    frames = np.load(folder / "frames.npz")
    images, K = list(frames["images"]), frames["K"]
    runner = build_ours(folder) if side == "ours" else OriginalManydepth(folder)
    loaded = current_rss_mb()
    for image in images:
        runner.process(image, K)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "loaded_rss_mb": loaded}))


def measure_memory(side: str, folder: Path, args) -> dict:
    command = [sys.executable, __file__, "--worker", side, "--folder", str(folder), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="timed frames")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--worker", choices=["ours", "original"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.folder, args.threads)
        return 0

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        save_original_networks(folder, args.height, args.width, MIN_BIN, MAX_BIN)
        images, K = make_frames(args.warmup + args.frames, args.height, args.width)
        np.savez(folder / "frames.npz", images=np.stack(images[:6]), K=K)  # for the memory subprocesses
        memory = {side: measure_memory(side, folder, args) for side in ("ours", "original")}
        ours, original = build_ours(folder), OriginalManydepth(folder)
        onnx = build_ours(folder, "onnxruntime", args.threads) if has_onnxruntime() else None
        sides = ["ours", "original"] + (["onnxruntime"] if onnx else [])
        wall = {side: [] for side in sides}
        cpu = {side: [] for side in sides}
        largest_difference = onnx_difference = 0.0
        multi_frame = 0
        for index, image in enumerate(images):
            timed = index >= args.warmup
            started, started_cpu = time.perf_counter(), time.process_time()
            result = ours.process(image, K, stamp=index * 0.1)
            ours_wall, ours_cpu = time.perf_counter() - started, time.process_time() - started_cpu
            started, started_cpu = time.perf_counter(), time.process_time()
            depth_original = original.process(image, K)
            original_wall, original_cpu = time.perf_counter() - started, time.process_time() - started_cpu
            if onnx is not None:
                started, started_cpu = time.perf_counter(), time.process_time()
                depth_onnx = onnx.process(image, K, stamp=index * 0.1).depth
                onnx_wall, onnx_cpu = time.perf_counter() - started, time.process_time() - started_cpu
                onnx_difference = max(onnx_difference, float(np.nanmax(np.abs(depth_onnx - result.depth))))
                if timed:
                    wall["onnxruntime"].append(onnx_wall * 1e3)
                    cpu["onnxruntime"].append(onnx_cpu * 1e3)
            if index > 0:
                largest_difference = max(largest_difference, float(np.nanmax(np.abs(result.depth - depth_original))))
                multi_frame += int(result.multi_frame)
            if timed:
                wall["ours"].append(ours_wall * 1e3)
                wall["original"].append(original_wall * 1e3)
                cpu["ours"].append(ours_cpu * 1e3)
                cpu["original"].append(original_cpu * 1e3)

    median = {side: statistics.median(values) for side, values in wall.items()}
    median_cpu = {side: statistics.median(values) for side, values in cpu.items()}
    results = {
        "setup": {"resolution": f"{args.width}x{args.height}", "threads": args.threads, "frames": args.frames,
                  "warmup": args.warmup, "depth_bins": 96, "torch": torch.__version__,
                  "machine": platform.processor() or platform.machine(), "cpus": __import__("os").cpu_count()},
        "ms_per_frame_median": median,
        "cpu_ms_per_frame_median": median_cpu,
        "speedup_wall": median["original"] / median["ours"],
        "speedup_cpu": median_cpu["original"] / median_cpu["ours"],
        "peak_rss_mb": {side: memory[side]["peak_rss_mb"] for side in memory},
        "inference_rss_mb": {side: memory[side]["peak_rss_mb"] - memory[side]["loaded_rss_mb"] for side in memory},
        "max_abs_depth_difference_m": largest_difference,
        "multi_frame_frames": multi_frame,
    }
    print(f"{'':<34}{'ours':>12}{'original':>12}{'ratio':>10}")
    rows = [("wall ms/frame (median)", median["ours"], median["original"]),
            ("CPU ms/frame (median)", median_cpu["ours"], median_cpu["original"]),
            ("peak RSS, MB", results["peak_rss_mb"]["ours"], results["peak_rss_mb"]["original"]),
            ("peak − loaded RSS, MB", results["inference_rss_mb"]["ours"], results["inference_rss_mb"]["original"])]
    for label, mine, theirs in rows:
        print(f"{label:<34}{mine:>12.1f}{theirs:>12.1f}{theirs / mine:>9.2f}x")
    print(f"largest |depth difference|: {largest_difference:.2e} m over {len(images) - 1} frames "
          f"({multi_frame} multi-frame)")
    if onnx is not None:
        results["onnxruntime"] = {
            "ms_per_frame_median": median["onnxruntime"], "cpu_ms_per_frame_median": median_cpu["onnxruntime"],
            "speedup_wall_vs_torch": median["ours"] / median["onnxruntime"],
            "speedup_cpu_vs_torch": median_cpu["ours"] / median_cpu["onnxruntime"],
            "max_abs_depth_difference_vs_torch_m": onnx_difference}
        print(f"ours on onnxruntime: {median['onnxruntime']:.1f} ms/frame wall, {median_cpu['onnxruntime']:.1f} ms "
              f"CPU: {results['onnxruntime']['speedup_wall_vs_torch']:.2f}x torch's wall speed, "
              f"{results['onnxruntime']['speedup_cpu_vs_torch']:.2f}x CPU; largest |depth difference| from "
              f"torch {onnx_difference:.2e} m")
    write_results(results, RESULTS / "inference.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
