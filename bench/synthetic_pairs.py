"""Held-out synthetic frame pairs with perfect geometry, shared by the benchmarks (and ``--seeds`` parsing)."""

from __future__ import annotations

from mgdepth_core.data.synthetic import SyntheticSequence, true_geometry_pair


def parse_seeds(text: str) -> list[int]:
    """'2000-2003,2010' → [2000, 2001, 2002, 2003, 2010]."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def true_pairs(seeds: list[int], frames: int, stride: int, height: int, width: int) -> list[dict]:
    """:func:`~mgdepth_core.data.synthetic.true_geometry_pair` for t = 1, 1 + stride, … of each seed's sequence."""
    pairs = []
    for seed in seeds:
        sequence = SyntheticSequence(seed, num_frames=frames, height=height, width=width)
        pairs.extend(true_geometry_pair(sequence, t) for t in range(1, frames, stride))
    return pairs
