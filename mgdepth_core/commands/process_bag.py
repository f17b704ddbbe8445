"""``mgdepth process-bag IN OUT``: run the depth estimator over every frame of a bag and write a new bag.

The output bag holds the input image and camera_info messages (copied byte for byte) and, with the input image's
header on every message, the topics of the ROS node (``mgdepth_ros.depth_node``), so RViz (``ros2 bag play``) and
Foxglove show it with the same configuration:

=============================  ======================================  =================================================
topic (under ``--namespace``)  type                                    content
=============================  ======================================  =================================================
``depth/image_rect``           sensor_msgs/Image ``32FC1``             depth along z, metres (``--depth-scale``), NaN
                                                                       invalid (REP 118)
``depth/camera_info``          sensor_msgs/CameraInfo                  K of the depth image (network resolution)
``depth/colorized``            sensor_msgs/Image ``bgr8``              inverse depth on the magma colour map
``dynamic_mask``               sensor_msgs/Image ``16UC1``/``mono8``   instance ids of truly dynamic objects, 0 = static
                                                                       (only where the estimator computes masks)
``points``                     sensor_msgs/PointCloud2                 x, y, z float32 + packed rgb, optical frame
``odometry``                   nav_msgs/Odometry                       camera pose chained from the pose network
``dynamic_objects/markers``    visualization_msgs/MarkerArray          a box and a label per truly dynamic object
=============================  ======================================  =================================================

Frames are processed in header-stamp order inside each bag segment (see :mod:`mgdepth_core.bagio`); the frame
buffer restarts at gaps above ``--max-gap`` and the odometry at backward jumps (bag loops). The bag is written to
``OUT.partial`` and renamed to ``OUT`` when complete; Ctrl-C leaves no partial output behind.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mgdepth_core.commands._bag_options import add_bag_input_arguments

HELP = "run depth estimation over a rosbag2 and write a new bag with depth, cloud, odometry, masks and markers"

LOG = logging.getLogger("mgdepth.process_bag")


@dataclass
class BagOutputOptions:
    """What ``process_bag`` writes and how (the CLI flags of ``mgdepth process-bag``)."""

    namespace: str = ""  # prefix of the output topics, e.g. /camera/mgdepth
    cloud_decimation: int = 2  # keep every n-th depth pixel in rows and columns for the cloud
    cloud_min_range: float = 0.1  # metres along z
    cloud_max_range: float = 80.0  # metres along z
    cloud_colour: bool = True  # packed rgb field (RViz colour transformer RGB8)
    mask_encoding: str = "16UC1"  # dynamic_mask encoding: 16UC1 or mono8
    colorize_min_depth: float = 1.0  # metres, nearest depth of the colour map
    colorize_max_depth: float = 80.0  # metres, farthest depth of the colour map
    odom_frame: str = "odom"  # frame_id of the odometry; the child frame is the input frame_id
    marker_lifetime_s: float = 0.5
    max_gap_s: float = 0.25  # a larger stamp gap restarts the estimator's frame buffer
    copy_input: bool = True  # copy the input image and camera_info topics into the output bag

    def topic(self, name: str) -> str:
        return f"{self.namespace.rstrip('/')}/{name}" if self.namespace else f"/{name}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="input rosbag2 folder (sqlite3 or MCAP)")
    parser.add_argument("output", type=Path, metavar="OUT", help="output rosbag2 folder (must not exist)")
    parser.add_argument("--weights", default="", metavar="DIR",
                        help="weights folder (ours or the official release layout); empty = random init, for "
                             "plumbing tests only")
    parser.add_argument("--method", choices=["manydepth2", "manydepth"], default=None,
                        help="model; default: what the weights folder holds (manydepth2 for random init)")
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda:1, ...")
    parser.add_argument("--height", type=int, default=0,
                        help="network input height (multiple of 32); 0 = the resolution of the weights")
    parser.add_argument("--width", type=int, default=0,
                        help="network input width (multiple of 32); 0 = the resolution of the weights")
    add_bag_input_arguments(parser, with_bag=False)
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output storage plugin")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--compress", action="store_true",
                        help="zstd-compress OUT (MCAP chunks, or sqlite3 messages; both rosbag2-native)")
    parser.add_argument("--namespace", default="", help="prefix of the output topics (e.g. /camera/mgdepth)")
    parser.add_argument("--depth-scale", type=float, default=1.0,
                        help="metres per network depth unit, applied by the estimator to depth, cloud and odometry "
                             "translation (self-supervised monocular depth has no metric scale of its own)")
    parser.add_argument("--cloud-decimation", type=int, default=2, metavar="N",
                        help="keep every N-th depth pixel in rows and columns for the point cloud")
    parser.add_argument("--cloud-max-range", type=float, default=80.0, metavar="M",
                        help="drop cloud points farther than M metres")
    parser.add_argument("--mask-encoding", choices=["16UC1", "mono8"], default="16UC1",
                        help="dynamic_mask encoding")
    parser.add_argument("--odom-frame", default="odom", help="frame_id of the odometry messages")
    parser.add_argument("--no-copy-input", action="store_true",
                        help="do not copy the input image and camera_info topics into OUT")
    parser.add_argument("--max-frames", type=int, default=0, metavar="N",
                        help="process only the first N frames (0 = all)")


def run(args: argparse.Namespace) -> int:
    from mgdepth_core.bagio import BagError, index_bag
    from mgdepth_core.inference import DepthEstimator

    if args.output.exists() and not args.overwrite:
        raise BagError(f"output {args.output} exists; pass --overwrite to replace it")
    max_gap = args.max_gap if args.max_gap is not None else 0.25
    index = index_bag(args.input, args.image_topic or "", args.camera_info_topic or "", args.intrinsics or "",
                      args.camera_info_tolerance if args.camera_info_tolerance is not None else 0.05, max_gap)
    LOG.info("%s: %d frames on %s%s", args.input, len(index), index.image_topic,
             f" (skipped {dict(index.skipped)})" if index.skipped else "")
    options = BagOutputOptions(namespace=args.namespace, cloud_decimation=args.cloud_decimation,
                               cloud_max_range=args.cloud_max_range, mask_encoding=args.mask_encoding,
                               odom_frame=args.odom_frame, max_gap_s=max_gap,
                               copy_input=not args.no_copy_input)
    estimator = DepthEstimator.from_weights(args.weights, method=args.method, device=args.device,
                                            height=args.height, width=args.width, max_gap_s=max_gap,
                                            depth_scale=args.depth_scale)
    counts = process_bag(index, args.output, estimator, options, storage=args.storage, overwrite=args.overwrite,
                         max_frames=args.max_frames, compress=args.compress)
    LOG.info("wrote %s: %s", args.output, ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items())))
    return 0


def process_bag(index, output: str | Path, estimator, options: BagOutputOptions | None = None,
                storage: str = "mcap", overwrite: bool = False, max_frames: int = 0, compress: bool = False) -> Counter:
    """Run ``estimator`` (``process(rgb, K, stamp_s) -> DepthResult``, ``reset()``) over every frame of ``index``
    (a :class:`~mgdepth_core.bagio.BagIndex`) and write the output bag; returns messages written per topic."""
    from tqdm import tqdm

    from mgdepth_core.bagio import (
        BagFrameSource,
        BagWriter,
        camera_info_message,
        header,
        intrinsics_for_size,
        split_sequences,
    )
    from mgdepth_core.outputs import OdometryAccumulator

    options = options or BagOutputOptions()
    source = BagFrameSource(index)
    frames = index.frames[:max_frames] if max_frames else index.frames
    sequence_starts = {sequence[0] for sequence in split_sequences(frames, options.max_gap_s)}
    odometry = OdometryAccumulator()
    sibling_info = index.image_topic.removesuffix("/compressed").rsplit("/", 1)[0] + "/camera_info"
    with BagWriter(output, storage, overwrite, compress) as writer:
        if options.copy_input and index.camera_info_topic:
            _copy_topic(index, index.camera_info_topic, writer, frames)
        previous_size = None
        try:
            for i, frame in enumerate(tqdm(frames, desc=f"process-bag {Path(index.path).name}", unit="frame",
                                           dynamic_ncols=True)):
                msgtype, raw = source.raw_message(i)
                rgb = source.decode(i, msgtype, raw)
                height, width = rgb.shape[:2]
                K = intrinsics_for_size(frame, width, height)
                restart = i in sequence_starts or previous_size != (height, width)
                if restart:
                    estimator.reset()
                if i == 0 or frame.segment != frames[i - 1].segment:
                    odometry.reset()
                dt = 0.0 if restart else (frame.stamp_ns - frames[i - 1].stamp_ns) * 1e-9
                previous_size = (height, width)
                result = estimator.process(rgb, K, frame.stamp_ns * 1e-9)
                if options.copy_input:
                    writer.write_raw(index.image_topic, msgtype, frame.log_time_ns, raw)
                    if not index.camera_info_topic:  # intrinsics from a file: publish them next to the image
                        writer.write(sibling_info, frame.log_time_ns,
                                     camera_info_message(header(frame.stamp_ns, frame.frame_id), K, width, height))
                write_result(writer, options, odometry, frame, result, dt)
        finally:
            source.close()
    return writer.counts


def _copy_topic(index, topic: str, writer, frames) -> None:
    """Copy ``topic`` byte for byte, limited to the receive-time span of the processed frames."""
    from mgdepth_core.bagio import open_bag

    first = min(f.log_time_ns for f in frames)
    last = max(f.log_time_ns for f in frames)
    reader = open_bag(index.path)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, log_time, raw in reader.messages(connections, start=first, stop=last + 1):
            writer.write_raw(topic, connection.msgtype, log_time, raw)
    finally:
        reader.close()


def write_result(writer, options: BagOutputOptions, odometry, frame, result, dt: float) -> None:
    """Depth, depth camera_info, colourised depth, mask, cloud, odometry and markers of one DepthResult, with the
    header of the input ``frame`` (a :class:`~mgdepth_core.bagio.FrameRecord`), at its receive time."""
    import numpy as np

    from mgdepth_core.bagio import (
        camera_info_fields_message,
        cloud_message,
        header,
        image_fields_message,
        markers_message,
        odometry_message,
    )
    from mgdepth_core.outputs import (
        bgr_image,
        colorize_depth,
        depth_camera_info,
        depth_image,
        mask_image,
        summarise_objects,
    )
    from mgdepth_core.pointcloud import depth_to_points, pack_cloud

    hdr = header(frame.stamp_ns, frame.frame_id)
    log_time = frame.log_time_ns
    depth = result.depth.astype(np.float32)
    height, width = depth.shape
    writer.write(options.topic("depth/image_rect"), log_time, image_fields_message(hdr, depth_image(depth)))
    writer.write(options.topic("depth/camera_info"), log_time,
                 camera_info_fields_message(hdr, depth_camera_info(result.K, height, width)))
    bgr = colorize_depth(depth, options.colorize_min_depth, options.colorize_max_depth)
    writer.write(options.topic("depth/colorized"), log_time, image_fields_message(hdr, bgr_image(bgr)))
    if result.dynamic_mask is not None:
        writer.write(options.topic("dynamic_mask"), log_time,
                     image_fields_message(hdr, mask_image(result.dynamic_mask, options.mask_encoding)))
    points = depth_to_points(depth, result.K, result.image if options.cloud_colour else None,
                             options.cloud_decimation, options.cloud_min_range, options.cloud_max_range)
    writer.write(options.topic("points"), log_time, cloud_message(hdr, pack_cloud(points)))
    state = odometry.update(result.T_prev_current, dt)
    writer.write(options.topic("odometry"), log_time,
                 odometry_message(frame.stamp_ns, state, options.odom_frame, frame.frame_id))
    summaries = summarise_objects(result.objects, result.dynamic_mask, depth, result.K)
    writer.write(options.topic("dynamic_objects/markers"), log_time,
                 markers_message(summaries, hdr, options.marker_lifetime_s))
