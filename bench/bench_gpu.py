"""GPU benchmark of the streaming DepthEstimator: frames/s per precision and compilation, Manydepth2 with and
without Dyna-DM's Mask R-CNN, ratios against float32 eager Manydepth2 timed in the same process. Run through
``bench/gpu.sh`` (one command, under 5 minutes on a datacenter GPU); ``--device cpu --tiny`` checks the whole
script on a CPU.

Needs only torch, torchvision, timm, numpy, opencv and PyYAML (no ROS, nothing downloaded): random weights
everywhere (batch norms calibrated on the frames so that float16 does not overflow; the flow network's and Mask
R-CNN's random too, Mask R-CNN at score threshold 0 so that its mask head runs on detections as with real
weights), procedural frames (a textured scene panning by 4 px a frame). Every
configuration streams ``--warmup`` frames (compilation and CUDA-graph capture happen there) and ``--frames``
timed frames; the stage profile (synchronised at every stage, so slightly slower) runs on extra frames of the
float16 eager configuration. Configurations run in order of importance and are skipped, with the reason, once
``--budget-s`` is spent; each one that fails records its error and the rest go on. The JSON is rewritten after
every configuration (``<out>/gpu.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from random_networks import calibrate_batch_norms

from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.instance_segmentation import InstanceSegmenter
from mgdepth_core.stages import StageTimer

MD, MD2 = dict(method="manydepth"), dict(method="manydepth2")
DYNA = dict(mode="dyna-dm", score_threshold=0.0)  # random Mask R-CNN: let its detections through
GRAPHS = dict(autocast="float16", compile="reduce-overhead")
CONFIGS = {  # name → ModelConfig fields, EstimatorConfig fields, Dyna-DM fields (None = off); most important first
    "manydepth2_fp32": (MD2, dict(autocast="off"), None),
    "manydepth2_fp16": (MD2, dict(autocast="float16"), None),
    "manydepth2_fp16_cuda_graphs": (MD2, GRAPHS, None),
    "manydepth2_dyna_dm_fp16": (MD2, dict(autocast="float16"), DYNA),
    "manydepth2_dyna_dm_fp16_cuda_graphs": (MD2, GRAPHS, DYNA),
    "manydepth_fp16_cuda_graphs": (MD, GRAPHS, None),
    "manydepth2_bf16": (MD2, dict(autocast="bfloat16"), None),
    "manydepth2_fp16_compiled": (MD2, dict(autocast="float16", compile="default"), None),
    "manydepth2_fast_cuda_graphs": (MD2, dict(GRAPHS, flow_input_scale=0.5, cost_volume_bin_step=2), None),
}
BASELINE = "manydepth2_fp32"
PROFILED = "manydepth2_fp16"


def make_frames(count: int, height: int, width: int, step: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` H×W×3 uint8 frames of a smooth random texture panning ``step`` px a frame, and K."""
    rng = np.random.default_rng(0)
    texture = rng.random((height // 8 + 2, (width + step * count) // 8 + 2, 3)).astype(np.float32)
    texture = torch.nn.functional.interpolate(torch.from_numpy(texture).permute(2, 0, 1)[None], scale_factor=8,
                                              mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    texture = (np.clip(texture, 0, 1) * 255).astype(np.uint8)
    frames = [np.ascontiguousarray(texture[:height, i * step:i * step + width]) for i in range(count)]
    K = np.array([[0.58 * width, 0, width / 2], [0, 1.92 * height, height / 2], [0, 0, 1.0]])
    return frames, K


def build(name: str, args) -> DepthEstimator:
    model_fields, estimator_fields, dyna = CONFIGS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        model = build_model(ModelConfig(height=args.height, width=args.width, pretrained=False, **model_fields))
    calibrate_batch_norms(model.to(args.device), *make_frames(4, args.height, args.width))  # no float16 overflow
    config = EstimatorConfig(device=args.device, min_translation=0.0, **estimator_fields)
    if dyna is not None:
        sizes = dict(segmenter_min_size=args.height, segmenter_max_size=args.width) if args.tiny else {}
        config.dynamic_objects = DynamicObjectsConfig(**dyna, **sizes)
    estimator = DepthEstimator(model, config, owns_model=True)
    if dyna is not None:  # random Mask R-CNN instead of the COCO file (not on the GPU machine)
        estimator.dynamic_objects.segmenter = InstanceSegmenter(config.dynamic_objects).to(estimator.device)
    return estimator


def measure(name: str, args, frames, K) -> dict:
    started = time.perf_counter()
    estimator = build(name, args)
    times = []
    for index, image in enumerate(frames[:args.warmup + args.frames]):
        if index == args.warmup and args.device.startswith("cuda"):  # streaming working set, not the set-up's
            torch.cuda.reset_peak_memory_stats()
        result = estimator.process(image, K)
        if index > 0 and not result.multi_frame:
            raise RuntimeError("fell back to single-frame depth")
        if index >= args.warmup:
            times.append(result.timings_ms["total"])
    row = {"ms_per_frame": statistics.median(times), "frames_per_s": 1000 / statistics.median(times),
           "ms_per_frame_all": times, "setup_and_warmup_s": time.perf_counter() - started - sum(times) / 1000,
           "settings": {**CONFIGS[name][0], **CONFIGS[name][1], "dyna_dm": CONFIGS[name][2]}}
    if name == PROFILED:
        stages = []
        for image in frames[args.warmup + args.frames:]:
            with StageTimer(estimator.device) as timer:
                estimator.process(image, K)
            stages.append(dict(timer.ms))
        row["stages_ms"] = {stage: statistics.median(s.get(stage, 0.0) for s in stages) for stage in stages[0]}
    if args.device.startswith("cuda"):
        row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    row["last_depth_range_m"] = [float(np.nanmin(result.depth)), float(np.nanmax(result.depth))]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/results")))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="64×192, 2 warm-up and 2 timed frames, Mask R-CNN at "
                                                           "the frame's size (a CPU check)")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=50, help="timed frames per configuration")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first (compilation, graph capture)")
    parser.add_argument("--budget-s", type=float, default=270, help="start no configuration after this many s")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    if args.tiny:
        args.height, args.width, args.frames, args.warmup = 64, 192, 2, 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (--device cpu --tiny checks the script on a CPU)")
        return 0
    torch.backends.cudnn.benchmark = True
    frames, K = make_frames(args.warmup + args.frames + 5, args.height, args.width)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    results = {"setup": {"device": device_name, "torch": torch.__version__, "resolution": f"{args.width}x"
                         f"{args.height}", "frames": args.frames, "warmup": args.warmup, "weights": "random",
                         "command": " ".join(sys.argv)}, "rows": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for name in args.configs:
        if time.perf_counter() - started > args.budget_s:
            results["rows"][name] = {"skipped": f"budget of {args.budget_s:.0f} s spent"}
        else:
            try:
                results["rows"][name] = measure(name, args, frames, K)
            except Exception as error:  # record it and go on with the other configurations
                results["rows"][name] = {"error": f"{type(error).__name__}: {error}",
                                         "traceback": traceback.format_exc()[-2000:]}
        baseline = results["rows"].get(BASELINE, {}).get("ms_per_frame")
        row = results["rows"][name]
        if baseline and "ms_per_frame" in row:
            row["speedup_vs_fp32_eager"] = baseline / row["ms_per_frame"]
        print(f"{name:<40}" + (f"{row['ms_per_frame']:8.2f} ms  {row['frames_per_s']:7.1f} frames/s"
                                 if "ms_per_frame" in row else row.get("skipped", row.get("error", ""))), flush=True)
        results["elapsed_s"] = time.perf_counter() - started
        (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'gpu.json'} after {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
