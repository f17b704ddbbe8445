"""rosbag2 reading and writing speed on the two real bags in ../shared/data (MCAP raw rgb8, sqlite3 JPEG).

Single thread. Baseline, measured in the same process: one sequential pass over the image topic with
``AnyReader`` + ``rosbags-image`` decoding every frame to RGB (what a script that loads the whole bag does).
Rows, each with frames/s and the ratio to that baseline:

* index: ``index_bag`` (one pass, stamps + camera_info pairing, no pixel decoding);
* random access: ``BagFrameSource.image`` in shuffled order (what DataLoader workers do);
* samples 640×192: ``BagDataset`` training samples (3 frames each, resize + augmentation), frames/s;
* process-bag outputs: ``process_bag`` with a zero-cost stand-in estimator at 640×192 (reading, copying the input,
  packing depth, colourised depth, mask, cloud, odometry, markers and writing MCAP), frames/s.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_bag.py [--shared-data ../shared/data]

Prints a table and writes bench/results/bag.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from results_io import write_results  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.image import message_to_cvimage  # noqa: E402

from mgdepth_core.bagio import BagFrameSource, index_bag  # noqa: E402
from mgdepth_core.commands.process_bag import process_bag  # noqa: E402
from mgdepth_core.data.bag import BagDataset  # noqa: E402
from mgdepth_core.inference import DepthResult  # noqa: E402

BAGS = {
    "mcap raw rgb8": ("bags/kitti_0060_raw_mcap", "/kitti/camera_color_left/image_raw"),
    "sqlite3 jpeg": ("bags/kitti_0060_jpeg_sqlite3", "/kitti/camera_color_left/image_raw/compressed"),
}


class ConstantEstimator:
    """Zero-cost stand-in: a fixed 640×192 depth, 1 m forward motion, no objects."""

    def __init__(self) -> None:
        self.depth = np.linspace(2.0, 40.0, 192, dtype=np.float32)[:, None].repeat(640, axis=1)

    def reset(self) -> None:
        pass

    def process(self, image_rgb: np.ndarray, K: np.ndarray, stamp: float) -> DepthResult:
        small = cv2.resize(image_rgb, (640, 192), interpolation=cv2.INTER_AREA)
        scale = np.array([[640 / image_rgb.shape[1]], [192 / image_rgb.shape[0]], [1.0]])
        motion = np.eye(4)
        motion[2, 3] = 1.0
        return DepthResult(depth=self.depth, K=K * scale, image=small, T_prev_current=motion, multi_frame=True,
                           dynamic_mask=np.zeros((192, 640), np.uint16))


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"), help="../shared/data")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for every measurement")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bag.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    shared = Path(args.shared_data)
    rows = []
    for name, (relative, topic) in BAGS.items():
        path = shared / relative
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue

        def baseline(path=path, topic=topic) -> int:
            with AnyReader([path]) as reader:
                connections = [c for c in reader.connections if c.topic == topic]
                return sum(message_to_cvimage(reader.deserialize(raw, c.msgtype), "rgb8").shape[0] > 0
                           for c, _, raw in reader.messages(connections))

        count = baseline()
        base = min(timed(baseline) for _ in range(args.repeats))
        index = index_bag(path, topic)
        index_time = min(timed(lambda: index_bag(path, topic)) for _ in range(args.repeats))  # noqa: B023
        order = list(range(len(index)))
        random.Random(0).shuffle(order)

        def random_access(index=index, order=order) -> None:
            source = BagFrameSource(index)
            for i in order:
                source.image(i)
            source.close()

        access = min(timed(random_access) for _ in range(args.repeats))
        dataset = BagDataset(index, "test", [0, -1, 1], 192, 640, training=True)
        samples = min(timed(lambda: [dataset[i] for i in range(len(dataset))]) for _ in range(args.repeats))  # noqa: B023
        sample_frames = 3 * len(dataset)
        with tempfile.TemporaryDirectory() as folder:
            def write(index=index, folder=folder) -> None:
                process_bag(index, Path(folder) / "out", ConstantEstimator(), overwrite=True)
            writing = min(timed(write) for _ in range(args.repeats))
            shutil.rmtree(Path(folder) / "out", ignore_errors=True)
        base_rate = count / base
        for label, frames, seconds in (("baseline: sequential read + decode", count, base),
                                       ("index_bag (no pixel decoding)", count, index_time),
                                       ("random access BagFrameSource.image", count, access),
                                       ("BagDataset samples 640×192", sample_frames, samples),
                                       ("process_bag outputs 640×192 (stand-in model)", count, writing)):
            rows.append({"bag": name, "what": label, "frames": frames, "seconds": round(seconds, 4),
                         "frames_per_s": round(frames / seconds, 1),
                         "ratio_to_baseline": round(frames / seconds / base_rate, 3)})
    width = max(len(r["what"]) for r in rows)
    print(f"{'bag':<15} {'what':<{width}} {'frames/s':>9} {'× baseline':>10}")
    for row in rows:
        print(f"{row['bag']:<15} {row['what']:<{width}} {row['frames_per_s']:>9.1f} {row['ratio_to_baseline']:>10.3f}")
    result = {"machine": platform.platform(), "processor": platform.processor(), "threads": 1, "rows": rows}
    write_results(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
