"""``python -m mgdepth_ros.demo`` (``make demo``): Manydepth2 with a learned flow network and Dyna-DM, side by side
with Manydepth, through the real ROS 2 depth node over a held-out sequence; no camera or download needed.

1. models (mgdepth_core.demo_models, config/demo.yaml): on the first run an optical flow network (RAFT-small),
   Manydepth2 (with that flow network, the static reference frame on) and Manydepth are trained from random
   initialisation on the built-in synthetic dynamic street scenes and cached in ``$XDG_CACHE_HOME/mgdepth/models``
   (keyed by the training config and the package version; checksummed, a broken entry is rebuilt). Later runs load
   them. ``--retrain`` forces training; ``--weights`` runs your own weights folder instead (no comparison).
2. a held-out synthetic sequence (never seen in training) is published frame by frame with camera_info through
   rclpy / Fast DDS to the depth node, once per method, with Dyna-DM on: the theta filter, on the node's own depth
   and ego-motion, decides which instances are truly dynamic. The instances come from the synthetic set's instance
   maps (``instances`` topic), or from the node's Mask R-CNN where torchvision's COCO weights are in the torch hub
   cache (never downloaded here).
3. written to ``--output`` (default demo_output/): ``summary.json`` (per method: abs_rel and a1 on static and on
   moving-object pixels, the dynamic mask's precision and recall against the ground truth, ms per frame),
   ``strips.png`` (image | Manydepth depth | Manydepth2 depth | dynamic mask | the static reference frame
   Manydepth2 matched against) and ``outputs_mcap/`` (rosbag2 MCAP of the main method's input and every output
   topic: Foxglove / Lichtblick or ``ros2 bag play``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mgdepth_core.data.synthetic import HELD_OUT_SEED_OFFSET, SyntheticSequence
from mgdepth_core.outputs import colorize_depth, rgb_image
from mgdepth_ros.demo_report import (
    MethodRun,
    depth_scores,
    mask_scores,
    mask_to_bgr,
    pick_strip_frames,
    write_mcap,
    write_strips,
)

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
DEMO_SEED = 2 * HELD_OUT_SEED_OFFSET + 7  # a test-split seed of the synthetic set: not used in training
FRAME_ID = "camera_optical"
PERIOD_NS = 100_000_000  # 10 Hz stamps
STRIP_FRAMES = 5


def _config_dir() -> Path:
    """config/ of the source tree, or share/mgdepth_ros/config of a colcon install."""
    if (REPO_CONFIG / "demo.yaml").is_file():
        return REPO_CONFIG
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("mgdepth_ros")) / "config"


def segmenter_available() -> bool:
    """Whether torchvision's COCO Mask R-CNN weights are in the torch hub cache (the node's default segmenter)."""
    from mgdepth_core.dynamic import DynamicObjectsConfig
    from mgdepth_core.models.instance_segmentation import default_weights_path

    return default_weights_path(DynamicObjectsConfig().segmenter).is_file()


def run_node(estimator, method: str, frames: list[dict], instances_source: str, record: bool
             ) -> tuple[MethodRun, list[tuple[str, object, int]], dict]:
    """Publish ``frames`` to a fresh depth node running ``estimator`` with Dyna-DM on; what came back per frame,
    the recorded messages (``record``: input + every output, for the MCAP) and the node's totals."""
    from rclpy.parameter import Parameter

    from mgdepth_ros import conversions
    from mgdepth_ros.depth_node import DepthNode
    from mgdepth_ros.harness import (
        OUTPUT_TOPICS,
        FramePlayer,
        OutputCollector,
        RecordingEstimator,
        RosSession,
        wait_until,
    )

    run, recorded = MethodRun(method), []
    recorder = RecordingEstimator(estimator)
    parameters = [Parameter("dynamic_objects", value="dyna-dm"),
                  Parameter("instances_source", value=instances_source)]
    with RosSession() as session:
        node = session.add(DepthNode(recorder, context=session.context, parameter_overrides=parameters))
        player = session.add(FramePlayer(session.context))
        collector = session.add(OutputCollector(session.context))
        if not wait_until(lambda: player.pub_image.get_subscription_count() > 0
                          and (instances_source != "topic" or player.pub_instances.get_subscription_count() > 0)
                          and collector.count_publishers("points") > 0, timeout=20.0):
            raise RuntimeError("the depth node and the demo's nodes did not discover each other in 20 s")
        for index, frame in enumerate(frames):
            stamp = (index + 1) * PERIOD_NS
            if instances_source == "topic":  # before the image: the node pairs them by stamp
                player.publish_instances(frame["instances"], stamp, FRAME_ID)
            player.publish_frame(frame["image"], frame["K"], stamp, FRAME_ID)
            if collector.wait_for("depth/image_rect", stamp, timeout=120.0) is None:
                raise RuntimeError(f"{method}, frame {index}: no depth from the node in 120 s")
            outputs = collector.wait_for_all(list(OUTPUT_TOPICS), stamp, timeout=10.0)
            missing = [topic for topic, msg in outputs.items() if msg is None]
            if missing:
                raise RuntimeError(f"{method}, frame {index}: no output on {missing}")
            # published before the markers (which have arrived), and only for multi-frame depth
            lookup = collector.wait_for("static_reference", stamp, timeout=0.5) if index else None
            run.depths.append(conversions.image_msg_to_array(outputs["depth/image_rect"]))
            run.masks.append(conversions.image_msg_to_array(outputs["dynamic_mask"]))
            run.lookups.append(None if lookup is None else conversions.image_msg_to_array(lookup))
            if record:
                header = conversions.Header(frame_id=FRAME_ID)
                header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                recorded.append(("/image", conversions.image_msg(rgb_image(frame["image"]), header), stamp))
                if instances_source == "topic":
                    recorded.append(("/instances", player.instances_msg(frame["instances"], stamp, FRAME_ID),
                                     stamp))
                recorded.extend((f"/{topic}", msg, stamp) for topic, msg in outputs.items() if msg is not None)
                if lookup is not None:
                    recorded.append(("/static_reference", lookup, stamp))
        totals = dict(node.totals)
    run.process_ms = recorder.process_ms
    return run, recorded, totals


def load_models(args: argparse.Namespace, methods: list[str]) -> tuple[dict[str, str | None], dict]:
    """Weights folder per method (None = random init) and what the summary says about them."""
    if args.weights or args.no_train:
        return {methods[0]: args.weights}, {"source": args.weights or "random init (meaningless depth)"}
    from mgdepth_core.config import load_config
    from mgdepth_core.demo_models import DemoModelsConfig, ModelBuilder

    demo = load_config(DemoModelsConfig, Path(args.config) if args.config else _config_dir() / "demo.yaml",
                       [*args.set, f"methods={json.dumps(methods)}"])
    started = time.monotonic()
    models = ModelBuilder(demo, Path(args.cache_dir) if args.cache_dir else None, args.retrain).build()
    built = [name for name, model in models.items() if model.built]
    info = {"source": "trained here from random initialisation (no pretrained weights), cached",
            "cache": {name: str(model.folder) for name, model in models.items()},
            "built_now": built, "build_seconds": round(time.monotonic() - started, 1),
            "train_steps": {name: model.record["steps"] for name, model in models.items()},
            "train_seconds": {name: model.record["train_seconds"] for name, model in models.items()}}
    return {method: str(models[method].path) for method in methods}, info


def run_demo(args: argparse.Namespace) -> dict:
    from mgdepth_ros.harness import build_estimator

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    methods = [args.method] + ([] if args.weights or args.no_train or args.no_compare
                               else [m for m in ("manydepth2", "manydepth") if m != args.method])
    weights, model_info = load_models(args, methods)
    if args.no_train and not args.weights:
        print("[demo] " + "!" * 60 + "\n[demo] NO WEIGHTS: the network is RANDOMLY INITIALISED, its depth is "
              "meaningless (plumbing demo only)\n[demo] " + "!" * 60, flush=True)
    instances_source = "segmenter" if segmenter_available() else "topic"
    source_text = ("Mask R-CNN (COCO weights from the torch hub cache)" if instances_source == "segmenter"
                   else "the synthetic set's ground-truth instance maps (no Mask R-CNN weights here)")
    print(f"[demo] instances: {source_text}", flush=True)
    estimators = {method: build_estimator(weights[method], method, "cpu",
                                          **({} if weights[method] else {"height": args.height, "width": args.width}))
                  for method in methods}
    model_config = estimators[methods[0]].model.config
    height, width = model_config.height, model_config.width
    sequence = SyntheticSequence(seed=DEMO_SEED, num_frames=args.frames, height=height, width=width)
    frames = [sequence.frame(index) for index in range(args.frames)]
    runs, per_method, started = {}, {}, time.monotonic()
    for method in methods:
        print(f"[demo] {method}: {args.frames} frames through the ROS 2 depth node ...", flush=True)
        run, recorded, totals = run_node(estimators[method], method, frames, instances_source,
                                         record=method == methods[0])
        if recorded:
            write_mcap(output / "outputs_mcap", recorded)
        runs[method] = run
        per_method[method] = {"weights": weights[method] or "random init", **depth_scores(run.depths, frames),
                              "dynamic_mask": mask_scores(run.masks, frames),
                              "ms_per_frame": round(float(np.median(run.process_ms[1:] or run.process_ms)), 1),
                              "node_totals": totals}
    write_strips(output / "strips.png", strip_columns(runs, frames, methods))
    summary = {
        "methods": per_method,
        "main_method": methods[0],
        "models": model_info,
        "frames": args.frames,
        "sequence_seed": DEMO_SEED,
        "input_size": [height, width],
        "instances": instances_source,
        "scores": "abs_rel and a1 with per-image median scaling against the synthetic ground truth (0-80 m); "
                  "dynamic mask from the second frame on: an object counts as flagged when any of its pixels is; "
                  "ms_per_frame: the estimator inside the node (median), this machine",
        "seconds": round(time.monotonic() - started, 1),
        "mcap": str(output / "outputs_mcap"),
        "strips": str(output / "strips.png"),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def strip_columns(runs: dict[str, MethodRun], frames: list[dict], methods: list[str]
                  ) -> list[tuple[str, list[np.ndarray]]]:
    """image | depth per method (Manydepth first) | the main method's dynamic mask | its static reference frame,
    for the frames with the most moving-object pixels."""
    main = runs[methods[0]]
    shape = main.depths[0].shape
    rows = pick_strip_frames(frames, STRIP_FRAMES) or [0]

    def fit(rgb: np.ndarray) -> np.ndarray:
        return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)[:, :, ::-1]

    columns = [("input", [fit(frames[r]["image"]) for r in rows])]
    for method in sorted(runs, key=lambda m: m != "manydepth"):
        columns.append((f"{method} depth", [colorize_depth(runs[method].depths[r]) for r in rows]))
    columns.append((f"dynamic mask ({methods[0]})", [mask_to_bgr(main.masks[r], shape) for r in rows]))
    title = "static reference frame" if methods[0] == "manydepth2" else "matched previous frame"
    columns.append((title, [fit(main.lookups[r]) if main.lookups[r] is not None else mask_to_bgr(None, shape)
                            for r in rows]))
    return columns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgdepth_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["manydepth2", "manydepth"], default="manydepth2",
                        help="the main method (its outputs go into the MCAP); the other one runs beside it")
    parser.add_argument("--no-compare", action="store_true", help="run the main method only")
    parser.add_argument("--weights", default=None, help="run this weights folder (no training, no comparison)")
    parser.add_argument("--no-train", action="store_true", help="random initialisation, no training (plumbing)")
    parser.add_argument("--retrain", action="store_true", help="train the models again even if cached")
    parser.add_argument("--config", default=None, help="demo models config (default config/demo.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override demo config fields, e.g. --set depth_steps=50 flow_steps=20")
    parser.add_argument("--cache-dir", default=None,
                        help="model cache (default $XDG_CACHE_HOME/mgdepth/models, ~/.cache/mgdepth/models)")
    parser.add_argument("--frames", type=int, default=24, help="frames of the held-out synthetic sequence")
    parser.add_argument("--height", type=int, default=64, help="--no-train only: image height, pixels")
    parser.add_argument("--width", type=int, default=192, help="--no-train only: image width, pixels")
    parser.add_argument("--output", default="demo_output", help="output folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    summary = run_demo(args)
    print(f"[demo] models: {summary['models']['source']}")
    for method, scores in summary["methods"].items():
        mask = scores["dynamic_mask"]
        print(f"[demo] {method:>10}: abs_rel static {scores['static_abs_rel']} moving {scores['moving_abs_rel']} | "
              f"a1 static {scores['static_a1']} moving {scores['moving_a1']} | dynamic mask precision "
              f"{mask['object_precision']} recall {mask['object_recall']} (objects of at least "
              f"{mask['min_area_fraction']:.2%} of the frame: {mask['eligible_object_precision']} / "
              f"{mask['eligible_object_recall']}) | {scores['ms_per_frame']} ms/frame")
    print(f"[demo] MCAP of all topics: {summary['mcap']}  (Foxglove / Lichtblick, or ros2 bag play)")
    print(f"[demo] strips: {summary['strips']}")
    print(f"[demo] summary: {Path(args.output) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
