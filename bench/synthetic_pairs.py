"""Held-out synthetic frame pairs with perfect geometry, shared by the benchmarks (and ``--seeds`` parsing)."""

from __future__ import annotations

import numpy as np
import torch

from mgdepth_core.data.synthetic import SKY_DEPTH, SyntheticSequence


def parse_seeds(text: str) -> list[int]:
    """'2000-2003,2010' → [2000, 2001, 2002, 2003, 2010]."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def true_pairs(seeds: list[int], frames: int, stride: int, height: int, width: int) -> list[dict]:
    """(t − 1, t) pairs, t = 1, 1 + stride, …, of each seed's sequence, as 1-batch tensors: ``image`` (frame t) and
    ``reference`` (t − 1) B×3×H×W in [0, 1]; ``ideal`` (camera t − 1, every object where it is at t); ``depth``
    (true, sky at SKY_DEPTH) and ``true_depth`` (0 = sky) B×1×H×W metres; ``moving`` B×1×H×W bool (moving-object
    pixels at t); ``flow`` exact t → t − 1, B×2×H×W pixels; ``T`` = T_{t−1, t} B×4×4; ``K`` B×3×3."""
    def image(rendered: dict) -> torch.Tensor:
        return torch.from_numpy(rendered["image"]).permute(2, 0, 1)[None].float() / 255

    pairs = []
    for seed in seeds:
        sequence = SyntheticSequence(seed, num_frames=frames, height=height, width=width)
        moving_ids = [obj.instance_id for obj in sequence.objects if obj.moving]
        for t in range(1, frames, stride):
            target = sequence.frame(t)
            true_depth = target["depth"]
            pairs.append({
                "seed": seed, "frame": t,
                "image": image(target), "reference": image(sequence.frame(t - 1)),
                "ideal": image(sequence.frame(t - 1, object_time=t)),
                "depth": torch.from_numpy(np.where(true_depth > 0, true_depth, SKY_DEPTH)).float()[None, None],
                "true_depth": torch.from_numpy(true_depth).float()[None, None],
                "moving": torch.from_numpy(np.isin(target["instances"], moving_ids))[None, None],
                "flow": torch.from_numpy(sequence.optical_flow(t, t - 1, target))[None],
                "T": torch.from_numpy(sequence.relative_pose(t - 1, t)).float()[None],
                "K": torch.from_numpy(sequence.K).float()[None],
            })
    return pairs
