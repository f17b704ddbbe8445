"""Command-line options that read a camera topic from a rosbag2, shared by ``mgdepth train`` and
``mgdepth process-bag`` (and the ROS ``bag_trainer``). Light on purpose: nothing heavy is imported here."""

from __future__ import annotations

import argparse
import json


def add_bag_input_arguments(parser: argparse.ArgumentParser, with_bag: bool = True) -> None:
    """--bag (optional), --image-topic, --camera-info-topic, --intrinsics, --max-gap, --camera-info-tolerance."""
    group = parser.add_argument_group("rosbag2 input" + (" (--bag sets data.dataset=bag)" if with_bag else ""))
    if with_bag:
        group.add_argument("--bag", default=None, metavar="PATH",
                           help="rosbag2 folder (metadata.yaml + .mcap or .db3) to train on")
    group.add_argument("--image-topic", default=None, metavar="TOPIC",
                       help="camera topic, sensor_msgs/Image or sensor_msgs/CompressedImage (JPEG/PNG); may be "
                            "left out when the bag has exactly one image topic")
    group.add_argument("--camera-info-topic", default=None, metavar="TOPIC",
                       help="sensor_msgs/CameraInfo topic paired with the images by header stamp; "
                            "default: the image topic's sibling camera_info")
    group.add_argument("--intrinsics", default=None, metavar="FILE",
                       help="YAML/JSON intrinsics (K 3×3, or fx fy cx cy, optional width height) for a bag "
                            "without camera_info; replaces camera_info")
    group.add_argument("--max-gap", type=float, default=None, metavar="SECONDS",
                       help="largest stamp gap between consecutive frames of one sequence, seconds "
                            "(default: 0.25, or the config's data.max_gap_s)")
    group.add_argument("--camera-info-tolerance", type=float, default=None, metavar="SECONDS",
                       help="largest stamp difference between a frame and its camera_info, seconds "
                            "(default: 0.05, or the config's data.camera_info_tolerance_s)")


def bag_overrides(args: argparse.Namespace) -> list[str]:
    """``data.*=value`` config overrides for the bag options given on the command line."""
    values = {
        "path": getattr(args, "bag", None),
        "image_topic": args.image_topic,
        "camera_info_topic": args.camera_info_topic,
        "intrinsics_file": args.intrinsics,
        "max_gap_s": args.max_gap,
        "camera_info_tolerance_s": args.camera_info_tolerance,
    }
    overrides = ["data.dataset=bag"] if values["path"] is not None else []
    # JSON strings are YAML strings: paths and topics survive the override parser unchanged.
    overrides += [f"data.{key}={json.dumps(value)}" for key, value in values.items() if value is not None]
    return overrides
