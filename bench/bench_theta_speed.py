"""Time of the theta filter per frame pair with each of its input remedies, as the streaming tracker runs it.

    .venv/bin/python bench/bench_theta_speed.py [--sizes 64x192 192x640] [--repeats 8] [--threads 2]

A rendered synthetic pair (seed 2007, frames 1 → 3) at each size with its true depth, instance maps and pose; the
filter (``mgdepth_core.dynamic.theta_filter``) for the paper's inputs, each remedy alone and all of them (the
defaults). Medians over ``--repeats`` after one warm-up call; the photometric translation-scale search is also timed
alone. Writes bench/results/theta_speed.json (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_io import RESULTS, write_results

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.dynamic import DynamicObjectsConfig, photometric_translation_scale, theta_filter

SETTINGS = {  # name → DynamicObjectsConfig fields
    "paper": dict(object_depth="own", translation_scale="pose", both_directions=False),
    "ground_contact": dict(object_depth="ground_contact", translation_scale="pose", both_directions=False),
    "photometric": dict(object_depth="own", translation_scale="photometric", both_directions=False),
    "both_directions": dict(object_depth="own", translation_scale="pose", both_directions=True),
    "defaults": {},
}


def median_ms(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure_size(height: int, width: int, repeats: int) -> dict:
    """Median ms of the filter per setting (and of the scale search alone) on the pair at ``height``×``width``."""
    sequence = SyntheticSequence(2007, 6, height, width)
    source, compare = sequence.frame(1), sequence.frame(3)
    images = [torch.from_numpy(frame["image"]).permute(2, 0, 1)[None].float() / 255 for frame in (source, compare)]
    ids = [torch.from_numpy(frame["instances"])[None, None] for frame in (source, compare)]
    depths = [torch.from_numpy(frame["depth"])[None, None].clamp(min=0.1) for frame in (source, compare)]
    K = torch.from_numpy(source["K"]).float()[None]
    T_compare_source = torch.from_numpy(np.linalg.inv(compare["T_world_camera"]) @ source["T_world_camera"]
                                        ).float()[None]
    objects = int(max(ids[0].max(), ids[1].max()))
    row: dict = {"objects": objects}
    for name, fields in SETTINGS.items():
        config = dataclasses.replace(DynamicObjectsConfig(mode="dyna-dm"), **fields)
        row[f"{name}_ms"] = median_ms(lambda config=config: theta_filter(
            ids[1], ids[0], depths[0], T_compare_source, K, ids[1], config, num_ids=objects,
            source_image=images[0], compare_image=images[1], compare_depth=depths[1]), repeats)
    row["scale_search_ms"] = median_ms(lambda: photometric_translation_scale(
        images[0], images[1], depths[1], ids[0], ids[1], T_compare_source, K), repeats)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["64x192", "192x640"], help="HEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "theta_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for size in args.sizes:
        height, width = (int(value) for value in size.split("x"))
        rows[size] = row = measure_size(height, width, args.repeats)
        print(f"{size}: {row['objects']} objects; " + ", ".join(f"{key} {value:.1f}" for key, value in row.items()
                                                              if key.endswith("_ms")), flush=True)
    write_results({"setup": {**vars(args), "out": str(args.out), "command": " ".join(["python", *sys.argv])},
                   "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
