"""What the plain and the managed depth node share: input, the frame buffer and its worker, processing, statistics.

Frames arrive in subscription callbacks and go to a one-slot buffer; a worker thread runs the estimator on the
newest frame, so a slow model drops stale frames instead of queueing them. A bad message costs a warning, never
the node. Every image is counted once in :attr:`DepthProcessing.totals` (and on /diagnostics): received, then
processed, dropped (replaced in the buffer), skipped (unusable, warned) or failed; lost (replaced in the
subscription's queue before the node took it: a gap in the publisher's sequence numbers); or a duplicate.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rclpy
import torch
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from mgdepth_core.dynamic import FrameInstances, resize_instances
from mgdepth_core.dynamic_tracking import DynamicObject, DynamicObjectTracker
from mgdepth_core.inference import MIN_IMAGE_SIZE
from mgdepth_core.outputs import OdometryAccumulator, OdometryState, UnsupportedEncodingError, intrinsics_valid
from mgdepth_core.scale import PositionHistory
from mgdepth_ros import conversions
from mgdepth_ros.depth_parameters import (
    change_error,
    declare_parameters,
    dynamic_objects_config,
    estimator_from_parameters,
    read_parameters,
)
from mgdepth_ros.depth_publishing import DepthPublishers
from mgdepth_ros.qos import AdaptiveSubscription, spin_until_shutdown

CAMERA_INFO_WAIT_S = 0.2  # how long a frame waits for a camera_info of its frame_id that has not arrived yet
INSTANCES_WAIT_S = 0.2  # how long a frame waits for its instance map (instances_source topic) before going without
INSTANCES_KEPT = 30  # instance maps kept by stamp for frames still to come
CAMERA_INFOS_KEPT = 32  # camera_infos kept, the newest of each frame_id (a stream of new frame_ids cannot grow it)
TOTALS = ("received", "processed", "dropped", "skipped", "failed", "lost", "duplicates", "gaps")


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival


class DepthProcessing:
    """The depth node's work, mixed into an rclpy Node (:class:`~mgdepth_ros.depth_node.DepthNode`) or LifecycleNode
    (:class:`~mgdepth_ros.depth_lifecycle_node.DepthLifecycleNode`). The node calls :meth:`_init_depth` once, then
    :meth:`_configure_depth` (estimator, publishers), :meth:`_start_depth` (subscriptions, worker),
    :meth:`_stop_depth` and :meth:`_release_depth`; configure and start may follow stop and release again, and stop
    and release do nothing where there is nothing to stop or release."""

    # ---------------------------------------------------------------- steps
    def _init_depth(self) -> None:
        """Declare the parameters; counters and locks that live as long as the node."""
        declare_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.p: dict[str, object] = {}
        self.dynamic_config = None
        self.estimator = None
        self.outputs: DepthPublishers | None = None
        self.instances_from_topic = False
        self.image_subscription: AdaptiveSubscription | None = None
        self.info_subscription: AdaptiveSubscription | None = None
        self.instances_subscription: AdaptiveSubscription | None = None
        self.odometry_subscription: AdaptiveSubscription | None = None
        self._refresh_timer = self._stats_timer = None
        self._worker: threading.Thread | None = None
        self._running = False
        self.warning_counts: Counter[str] = Counter()
        self._warned_at: dict[str, float] = {}
        self._lock = threading.Condition()
        self._pending: _Frame | None = None
        self._last_received: tuple[str, int, int] | None = None
        self._last_sequence: int | None = None  # publication sequence number of the last image message
        self._instances: dict[int, Image] = {}  # instance maps by stamp (ns), instances_source topic
        self._instances_lock = threading.Lock()
        self._odometry_lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # TOTALS since start
        self._latencies_ms: list[float] = []
        self._inference_ms: list[float] = []
        self._stats_since = time.monotonic()

    def _configure_depth(self, estimator=None) -> None:
        """Read and check the parameters, build the estimator (``estimator``: a ready DepthEstimator instead) and
        the publishers. A bad parameter or weights that do not load raise."""
        self.p = read_parameters(self)
        self.dynamic_config = dynamic_objects_config(self.p)
        self.estimator = (estimator if estimator is not None
                          else estimator_from_parameters(self.p, self.dynamic_config, self.get_logger()))
        self.instances_from_topic = self._set_up_dynamic_objects()
        self._camera_infos: dict[str, CameraInfo] = {}
        self._last_stamp_ns: int | None = None
        self._last_size: tuple[int, int] | None = None
        self.odometry = OdometryAccumulator()
        self.odometry_in = PositionHistory()  # external odometry positions (scale_source odometry)
        self.scale: tuple[float, str] = (float(self.p["depth_scale"]), "fixed")  # of the last processed frame
        self.outputs = DepthPublishers(self, self.p)
        self._stats_timer = self.create_timer(float(self.p["stats_period_s"]), self._report_stats)

    def _start_depth(self) -> None:
        """Start the worker and subscribe to the inputs."""
        with self._lock:
            self._pending, self._running = None, True
        self._worker = threading.Thread(target=self._work, name="mgdepth_depth_worker", daemon=True)
        self._worker.start()
        image_type, image_topic = ((Image, "image") if self.p["transport"] == "raw"
                                   else (CompressedImage, self.resolve_topic_name("image") + "/compressed"))
        mode, depth = self.p["input_reliability"], int(self.p["queue_depth"])
        self.image_subscription = AdaptiveSubscription(self, image_type, image_topic, self._on_image, mode, depth)
        self.info_subscription = AdaptiveSubscription(self, CameraInfo, "camera_info", self._on_camera_info,
                                                      mode, 5)
        self.instances_subscription = (AdaptiveSubscription(self, Image, "instances", self._on_instances, mode, 5)
                                       if self.instances_from_topic else None)
        self.odometry_subscription = (AdaptiveSubscription(self, Odometry, "odometry_in", self._on_odometry, mode, 50)
                                      if self.p["scale_source"] == "odometry" else None)
        self._refresh_timer = self.create_timer(0.5, self._refresh_subscriptions)

    def _stop_depth(self) -> None:
        """Drop the subscriptions and the waiting frame; the worker ends once its frame (if any) is published.
        The estimator stays."""
        for subscription in self._input_subscriptions():
            subscription.close()
        self.image_subscription = self.info_subscription = self.instances_subscription = None
        self.odometry_subscription = None
        if self._refresh_timer is not None:
            self.destroy_timer(self._refresh_timer)
            self._refresh_timer = None
        with self._lock:
            self._pending, self._running = None, False
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _release_depth(self) -> None:
        """Destroy the publishers and the statistics timer and free the estimator (and the GPU memory it held)."""
        if self._stats_timer is not None:
            self.destroy_timer(self._stats_timer)
            self._stats_timer = None
        if self.outputs is not None:
            self.outputs.destroy()
            self.outputs = None
        self.estimator = None
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def destroy_node(self) -> None:
        self._stop_depth()
        self._release_depth()
        super().destroy_node()

    # ---------------------------------------------------------------- set-up
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

    def _input_subscriptions(self) -> list[AdaptiveSubscription]:
        return [subscription for subscription in (self.image_subscription, self.info_subscription,
                                                  self.instances_subscription, self.odometry_subscription)
                if subscription is not None]

    def _refresh_subscriptions(self) -> None:
        for subscription in self._input_subscriptions():
            subscription.refresh()

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """A parameter change while the node runs: refused with the reason for a bad value or a parameter read only
        at start; an output setting (depth_parameters.LIVE) applies from the next frame."""
        running = self.estimator is not None
        for parameter in parameters:
            reason = change_error(parameter.name, parameter.value, running)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for parameter in parameters:
            if parameter.name in self.p:
                self.p[parameter.name] = parameter.value  # the publishers share this dict
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- input
    def _on_camera_info(self, msg: CameraInfo) -> None:
        infos = self._camera_infos
        infos.pop(msg.header.frame_id, None)  # the newest goes last, the oldest frame_id first out
        infos[msg.header.frame_id] = msg
        while len(infos) > CAMERA_INFOS_KEPT:
            infos.pop(next(iter(infos)), None)

    def _on_odometry(self, msg: Odometry) -> None:
        position = msg.pose.pose.position
        with self._odometry_lock:
            self.odometry_in.add(header_stamp_ns(msg.header) * 1e-9, np.array([position.x, position.y, position.z]))

    def _measured_translation(self, stamp_ns: int) -> float | None:
        """Metres the external odometry moved between the previous processed frame and this one, or None."""
        if self.p["scale_source"] != "odometry" or self._last_stamp_ns is None:
            return None
        with self._odometry_lock:
            now, before = self.odometry_in.at(stamp_ns * 1e-9), self.odometry_in.at(self._last_stamp_ns * 1e-9)
        if now is None or before is None:
            self.warn("missing_odometry_in", f"no odometry on {self.resolve_topic_name('odometry_in')} around "
                      f"{stamp_ns * 1e-9:.3f} s: the scale stays as it was (depth_scale before the first match)")
            return None
        return float(np.linalg.norm(now - before))

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

    def _on_image(self, msg: Image | CompressedImage, info: dict) -> None:
        """``info``: the rmw message info, whose publication sequence number shows the frames lost before this
        callback (assuming one publisher; a lower number starts over: a restarted publisher)."""
        key = (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec)
        sequence = int(info.get("publication_sequence_number", 0))
        with self._lock:
            if 0 < sequence < 2 ** 63:  # the rmw reports it (UINT64_MAX where it cannot)
                if self._last_sequence is not None and sequence > self._last_sequence + 1:
                    self._count("lost", sequence - self._last_sequence - 1)
                if key != self._last_received or self._last_sequence is None or sequence > self._last_sequence:
                    self._last_sequence = sequence
            if key == self._last_received:  # the same frame again: repeated, or through a second subscription
                self._count("duplicates")
                return
            self._last_received = key
            if self._pending is not None:
                self._count("dropped")
            self._pending = _Frame(msg, time.monotonic())
            self._count("received")
            self._lock.notify()

    def _count(self, key: str, count: int = 1) -> None:
        self._stats[key] += count
        self.totals[key] += count

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
                outcome = "processed" if self._process(frame) else "skipped"
            except Exception as error:  # one bad frame must not take the node down
                outcome = "failed"
                stamp = frame.msg.header.stamp
                self.warn("processing_failed", f"frame at {stamp.sec}.{stamp.nanosec:09d} s failed: "
                          f"{type(error).__name__}: {error}")
            with self._lock:
                self._count(outcome)
                if outcome == "processed":
                    self._latencies_ms.append((time.monotonic() - frame.received) * 1e3)

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
            known = ", ".join(repr(k) for k in list(self._camera_infos)) or "none yet"
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
    def _process(self, frame: _Frame) -> bool:
        """Depth and the other outputs of one frame; False where the frame is unusable (warned)."""
        msg = frame.msg
        header = msg.header
        try:
            rgb = (conversions.image_to_rgb(msg) if isinstance(msg, Image) else conversions.compressed_to_rgb(msg))
        except (UnsupportedEncodingError, ValueError) as error:
            self.warn("bad_image", f"{error}; skipping the frame")
            return False
        height, width = rgb.shape[:2]
        if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
            self.warn("bad_image", f"image {width}×{height} is smaller than {MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE}; "
                      "skipping the frame")
            return False
        K = self._intrinsics(header, height, width)
        if K is None:
            return False
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        measured_translation = self._measured_translation(stamp_ns)
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
        scale_input = {} if measured_translation is None else {"measured_translation": measured_translation}
        result = self.estimator.process(rgb, K, stamp_ns * 1e-9, instances=given[0] if given else None,
                                        **scale_input)
        self.scale = (result.scale, result.scale_source)
        self._inference_ms.append((time.monotonic() - started) * 1e3)
        if not masks_known:
            result.dynamic_mask, result.objects = None, []
        elif given is not None and result.dynamic_mask is not None:
            result.dynamic_mask, result.objects = external_ids(result.dynamic_mask, result.objects, *given)
        if not np.isfinite(result.depth).any():
            self.warn("invalid_depth", "the estimator returned no finite depth for this frame")
        self.outputs.publish(result, header, self._odometry(result, dt) if self.p["publish_odometry"] else None)
        return True

    def _odometry(self, result, dt: float) -> OdometryState:
        """The camera pose chained with this frame's motion (kept where the pose is unusable, warned)."""
        try:
            return self.odometry.update(result.T_prev_current, dt)
        except ValueError as error:
            self.warn("bad_pose", f"{error}; odometry keeps its last pose")
            return self.odometry.update(None, dt)

    # ---------------------------------------------------------------- statistics
    def _report_stats(self) -> None:
        now = time.monotonic()
        period = max(now - self._stats_since, 1e-9)
        with self._lock:
            stats, latencies, inference = self._stats.copy(), self._latencies_ms, self._inference_ms
            totals = {f"total_{key}": str(self.totals[key]) for key in TOTALS}
            self._stats, self._latencies_ms, self._inference_ms, self._stats_since = Counter(), [], [], now
        rate_in, rate_out = stats["received"] / period, stats["processed"] / period
        latency = f"{np.mean(latencies):.0f} ms (max {np.max(latencies):.0f})" if latencies else "n/a"
        infer = f"{np.mean(inference):.0f} ms" if inference else "n/a"
        if stats["received"] or stats["processed"]:
            warnings = sum(self.warning_counts.values())
            self.get_logger().info(f"in {rate_in:.1f} Hz, out {rate_out:.1f} Hz, dropped {stats['dropped']}, "
                                   f"lost {stats['lost']}, "
                                   f"latency {latency}, inference {infer}, warnings {warnings}")
        values = {"input_rate_hz": f"{rate_in:.2f}", "output_rate_hz": f"{rate_out:.2f}",
                  "dropped": str(stats["dropped"]), "lost": str(stats["lost"]), "gaps": str(stats["gaps"]),
                  "latency_ms": latency,
                  "inference_ms": infer, "scale": f"{self.scale[0]:.4g}", "scale_source": self.scale[1],
                  **totals, **{f"warnings_{k}": str(v) for k, v in self.warning_counts.items()}}
        self.outputs.publish_diagnostics(f"{self.get_name()}: depth", bool(stats["processed"] or not stats["received"]),
                                         "processing" if stats["processed"] else "waiting for frames", values,
                                         self.get_clock().now().to_msg())


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



def run(node_type: Callable[[], Node], args: list[str] | None = None) -> None:
    """Spin a ``node_type()`` until Ctrl-C or shutdown, then destroy it (the console scripts)."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_type()
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
