"""Training step time and peak memory: our Trainer's step against the original Manydepth trainer's, same batch.

    .venv/bin/python bench/bench_train.py [--steps 3] [--warmup 1] [--threads 2] [--height 192 --width 640]
                                         [--batch 2]

One step = forward of pose, teacher and student (``process_batch``), backward, Adam update, with the teacher
trainable (the first epochs). Ours is :class:`mgdepth_core.train.trainer.TrainingStep` (the step the Trainer
runs); the baseline is ``manydepth.trainer.Trainer.process_batch`` from the PyPI package ``manydepth==1.0.0``
(dev extra; its data-set and tensorboardX imports are stubbed, its networks are built as its ``__init__`` builds
them). Both start from random weights (pretrained=False), 96 bins, and see the same synthetic batch.

Time: the methods are stepped alternately in this process (machine load hits all alike); median wall time per
step after ``--warmup`` steps, and the ratio to the original Manydepth step. Memory: every method also runs alone
in a fresh subprocess; on CPU peak RSS (VmHWM, reset after the batch is rendered) and the peak minus the RSS
once the networks are built (the step's working set), on GPU
``torch.cuda.max_memory_allocated``. Manydepth2 is measured when ``mgdepth_core.models.manydepth2`` exists (and
skipped with the reason otherwise). Writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import types

import torch
from results_io import RESULTS, write_results


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


def reset_peak_rss() -> None:
    """Linux: restart the peak-RSS counter (VmHWM) so rendering the batch does not count."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return _status_mb("VmHWM")


def make_batch(height: int, width: int, batch: int) -> dict:
    """A synthetic-scene batch in the shared sample layout (no augmentation)."""
    from torch.utils.data import default_collate

    from mgdepth_core.data import DataConfig, build_dataset

    data = build_dataset(DataConfig(dataset="synthetic", height=height, width=width, synthetic_sequences=1,
                                    synthetic_frames=batch + 4), "train", training=False)
    return default_collate([data[i] for i in range(batch)])


class OursStep:
    """Our TrainingStep + Adam over every trainable parameter."""

    def __init__(self, method: str, height: int, width: int, device: torch.device):
        from mgdepth_core.config import from_dict
        from mgdepth_core.models import build_model
        from mgdepth_core.train.config import TrainConfig
        from mgdepth_core.train.trainer import TrainingStep

        config = from_dict(TrainConfig, {"model": {"method": method, "height": height, "width": width,
                                                   "pretrained": False},
                                         "data": {"dataset": "synthetic", "height": height, "width": width}})
        self.step = TrainingStep(build_model(config.model), config).to(device).train()
        self.optimizer = torch.optim.Adam([p for p in self.step.parameters() if p.requires_grad], lr=1e-4)

    def __call__(self, batch: dict) -> float:
        _, losses = self.step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        return losses["loss"].item()


class OriginalManydepthStep:
    """``manydepth.trainer.Trainer.process_batch`` with the networks and helpers its ``__init__`` builds."""

    def __init__(self, height: int, width: int, batch: int, device: torch.device):
        # The package's trainer imports a data-set module it does not ship and tensorboardX; neither is used here.
        sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
        sys.modules.setdefault("manydepth.datasets", types.ModuleType("manydepth.datasets"))
        from manydepth import networks
        from manydepth.layers import SSIM, BackprojectDepth, Project3D
        from manydepth.options import MonodepthOptions
        from manydepth.trainer import Trainer

        opt = MonodepthOptions().parser.parse_args(
            ["--height", str(height), "--width", str(width), "--batch_size", str(batch), "--weights_init", "scratch",
             "--no_cuda" if device.type == "cpu" else "--num_workers=0"])
        trainer = object.__new__(Trainer)
        trainer.opt, trainer.device = opt, device
        trainer.num_scales, trainer.num_pose_frames = len(opt.scales), 2
        trainer.train_teacher_and_pose, trainer.min_depth_tracker, trainer.max_depth_tracker = True, 0.1, 10.0
        trainer.matching_ids = [0, -1]
        trainer.models = {
            "encoder": networks.ResnetEncoderMatching(18, False, input_height=height, input_width=width,
                                                      adaptive_bins=True, min_depth_bin=0.1, max_depth_bin=20.0,
                                                      depth_binning="linear", num_depth_bins=96)}
        trainer.models["depth"] = networks.DepthDecoder(trainer.models["encoder"].num_ch_enc, opt.scales)
        trainer.models["mono_encoder"] = networks.ResnetEncoder(18, False)
        trainer.models["mono_depth"] = networks.DepthDecoder(trainer.models["mono_encoder"].num_ch_enc, opt.scales)
        trainer.models["pose_encoder"] = networks.ResnetEncoder(18, False, num_input_images=2)
        trainer.models["pose"] = networks.PoseDecoder(trainer.models["pose_encoder"].num_ch_enc, 1, 2)
        for model in trainer.models.values():
            model.to(device)
            model.train()
        trainer.ssim = SSIM().to(device)
        trainer.backproject_depth = {s: BackprojectDepth(batch, height // 2 ** s, width // 2 ** s).to(device)
                                     for s in opt.scales}
        trainer.project_3d = {s: Project3D(batch, height // 2 ** s, width // 2 ** s).to(device) for s in opt.scales}
        self.trainer = trainer
        self.optimizer = torch.optim.Adam([p for m in trainer.models.values() for p in m.parameters()], lr=1e-4)

    @staticmethod
    def inputs(batch: dict, device: torch.device) -> dict:
        """Our sample layout → the original's keys: (color|color_aug, frame, scale), (K|inv_K, scale) 4×4."""
        import torch.nn.functional as F

        inputs = {}
        height, width = batch["color"][0].shape[-2:]
        for key in ("color", "color_aug"):
            for frame, image in batch[key].items():
                for scale in range(4):
                    size = (height // 2 ** scale, width // 2 ** scale)
                    inputs[(key, frame, scale)] = image if scale == 0 else F.interpolate(
                        image, size, mode="bilinear", align_corners=False, antialias=True)
        for scale in range(4):
            K = torch.eye(4).repeat(batch["K"].shape[0], 1, 1)
            K[:, :3, :3] = batch["K"] / 2 ** scale
            K[:, 2, 2] = 1
            inputs[("K", scale)], inputs[("inv_K", scale)] = K, torch.linalg.pinv(K)
        return {k: v.to(device) for k, v in inputs.items()}

    def __call__(self, inputs: dict) -> float:
        _, losses = self.trainer.process_batch(dict(inputs), is_train=True)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        return losses["loss"].item()


def manydepth2_available() -> str | None:
    """None when Manydepth2Model can be built, else the reason it is skipped."""
    try:
        from mgdepth_core.models.manydepth2 import Manydepth2Model  # noqa: F401
    except ImportError as exc:
        return f"Manydepth2Model is not available ({exc})"
    return None


def build(name: str, args, device: torch.device):
    if name == "original manydepth":
        return OriginalManydepthStep(args.height, args.width, args.batch, device)
    return OursStep(name.split()[-1], args.height, args.width, device)


def memory_child(args) -> None:
    """Run one method alone (fresh process) and print its peak memory as JSON."""
    device = torch.device(args.device)
    batch = make_batch(args.height, args.width, args.batch)
    from mgdepth_core.train.trainer import to_device

    reset_peak_rss()
    step = build(args.memory_of, args, device)
    inputs = OriginalManydepthStep.inputs(batch, device) if args.memory_of == "original manydepth" else \
        to_device(batch, device)
    before = current_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.memory_steps):
        step(inputs)
    peak = peak_memory_mb(device)
    print(json.dumps({"peak_mb": peak, "working_set_mb": peak - before if device.type == "cpu" else peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps per memory subprocess")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_of:
        memory_child(args)
        return
    device = torch.device(args.device)
    from mgdepth_core.train.trainer import to_device

    names = ["original manydepth", "ours manydepth"]
    skipped = {}
    reason = manydepth2_available()
    if reason is None:
        names.append("ours manydepth2")
    else:
        skipped["ours manydepth2"] = reason
        print(f"skipping Manydepth2: {reason}")

    batch = make_batch(args.height, args.width, args.batch)
    steps = {name: build(name, args, device) for name in names}
    inputs = {name: OriginalManydepthStep.inputs(batch, device) if name == "original manydepth"
              else to_device(batch, device) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(args.warmup + args.steps):
        for name in names:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            steps[name](inputs[name])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index >= args.warmup:
                times[name].append(time.perf_counter() - started)
    del steps

    rows = {}
    baseline = statistics.median(times["original manydepth"])
    for name in names:
        command = [sys.executable, __file__, "--memory-of", name, "--threads", str(args.threads), "--height",
                   str(args.height), "--width", str(args.width), "--batch", str(args.batch), "--device", args.device,
                   "--memory-steps", str(args.memory_steps)]
        child = subprocess.run(command, capture_output=True, text=True)
        memory = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else {
            "error": child.stderr.strip().splitlines()[-1] if child.stderr else f"exit {child.returncode}"}
        median = statistics.median(times[name])
        rows[name] = {"median_step_s": median, "step_times_s": times[name], "ratio_to_original": median / baseline,
                      **memory}

    print(f"\ntraining step, {args.height}×{args.width}, batch {args.batch}, {args.device}, "
          f"{args.threads} thread(s), median of {args.steps} after {args.warmup} warm-up")
    print(f"{'method':<22}{'step s':>9}{'× original':>12}{'peak MB':>10}{'working MB':>12}")
    for name, row in rows.items():
        print(f"{name:<22}{row['median_step_s']:>9.2f}{row['ratio_to_original']:>12.2f}"
              f"{row.get('peak_mb', float('nan')):>10.0f}{row.get('working_set_mb', float('nan')):>12.0f}")
    for name, reason in skipped.items():
        print(f"{name:<22}skipped: {reason}")
    result = {"height": args.height, "width": args.width, "batch": args.batch, "device": args.device,
              "threads": args.threads, "steps": args.steps, "warmup": args.warmup, "machine": platform.machine(),
              "cpu_count": __import__("os").cpu_count(), "torch": torch.__version__, "methods": rows,
              "skipped": skipped}
    write_results(result, RESULTS / "train.json")


if __name__ == "__main__":
    main()
