"""Training data time per step with and without the synthetic set's render cache (``data.synthetic_cache_mb``),
against the time of the training step itself, in one process.

    .venv/bin/python bench/bench_data_cache.py [--steps 20] [--batch 4] [--height 64 --width 192] [--threads 2]

The claim recipe's data (8 training sequences × 30 frames, frames -1/0/+1, exact flow for Manydepth2 with
``flow: dataset``): batches of ``--batch`` samples in random order, as the Trainer's shuffling sampler reads them,
from a dataset that keeps only its last 8 renders (before) and from one built by ``from_config`` (every frame
rendered once while ``synthetic_cache_mb`` allows). The two alternate batch by batch; the first pass over the cached
set renders its frames, so it is timed after one epoch of warm-up. The training step (Manydepth2, exact flow,
forward + backward + Adam, the same batches) is timed alone on the same batches, to state what share of a
step the data was and is. Medians; writes bench/results/data_cache.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_io import RESULTS, write_results

from mgdepth_core.data import DataConfig
from mgdepth_core.data.synthetic import SyntheticDynamicDataset
from mgdepth_core.models import ModelConfig
from mgdepth_core.train.config import OptimConfig, TrainConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed batches per variant")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "data_cache.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DataConfig(dataset="synthetic", height=args.height, width=args.width, frame_ids=[0, -1, 1], augment=False,
                      synthetic_sequences=8, synthetic_frames=30, num_workers=0, exact_flow=True)
    cached = SyntheticDynamicDataset.from_config(data)
    uncached = SyntheticDynamicDataset(cached_frames=8, seeds=[s.seed for s in cached.sequences],
                                       num_frames=data.synthetic_frames, height=args.height, width=args.width,
                                       frame_ids=data.frame_ids, with_flow=True)
    for position in random.Random(1).sample(range(len(cached)), len(cached)):  # warm-up: one epoch renders all
        cached[position]
    order = random.Random(0)
    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    batches = []
    for _ in range(args.steps):
        positions = [order.randrange(len(cached)) for _ in range(args.batch)]
        for name, dataset in (("uncached", uncached), ("cached", cached)):
            start = time.perf_counter()
            batch = default_collate([dataset[position] for position in positions])
            times[name].append(time.perf_counter() - start)
        batches.append(batch)

    from mgdepth_core.train.trainer import Trainer

    config = TrainConfig(model=ModelConfig(method="manydepth2", flow="dataset", height=args.height, width=args.width,
                                           pretrained=False, num_depth_bins=32, flow_start_epoch=0),
                         data=data, optim=OptimConfig(batch_size=args.batch), device="cpu", max_steps=1)
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(config, Path(run_dir))
            step_times = []
            for index, batch in enumerate(batches[: max(3, args.steps // 4)]):
                start = time.perf_counter()
                outputs, losses = trainer.trainable(batch, 0, index)
                trainer.optimizer.zero_grad()
                losses["loss"].backward()
                trainer.optimizer.step()
                step_times.append(time.perf_counter() - start)
    step = statistics.median(step_times[1:])
    result = {"setup": {**vars(args), "out": str(args.out), "samples": len(cached),
                        "cached_frames": cached.cached_frames,
                        "command": " ".join(["python", *sys.argv])},
              "data_ms_per_batch": {name: statistics.median(values) * 1000 for name, values in times.items()},
              "training_step_ms": step * 1000}
    data_ms = result["data_ms_per_batch"]
    result["data_ratio_cached_to_uncached"] = data_ms["cached"] / data_ms["uncached"]
    result["step_with_data_ratio"] = (step * 1000 + data_ms["cached"]) / (step * 1000 + data_ms["uncached"])
    print(f"batch of {args.batch} at {args.width}×{args.height}: data {data_ms['uncached']:.1f} ms → "
          f"{data_ms['cached']:.1f} ms ({result['data_ratio_cached_to_uncached']:.2f}×); training step "
          f"{step * 1000:.0f} ms; step + data {result['step_with_data_ratio']:.3f}× the uncached")
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
