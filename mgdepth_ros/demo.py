"""``python -m mgdepth_ros.demo`` (``make demo``): the real depth node over a sample sequence, no camera needed.

1. weights: ``--weights`` if given; otherwise a small model is trained for a minute or two on the built-in
   synthetic dynamic street scenes (``mgdepth_core.train``, config/train_synthetic.yaml); ``--no-train`` uses a
   randomly initialised network instead (its depth is meaningless, and the demo says so).
2. a held-out synthetic sequence (never seen in training) is published frame by frame with camera_info and its
   ground-truth instance map (``instances``, 16UC1) through rclpy / Fast DDS to the depth node, which runs with
   Dyna-DM dynamic objects on (``instances_source: topic``): the theta filter, on the node's own depth and
   ego-motion, decides which instances are truly dynamic. Every output is received back.
3. written to ``--output`` (default demo_output/): ``outputs_mcap/`` (rosbag2 MCAP with the input and every
   output topic: open with Foxglove / Lichtblick or ``ros2 bag play``), ``strips.png`` (image | colourised depth
   | dynamic mask for several frames), ``summary.json`` (weights, depth accuracy and dynamic-mask agreement with the
   synthetic ground truth, rates).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mgdepth_core.data.synthetic import HELD_OUT_SEED_OFFSET, SyntheticSequence
from mgdepth_core.outputs import colorize_depth, rgb_image

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
DEMO_SEED = 2 * HELD_OUT_SEED_OFFSET + 7  # a test-split seed of the synthetic set: not used in training
FRAME_ID = "camera_optical"
PERIOD_NS = 100_000_000  # 10 Hz stamps
TRAIN_CHUNK_STEPS = 2  # the training time budget is checked every few steps


def _config_dir() -> Path:
    """config/ of the source tree, or share/mgdepth_ros/config of a colcon install."""
    if (REPO_CONFIG / "train_synthetic.yaml").is_file():
        return REPO_CONFIG
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("mgdepth_ros")) / "config"


def train_small_model(run_dir: Path, method: str, seconds: float, height: int, width: int) -> Path:
    """Train ``method`` on the synthetic set (config/train_synthetic.yaml at height×width) for about ``seconds``
    of wall time, in chunks of a few steps; returns the last weights folder."""
    from mgdepth_core.config import load_config
    from mgdepth_core.train.config import TrainConfig
    from mgdepth_core.train.trainer import Trainer

    config = load_config(TrainConfig, _config_dir() / "train_synthetic.yaml",
                         [f"model.method={method}", "data.num_workers=0", "device=cpu", "data.synthetic_sequences=4",
                          "optim.batch_size=2",
                          f"model.height={height}", f"model.width={width}", f"data.height={height}",
                          f"data.width={width}", f"log_dir={run_dir.parent}", f"run_name={run_dir.name}"])
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"[demo] training {method} on synthetic street scenes for ~{seconds:.0f} s at {height}×{width} (CPU) ...",
          flush=True)
    started = time.monotonic()
    trainer = Trainer(config, run_dir)
    weights, step_seconds = None, 0.0
    while time.monotonic() - started + step_seconds < seconds or weights is None:
        chunk_started, steps_before = time.monotonic(), trainer.step
        config.max_steps = trainer.step + TRAIN_CHUNK_STEPS
        previous, weights = weights, trainer.train()
        if previous is not None and weights != previous:
            shutil.rmtree(previous, ignore_errors=True)  # keep only the newest weights folder
        step_seconds = (time.monotonic() - chunk_started) / max(trainer.step - steps_before, 1)
    if weights is None:
        raise RuntimeError(f"training in {run_dir} wrote no weights")
    print(f"[demo] trained {trainer.step} steps in {time.monotonic() - started:.0f} s: {weights}", flush=True)
    return weights


def mask_to_bgr(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Instance ids → distinct colours (black = static); grey with a note where no mask was published."""
    if mask is None:
        image = np.full((*shape, 3), 64, np.uint8)
        cv2.putText(image, "no dynamic mask", (5, shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255))
        return image
    palette = np.random.default_rng(0).integers(64, 256, size=(65536, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[mask.astype(np.int64)]


def write_strips(path: Path, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Stack rows of (input RGB, colourised depth BGR, mask BGR), all at the depth resolution, into one PNG."""
    lines = []
    for rgb, colorized, mask in rows:
        lines.append(np.concatenate([rgb[:, :, ::-1], colorized, mask], axis=1))
    header = np.zeros((18, lines[0].shape[1], 3), np.uint8)
    width = rows[0][0].shape[1]
    for column, title in enumerate(["input", "depth (near bright, far dark)", "dynamic objects"]):
        cv2.putText(header, title, (column * width + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255))
    image = np.concatenate([header, *lines], axis=0)
    temporary = path.with_suffix(".tmp.png")
    cv2.imwrite(str(temporary), image)
    os.replace(temporary, path)


def write_mcap(path: Path, messages: list[tuple[str, object, int]]) -> None:
    """Write (topic, rclpy message, stamp ns) to a rosbag2 MCAP folder with rosbags (atomic: temp + rename)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    staging = path.with_name(path.name + ".partial")
    temporary = staging / path.name  # rosbags names the .mcap file after the bag folder
    for stale in (staging, path):
        if stale.exists():
            shutil.rmtree(stale)
    staging.mkdir(parents=True)
    with Writer(temporary, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, msg, stamp in messages:
            msgtype = type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
            if msgtype not in typestore.fielddefs:
                continue  # mgdepth_msgs types: not in the Jazzy typestore (MarkerArray carries the same objects)
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
            writer.write(connections[topic], stamp, serialize_message(msg))
    os.replace(temporary, path)
    staging.rmdir()


def abs_rel_median_scaled(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Monodepth-style AbsRel after per-image median scaling, on pixels with 0.1 < truth < 80 m."""
    truth = cv2.resize(truth, (prediction.shape[1], prediction.shape[0]), interpolation=cv2.INTER_NEAREST)
    valid = (truth > 0.1) & (truth < 80) & np.isfinite(prediction) & (prediction > 0)
    scaled = prediction[valid] * np.median(truth[valid]) / np.median(prediction[valid])
    return float(np.mean(np.abs(scaled - truth[valid]) / truth[valid]))


def score_dynamic_mask(mask: np.ndarray | None, instances: np.ndarray, moving: np.ndarray) -> dict[str, int]:
    """Objects of the ground truth (``instances`` H×W ids, ``moving`` indexed by id) that ``mask`` (H×W ids at any
    size, published ids) flags: counts of moving and static objects present, and of those flagged."""
    truth = cv2.resize(instances.astype(np.int32), (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_NEAREST)
    present = [int(i) for i in np.unique(truth) if i]
    flagged = {int(i) for i in np.unique(mask) if i}
    return {"moving": sum(bool(moving[i]) for i in present),
            "moving_flagged": sum(bool(moving[i]) and i in flagged for i in present),
            "static": sum(not moving[i] for i in present),
            "static_flagged": sum(not moving[i] and i in flagged for i in present)}


def run_demo(args: argparse.Namespace) -> dict:
    from rclpy.parameter import Parameter

    from mgdepth_ros import conversions
    from mgdepth_ros.depth_node import DepthNode
    from mgdepth_ros.harness import OUTPUT_TOPICS, FramePlayer, OutputCollector, RosSession, build_estimator

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    weights = args.weights
    if weights is None and not args.no_train:
        weights = train_small_model(output / "training", args.method, args.train_seconds, args.height, args.width)
    if weights is None:
        print("[demo] " + "!" * 60 + "\n[demo] NO WEIGHTS: the network is RANDOMLY INITIALISED, its depth is "
              "meaningless (plumbing demo only)\n[demo] " + "!" * 60, flush=True)
    size = {"height": args.height, "width": args.width} if weights is None else {}  # else: the trained size
    estimator = build_estimator(weights, args.method, "cpu", **size)

    sequence = SyntheticSequence(seed=DEMO_SEED, num_frames=args.frames, height=args.height, width=args.width)
    recorded: list[tuple[str, object, int]] = []
    strips, errors = [], []
    dynamic_scores: dict[str, int] = {}
    started = time.monotonic()
    parameters = [Parameter("dynamic_objects", value="dyna-dm"), Parameter("instances_source", value="topic")]
    with RosSession() as session:
        node = session.add(DepthNode(estimator, context=session.context, parameter_overrides=parameters))
        player = session.add(FramePlayer(session.context))
        collector = session.add(OutputCollector(session.context))
        deadline = time.monotonic() + 20
        while (player.pub_image.get_subscription_count() == 0 or player.pub_instances.get_subscription_count() == 0
               or collector.count_publishers("points") == 0):
            if time.monotonic() > deadline:
                raise RuntimeError("the depth node and the demo's nodes did not discover each other in 20 s")
            time.sleep(0.05)
        for index in range(args.frames):
            frame = sequence.frame(index)
            stamp = (index + 1) * PERIOD_NS
            player.publish_instances(frame["instances"], stamp, FRAME_ID)  # before the image: it waits for neither
            player.publish_frame(frame["image"], frame["K"], stamp, FRAME_ID)
            if collector.wait_for("depth/image_rect", stamp, timeout=120.0) is None:
                raise RuntimeError(f"frame {index}: no depth from the node in 120 s")
            outputs = collector.wait_for_all(list(OUTPUT_TOPICS), stamp, timeout=10.0)
            missing = [topic for topic, msg in outputs.items() if msg is None]
            if missing:
                raise RuntimeError(f"frame {index}: no output on {missing}")
            header = conversions.Header(frame_id=FRAME_ID)
            header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            recorded.append(("/image", conversions.image_msg(rgb_image(frame["image"]), header), stamp))
            recorded.append(("/instances", player.instances_msg(frame["instances"], stamp, FRAME_ID), stamp))
            recorded.extend((f"/{topic}", msg, stamp) for topic, msg in outputs.items() if msg is not None)
            depth = conversions.image_msg_to_array(outputs["depth/image_rect"])
            errors.append(abs_rel_median_scaled(depth, frame["depth"]))
            mask_array = conversions.image_msg_to_array(outputs["dynamic_mask"])
            if index:  # the first frame has no previous frame to compare with
                for key, count in score_dynamic_mask(mask_array, frame["instances"], frame["moving"]).items():
                    dynamic_scores[key] = dynamic_scores.get(key, 0) + count
            if index % max(1, args.frames // 6) == 0 or index == args.frames - 1:
                small = cv2.resize(frame["image"], (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
                strips.append((small, colorize_depth(depth), mask_to_bgr(mask_array, depth.shape)))
        elapsed = time.monotonic() - started
        totals = dict(node.totals)
    write_mcap(output / "outputs_mcap", recorded)
    write_strips(output / "strips.png", strips)
    summary = {
        "weights": str(weights) if weights is not None else "random init (meaningless depth)",
        "method": args.method,
        "frames": args.frames,
        "input_size": [args.height, args.width],
        "abs_rel_median_scaled": float(np.mean(errors)),
        "abs_rel_median_scaled_per_frame": [round(e, 4) for e in errors],
        "dynamic_objects": {"note": "object-frames from the second frame on (ground truth: which instances move); "
                                    "the theta filter runs on the node's own depth and ego-motion", **dynamic_scores},
        "seconds": round(elapsed, 1),
        "node_totals": totals,
        "mcap": str(output / "outputs_mcap"),
        "strips": str(output / "strips.png"),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgdepth_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights folder or file; default: train a small model first")
    parser.add_argument("--method", choices=["manydepth2", "manydepth"], default="manydepth",
                        help="method to train / load (manydepth trains fastest on a CPU)")
    parser.add_argument("--no-train", action="store_true", help="without --weights: random init, no training")
    parser.add_argument("--train-seconds", type=float, default=60.0,
                        help="wall time of the short training (a CPU manages only a few dozen steps: rough depth)")
    parser.add_argument("--frames", type=int, default=24, help="frames of the held-out synthetic sequence")
    parser.add_argument("--height", type=int, default=64, help="image height (training and sequence), pixels")
    parser.add_argument("--width", type=int, default=192, help="image width (training and sequence), pixels")
    parser.add_argument("--output", default="demo_output", help="output folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    summary = run_demo(args)
    print(f"[demo] weights: {summary['weights']}")
    print(f"[demo] {summary['frames']} frames through the ROS 2 node in {summary['seconds']} s; depth AbsRel "
          f"(median-scaled, vs synthetic ground truth): {summary['abs_rel_median_scaled']:.3f}")
    print(f"[demo] MCAP of all topics: {summary['mcap']}  (Foxglove / Lichtblick, or ros2 bag play)")
    print(f"[demo] image | depth | dynamic mask strips: {summary['strips']}")
    print(f"[demo] summary: {Path(args.output) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
