"""``depth_node``: live monocular depth, dynamic objects, point cloud and visual odometry from one camera.

Subscribes to ``image`` (sensor_msgs/Image, or ``image/compressed`` with ``transport: compressed``) and
``camera_info``; publishes, with the input header: ``depth/image_rect`` (32FC1 metres, NaN invalid),
``depth/camera_info``, ``depth/colorized`` (bgr8), ``dynamic_mask`` (16UC1 instance ids), ``points``
(PointCloud2 xyz + rgb), ``odometry`` (nav_msgs/Odometry), ``dynamic_objects`` (mgdepth_msgs/DynamicObjectArray,
where built) and ``dynamic_objects/markers`` (MarkerArray). See docs/ros.md.

Frames arrive in subscription callbacks and go to a one-slot buffer; a worker thread runs the estimator on the
newest frame, so a slow model drops stale frames instead of queueing them. A bad message costs a warning, never
the node.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rclpy
import torch
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from mgdepth_core.config import to_dict
from mgdepth_core.dynamic import DynamicObjectsConfig, FrameInstances, resize_instances
from mgdepth_core.dynamic_tracking import DynamicObject, DynamicObjectTracker
from mgdepth_core.outputs import (
    OdometryAccumulator,
    UnsupportedEncodingError,
    bgr_image,
    colorize_depth,
    depth_camera_info,
    depth_image,
    intrinsics_valid,
    mask_image,
    summarise_objects,
)
from mgdepth_core.pointcloud import depth_to_points, pack_cloud
from mgdepth_ros import conversions
from mgdepth_ros.qos import AdaptiveSubscription, spin_until_shutdown

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # diagnostic_msgs is optional: statistics then go to the log only
    DiagnosticArray = None

CAMERA_INFO_WAIT_S = 0.2  # how long a frame waits for a camera_info of its frame_id that has not arrived yet

# name: (default, description). config/depth.yaml carries the same defaults; docs/ros.md lists them.
PARAMETERS: dict[str, tuple[object, str]] = {
    "weights": ("", "checkpoint file or directory (ours or the official Manydepth/Manydepth2 release); "
                    "empty = random init, useless depth, for plumbing tests only"),
    "method": ("manydepth2", "manydepth2 (motion-aware cost volume) or manydepth (the baseline)"),
    "device": ("cpu", "torch device: cpu, cuda, cuda:1, ..."),
    "depth_scale": (1.0, "metres per network depth unit (DepthEstimator): scales depth, cloud and odometry "
                         "translation (self-supervised monocular depth has no metric scale of its own)"),
    "transport": ("raw", "raw: sensor_msgs/Image on 'image'; compressed: CompressedImage on 'image/compressed'"),
    "input_reliability": ("auto", "auto: copy the image publisher's reliability (best effort until one is seen); "
                                  "reliable; best_effort"),
    "queue_depth": (1, "input subscription queue depth (the newest frame wins anyway)"),
    "max_gap_s": (0.5, "a larger gap between input stamps restarts the frame buffer (single-frame depth) "
                       "(DepthEstimator)"),
    "fallback_intrinsics": ([0.0, 0.0, 0.0, 0.0], "fx, fy, cx, cy in input pixels used when no camera_info has "
                                                  "arrived for the image's frame_id; zeros = skip such frames"),
    "publish_depth": (True, "publish depth/image_rect and depth/camera_info"),
    "publish_colorized": (True, "publish depth/colorized (bgr8, inverse depth on magma)"),
    "publish_mask": (True, "publish dynamic_mask (instance ids of truly dynamic objects)"),
    "publish_cloud": (True, "publish points (PointCloud2)"),
    "publish_odometry": (True, "publish odometry (camera motion chained from the pose network)"),
    "publish_objects": (True, "publish dynamic_objects (mgdepth_msgs, where built) and dynamic_objects/markers"),
    "mask_encoding": ("16UC1", "dynamic_mask encoding: 16UC1 or mono8"),
    "cloud_decimation": (2, "keep every n-th depth pixel in rows and columns for the point cloud"),
    "cloud_min_range": (0.1, "drop cloud points nearer than this, metres (along z)"),
    "cloud_max_range": (80.0, "drop cloud points farther than this, metres (along z)"),
    "cloud_colour": (True, "add the packed rgb field (RViz colour transformer RGB8)"),
    "colorize_min_depth": (0.0, "depth/colorized: nearest depth of the colour map, metres; 0 = per frame (5th "
                                "percentile)"),
    "colorize_max_depth": (0.0, "depth/colorized: farthest depth of the colour map, metres; 0 = per frame (95th "
                                "percentile)"),
    "odom_frame": ("odom", "frame_id of odometry; the child frame is the camera's optical frame (input frame_id)"),
    "marker_lifetime_s": (0.5, "lifetime of the dynamic-object markers, seconds"),
    "stats_period_s": (1.0, "period of the rate / drop / latency report (log and /diagnostics), seconds"),
    "warning_period_s": (5.0, "a repeated warning of one kind is logged at most once per this period, seconds"),
    "dynamic_objects": ("none", "Dyna-DM dynamic objects: none (off) or dyna-dm; true/false also accepted. Fills "
                                "dynamic_mask and dynamic_objects"),
    "instances_source": ("segmenter", "where instances come from: segmenter (Mask R-CNN in the node) or topic "
                                      "(16UC1/mono8 instance ids on 'instances', paired with the image by exact "
                                      "stamp)"),
    "segmenter_weights": ("", "Mask R-CNN COCO state dict; empty = the official file in the torch hub cache "
                              "(torch.hub.get_dir()/checkpoints); never downloaded"),
    "dynamic_theta": (0.9, "Dyna-DM theta: Sørensen–Dice of the ego-motion-warped mask below this = truly dynamic"),
    "dynamic_min_area_fraction": (0.0075, "objects covering less of the frame are ignored (0.75 %)"),
}
DYNAMIC_TYPED = {"dynamic_objects"}  # accepts a bool or a string
INSTANCES_WAIT_S = 0.2  # how long a frame waits for its instance map (instances_source topic) before going without
INSTANCES_KEPT = 30  # instance maps kept by stamp for frames still to come


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival


class DepthNode(Node):
    """The depth node. ``estimator``: a ready DepthEstimator (tests, demo, benchmark); None builds one from the
    ``weights``/``method``/``device`` parameters."""

    def __init__(self, estimator=None, node_name: str = "mgdepth_depth", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                      dynamic_typing=name in DYNAMIC_TYPED))
        self.p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.warning_counts: Counter[str] = Counter()
        self._warned_at: dict[str, float] = {}
        self.dynamic_config = self._dynamic_objects_config()
        self.estimator = estimator if estimator is not None else self._build_estimator()
        self._instances: dict[int, Image] = {}  # instance maps by stamp (ns), instances_source topic
        self._instances_lock = threading.Lock()
        self.instances_from_topic = self._set_up_dynamic_objects()

        self._camera_infos: dict[str, CameraInfo] = {}
        self._last_stamp_ns: int | None = None
        self._last_size: tuple[int, int] | None = None
        self.odometry = OdometryAccumulator()

        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_depth = self.create_publisher(Image, "depth/image_rect", output_qos)
        self.pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", output_qos)
        self.pub_colorized = self.create_publisher(Image, "depth/colorized", output_qos)
        self.pub_mask = self.create_publisher(Image, "dynamic_mask", output_qos)
        self.pub_cloud = self.create_publisher(PointCloud2, "points", output_qos)
        self.pub_odometry = self.create_publisher(Odometry, "odometry", output_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "dynamic_objects/markers", output_qos)
        self.pub_objects = None
        if conversions.HAVE_OBJECT_MESSAGES:
            self.pub_objects = self.create_publisher(conversions.DynamicObjectArray, "dynamic_objects", output_qos)
        else:
            self.get_logger().info("mgdepth_msgs is not built or not sourced: dynamic objects go out as "
                                   "MarkerArray on dynamic_objects/markers only (see docs/ros.md)")
        self.pub_diagnostics = (self.create_publisher(DiagnosticArray, "/diagnostics", 10)
                                if DiagnosticArray is not None else None)

        self._lock = threading.Condition()
        self._pending: _Frame | None = None
        self._last_received: tuple[str, int, int] | None = None
        self._stats: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # received, processed, dropped, gaps since start
        self._latencies_ms: list[float] = []
        self._inference_ms: list[float] = []
        self._stats_since = time.monotonic()

        if self.p["transport"] not in ("raw", "compressed"):
            raise ValueError(f"parameter transport must be raw or compressed, got {self.p['transport']!r}")
        image_type, image_topic = ((Image, "image") if self.p["transport"] == "raw"
                                   else (CompressedImage, self.resolve_topic_name("image") + "/compressed"))
        mode, depth = self.p["input_reliability"], int(self.p["queue_depth"])
        self.image_subscription = AdaptiveSubscription(self, image_type, image_topic, self._on_image, mode, depth)
        self.info_subscription = AdaptiveSubscription(self, CameraInfo, "camera_info", self._on_camera_info,
                                                      mode, 5)
        self.instances_subscription = (AdaptiveSubscription(self, Image, "instances", self._on_instances, mode, 5)
                                       if self.instances_from_topic else None)
        self.create_timer(0.5, self._refresh_subscriptions)
        self.create_timer(float(self.p["stats_period_s"]), self._report_stats)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="mgdepth_depth_worker", daemon=True)
        self._worker.start()

    # ---------------------------------------------------------------- set-up
    def _dynamic_objects_config(self) -> DynamicObjectsConfig | None:
        """The Dyna-DM settings from the parameters, or None when dynamic objects are off."""
        value = self.p["dynamic_objects"]
        mode = {True: "dyna-dm", False: "none"}.get(value, value) if isinstance(value, bool) else str(value).lower()
        if mode not in ("none", "dyna-dm"):
            raise ValueError(f"parameter dynamic_objects must be none, dyna-dm, true or false, got {value!r}")
        if self.p["instances_source"] not in ("segmenter", "topic"):
            raise ValueError(f"parameter instances_source must be segmenter or topic, got "
                             f"{self.p['instances_source']!r}")
        if mode == "none":
            return None
        return DynamicObjectsConfig(mode="dyna-dm", theta=float(self.p["dynamic_theta"]),
                                    min_area_fraction=float(self.p["dynamic_min_area_fraction"]),
                                    segmenter_weights=str(self.p["segmenter_weights"]))

    def _set_up_dynamic_objects(self) -> bool:
        """Give the estimator a Dyna-DM tracker where the parameters ask for one and it has none (an estimator
        handed in with its own tracker keeps it). Returns whether instance maps come from the ``instances`` topic.
        Missing Mask R-CNN weights are one clear error, and depth goes on without masks."""
        from mgdepth_core.models.instance_segmentation import default_weights_path

        if self.dynamic_config is None:
            return False
        config = self.dynamic_config
        from_topic = self.p["instances_source"] == "topic"
        if not from_topic:
            path = (Path(config.segmenter_weights) if config.segmenter_weights
                    else default_weights_path(config.segmenter))
            if not path.is_file():
                self.get_logger().error(
                    f"dynamic_objects is on but the Mask R-CNN weights are not at {path}: nothing is downloaded at "
                    f"run time. Put the official COCO file at {default_weights_path(config.segmenter)} (or pass its "
                    "path as segmenter_weights), or publish instance maps with instances_source:=topic. Publishing "
                    "depth WITHOUT dynamic masks")
                self.estimator.dynamic_objects = None
                return False
        if self.estimator.dynamic_objects is None:
            self.estimator.dynamic_objects = DynamicObjectTracker(config)
        self.get_logger().info(f"dynamic objects: Dyna-DM (theta {config.theta}, min area "
                               f"{config.min_area_fraction}), instances from "
                               f"{'the instances topic' if from_topic else 'Mask R-CNN'}")
        return from_topic

    def _build_estimator(self):
        from mgdepth_core.inference import DepthEstimator

        weights = self.p["weights"] or None
        if weights is None:
            self.get_logger().warning("NO WEIGHTS GIVEN (parameter 'weights'): the network is randomly "
                                      "initialised and its depth is meaningless")
        dynamic = {"dynamic_objects": to_dict(self.dynamic_config)} if self.dynamic_config is not None else {}
        estimator = DepthEstimator.from_weights(weights, method=self.p["method"], device=self.p["device"],
                                                depth_scale=float(self.p["depth_scale"]),
                                                max_gap_s=float(self.p["max_gap_s"]), **dynamic)
        self.get_logger().info(f"estimator: method {self.p['method']}, weights {weights or 'random init'}, "
                               f"device {self.p['device']}")
        return estimator

    def _refresh_subscriptions(self) -> None:
        self.image_subscription.refresh()
        self.info_subscription.refresh()
        if self.instances_subscription is not None:
            self.instances_subscription.refresh()

    def destroy_node(self) -> None:
        with self._lock:
            self._running = False
            self._lock.notify_all()
        self._worker.join(timeout=30.0)
        super().destroy_node()

    # ---------------------------------------------------------------- input
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos[msg.header.frame_id] = msg

    def _on_instances(self, msg: Image) -> None:
        with self._instances_lock:
            self._instances[header_stamp_ns(msg.header)] = msg
            while len(self._instances) > INSTANCES_KEPT:  # the oldest arrival goes (stamps may loop back)
                del self._instances[next(iter(self._instances))]

    def _frame_instances(self, stamp: int, height: int, width: int) -> tuple[FrameInstances, np.ndarray] | None:
        """This frame's instance map from the ``instances`` topic (exact stamp) as :func:`instances_from_ids`
        gives it, or None (warned) when it has not arrived within INSTANCES_WAIT_S or cannot be read."""
        deadline = time.monotonic() + INSTANCES_WAIT_S
        while True:
            with self._instances_lock:
                msg = self._instances.pop(stamp, None)
                for old in [s for s in self._instances if s < stamp]:  # maps of frames that were dropped
                    del self._instances[old]
            if msg is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if msg is None:
            self.warn("missing_instances", f"no instance map with stamp {stamp * 1e-9:.3f} s on "
                      f"{self.resolve_topic_name('instances')}: this frame goes without dynamic mask")
            return None
        if msg.encoding not in ("16UC1", "mono8"):
            self.warn("bad_instances", f"instance map encoding {msg.encoding!r} is not 16UC1 or mono8: this frame "
                      "goes without dynamic mask")
            return None
        if msg.height == 0 or msg.width == 0 or len(msg.data) < msg.step * msg.height:
            self.warn("bad_instances", f"instance map {msg.width}×{msg.height} with step {msg.step} holds only "
                      f"{len(msg.data)} bytes: this frame goes without dynamic mask")
            return None
        external = conversions.image_msg_to_array(msg).astype(np.int64)
        if external.shape != (height, width):
            self.warn("instances_size", f"instance map is {msg.width}×{msg.height} but the image is "
                      f"{width}×{height}: resizing it (nearest)")
        return instances_from_ids(external)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        key = (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            if key == self._last_received:  # the same frame through a second subscription (QoS switch)
                return
            self._last_received = key
            if self._pending is not None:
                self._count("dropped")
            self._pending = _Frame(msg, time.monotonic())
            self._count("received")
            self._lock.notify()

    def _count(self, key: str) -> None:
        self._stats[key] += 1
        self.totals[key] += 1

    def warn(self, kind: str, text: str) -> None:
        """Count a warning of ``kind`` and log it, at most once per ``warning_period_s`` for each kind."""
        self.warning_counts[kind] += 1
        now = time.monotonic()
        if now - self._warned_at.get(kind, -np.inf) >= float(self.p["warning_period_s"]):
            self._warned_at[kind] = now
            self.get_logger().warning(f"[{kind}, {self.warning_counts[kind]} so far] {text}")

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and self._running:
                    self._lock.wait()
                if not self._running:
                    return
                frame, self._pending = self._pending, None
            try:
                self._process(frame)
            except Exception as error:  # one bad frame must not take the node down
                stamp = frame.msg.header.stamp
                self.warn("processing_failed", f"frame at {stamp.sec}.{stamp.nanosec:09d} s failed: "
                          f"{type(error).__name__}: {error}")

    def _intrinsics(self, header: Header, height: int, width: int) -> np.ndarray | None:
        """K in input pixels from the cached camera_info of ``header.frame_id`` (scaled where the camera_info
        describes another resolution), or the fallback_intrinsics parameter, or None (warned)."""
        info = self._camera_infos.get(header.frame_id)
        deadline = time.monotonic() + CAMERA_INFO_WAIT_S
        while info is None and time.monotonic() < deadline:  # camera_info may arrive just after its image
            time.sleep(0.01)
            info = self._camera_infos.get(header.frame_id)
        if info is None:
            fx, fy, cx, cy = (float(v) for v in self.p["fallback_intrinsics"])
            if fx > 0 and fy > 0:
                return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            known = ", ".join(repr(k) for k in self._camera_infos) or "none yet"
            self.warn("missing_camera_info", f"no camera_info for frame_id {header.frame_id!r} (have: {known}); "
                      "skipping the frame (set fallback_intrinsics to use fixed intrinsics)")
            return None
        K = conversions.camera_info_intrinsics(info)
        if not intrinsics_valid(K):
            self.warn("bad_camera_info", f"camera_info of {header.frame_id!r} has invalid K {info.k.tolist()}; "
                      "skipping the frame")
            return None
        if info.width and info.height and (info.width, info.height) != (width, height):
            self.warn("camera_info_size", f"camera_info is {info.width}×{info.height} but the image is "
                      f"{width}×{height}: scaling K")
            K = K.copy()
            K[0] *= width / info.width
            K[1] *= height / info.height
        return K

    # ---------------------------------------------------------------- processing
    def _process(self, frame: _Frame) -> None:
        msg = frame.msg
        header = msg.header
        try:
            rgb = (conversions.image_to_rgb(msg) if isinstance(msg, Image) else conversions.compressed_to_rgb(msg))
        except (UnsupportedEncodingError, ValueError) as error:
            self.warn("bad_image", f"{error}; skipping the frame")
            return
        height, width = rgb.shape[:2]
        K = self._intrinsics(header, height, width)
        if K is None:
            return
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        dt = 0.0
        if self._last_size is not None and self._last_size != (height, width):
            self.warn("size_change", f"image size changed from {self._last_size[1]}×{self._last_size[0]} to "
                      f"{width}×{height}: restarting the frame buffer")
            self.estimator.reset()
        if self._last_stamp_ns is not None:
            dt = (stamp_ns - self._last_stamp_ns) * 1e-9
            if dt <= 0:
                self.warn("stamp_backwards", f"stamp went from {self._last_stamp_ns * 1e-9:.3f} to "
                          f"{stamp_ns * 1e-9:.3f} s (bag loop or clock reset): restarting the frame buffer and "
                          "odometry")
                self.estimator.reset()
                self.odometry.reset()
            elif dt > float(self.p["max_gap_s"]):
                self._count("gaps")
                self.estimator.reset()
        self._last_size, self._last_stamp_ns = (height, width), stamp_ns

        given, masks_known = None, True
        if self.instances_from_topic:
            given = self._frame_instances(stamp_ns, height, width)
            if given is None:  # no masks for this frame; the tracker sees an empty frame instead of the segmenter
                given, masks_known = instances_from_ids(np.zeros((height, width), np.int64)), False
        started = time.monotonic()
        result = self.estimator.process(rgb, K, stamp_ns * 1e-9, instances=given[0] if given else None)
        self._inference_ms.append((time.monotonic() - started) * 1e3)
        if not masks_known:
            result.dynamic_mask, result.objects = None, []
        elif given is not None and result.dynamic_mask is not None:
            result.dynamic_mask, result.objects = external_ids(result.dynamic_mask, result.objects, *given)
        self._publish(result, header, dt)
        with self._lock:
            self._count("processed")
            self._latencies_ms.append((time.monotonic() - frame.received) * 1e3)

    def _publish(self, result, header: Header, dt: float) -> None:
        depth = result.depth.astype(np.float32)
        if not np.isfinite(depth).any():
            self.warn("invalid_depth", "the estimator returned no finite depth for this frame")
        height, width = depth.shape
        if self.p["publish_depth"]:
            self.pub_depth.publish(conversions.image_msg(depth_image(depth), header))
            self.pub_depth_info.publish(conversions.camera_info_msg(depth_camera_info(result.K, height, width),
                                                                    header))
        if self.p["publish_colorized"]:
            bgr = colorize_depth(depth, float(self.p["colorize_min_depth"]), float(self.p["colorize_max_depth"]))
            self.pub_colorized.publish(conversions.image_msg(bgr_image(bgr), header))
        if self.p["publish_mask"] and result.dynamic_mask is not None:
            self.pub_mask.publish(conversions.image_msg(mask_image(result.dynamic_mask, self.p["mask_encoding"]),
                                                        header))
        if self.p["publish_cloud"]:
            points = depth_to_points(depth, result.K, result.image if self.p["cloud_colour"] else None,
                                     int(self.p["cloud_decimation"]), float(self.p["cloud_min_range"]),
                                     float(self.p["cloud_max_range"]))
            self.pub_cloud.publish(conversions.cloud_msg(pack_cloud(points), header))
        if self.p["publish_odometry"]:
            try:
                state = self.odometry.update(result.T_prev_current, dt)
            except ValueError as error:
                self.warn("bad_pose", f"{error}; odometry keeps its last pose")
                state = self.odometry.update(None, dt)
            self.pub_odometry.publish(conversions.odometry_msg(state, header, self.p["odom_frame"],
                                                               header.frame_id))
        if self.p["publish_objects"]:
            summaries = summarise_objects(result.objects, result.dynamic_mask, depth, result.K)
            if self.pub_objects is not None:
                self.pub_objects.publish(conversions.objects_msg(summaries, header))
            self.pub_markers.publish(conversions.markers_msg(summaries, header, float(self.p["marker_lifetime_s"])))

    # ---------------------------------------------------------------- statistics
    def _report_stats(self) -> None:
        now = time.monotonic()
        period = max(now - self._stats_since, 1e-9)
        with self._lock:
            stats, latencies, inference = self._stats.copy(), self._latencies_ms, self._inference_ms
            self._stats, self._latencies_ms, self._inference_ms, self._stats_since = Counter(), [], [], now
        rate_in, rate_out = stats["received"] / period, stats["processed"] / period
        latency = f"{np.mean(latencies):.0f} ms (max {np.max(latencies):.0f})" if latencies else "n/a"
        infer = f"{np.mean(inference):.0f} ms" if inference else "n/a"
        if stats["received"] or stats["processed"]:
            warnings = sum(self.warning_counts.values())
            self.get_logger().info(f"in {rate_in:.1f} Hz, out {rate_out:.1f} Hz, dropped {stats['dropped']}, "
                                   f"latency {latency}, inference {infer}, warnings {warnings}")
        if self.pub_diagnostics is not None:
            level = DiagnosticStatus.OK if stats["processed"] or not stats["received"] else DiagnosticStatus.WARN
            values = {"input_rate_hz": f"{rate_in:.2f}", "output_rate_hz": f"{rate_out:.2f}",
                      "dropped": str(stats["dropped"]), "gaps": str(stats["gaps"]), "latency_ms": latency,
                      "inference_ms": infer, **{f"warnings_{k}": str(v) for k, v in self.warning_counts.items()}}
            status = DiagnosticStatus(level=level, name=f"{self.get_name()}: depth", hardware_id="mgdepth",
                                      message="processing" if stats["processed"] else "waiting for frames",
                                      values=[KeyValue(key=k, value=v) for k, v in values.items()])
            array = DiagnosticArray(status=[status])
            array.header.stamp = self.get_clock().now().to_msg()
            self.pub_diagnostics.publish(array)


def header_stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def instances_from_ids(external: np.ndarray) -> tuple[FrameInstances, np.ndarray]:
    """An external H×W instance id map (0 = background) → (FrameInstances with compact ids 1..n, class 0 =
    unknown, score 1; (n+1,) original id of each compact id). Compact ids keep the filter's one-hot masks small
    whatever the external ids are."""
    values, compact = np.unique(external, return_inverse=True)
    if values[0] != 0:  # no background pixel: compact ids still start at 1
        values, compact = np.concatenate([[0], values]), compact + 1
    count = len(values) - 1
    instances = FrameInstances(ids=compact.reshape(external.shape), classes=np.zeros(count + 1, np.int64),
                               scores=np.ones(count + 1, np.float32))
    return instances, values


def external_ids(mask: np.ndarray, objects: list[DynamicObject], instances: FrameInstances,
                 original_ids: np.ndarray) -> tuple[np.ndarray, list[DynamicObject]]:
    """Replace the tracker's ids in ``mask`` (H×W uint16) and ``objects`` by the ids of the external instance map
    (``original_ids`` from :func:`instances_from_ids`), so that dynamic_mask carries the ids the instances topic
    published."""
    compact = resize_instances(torch.from_numpy(instances.ids)[None, None], mask.shape)[0, 0].numpy()
    original = original_ids[compact].astype(np.uint16)
    out = np.where(mask > 0, original, 0).astype(np.uint16)
    renamed = []
    for obj in objects:
        pixels = original[mask == obj.instance_id]
        instance_id = int(np.bincount(pixels).argmax()) if pixels.size else obj.instance_id
        renamed.append(replace(obj, instance_id=instance_id, class_name="object" if obj.class_id == 0
                               else obj.class_name))
    return out, renamed


def main(args: list[str] | None = None) -> None:
    """Console script ``depth_node`` (``ros2 run mgdepth_ros depth_node``)."""
    rclpy.init(args=args)
    node = None
    try:
        node = DepthNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until_shutdown(executor, node.context)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
