"""Drive the depth node from Python: publish frames with camera_info, collect every output by stamp.

Used by ``python -m mgdepth_ros.demo``, ``bench/bench_node.py`` and the tests. All nodes of a session share one
rclpy context and one executor spinning in a background thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from mgdepth_core.outputs import mask_image, rgb_image
from mgdepth_ros import conversions
from mgdepth_ros.qos import spin_until_shutdown

OUTPUT_TOPICS: dict[str, type] = {
    "depth/image_rect": Image,
    "depth/camera_info": CameraInfo,
    "depth/colorized": Image,
    "dynamic_mask": Image,
    "points": PointCloud2,
    "odometry": Odometry,
    "dynamic_objects/markers": MarkerArray,
}
if conversions.HAVE_OBJECT_MESSAGES:
    OUTPUT_TOPICS["dynamic_objects"] = conversions.DynamicObjectArray


# Outputs not published for every frame (none for single-frame depth): not among OUTPUT_TOPICS, which tests wait for
OCCASIONAL_TOPICS: dict[str, type] = {"static_reference": Image}


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class FramePlayer(Node):
    """Publishes RGB frames on ``image`` (or ``image/compressed``) and their CameraInfo on ``camera_info``."""

    def __init__(self, context: Context, reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE,
                 name: str = "mgdepth_frame_player", namespace: str | None = None) -> None:
        super().__init__(name, context=context, namespace=namespace)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=reliability)
        self.pub_image = self.create_publisher(Image, "image", qos)
        self.pub_compressed = self.create_publisher(CompressedImage, "image/compressed", qos)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos)
        self.pub_instances = self.create_publisher(Image, "instances", qos)

    def publish_frame(self, rgb: np.ndarray | None, K: np.ndarray | None, stamp: int, frame_id: str = "camera_optical",
                      image: Image | None = None, compressed: bytes | None = None) -> None:
        """Publish camera_info (unless ``K`` is None), then the image: ``rgb`` as rgb8, a prepared ``image``
        message, or ``compressed`` JPEG/PNG bytes. ``stamp``: nanoseconds."""
        header = make_header(stamp, frame_id)
        if K is not None:
            height, width = rgb.shape[:2] if rgb is not None else (image.height, image.width)
            self.publish_camera_info(K, width, height, stamp, frame_id)
        if compressed is not None:
            msg = CompressedImage(header=header, format="png")
            msg.data = compressed
            self.pub_compressed.publish(msg)
        elif image is not None:
            image.header = header
            self.pub_image.publish(image)
        else:
            self.pub_image.publish(conversions.image_msg(rgb_image(rgb), header))

    def publish_instances(self, ids: np.ndarray, stamp: int, frame_id: str = "camera_optical") -> None:
        """An H×W instance id map (0 = background, ids < 65536) as 16UC1 on ``instances``. ``stamp``: ns."""
        self.pub_instances.publish(self.instances_msg(ids, stamp, frame_id))

    @staticmethod
    def instances_msg(ids: np.ndarray, stamp: int, frame_id: str) -> Image:
        """The 16UC1 Image of an H×W instance id map."""
        return conversions.image_msg(mask_image(ids), make_header(stamp, frame_id))

    def publish_camera_info(self, K: np.ndarray, width: int, height: int, stamp: int, frame_id: str) -> None:
        """CameraInfo with intrinsics ``K`` (pixels of a width×height image), no distortion."""
        self.pub_info.publish(CameraInfo(
            header=make_header(stamp, frame_id), height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5,
            k=np.asarray(K, float).ravel().tolist(), r=np.eye(3).ravel().tolist(),
            p=np.concatenate([K, np.zeros((3, 1))], axis=1).ravel().tolist()))


def make_header(stamp: int, frame_id: str):
    """std_msgs/Header with ``stamp`` (ns) and ``frame_id``."""
    header = conversions.Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp), 1_000_000_000)
    return header


class OutputCollector(Node):
    """Subscribes (reliable) to every output of the depth node and keeps the messages by topic and stamp."""

    def __init__(self, context: Context, name: str = "mgdepth_output_collector",
                 topics: list[str] | None = None) -> None:
        """``topics``: the outputs to subscribe to (default every one)."""
        super().__init__(name, context=context)
        self.messages: dict[str, dict[int, object]] = defaultdict(dict)
        self.arrival: dict[str, dict[int, float]] = defaultdict(dict)
        self._condition = threading.Condition()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg_type in {**OUTPUT_TOPICS, **OCCASIONAL_TOPICS}.items():
            if topics is not None and topic not in topics:
                continue
            self.create_subscription(msg_type, topic, lambda msg, topic=topic: self._store(topic, msg), qos)

    def _store(self, topic: str, msg) -> None:
        header = msg.markers[0].header if isinstance(msg, MarkerArray) else msg.header
        with self._condition:
            self.messages[topic][stamp_ns(header)] = msg
            self.arrival[topic][stamp_ns(header)] = time.monotonic()
            self._condition.notify_all()

    def wait_for(self, topic: str, stamp: int, timeout: float = 30.0):
        """The message on ``topic`` with header stamp ``stamp`` (ns), or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while stamp not in self.messages[topic]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
            return self.messages[topic][stamp]

    def wait_for_all(self, topics: list[str], stamp: int, timeout: float = 30.0) -> dict:
        """``{topic: message}`` for every topic (None where it did not arrive in time)."""
        deadline = time.monotonic() + timeout
        return {topic: self.wait_for(topic, stamp, max(deadline - time.monotonic(), 0.0)) for topic in topics}


class RosSession:
    """A private rclpy context with a multi-threaded executor spinning in a thread. Use as a context manager."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = threading.Event()
        self._nodes: list[Node] = []

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException):
            spin_until_shutdown(self.executor, self.context, self._stop)

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        self._nodes.append(node)
        if not self._thread.is_alive():
            self._thread.start()
        return node

    def close(self) -> None:
        """Stop spinning first, then destroy the nodes (the depth node joins its worker), then the context."""
        self._stop.set()
        self.executor.shutdown(timeout_sec=10.0)
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        for node in reversed(self._nodes):
            node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until(predicate, timeout: float = 10.0, period: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(period)
    return True



class RecordingEstimator:
    """A DepthEstimator that keeps the wall time of each ``process`` call in ``process_ms``: every other attribute
    is the wrapped estimator's (read and written through)."""

    _OWN = ("estimator", "process_ms")

    def __init__(self, estimator) -> None:
        object.__setattr__(self, "estimator", estimator)
        object.__setattr__(self, "process_ms", [])

    def __getattr__(self, name: str):
        return getattr(self.estimator, name)

    def __setattr__(self, name: str, value) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.estimator, name, value)

    def process(self, image, K, stamp=None, **options):
        started = time.perf_counter()
        result = self.estimator.process(image, K, stamp, **options)
        self.process_ms.append((time.perf_counter() - started) * 1e3)
        return result


def build_estimator(weights: str | Path | None, method: str, device: str = "cpu", height: int | None = None,
                    width: int | None = None, **config):
    """A :class:`~mgdepth_core.inference.DepthEstimator` (None weights = random init at height×width)."""
    from mgdepth_core.inference import DepthEstimator

    size = {"height": height, "width": width} if height and width else {}
    return DepthEstimator.from_weights(weights, method=method, device=device, **size, **config)


def small_estimator(method: str = "manydepth"):
    """The real estimator, randomly initialised (ResNet-18) at 64×192: fast enough for tests on a CPU."""
    return build_estimator(None, method, "cpu", height=64, width=192)
