"""rosbag2 in and out without ROS: index camera frames, decode them lazily, write new bags atomically.

Reading goes through ``rosbags.highlevel.AnyReader`` (sqlite3 and MCAP storage, message definitions from the bag,
ROS 2 Jazzy definitions for bags without them) and ``rosbags-image`` (``sensor_msgs/Image`` in rgb8, bgr8, mono8,
rgba8, bgra8, 16-bit and Bayer encodings; ``sensor_msgs/CompressedImage`` JPEG/PNG). Writing uses
``rosbags.rosbag2.Writer`` (rosbag2 version 9) with the ``Stores.ROS2_JAZZY`` typestore.

:func:`index_bag` reads the bag once: header stamp, receive time and intrinsics of every valid frame, never the
pixels. :class:`BagFrameSource` then decodes one frame at a time; it opens its own reader in every process, so
DataLoader workers share nothing but the small index.

Ordering rules (see docs/bags.md): frames are taken in bag order; where the header stamp jumps back by more than
``max_gap_s`` (a bag loop or a seek) a new segment starts; inside a segment frames are sorted by header stamp and
exact duplicate stamps are dropped. :func:`split_sequences` cuts segments further wherever consecutive stamps are
more than ``max_gap_s`` apart, so no sample ever spans a jump in time.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from rosbags.highlevel import AnyReader
from rosbags.image import ImageError, compressed_image_to_cvimage, image_to_cvimage
from rosbags.image.image import convert_color, to_cvtype
from rosbags.interfaces import Nodetype
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mgdepth_core.outputs import CameraInfoFields, ImageFields, ObjectSummary, OdometryState, depth_camera_info
from mgdepth_core.pointcloud import PackedCloud

LOGGER = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)


class BagError(ValueError):
    """A bag, topic, message or intrinsics file that cannot be used; the message names the file and topic."""


@dataclass(frozen=True)
class FrameRecord:
    """Where one camera frame lives in the bag and which intrinsics belong to it (no pixels)."""

    stamp_ns: int  # header stamp, nanoseconds
    log_time_ns: int  # bag receive time, nanoseconds (used to fetch the message and to write outputs)
    ordinal: int  # position among the topic's messages with the same receive time
    frame_id: str
    segment: int  # bag-order segment; a new one starts where stamps jump backwards (loop, seek)
    K: tuple[float, ...]  # 3×3 row-major intrinsics, pixels of an image of size K_size
    K_size: tuple[int, int]  # (width, height) that K describes; (0, 0) = the decoded image's own size


@dataclass
class BagIndex:
    """Every usable frame of one image topic, in processing order, plus what was skipped and why."""

    path: Path
    image_topic: str
    image_msgtype: str
    camera_info_topic: str  # "" where the intrinsics came from a file
    frames: list[FrameRecord]
    skipped: Counter = field(default_factory=Counter)  # reason → frame count

    def __len__(self) -> int:
        return len(self.frames)


def _reason(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message on one line, at most ``limit`` characters (rosbags quotes whole message definitions)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _describe_topics(reader: AnyReader) -> str:
    return ", ".join(f"{name} ({info.msgtype}, {info.msgcount} msgs)" for name, info in sorted(reader.topics.items()))


def open_bag(path: str | Path) -> AnyReader:
    """An opened AnyReader on a rosbag2 directory (or a single .mcap/.db3 file); BagError naming the path if not."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = AnyReader([path], default_typestore=TYPESTORE)
        reader.open()
    except Exception as exc:  # rosbags raises reader-, storage- and sqlite-specific errors
        raise BagError(f"cannot open bag {path} (corrupt, truncated or not a rosbag2?): {_reason(exc)}") from exc
    return reader


def _connections(reader: AnyReader, path: Path, topic: str, allowed: tuple[str, ...], flag: str) -> list:
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        raise BagError(f"bag {path} has no topic {topic!r} (set it with {flag}); "
                       f"its topics: {_describe_topics(reader)}")
    wrong = sorted({c.msgtype for c in found} - set(allowed))
    if wrong:
        raise BagError(f"bag {path}: topic {topic} carries {', '.join(wrong)}, expected {' or '.join(allowed)}")
    return found


def stamp_ns(header: Any) -> int:
    """Nanoseconds of a std_msgs/Header stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def guess_camera_info_topic(reader: AnyReader, image_topic: str) -> str:
    """The sibling ``camera_info`` of ``image_topic`` (ROS camera-driver convention), or "" if the bag has none.

    ``/cam/image_raw`` and ``/cam/image_raw/compressed`` both pair with ``/cam/camera_info``.
    """
    base = image_topic.removesuffix("/compressed").rstrip("/")
    candidate = base.rsplit("/", 1)[0] + "/camera_info"
    if any(c.topic == candidate and c.msgtype == CAMERA_INFO for c in reader.connections):
        return candidate
    return ""


def load_intrinsics_file(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """3×3 K (pixels) and the (width, height) it describes, (0, 0) = any, from a YAML or JSON file.

    Accepted keys: ``K`` (3×3 nested or 9 numbers), or ``fx, fy, cx, cy``, or the ROS camera_calibration layout
    (``camera_matrix: {data: [9 numbers]}``, ``image_width``, ``image_height``); optional ``width``/``height``;
    ``normalized: true`` when K is in units of the image width/height (as Manydepth's intrinsics JSON).
    """
    path = Path(path)
    if not path.is_file():
        raise BagError(f"intrinsics file {path} does not exist")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise BagError(f"intrinsics file {path} is not valid YAML/JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"K": data}
    if not isinstance(data, dict):
        raise BagError(f"intrinsics file {path} must hold a mapping with K or fx, fy, cx, cy")
    if "K" in data or "k" in data:
        values = np.asarray(data.get("K", data.get("k")), dtype=np.float64).reshape(-1)
    elif "camera_matrix" in data:
        values = np.asarray(data["camera_matrix"]["data"], dtype=np.float64).reshape(-1)
    elif all(key in data for key in ("fx", "fy", "cx", "cy")):
        values = np.array([data["fx"], 0, data["cx"], 0, data["fy"], data["cy"], 0, 0, 1], dtype=np.float64)
    else:
        raise BagError(f"intrinsics file {path}: expected K (3×3 or 9 numbers), fx/fy/cx/cy or camera_matrix")
    if values.size != 9 or not np.all(np.isfinite(values)) or values[0] <= 0 or values[4] <= 0:
        raise BagError(f"intrinsics file {path}: K must be 3×3 finite numbers with positive fx, fy; got {values}")
    K = values.reshape(3, 3)
    width = int(data.get("width", data.get("image_width", 0)))
    height = int(data.get("height", data.get("image_height", 0)))
    if data.get("normalized", False):
        if width and height:
            K = K.copy()
            K[0] *= width
            K[1] *= height
        else:
            return K, (1, 1)  # K per unit of width/height: intrinsics_for_size scales it to the image
    return K, (width, height)


def _check_image_message(msg: Any) -> str:
    """"" when ``msg`` looks decodable, else the reason (cheap: no pixel decoding)."""
    if hasattr(msg, "format"):
        data = bytes(msg.data[:8]), bytes(msg.data[-32:])
        kind = _compressed_kind(msg)
        if kind == "jpeg" and not (data[0].startswith(b"\xff\xd8") and b"\xff\xd9" in data[1]):
            return "JPEG data is truncated or not JPEG"
        if kind == "png" and not (data[0].startswith(b"\x89PNG") and b"IEND" in data[1]):
            return "PNG data is truncated or not PNG"
        return ""
    _, _, dtype, channels = to_cvtype(msg.encoding)
    row = msg.width * channels * np.dtype(dtype).itemsize
    if msg.width <= 0 or msg.height <= 0 or msg.step < row or len(msg.data) < msg.step * (msg.height - 1) + row:
        return f"{len(msg.data)} data bytes do not fit {msg.width}×{msg.height} {msg.encoding} step {msg.step}"
    return ""


def _compressed_kind(msg: Any) -> str:
    """"jpeg" or "png" for a CompressedImage, from its ``format`` string or, if that is empty, its magic bytes."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise BagError(f"CompressedImage format {msg.format!r} is a depth image (compressedDepth), not a camera image")
    if "jpeg" in fmt or "jpg" in fmt:
        return "jpeg"
    if "png" in fmt:
        return "png"
    head = bytes(msg.data[:8])
    if not fmt and head.startswith(b"\xff\xd8"):
        return "jpeg"
    if not fmt and head.startswith(b"\x89PNG"):
        return "png"
    raise BagError(f"unsupported CompressedImage format {msg.format!r} (supported: jpeg, png)")


def _check_encoding(encoding: str) -> None:
    """BagError naming ``encoding`` unless rosbags-image converts it to rgb8 (tried on a tiny blank image)."""
    try:
        _, _, dtype, channels = to_cvtype(encoding)
        blank = np.zeros((6, 8, channels) if channels > 1 else (6, 8), dtype)
        convert_color(blank, encoding, "rgb8")
    except (ImageError, cv2.error) as exc:
        raise BagError(f"unsupported image encoding {encoding!r}: it has no conversion to rgb8 "
                       "(supported: rgb8, bgr8, mono8, rgba8, bgra8, 16-bit and Bayer variants)") from exc


def decode_image(msg: Any) -> np.ndarray:
    """H×W×3 uint8 RGB from a deserialised sensor_msgs/Image or CompressedImage (rosbags-image does the work)."""
    if hasattr(msg, "format"):
        _compressed_kind(msg)
        try:
            image = compressed_image_to_cvimage(msg)
        except (AssertionError, cv2.error) as exc:
            raise BagError(f"CompressedImage ({msg.format}) does not decode") from exc
        channels = 1 if image.ndim == 2 else image.shape[2]
        source = {1: "mono8", 3: "bgr8", 4: "bgra8"}[channels]
        return np.ascontiguousarray(convert_color(image, source, "rgb8"))
    reason = _check_image_message(msg)
    if reason:
        raise BagError(f"Image message is corrupt: {reason}")
    _, _, dtype, channels = to_cvtype(msg.encoding)
    row = msg.width * channels * np.dtype(dtype).itemsize
    if msg.step != row:  # rows padded to `step` bytes: rosbags-image assumes packed rows
        rows = np.frombuffer(bytes(msg.data), np.uint8)[: msg.step * msg.height]
        rows = np.pad(rows, (0, msg.step * msg.height - rows.size)).reshape(msg.height, msg.step)[:, :row]
        msg = type(msg)(header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding,
                        is_bigendian=msg.is_bigendian, step=row, data=np.ascontiguousarray(rows).reshape(-1))
    try:
        image = image_to_cvimage(msg, "rgb8")
    except (ImageError, cv2.error) as exc:
        raise BagError(f"unsupported image encoding {msg.encoding!r}: {exc}") from exc
    return np.ascontiguousarray(image)


def _camera_info_entry(reader: AnyReader, path: Path, connection: Any, raw: bytes, counts: Counter) -> tuple | None:
    """(stamp, K, (width, height)) of one CameraInfo message, or None (counted) where it is corrupt/uncalibrated."""
    try:
        msg = reader.deserialize(raw, connection.msgtype)
    except Exception as exc:
        LOGGER.warning("bag %s: skipping a corrupt CameraInfo on %s: %s", path, connection.topic, _reason(exc))
        counts["corrupt"] += 1
        return None
    K = tuple(float(v) for v in msg.k)
    if K[0] <= 0 or K[4] <= 0:
        counts["uncalibrated"] += 1
        return None
    return stamp_ns(msg.header), K, (int(msg.width), int(msg.height))


def _messages(reader: AnyReader, path: Path, connections: list, start: int | None = None,
              stop: int | None = None) -> Iterator[tuple]:
    try:
        yield from reader.messages(connections=connections, start=start, stop=stop)
    except BagError:
        raise
    except Exception as exc:
        raise BagError(f"bag {path} is corrupt or truncated ({_reason(exc)})") from exc


def index_bag(path: str | Path, image_topic: str, camera_info_topic: str = "", intrinsics_file: str = "",
              camera_info_tolerance_s: float = 0.05, max_gap_s: float = 0.25) -> BagIndex:
    """Read ``path`` once and list every decodable frame of ``image_topic`` with its intrinsics.

    An empty ``image_topic`` selects the bag's only Image/CompressedImage topic (an error lists them otherwise).

    Intrinsics come from ``intrinsics_file`` when given, else from ``camera_info_topic`` (or, when that is empty,
    the image topic's sibling ``camera_info``), paired by header stamp: exact, else the nearest within
    ``camera_info_tolerance_s`` seconds. Frames whose message does not deserialise or whose payload is malformed
    are skipped with a warning and counted in ``BagIndex.skipped``, as are frames without camera_info in reach.
    ``max_gap_s`` decides what a backwards jump is (see the module doc).
    """
    path = Path(path)
    reader = open_bag(path)
    try:
        if not image_topic:
            candidates = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
            if len(candidates) != 1:
                raise BagError(f"bag {path}: pass --image-topic; its image topics: {', '.join(candidates) or 'none'} "
                               f"(all topics: {_describe_topics(reader)})")
            image_topic = candidates[0]
            LOGGER.info("bag %s: using image topic %s, the only one", path, image_topic)
        image_connections = _connections(reader, path, image_topic, IMAGE_TYPES, "--image-topic")
        msgtypes = {c.msgtype for c in image_connections}
        if len(msgtypes) > 1:
            raise BagError(f"bag {path}: topic {image_topic} mixes {sorted(msgtypes)}")
        info_connections = []
        if intrinsics_file:
            file_K, file_size = load_intrinsics_file(intrinsics_file)
            camera_info_topic = ""
        else:
            if not camera_info_topic:
                camera_info_topic = guess_camera_info_topic(reader, image_topic)
                if not camera_info_topic:
                    topics = [c.topic for c in reader.connections if c.msgtype == CAMERA_INFO]
                    raise BagError(
                        f"bag {path} has no camera_info next to {image_topic}: pass --camera-info-topic TOPIC "
                        f"(CameraInfo topics in the bag: {', '.join(topics) or 'none'}) or --intrinsics FILE")
                LOGGER.info("bag %s: using camera_info topic %s", path, camera_info_topic)
            info_connections = _connections(reader, path, camera_info_topic, (CAMERA_INFO,), "--camera-info-topic")
        skipped: Counter = Counter()
        info_counts: Counter = Counter()
        images: list[tuple[int, int, int, str]] = []  # stamp, receive time, ordinal, frame_id
        infos: list[tuple] = []
        seen_log_times: Counter = Counter()
        checked_encodings: set[str] = set()
        for connection, log_time, raw in _messages(reader, path, image_connections + info_connections):
            if connection.msgtype == CAMERA_INFO:
                entry = _camera_info_entry(reader, path, connection, raw, info_counts)
                if entry is not None:
                    infos.append(entry)
                continue
            ordinal = seen_log_times[log_time]
            seen_log_times[log_time] += 1
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except Exception as exc:
                LOGGER.warning("bag %s: skipping corrupt message on %s at t=%d ns: %s", path, image_topic, log_time,
                               _reason(exc))
                skipped["corrupt message"] += 1
                continue
            if not hasattr(msg, "format") and msg.encoding not in checked_encodings:
                _check_encoding(msg.encoding)
                checked_encodings.add(msg.encoding)
            reason = _check_image_message(msg)
            if reason:
                LOGGER.warning("bag %s: skipping frame on %s at t=%d ns: %s", path, image_topic, log_time, reason)
                skipped["corrupt message"] += 1
                continue
            images.append((stamp_ns(msg.header) or log_time, log_time, ordinal, msg.header.frame_id))
        unread = sum(c.msgcount for c in image_connections) - sum(seen_log_times.values())
        if unread > 0:  # the bag's index lists messages that the storage no longer yields
            LOGGER.warning("bag %s: %d messages on %s listed in the bag cannot be read", path, unread, image_topic)
            skipped["unreadable (corrupt or truncated bag)"] += unread
    finally:
        reader.close()
    if intrinsics_file:
        raw_frames = [(*image, tuple(file_K.reshape(-1)), file_size) for image in images]
    else:
        raw_frames = _pair_camera_infos(path, camera_info_topic, images, infos, info_counts,
                                        camera_info_tolerance_s, skipped)
    if skipped["no camera_info within tolerance"]:
        LOGGER.warning("bag %s: %d frames of %s have no camera_info within %.3f s and are skipped",
                       path, skipped["no camera_info within tolerance"], image_topic, camera_info_tolerance_s)
    frames = _order_frames(raw_frames, max_gap_s, skipped)
    if not frames:
        raise BagError(f"bag {path}: no usable frames on {image_topic} (skipped: {dict(skipped) or 'none'})")
    return BagIndex(path, image_topic, msgtypes.pop(), camera_info_topic, frames, skipped)


def _pair_camera_infos(path: Path, topic: str, images: list[tuple], infos: list[tuple], info_counts: Counter,
                       tolerance_s: float, skipped: Counter) -> list[tuple]:
    """Each image entry extended by (K, size) of the CameraInfo with the nearest stamp within ``tolerance_s``."""
    if not infos:
        detail = (f" ({info_counts['uncalibrated']} with an all-zero K: uncalibrated camera)"
                  if info_counts["uncalibrated"] else "")
        raise BagError(f"bag {path}: topic {topic} has no usable CameraInfo{detail}; pass --intrinsics FILE instead")
    infos.sort(key=lambda entry: entry[0])
    info_stamps = [entry[0] for entry in infos]
    paired = []
    for image in images:
        nearest = _nearest(info_stamps, image[0])
        if abs(info_stamps[nearest] - image[0]) > tolerance_s * 1e9:
            skipped["no camera_info within tolerance"] += 1
            continue
        paired.append((*image, infos[nearest][1], infos[nearest][2]))
    return paired


def _nearest(sorted_stamps: list[int], stamp: int) -> int | None:
    if not sorted_stamps:
        return None
    i = bisect.bisect_left(sorted_stamps, stamp)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(sorted_stamps)]
    return min(candidates, key=lambda j: abs(sorted_stamps[j] - stamp))


def _order_frames(raw_frames: list[tuple], max_gap_s: float, skipped: Counter) -> list[FrameRecord]:
    """Bag order → segments at backward jumps > max_gap_s → each segment sorted by stamp, duplicates dropped."""
    segments: list[list[tuple]] = []
    newest = None
    for frame in raw_frames:
        if newest is None or frame[0] < newest - max_gap_s * 1e9:
            segments.append([])
            newest = frame[0]
        segments[-1].append(frame)
        newest = max(newest, frame[0])
    frames = []
    for segment_id, segment in enumerate(segments):
        previous = None
        for stamp, log_time, ordinal, frame_id, K, size in sorted(segment, key=lambda f: (f[0], f[1])):
            if stamp == previous:
                skipped["duplicate stamp"] += 1
                continue
            previous = stamp
            frames.append(FrameRecord(stamp, log_time, ordinal, frame_id, segment_id, K, size))
    return frames


def split_sequences(frames: list[FrameRecord], max_gap_s: float) -> list[list[int]]:
    """Runs of frame indices with no segment change and no stamp gap above ``max_gap_s`` seconds."""
    sequences: list[list[int]] = []
    for i, frame in enumerate(frames):
        if (not sequences or frame.segment != frames[i - 1].segment
                or frame.stamp_ns - frames[i - 1].stamp_ns > max_gap_s * 1e9):
            sequences.append([])
        sequences[-1].append(i)
    return sequences


def sample_windows(sequences: list[list[int]], frame_ids: list[int]) -> list[dict[int, int]]:
    """{frame_id: frame index} for every frame whose neighbours ``frame_ids`` all lie in its sequence."""
    lo, hi = min(frame_ids), max(frame_ids)
    windows = []
    for sequence in sequences:
        for position in range(-lo, len(sequence) - hi):
            windows.append({fid: sequence[position + fid] for fid in frame_ids})
    return windows


def intrinsics_for_size(frame: FrameRecord, width: int, height: int) -> np.ndarray:
    """3×3 float64 K of ``frame`` for an image of width×height pixels (scaled from the size K describes)."""
    K = np.asarray(frame.K, dtype=np.float64).reshape(3, 3).copy()
    source_width, source_height = frame.K_size
    if source_width and source_height and (source_width, source_height) != (width, height):
        K[0] *= width / source_width
        K[1] *= height / source_height
    return K


class BagFrameSource:
    """Decodes frames of a :class:`BagIndex` on demand. Picklable; each process opens its own reader."""

    def __init__(self, index: BagIndex):
        self.index = index
        self._reader: AnyReader | None = None
        self._connections: list = []
        self._pid = -1

    def __getstate__(self) -> dict:
        return {"index": self.index}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["index"])

    def _open(self) -> AnyReader:
        if self._reader is None or self._pid != os.getpid():
            self._reader = open_bag(self.index.path)
            self._connections = [c for c in self._reader.connections if c.topic == self.index.image_topic]
            self._pid = os.getpid()
        return self._reader

    def close(self) -> None:
        if self._reader is not None and self._pid == os.getpid():
            self._reader.close()
        self._reader = None

    def raw_message(self, i: int) -> tuple[str, bytes]:
        """(message type, CDR bytes) of frame ``i`` exactly as stored in the bag."""
        frame = self.index.frames[i]
        reader = self._open()
        found = list(_messages(reader, self.index.path, self._connections, frame.log_time_ns, frame.log_time_ns + 1))
        if frame.ordinal >= len(found):
            raise BagError(f"bag {self.index.path} changed since it was indexed: frame {i} of "
                           f"{self.index.image_topic} at t={frame.log_time_ns} ns is gone")
        connection, _, raw = found[frame.ordinal]
        return connection.msgtype, raw

    def image(self, i: int) -> np.ndarray:
        """Frame ``i`` as H×W×3 uint8 RGB at the size stored in the bag."""
        return self.decode(i, *self.raw_message(i))

    def decode(self, i: int, msgtype: str, raw: bytes) -> np.ndarray:
        """H×W×3 uint8 RGB of frame ``i`` from its message bytes (as :meth:`raw_message` returns them)."""
        self._open()
        try:
            return decode_image(self._reader.deserialize(raw, msgtype))
        except BagError as exc:
            frame = self.index.frames[i]
            raise BagError(f"bag {self.index.path}, {self.index.image_topic} at stamp {frame.stamp_ns} ns: {exc}"
                           ) from exc

    def __len__(self) -> int:
        return len(self.index.frames)


_NUMPY_TYPES = {"float32": np.float32, "float64": np.float64, "int8": np.int8, "uint8": np.uint8, "byte": np.uint8,
                "char": np.uint8, "octet": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
                "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "bool": np.bool_}


def _default_value(desc: tuple) -> Any:
    nodetype, detail = desc
    if nodetype == Nodetype.NAME:
        return new_message(detail)
    if nodetype == Nodetype.BASE:
        name = detail[0]
        return "" if name == "string" else False if name == "bool" else 0.0 if name.startswith("float") else 0
    element, length = detail
    if element[0] == Nodetype.BASE and element[1][0] in _NUMPY_TYPES:
        return np.zeros(length if nodetype == Nodetype.ARRAY else 0, _NUMPY_TYPES[element[1][0]])
    return [_default_value(element) for _ in range(length if nodetype == Nodetype.ARRAY else 0)]


def new_message(typename: str, **fields: Any) -> Any:
    """A rosbags (Jazzy typestore) message of ``typename``: ``fields`` as given, every other field zero/empty
    (a Quaternion's ``w`` defaults to 1, the identity, as in the ROS 2 message definition)."""
    _, definitions = TYPESTORE.fielddefs[typename]
    if typename == "geometry_msgs/msg/Quaternion":
        fields.setdefault("w", 1.0)
    values = {name: fields.pop(name) if name in fields else _default_value(desc) for name, desc in definitions}
    if fields:
        raise TypeError(f"{typename} has no field(s) {sorted(fields)}")
    return TYPESTORE.types[typename](**values)


def header(stamp: int, frame_id: str) -> Any:
    """std_msgs/Header (rosbags Jazzy type) for a stamp in nanoseconds."""
    types = TYPESTORE.types
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
        frame_id=frame_id)


def image_message(header_msg: Any, pixels: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image from an H×W or H×W×C array whose dtype and channels match ``encoding`` (little endian)."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return TYPESTORE.types[IMAGE](header=header_msg, height=height, width=width, encoding=encoding, is_bigendian=0,
                                  step=pixels.strides[0], data=pixels.view(np.uint8).reshape(-1))


def camera_info_message(header_msg: Any, K: np.ndarray, width: int, height: int) -> Any:
    """sensor_msgs/CameraInfo of a rectified pinhole camera (plumb_bob, zero distortion, P = [K | 0])."""
    return camera_info_fields_message(header_msg, depth_camera_info(np.asarray(K, np.float64).reshape(3, 3),
                                                                    height, width))


def image_fields_message(header_msg: Any, fields: ImageFields) -> Any:
    """sensor_msgs/Image from :class:`mgdepth_core.outputs.ImageFields` (depth, mask, colourised depth)."""
    return new_message(IMAGE, header=header_msg, height=fields.height, width=fields.width, encoding=fields.encoding,
                       is_bigendian=fields.is_bigendian, step=fields.step, data=np.frombuffer(fields.data, np.uint8))


def camera_info_fields_message(header_msg: Any, fields: CameraInfoFields) -> Any:
    """sensor_msgs/CameraInfo from :class:`mgdepth_core.outputs.CameraInfoFields`."""
    return new_message(CAMERA_INFO, header=header_msg, height=fields.height, width=fields.width,
                       distortion_model=fields.distortion_model, d=np.asarray(fields.d, np.float64),
                       k=np.asarray(fields.k, np.float64), r=np.asarray(fields.r, np.float64),
                       p=np.asarray(fields.p, np.float64))


def cloud_message(header_msg: Any, cloud: PackedCloud) -> Any:
    """Unorganised little-endian sensor_msgs/PointCloud2 from :class:`mgdepth_core.pointcloud.PackedCloud`."""
    fields = [new_message("sensor_msgs/msg/PointField", name=f.name, offset=f.offset, datatype=f.datatype,
                          count=f.count) for f in cloud.fields]
    return new_message("sensor_msgs/msg/PointCloud2", header=header_msg, height=1, width=cloud.width, fields=fields,
                       is_bigendian=False, point_step=cloud.point_step, row_step=cloud.row_step,
                       data=np.frombuffer(cloud.data, np.uint8), is_dense=True)


def _vector(typename: str, values: Any) -> Any:
    return new_message(typename, **dict(zip("xyzw", (float(v) for v in values))))


def odometry_message(stamp: int, state: OdometryState, odom_frame: str, child_frame: str) -> Any:
    """nav_msgs/Odometry from :class:`mgdepth_core.outputs.OdometryState`, as the ROS node publishes it: pose in
    ``odom_frame``, twist in ``child_frame`` (the camera), covariance diagonals 1e3 (scale and drift unknown)."""
    covariance = np.diag(np.full(6, 1e3)).reshape(-1)
    pose = new_message("geometry_msgs/msg/Pose", position=_vector("geometry_msgs/msg/Point", state.position),
                       orientation=_vector("geometry_msgs/msg/Quaternion", state.orientation_xyzw))
    twist = new_message("geometry_msgs/msg/Twist", linear=_vector("geometry_msgs/msg/Vector3", state.linear_velocity),
                        angular=_vector("geometry_msgs/msg/Vector3", state.angular_velocity))
    return new_message(
        "nav_msgs/msg/Odometry", header=header(stamp, odom_frame), child_frame_id=child_frame,
        pose=new_message("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=covariance.copy()),
        twist=new_message("geometry_msgs/msg/TwistWithCovariance", twist=twist, covariance=covariance))


def markers_message(summaries: list[ObjectSummary], header_msg: Any, lifetime_s: float = 0.5) -> Any:
    """visualization_msgs/MarkerArray as the ROS node publishes it: a DELETEALL, then per object with a valid
    depth a translucent CUBE at its centroid sized by its extent and a TEXT label ("car 0.93, dice 0.41") above."""
    marker = TYPESTORE.types["visualization_msgs/msg/Marker"]
    lifetime = new_message("builtin_interfaces/msg/Duration", sec=int(lifetime_s),
                           nanosec=int(round((lifetime_s % 1) * 1e9)))

    def pose(xyz: np.ndarray) -> Any:
        return new_message("geometry_msgs/msg/Pose", position=_vector("geometry_msgs/msg/Point", xyz),
                           orientation=new_message("geometry_msgs/msg/Quaternion"))

    markers = [new_message(marker.__msgtype__, header=header_msg, action=marker.DELETEALL)]
    for summary in summaries:
        if not np.all(np.isfinite(summary.centroid)):
            continue
        obj = summary.object
        markers.append(new_message(
            marker.__msgtype__, header=header_msg, ns="dynamic_objects", id=int(obj.instance_id), type=marker.CUBE,
            action=marker.ADD, pose=pose(summary.centroid), scale=_vector("geometry_msgs/msg/Vector3", summary.size),
            lifetime=lifetime, color=new_message("std_msgs/msg/ColorRGBA", r=1.0, g=0.3, b=0.1, a=0.5)))
        markers.append(new_message(
            marker.__msgtype__, header=header_msg, ns="dynamic_object_labels", id=int(obj.instance_id),
            type=marker.TEXT_VIEW_FACING, action=marker.ADD,
            pose=pose(summary.centroid - np.array([0.0, summary.size[1] / 2 + 0.3, 0.0])),
            scale=new_message("geometry_msgs/msg/Vector3", z=0.5), lifetime=lifetime,
            color=new_message("std_msgs/msg/ColorRGBA", r=1.0, g=1.0, b=1.0, a=1.0),
            text=f"{obj.class_name} {obj.score:.2f}, dice {obj.dice:.2f}"))
    return new_message("visualization_msgs/msg/MarkerArray", markers=markers)


class BagWriter:
    """Writes a new rosbag2 at ``path`` atomically (context manager).

    ``compress``: zstd (MCAP chunk compression; sqlite3 per-message compression). Messages go to
    ``<path>.partial/<name>/``; on success that directory is renamed to ``path`` (an existing
    ``path`` is replaced only with ``overwrite``); on an error or Ctrl-C the partial bag is removed and nothing at
    ``path`` changes.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", overwrite: bool = False, compress: bool = False):
        self.path = Path(path)
        self.compress = compress
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose {' or '.join(STORAGES)}")
        if self.path.exists() and not overwrite:
            raise BagError(f"output {self.path} exists; pass --overwrite to replace it")
        self.storage = storage
        self.overwrite = overwrite
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self.counts: Counter = Counter()  # messages written per topic

    def __enter__(self) -> BagWriter:
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self._writer = Writer(self.partial / self.path.name, version=9, storage_plugin=STORAGES[self.storage])
        if self.compress:  # zstd: MCAP chunk compression, or per-message compression in sqlite3 (both rosbag2-native)
            mode = CompressionMode.STORAGE if self.storage == "mcap" else CompressionMode.MESSAGE
            self._writer.set_compression(mode, CompressionFormat.ZSTD)
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        writer, self._writer = self._writer, None
        if exc_type is None:
            try:
                writer.close()
            except BaseException:
                shutil.rmtree(self.partial, ignore_errors=True)
                raise
            replaced = self.path.with_name(self.path.name + ".replaced")
            if self.path.exists():
                os.replace(self.path, replaced)
            os.replace(self.partial / self.path.name, self.path)
            shutil.rmtree(replaced, ignore_errors=True)
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            try:
                writer.abort()
            finally:
                shutil.rmtree(self.partial, ignore_errors=True)
        return False

    def _connection(self, topic: str, msgtype: str) -> Any:
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        connection = self._connections[topic]
        if connection.msgtype != msgtype:
            raise BagError(f"output topic {topic} is {connection.msgtype}, cannot also write {msgtype}")
        return connection

    def write(self, topic: str, log_time_ns: int, msg: Any) -> None:
        """Serialise a rosbags message (Jazzy typestore) onto ``topic`` at receive time ``log_time_ns``."""
        self._writer.write(self._connection(topic, msg.__msgtype__), log_time_ns,
                           TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
        self.counts[topic] += 1

    def write_raw(self, topic: str, msgtype: str, log_time_ns: int, raw: bytes) -> None:
        """Copy CDR bytes read from another bag unchanged."""
        self._writer.write(self._connection(topic, msgtype), log_time_ns, raw)
        self.counts[topic] += 1
