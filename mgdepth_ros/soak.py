"""Soak the depth node: a separate ``depth_node`` process fed thousands of frames at camera rate and in bursts, mixed
with malformed input and parameter changes, while its outputs, /diagnostics and memory are watched.

:func:`run_soak` is the whole run (``bench/bench_soak.py``: 10 000 frames; ``test/test_ros_soak.py``: a few
hundred). It has two legs, each against a fresh node process over Fast DDS: ``raw`` (sensor_msgs/Image) and
``compressed`` (CompressedImage, ``transport: compressed``). Every input has a kind (:data:`KINDS`) that says
whether the node should publish depth for it ("output"), skip it with a warning ("skip"), or may do either
("either": a camera_info that comes after its image). Each leg starts with a paced pass: every kind sent alone, the
next only once the node has dealt with it, so that each goes through decoding and processing (in the stream most
inputs are dropped unseen whenever they come faster than inference). Valid frames are stamped with the wall clock
when published, so latency is stamp → depth received.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.outputs import rgb_image
from mgdepth_ros import conversions
from mgdepth_ros.harness import OUTPUT_TOPICS, FramePlayer, RosSession, make_header, stamp_ns, wait_until

NODE_NAME = "mgdepth_depth"
TOTAL_KEYS = ("received", "processed", "dropped", "skipped", "failed", "lost", "duplicates", "gaps")
RESOLVED = ("processed", "dropped", "skipped", "failed")  # what becomes of a received input
FRAME_ID = "soak_camera"
# kind: what the node should do with it
KINDS: dict[str, str] = {
    "valid": "output",
    "resized": "output",  # a stretch of frames at another size (size change mid-stream, and back)
    "odd_size": "output",  # odd sizes from 2×3 to 7×401
    "one_pixel_wide": "skip",  # 1×1, 1×N, N×1: too small to resize
    "stamp_backwards": "output",  # processed, with a restart of the frame buffer and odometry
    "late_camera_info": "either",  # a new frame_id whose camera_info follows its image
    "stamp_repeated": "skip",  # the previous message again: a duplicate
    "missing_camera_info": "skip",
    "nan_camera_info": "skip",
    "wrong_encoding": "skip",  # 16UC1, mono16, bgr16, 8UC3 with the right amount of data
    "unknown_encoding": "skip",
    "float_nan_inf": "skip",  # 32FC1 / 32FC3 full of NaN and ±inf
    "zero_size": "skip",
    "truncated_data": "skip",
    "short_step": "skip",  # step smaller than a row
    "valid_compressed": "output",
    "garbage_bytes": "skip",
    "empty_compressed": "skip",
    "truncated_compressed": "skip",
}
RAW_BAD = ["odd_size", "one_pixel_wide", "stamp_backwards", "late_camera_info", "stamp_repeated", "missing_camera_info",
           "nan_camera_info", "wrong_encoding", "unknown_encoding", "float_nan_inf", "zero_size", "truncated_data",
           "short_step"]
COMPRESSED_BAD = ["garbage_bytes", "empty_compressed", "truncated_compressed", "stamp_backwards"]
# (name, value) set on the running node in turn; the reply (accepted or the reason it was refused) is recorded
PARAMETER_CHANGES: list[tuple[str, object]] = [
    ("publish_colorized", False), ("cloud_decimation", 4), ("cloud_decimation", 0), ("cloud_decimation", "three"),
    ("transport", "carrier_pigeon"), ("method", "manydepth2"), ("no_such_parameter", 1.0),
    ("warning_period_s", 0.5), ("mask_encoding", "rgb8"), ("publish_colorized", True), ("cloud_decimation", 2),
    ("colorize_max_depth", -5.0),
]


@dataclass
class SoakConfig:
    """What one soak run sends. ``frames``: inputs of both legs together (warm-up frames not counted)."""

    frames: int = 10_000
    rate_hz: float = 10.0  # camera rate between bursts
    burst_every: int = 100  # frames between the starts of two bursts
    burst_size: int = 20  # frames of a burst, published back to back
    bad_fraction: float = 0.25  # share of malformed / unusual inputs
    compressed_fraction: float = 0.2  # share of the frames in the compressed leg
    resize_every: int = 150  # frames between size changes (the stream switches size and back)
    parameter_every: int = 100  # frames between parameter changes
    height: int = 64
    width: int = 192
    warmup: int = 3  # valid frames sent one at a time (each waits for its depth) before the measured run
    seed: int = 0
    settle_s: float = 60.0  # how long to wait for the node to account for every input after the last one


@dataclass
class Sent:
    kind: str
    stamp: int  # ns
    burst: bool


@dataclass
class LegResult:
    transport: str
    sent: list[Sent] = field(default_factory=list)
    depth_arrivals: dict[int, int] = field(default_factory=dict)  # stamp → first arrival (wall ns)
    outputs: Counter = field(default_factory=Counter)  # messages per output topic
    diagnostics: dict[str, str] = field(default_factory=dict)  # the node's last /diagnostics values
    rss_mb: list[tuple[float, int, float]] = field(default_factory=list)  # (seconds, inputs sent, MB)
    parameter_replies: list[dict] = field(default_factory=list)
    paced: list[tuple[str, bool]] = field(default_factory=list)  # (kind, got depth) of the paced pass
    baseline: dict[str, int] = field(default_factory=dict)  # the node's totals before the stream
    exit_code: int | None = None
    alive_at_end: bool = False
    tracebacks: int = 0
    log_tail: str = ""
    seconds: float = 0.0


def plan(config: SoakConfig, count: int, bad_kinds: list[str], valid_kind: str, rng: np.random.Generator
         ) -> list[tuple[str, bool]]:
    """(kind, in a burst) for ``count`` inputs: ``bad_fraction`` of them a bad kind (uniformly), the rest valid;
    every ``burst_every`` inputs a burst of ``burst_size``; valid raw frames in every other ``resize_every``
    stretch become "resized"."""
    items = []
    for index in range(count):
        kind = str(rng.choice(bad_kinds)) if rng.random() < config.bad_fraction else valid_kind
        if kind == "valid" and (index // config.resize_every) % 2 == 1:
            kind = "resized"
        items.append((kind, index % config.burst_every < config.burst_size and index >= config.burst_every))
    return items


def save_node_weights(folder: Path, height: int, width: int) -> Path:
    """A random-init Manydepth (ResNet-18, 8 depth bins) at height×width as a weights folder: a few tens of ms per
    frame on a CPU; speed and robustness do not depend on the weights."""
    import torch

    from mgdepth_core.models import ModelConfig, build_model
    from mgdepth_core.models.weights import save_weights

    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=height, width=width, pretrained=False,
                                    num_depth_bins=8))
    return save_weights(model, folder)


def node_command(weights: Path, transport: str) -> list[str]:
    """The installed ``depth_node`` console script (``python -m mgdepth_ros.depth_node`` without one)."""
    script = shutil.which("depth_node", path=str(Path(sys.executable).parent))
    program = [script] if script else [sys.executable, "-m", "mgdepth_ros.depth_node"]
    parameters = {"weights": str(weights), "method": "manydepth", "device": "cpu", "transport": transport,
                  "input_reliability": "reliable", "stats_period_s": 0.25, "warning_period_s": 5.0}
    return [*program, "--ros-args", *[arg for k, v in parameters.items() for arg in ("-p", f"{k}:={v}")]]


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` (VmRSS), MB; NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return float("nan")


class Observer(Node):
    """Counts every output of the depth node, keeps the first arrival time of each depth stamp and the node's last
    /diagnostics values."""

    def __init__(self, context) -> None:
        super().__init__("mgdepth_soak_observer", context=context)
        self.outputs: Counter = Counter()
        self.depth_arrivals: dict[int, int] = {}
        self.diagnostics: dict[str, str] = {}
        self._lock = threading.Lock()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg_type in OUTPUT_TOPICS.items():
            self.create_subscription(msg_type, topic, lambda msg, topic=topic: self._count(topic, msg), qos)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _count(self, topic: str, msg) -> None:
        now = time.time_ns()
        with self._lock:
            self.outputs[topic] += 1
            if topic == "depth/image_rect":
                self.depth_arrivals.setdefault(stamp_ns(msg.header), now)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{NODE_NAME}: depth":
                with self._lock:
                    self.diagnostics = {value.key: value.value for value in status.values}

    def snapshot(self) -> dict[str, int]:
        """The node's totals (TOTAL_KEYS) and the depth messages received so far."""
        with self._lock:
            return {**{key: int(self.diagnostics.get(f"total_{key}", 0)) for key in TOTAL_KEYS},
                    "depth_messages": self.outputs["depth/image_rect"]}

    def copy_into(self, result: LegResult) -> None:
        """Copy the depth arrivals, output counts and last /diagnostics values into ``result``."""
        with self._lock:
            result.depth_arrivals = dict(self.depth_arrivals)
            result.outputs = Counter(self.outputs)
            result.diagnostics = dict(self.diagnostics)


class Feeder(FramePlayer):
    """Publishes the soak's inputs (Image or CompressedImage, and CameraInfo) and sets the node's parameters."""

    def __init__(self, context, config: SoakConfig, transport: str) -> None:
        super().__init__(context, name="mgdepth_soak_feeder")
        self.compressed = transport == "compressed"
        self.parameters = AsyncParameterClient(self, NODE_NAME)
        sizes = [(config.height, config.width), (config.height * 3 // 2, config.width * 5 // 3)]
        self.frames = {size: [SyntheticSequence(seed=config.seed + 1, num_frames=8, height=size[0], width=size[1])
                              .frame(i) for i in range(8)] for size in sizes}
        self.size, self.resized = sizes
        self.rng = np.random.default_rng(config.seed)
        self.last_stamp = 0
        self.last_image: Image | CompressedImage | None = None
        self.late_ids = 0
        self.of_kind: Counter = Counter()  # inputs sent per kind

    def _stamp(self) -> int:
        self.last_stamp = max(time.time_ns(), self.last_stamp + 1000)
        return self.last_stamp

    def send(self, kind: str, index: int) -> int:
        """Publish one input of ``kind`` (``index`` picks the picture); returns its stamp (ns)."""
        self.of_kind[kind] += 1
        frame = self.frames[self.resized if kind == "resized" else self.size][index % 8]
        rgb, K = frame["image"], frame["K"]
        frame_id, info_after = FRAME_ID, False
        if kind == "stamp_repeated" and self.last_image is not None:
            self._publish(self.last_image)
            return stamp_ns(self.last_image.header)
        stamp = self.last_stamp - 3_000_000_000 - 7 - index % 1000 if kind == "stamp_backwards" else self._stamp()
        if kind in ("odd_size", "one_pixel_wide"):
            sizes = [(2, 3), (3, 5), (7, 401), (33, 97), (101, 13)] if kind == "odd_size" else [(1, 1), (1, 9), (9, 1)]
            height, width = sizes[self.of_kind[kind] % len(sizes)]
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
            K = K * np.array([[width / frame["image"].shape[1]], [height / frame["image"].shape[0]], [1.0]])
        elif kind == "missing_camera_info":
            frame_id = "soak_camera_without_info"
        elif kind == "nan_camera_info":
            frame_id, K = "soak_camera_nan_info", np.where(np.eye(3, dtype=bool), np.nan, K)
        elif kind == "late_camera_info":
            self.late_ids += 1
            frame_id, info_after = f"soak_late_camera_{self.late_ids}", True
        msg = self._message(kind, rgb, make_header(stamp, frame_id))
        if kind != "missing_camera_info" and not info_after:
            self.publish_camera_info(K, rgb.shape[1], rgb.shape[0], stamp, frame_id)
        self._publish(msg)
        if info_after:
            self.publish_camera_info(K, rgb.shape[1], rgb.shape[0], stamp, frame_id)
        self.last_image = msg
        return stamp

    def _publish(self, msg: Image | CompressedImage) -> None:
        (self.pub_compressed if isinstance(msg, CompressedImage) else self.pub_image).publish(msg)

    def _message(self, kind: str, rgb: np.ndarray, header) -> Image | CompressedImage:
        height, width = rgb.shape[:2]
        if self.compressed:
            msg = CompressedImage(header=header, format="png")
            ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
            data = png.tobytes() if ok else b""
            msg.data = {"garbage_bytes": self.rng.bytes(int(self.rng.integers(1, 5000))),
                        "empty_compressed": b"", "truncated_compressed": data[: len(data) // 2]}.get(kind, data)
            return msg
        image = conversions.image_msg(rgb_image(rgb), header)
        if kind == "wrong_encoding":
            image.encoding = ["16UC1", "mono16", "bgr16", "8UC3"][int(self.rng.integers(4))]
        elif kind == "unknown_encoding":
            image.encoding = "soak_" + self.rng.bytes(6).hex()
        elif kind == "float_nan_inf":
            channels = int(self.rng.choice([1, 3]))
            values = self.rng.choice(np.array([np.nan, np.inf, -np.inf, 0.5], np.float32), (height, width, channels))
            image = Image(header=header, height=height, width=width, encoding=f"32FC{channels}", is_bigendian=0,
                          step=width * channels * 4)
            image.data = values.tobytes()
        elif kind == "zero_size":
            image = Image(header=header, height=0, width=int(self.rng.integers(0, 2)) * width, encoding="rgb8", step=0)
        elif kind == "truncated_data":
            image.data = bytes(image.data)[: int(self.rng.integers(0, len(image.data)))]
        elif kind == "short_step":
            image.step = width * 3 - 1 - int(self.rng.integers(width))
        return image

    def change_parameter(self, name: str, value: object, replies: list[dict]) -> None:
        """Set ``name`` on the node without waiting; the reply is appended to ``replies`` when it comes."""
        future = self.parameters.set_parameters([Parameter(name, value=value)])

        def done(future) -> None:
            result = future.result().results[0] if future.result() else None
            replies.append({"name": name, "value": value, "accepted": bool(result and result.successful),
                            "reason": result.reason if result else "no reply"})

        future.add_done_callback(done)


def run_leg(transport: str, items: list[tuple[str, bool]], config: SoakConfig, weights: Path, log: Path,
            progress=None) -> LegResult:
    """Start a node process with ``transport``, warm it up, run the paced pass, stream ``items`` and wait until
    the node accounts for each; ``progress(leg, sent)`` is called every 500 inputs."""
    result = LegResult(transport)
    started = time.monotonic()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH")]))
    with open(log, "w") as log_file:
        node = subprocess.Popen(node_command(weights, transport), stdout=log_file, stderr=subprocess.STDOUT, env=env)
    gone = lambda: node.poll() is not None  # noqa: E731
    try:
        with RosSession() as session:
            feeder = session.add(Feeder(session.context, config, transport))
            observer = session.add(Observer(session.context))
            image_publisher = feeder.pub_compressed if transport == "compressed" else feeder.pub_image
            if not wait_until(lambda: gone() or (image_publisher.get_subscription_count() > 0
                                                 and feeder.pub_info.get_subscription_count() > 0
                                                 and observer.count_publishers("depth/image_rect") > 0), 600.0):
                raise RuntimeError(f"the depth node did not come up; see {log}")
            feeder.parameters.wait_for_services(timeout_sec=60.0)
            valid, bad = ("valid_compressed", COMPRESSED_BAD) if transport == "compressed" else ("valid", RAW_BAD)
            warmup = [valid] * config.warmup  # model loading and the first inferences
            paced = [valid, *(["resized", "valid", "odd_size", "odd_size"] if valid == "valid" else []), *bad * 3]
            for kind in [*warmup, *paced]:
                if gone():
                    break
                result.paced.append((kind, _send_alone(feeder, observer, kind, gone)))
            result.paced = result.paced[len(warmup):]
            result.baseline = observer.snapshot()
            sampler = _RssSampler(node.pid, lambda: len(result.sent))
            period = 1.0 / config.rate_hz
            next_time = time.monotonic()
            for index, (kind, burst) in enumerate(items):
                if gone():
                    break
                if not burst:
                    time.sleep(max(0.0, next_time - time.monotonic()))
                    next_time = max(next_time + period, time.monotonic() - period)
                result.sent.append(Sent(kind, feeder.send(kind, index), burst))
                if config.parameter_every and index % config.parameter_every == config.parameter_every // 2:
                    name, value = PARAMETER_CHANGES[(index // config.parameter_every) % len(PARAMETER_CHANGES)]
                    feeder.change_parameter(name, value, result.parameter_replies)
                if progress is not None and (index + 1) % 500 == 0:
                    progress(transport, index + 1)
            wait_until(lambda: gone() or _accounted(observer.snapshot(), result.baseline, len(result.sent)),
                       timeout=config.settle_s)
            time.sleep(1.0)  # a few more /diagnostics periods
            sampler.stop()
            result.rss_mb = sampler.samples
            result.alive_at_end = not gone()
            observer.copy_into(result)
    finally:
        if not gone():
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        result.exit_code = node.returncode
        text = log.read_text(errors="replace")
        result.tracebacks = text.count("Traceback")
        result.log_tail = text[-3000:]
        result.seconds = time.monotonic() - started
    return result


def _send_alone(feeder: Feeder, observer: Observer, kind: str, gone) -> bool:
    """Send one input of ``kind`` and wait until the node has dealt with it; whether depth came for it."""
    before = observer.snapshot()
    stamp = feeder.send(kind, before["received"])
    changed = lambda key: observer.snapshot()[key] > before[key]  # noqa: E731
    if not wait_until(lambda: gone() or changed("duplicates") or (changed("received") and sum(
            observer.snapshot()[key] - before[key] for key in RESOLVED) > 0), timeout=300.0):
        raise RuntimeError(f"the node did not deal with a {kind} input within 300 s")
    return changed("processed") and wait_until(lambda: stamp in observer.depth_arrivals, timeout=10.0)


def _accounted(now: dict[str, int], baseline: dict[str, int], sent: int) -> bool:
    """Whether the node's totals ``now`` cover ``sent`` inputs since ``baseline``: each received (and then
    processed, dropped, skipped or failed), lost in the subscription queue, or a duplicate."""
    delta = {key: now[key] - baseline[key] for key in now}
    return (delta["received"] + delta["lost"] + delta["duplicates"] >= sent
            and sum(delta[key] for key in RESOLVED) >= delta["received"])


class _RssSampler:
    """Samples the node's RSS twice a second in a thread: (seconds, inputs sent so far, MB)."""

    def __init__(self, pid: int, sent) -> None:
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not self._stop.is_set():
                self.samples.append((time.monotonic() - started, sent(), rss_mb(pid)))
                self._stop.wait(0.5)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def summarise(leg: LegResult) -> dict:
    """The figures of one leg: crashes, outputs per valid input, drops, the node's accounting, RSS, latency.

    Accounting (each 0 when every input is explained by the node's own counters on /diagnostics): inputs sent −
    (received + lost + duplicates); received − (processed + dropped + skipped + failed); processed − depth messages
    that arrived. Valid inputs without depth must be at most dropped + lost."""
    by_kind: dict[str, dict[str, int]] = {}
    latencies = []
    for item in leg.sent:
        entry = by_kind.setdefault(item.kind, {"sent": 0, "with_depth": 0})
        entry["sent"] += 1
        arrival = leg.depth_arrivals.get(item.stamp) if item.kind != "stamp_repeated" else None
        if arrival is not None:
            entry["with_depth"] += 1
            if item.kind in ("valid", "resized", "valid_compressed", "odd_size"):
                latencies.append((arrival - item.stamp) / 1e6)
    valid = [item for item in leg.sent if KINDS[item.kind] == "output"]
    valid_with_depth = sum(item.stamp in leg.depth_arrivals for item in valid)
    totals = {key: int(leg.diagnostics.get(f"total_{key}", 0)) - leg.baseline.get(key, 0) for key in TOTAL_KEYS}
    accounting = {
        "inputs_not_counted": len(leg.sent) - totals["received"] - totals["lost"] - totals["duplicates"],
        "received_not_resolved": totals["received"] - sum(totals[k] for k in ("processed", "dropped", "skipped",
                                                                              "failed")),
        "depth_messages_missing": totals["processed"] - (leg.outputs["depth/image_rect"]
                                                         - leg.baseline.get("depth_messages", 0)),
        "valid_without_depth_beyond_drops": max(0, len(valid) - valid_with_depth - totals["dropped"]
                                                - totals["lost"]),
    }
    paced: dict[str, dict[str, int]] = {}
    for kind, got_depth in leg.paced:
        entry = paced.setdefault(kind, {"sent": 0, "with_depth": 0})
        entry["sent"] += 1
        entry["with_depth"] += int(got_depth)
    unexpected = sorted({kind for kind, got_depth in leg.paced
                         if {"output": not got_depth, "skip": got_depth}.get(KINDS[kind], False)})
    rss = [(t, sent, mb) for t, sent, mb in leg.rss_mb if np.isfinite(mb)]
    second_half = [(sent, mb) for _, sent, mb in rss if sent >= len(leg.sent) / 2]
    slope = (float(np.polyfit(*np.array(second_half).T, 1)[0]) * 1000
             if len({sent for sent, _ in second_half}) > 2 else float("nan"))
    return {
        "transport": leg.transport, "inputs": len(leg.sent), "inputs_in_bursts": sum(item.burst for item in leg.sent),
        "crashed": int(not leg.alive_at_end), "exit_code": leg.exit_code, "tracebacks_in_log": leg.tracebacks,
        "valid_inputs": len(valid), "valid_with_depth": valid_with_depth,
        "outputs_per_valid_input": valid_with_depth / max(len(valid), 1),
        "node_totals": totals, "accounting": accounting,
        "unaccounted": sum(abs(value) for value in accounting.values()),
        "warnings": {k.removeprefix("warnings_"): int(v) for k, v in leg.diagnostics.items()
                     if k.startswith("warnings_")},
        "outputs_per_topic": dict(leg.outputs),
        "rss_mb_start": rss[0][2] if rss else float("nan"), "rss_mb_end": rss[-1][2] if rss else float("nan"),
        "rss_mb_max": max((mb for _, _, mb in rss), default=float("nan")),
        "rss_growth_mb": rss[-1][2] - rss[0][2] if rss else float("nan"),
        "rss_slope_second_half_mb_per_1000_inputs": slope,
        "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "latency_ms_p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "paced": paced, "paced_unexpected": unexpected, "by_kind": by_kind,
        "parameter_replies": _distinct(leg.parameter_replies), "seconds": leg.seconds,
        "log_tail": leg.log_tail if leg.tracebacks or not leg.alive_at_end else "",
    }


def _distinct(replies: list[dict]) -> list[dict]:
    """Each distinct reply once, with how often it came."""
    counts = Counter(tuple(reply.items()) for reply in replies)
    return [{**dict(items), "count": count} for items, count in counts.items()]


def run_soak(config: SoakConfig, work_dir: Path | None = None, progress=None) -> dict:
    """Both legs of a soak run; returns the JSON-ready results (config, per leg :func:`summarise`, totals)."""
    rng = np.random.default_rng(config.seed)
    compressed = round(config.frames * config.compressed_fraction)
    legs = [("raw", plan(config, config.frames - compressed, RAW_BAD, "valid", rng)),
            ("compressed", plan(config, compressed, COMPRESSED_BAD, "valid_compressed", rng))]
    with tempfile.TemporaryDirectory(prefix="mgdepth_soak_", dir=work_dir) as folder:
        weights = save_node_weights(Path(folder) / "weights", config.height, config.width)
        results = [summarise(run_leg(transport, items, config, weights, Path(folder) / f"node_{transport}.log",
                                     progress))
                   for transport, items in legs if items]
    total = {key: sum(leg[key] for leg in results) for key in
             ("inputs", "crashed", "valid_inputs", "valid_with_depth", "unaccounted", "tracebacks_in_log")}
    total["outputs_per_valid_input"] = total["valid_with_depth"] / max(total["valid_inputs"], 1)
    return {"config": asdict(config), "legs": results, "total": total}
