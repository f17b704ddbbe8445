"""Input QoS that matches the publisher: why and how.

A best-effort subscriber (the sensor-data profile) to a *reliable* camera publisher in another process can receive
nothing at all for camera-sized images with Fast DDS (measured: 0 of 50 frames of 1242×375 rgb8 at 10 Hz), while a
reliable subscriber receives all of them; a reliable subscriber to a best-effort publisher is incompatible and
receives nothing either. So in ``auto`` mode the subscription copies the reliability of the publishers it
discovers (as image_pipeline does), starts best-effort (sensor data) while there is none, and is re-created when
the publishers' reliability changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy._rclpy_pybind11 import InvalidHandle, RCLError
from rclpy.context import Context
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

RELIABILITY_MODES = ("auto", "reliable", "best_effort")
RETIRE_GRACE_S = 1.0  # how long a replaced subscription keeps receiving


def publishers_reliability(node: Node, topic: str) -> ReliabilityPolicy | None:
    """The reliability a subscriber to ``topic`` should use: BEST_EFFORT where any publisher is best-effort
    (a reliable subscriber would be incompatible), RELIABLE where all are reliable, None where there is none."""
    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None
    if any(info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for info in infos):
        return ReliabilityPolicy.BEST_EFFORT
    return ReliabilityPolicy.RELIABLE


def input_profile(reliability: ReliabilityPolicy, depth: int) -> QoSProfile:
    """KEEP_LAST ``depth``, volatile, with the given reliability."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=qos_profile_sensor_data.durability)


class AdaptiveSubscription:
    """A subscription whose reliability follows ``mode`` (auto | reliable | best_effort); call :meth:`refresh`
    periodically (the node does, twice a second) so that ``auto`` follows the publishers."""

    def __init__(self, node: Node, msg_type: type, topic: str, callback: Callable, mode: str, depth: int) -> None:
        if mode not in RELIABILITY_MODES:
            raise ValueError(f"input reliability must be one of {RELIABILITY_MODES}, got {mode!r}")
        self.node, self.msg_type, self.callback, self.mode, self.depth = node, msg_type, callback, mode, depth
        self.topic = node.resolve_topic_name(topic)
        self.subscription = None
        self.reliability: ReliabilityPolicy | None = None
        self._retired: list[tuple[object, float]] = []  # replaced subscriptions, kept alive for a grace period
        self.refresh()

    def wanted_reliability(self) -> ReliabilityPolicy:
        if self.mode == "reliable":
            return ReliabilityPolicy.RELIABLE
        if self.mode == "best_effort":
            return ReliabilityPolicy.BEST_EFFORT
        discovered = publishers_reliability(self.node, self.topic)
        if discovered is None:  # nobody publishes yet: keep what we have, start with the sensor-data profile
            return self.reliability or qos_profile_sensor_data.reliability
        return discovered

    def refresh(self) -> None:
        now = time.monotonic()
        for subscription, retired_at in list(self._retired):
            if now - retired_at >= RETIRE_GRACE_S:
                self.node.destroy_subscription(subscription)
                self._retired.remove((subscription, retired_at))
        wanted = self.wanted_reliability()
        if wanted == self.reliability and self.subscription is not None:
            return
        if self.subscription is not None:
            # The new subscription needs a moment to be matched: the old one keeps receiving until then (the
            # node drops the duplicates by stamp), so switching loses no frame.
            self._retired.append((self.subscription, now))
        self.subscription = self.node.create_subscription(self.msg_type, self.topic, self.callback,
                                                          input_profile(wanted, self.depth))
        self.reliability = wanted
        self.node.get_logger().info(f"subscribed to {self.topic} ({self.msg_type.__name__}, "
                                    f"{wanted.name.lower()}, depth {self.depth}, mode {self.mode})")

    def close(self) -> None:
        """Destroy the subscription and any retired one: nothing more is received."""
        for subscription in [self.subscription, *(retired for retired, _ in self._retired)]:
            if subscription is not None:
                self.node.destroy_subscription(subscription)
        self.subscription, self.reliability, self._retired = None, None, []


def spin_until_shutdown(executor: Executor, context: Context, stop: threading.Event | None = None) -> None:
    """Spin ``executor`` until ``context`` shuts down (or ``stop`` is set), surviving subscription swaps.

    rclpy's executors can raise ``InvalidHandle`` in the spinning thread when a subscription is destroyed (an
    :class:`AdaptiveSubscription` retiring its old one) while another thread builds the wait set. The entity is
    simply gone, so spinning carries on instead of the thread dying and the node going silent. An error raised
    because the context was shut down meanwhile ends the loop quietly.
    """
    while context.ok() and not (stop is not None and stop.is_set()):
        try:
            executor.spin_once(timeout_sec=0.1)
        except InvalidHandle:
            continue
        except RCLError:
            if context.ok():
                raise
            return
