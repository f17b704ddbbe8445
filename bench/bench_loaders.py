"""Loader throughput: KITTI raw (real frames in ../shared/data) and the synthetic set at 640×192 and 320×96.

Single thread (torch, OpenCV, BLAS), no DataLoader workers: the figures are per worker process. Every row reports
frames/s (images delivered; a sample of frame ids [0, -1, 1] is 3 frames) by wall clock and by CPU time, and the
CPU-time ratio to the baseline measured in the same process: decoding one 1242×375 KITTI PNG with OpenCV.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_loaders.py [--seconds 2] [--shared-data ../shared/data]

Prints a table and writes bench/results/loaders.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import torch  # noqa: E402
from results_io import write_results  # noqa: E402

from mgdepth_core.data.kitti import KittiRawDataset  # noqa: E402
from mgdepth_core.data.splits import read_split  # noqa: E402
from mgdepth_core.data.synthetic import SyntheticDynamicDataset, SyntheticSequence  # noqa: E402

FRAME_IDS = [0, -1, 1]


def rate(work, frames_per_call: int, seconds: float) -> tuple[float, float]:
    """(wall-clock, CPU-time) frames per second of ``work(i)`` called for about ``seconds`` after a warm-up call.

    The CPU-time figure (process time of this single-threaded process) is what an idle core would deliver; the
    wall-clock one drops when other processes share the cores."""
    work(0)
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or calls < 3:
        work(calls + 1)
        calls += 1
    frames = calls * frames_per_call
    return frames / (time.perf_counter() - start), frames / (time.process_time() - cpu_start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"), help="../shared/data")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "loaders.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    shared = Path(args.shared_data)
    kitti_root = shared / "kitti_raw"
    lines = read_split(shared / "splits" / "shared_kitti_sample" / "files.txt", min_fields=3)
    png = kitti_root / "2011_09_26" / "2011_09_26_drive_0060_sync" / "image_02" / "data" / "0000000010.png"

    rows = []
    baseline = rate(lambda i: cv2.imread(str(png)), 1, args.seconds)
    rows.append(("baseline: cv2.imread one 1242×375 KITTI PNG", "1242×375", baseline))
    for height, width in ((192, 640), (96, 320)):
        size = f"{width}×{height}"
        plain = KittiRawDataset(kitti_root, lines, height, width, FRAME_IDS)
        rows.append(("KITTI sample, 3 frames, no augmentation", size,
                     rate(lambda i, d=plain: d[i % len(d)], 3, args.seconds)))
        augmented = KittiRawDataset(kitti_root, lines, height, width, FRAME_IDS, augment=True,
                                    flip_probability=0.5, jitter_probability=1.0)
        rows.append(("KITTI sample, 3 frames, flip + colour jitter", size,
                     rate(lambda i, d=augmented: d[i % len(d)], 3, args.seconds)))
        with_depth = KittiRawDataset(kitti_root, lines, height, width, FRAME_IDS, load_depth=True)
        rows.append(("KITTI sample, 3 frames + projected LiDAR depth_gt", size,
                     rate(lambda i, d=with_depth: d[i % len(d)], 3, args.seconds)))
        sequence = SyntheticSequence(seed=0, num_frames=40, height=height, width=width)
        rows.append(("synthetic render SyntheticSequence.frame", size,
                     rate(lambda i, s=sequence: s.frame(i % s.num_frames), 1, args.seconds)))
        uncached = SyntheticDynamicDataset([0], 40, height, width, FRAME_IDS, augment=True, cached_frames=0)
        rows.append(("synthetic sample, 3 frames rendered + augmentation", size,
                     rate(lambda i, d=uncached: d[i % len(d)], 3, args.seconds)))
        cached = SyntheticDynamicDataset([0], 40, height, width, FRAME_IDS, augment=True)
        rows.append(("synthetic sample, sequential (cached renders) + aug.", size,
                     rate(lambda i, d=cached: d[i % len(d)], 3, args.seconds)))

    print(f"{'loader':<52} {'size':>9} {'frames/s':>9} {'CPU fr/s':>9} {'× baseline':>11}")
    for name, size, (fps, cpu_fps) in rows:
        print(f"{name:<52} {size:>9} {fps:9.1f} {cpu_fps:9.1f} {cpu_fps / baseline[1]:11.3f}")
    result = {
        "benchmark": "loaders",
        "threads": 1,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "load_average": os.getloadavg(),
        "baseline": {"name": rows[0][0], "frames_per_s": baseline[0], "cpu_frames_per_s": baseline[1]},
        "rows": [{"name": name, "size": size, "frames_per_s": fps, "cpu_frames_per_s": cpu_fps,
                  "cpu_ratio_to_baseline": cpu_fps / baseline[1]} for name, size, (fps, cpu_fps) in rows],
    }
    write_results(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
