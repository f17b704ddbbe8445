"""What the node and the bag writer publish, as plain numbers and bytes (no ROS imports).

Each function turns a :class:`~mgdepth_core.inference.DepthResult` part into the fields of a standard message:
image encodings (REP 118 depth ``32FC1`` metres with NaN invalid, ``16UC1`` millimetres with 0 invalid,
instance masks, colourised depth ``bgr8``), decoding of input images (raw encodings and compressed JPEG/PNG),
camera_info scaled to the depth resolution, odometry accumulated from frame-to-frame poses, and 3-D summaries of
the dynamic objects. ``mgdepth_ros.conversions`` (rclpy) and the bag tools (rosbags) wrap these in messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mgdepth_core.dynamic_tracking import DynamicObject


class UnsupportedEncodingError(ValueError):
    """An input image encoding or compressed format that mgdepth cannot turn into RGB."""


@dataclass
class ImageFields:
    """The fields of a sensor_msgs/Image: ``data`` is row-major with ``step`` bytes per row, little-endian."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes
    is_bigendian: int = 0


def _image_fields(array: np.ndarray, encoding: str) -> ImageFields:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return ImageFields(height=array.shape[0], width=array.shape[1], encoding=encoding,
                       step=array.strides[0], data=array.tobytes())


def depth_image(depth: np.ndarray) -> ImageFields:
    """H×W metres (NaN invalid) → ``32FC1`` (REP 118)."""
    return _image_fields(depth.astype("<f4"), "32FC1")


def depth_image_millimetres(depth: np.ndarray) -> ImageFields:
    """H×W metres → ``16UC1`` millimetres, 0 = invalid or beyond 65.535 m (the OpenNI raw form)."""
    with np.errstate(invalid="ignore"):
        millimetres = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0.0)
    millimetres[millimetres > 65535] = 0
    return _image_fields(millimetres.astype("<u2"), "16UC1")


def mask_image(mask: np.ndarray, encoding: str = "16UC1") -> ImageFields:
    """H×W instance ids (0 = static) → ``16UC1`` or ``mono8`` (ids above 255 saturate)."""
    if encoding == "16UC1":
        return _image_fields(mask.astype("<u2"), encoding)
    if encoding == "mono8":
        return _image_fields(np.minimum(mask, 255).astype(np.uint8), encoding)
    raise ValueError(f"mask encoding must be 16UC1 or mono8, got {encoding!r}")


def rgb_image(rgb: np.ndarray) -> ImageFields:
    """H×W×3 uint8 RGB → ``rgb8``."""
    return _image_fields(rgb.astype(np.uint8), "rgb8")


def bgr_image(bgr: np.ndarray) -> ImageFields:
    """H×W×3 uint8 BGR → ``bgr8``."""
    return _image_fields(bgr.astype(np.uint8), "bgr8")


def colorize_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = 0.0) -> np.ndarray:
    """H×W metres → H×W×3 uint8 BGR: inverse depth mapped linearly onto magma between ``1/max_depth`` (dark,
    far) and ``1/min_depth`` (bright, near); invalid pixels black. A range of 0 (the default) is taken per frame
    from the 5th / 95th depth percentiles (for depth of unknown scale); a fixed range makes frames comparable."""
    valid = np.isfinite(depth) & (depth > 0)
    if (min_depth <= 0 or max_depth <= 0) and valid.any():
        low, high = np.percentile(depth[valid], [5, 95])
        min_depth = min_depth if min_depth > 0 else float(low)
        max_depth = max_depth if max_depth > 0 else float(high)
    if not min_depth > 0 or max_depth <= min_depth:
        min_depth, max_depth = (min_depth, min_depth * 1.01) if min_depth > 0 else (1.0, 80.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / np.clip(depth.astype(np.float64), min_depth, max_depth)
        scaled = (inverse - 1.0 / max_depth) / (1.0 / min_depth - 1.0 / max_depth)
    grey = np.where(valid, np.clip(scaled, 0.0, 1.0) * 255.0, 0.0).astype(np.uint8)
    bgr = cv2.applyColorMap(grey, cv2.COLORMAP_MAGMA)
    bgr[~valid] = 0
    return bgr


_CHANNEL_ORDER = {"rgb8": (3, [0, 1, 2]), "bgr8": (3, [2, 1, 0]), "rgba8": (4, [0, 1, 2]), "bgra8": (4, [2, 1, 0])}


def decode_image(encoding: str, height: int, width: int, step: int, data: bytes | np.ndarray) -> np.ndarray:
    """sensor_msgs/Image fields → H×W×3 uint8 RGB. Handles rgb8, bgr8, rgba8, bgra8, mono8 (8-bit data only).

    Raises :class:`UnsupportedEncodingError` for anything else and ``ValueError`` where ``data`` is too short.
    """
    if encoding in _CHANNEL_ORDER:
        channels, order = _CHANNEL_ORDER[encoding]
    elif encoding in ("mono8", "8UC1"):
        channels, order = 1, [0, 0, 0]
    else:
        raise UnsupportedEncodingError(f"image encoding {encoding!r} is not supported (use rgb8, bgr8, rgba8, bgra8 "
                                  "or mono8)")
    buffer = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    if height <= 0 or width <= 0 or step < width * channels or buffer.size < step * height:
        raise ValueError(f"image {width}×{height} {encoding} with step {step} needs {step * height} bytes, "
                         f"got {buffer.size}")
    rows = buffer[: step * height].reshape(height, step)[:, : width * channels]
    return np.ascontiguousarray(rows.reshape(height, width, channels)[:, :, order])


def decode_compressed(data: bytes | np.ndarray) -> np.ndarray:
    """sensor_msgs/CompressedImage data (JPEG or PNG) → H×W×3 uint8 RGB. Raises UnsupportedEncodingError."""
    buffer = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise UnsupportedEncodingError(f"compressed image of {buffer.size} bytes could not be decoded as JPEG or PNG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def intrinsics_valid(K: np.ndarray) -> bool:
    """True where K is 3×3, finite, with positive focal lengths."""
    return K.shape == (3, 3) and bool(np.all(np.isfinite(K))) and K[0, 0] > 0 and K[1, 1] > 0


@dataclass
class CameraInfoFields:
    """The fields of a sensor_msgs/CameraInfo for the depth image (row-major flat lists)."""

    height: int
    width: int
    distortion_model: str
    d: list[float]
    k: list[float]
    r: list[float]
    p: list[float]


def depth_camera_info(K_depth: np.ndarray, height: int, width: int, distortion_model: str = "plumb_bob",
                      d: list[float] | None = None, r: list[float] | None = None) -> CameraInfoFields:
    """CameraInfo of the depth image: K (3×3 pixels of the depth image) and P = [K | 0]. The distortion
    coefficients are dimensionless, so the input's D carries over unchanged to a resized image."""
    K_depth = np.asarray(K_depth, dtype=np.float64)
    P = np.concatenate([K_depth, np.zeros((3, 1))], axis=1)
    return CameraInfoFields(height=height, width=width, distortion_model=distortion_model,
                            d=list(d) if d is not None else [0.0] * 5, k=K_depth.ravel().tolist(),
                            r=list(r) if r is not None else np.eye(3).ravel().tolist(), p=P.ravel().tolist())


def quaternion_from_rotation(R: np.ndarray) -> np.ndarray:
    """3×3 rotation matrix → unit quaternion (x, y, z, w) with w ≥ 0 (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 1e-12))
        q = np.empty(4)
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
        q[3] = (R[k, j] - R[j, k]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """3×3 rotation → axis × angle (radians), via OpenCV's Rodrigues."""
    vector, _ = cv2.Rodrigues(np.asarray(R, dtype=np.float64))
    return vector.ravel()


@dataclass
class OdometryState:
    """Pose of the camera in the odometry frame and its velocity in the camera frame (nav_msgs/Odometry)."""

    position: np.ndarray  # 3, metres, odometry frame
    orientation_xyzw: np.ndarray  # 4, unit quaternion
    linear_velocity: np.ndarray  # 3, m/s, camera (child) frame
    angular_velocity: np.ndarray  # 3, rad/s, camera (child) frame


class OdometryAccumulator:
    """Chains the pose network's frame-to-frame motions into ``T_odom_camera``.

    The odometry frame is the first camera pose after :meth:`reset` (optical axes: z forward, y down).
    ``update(T_prev_current, dt)`` takes the 4×4 current-camera → previous-camera transform (DepthResult
    convention); ``None`` (no motion estimate for this frame) keeps the pose and reports zero velocity.
    """

    def __init__(self) -> None:
        self.T_odom_camera = np.eye(4)

    def reset(self) -> None:
        self.T_odom_camera = np.eye(4)

    def update(self, T_prev_current: np.ndarray | None, dt: float) -> OdometryState:
        linear = np.zeros(3)
        angular = np.zeros(3)
        if T_prev_current is not None:
            T = np.asarray(T_prev_current, dtype=np.float64)
            if T.shape != (4, 4) or not np.all(np.isfinite(T)):
                raise ValueError(f"T_prev_current must be a finite 4×4 matrix, got {T.shape}")
            self.T_odom_camera = self.T_odom_camera @ T
            if dt > 0:
                # T_prev_current maps current-camera points into the previous camera: the current camera sits at
                # T[:3, 3] in the previous frame. Velocity in the current (child) frame: R^T t / dt.
                linear = T[:3, :3].T @ T[:3, 3] / dt
                angular = rotation_vector(T[:3, :3]) / dt
        return OdometryState(position=self.T_odom_camera[:3, 3].copy(),
                             orientation_xyzw=quaternion_from_rotation(self.T_odom_camera[:3, :3]),
                             linear_velocity=linear, angular_velocity=angular)


@dataclass
class ObjectSummary:
    """A dynamic object with its 3-D extent in the camera optical frame (metres)."""

    object: DynamicObject
    median_depth: float  # NaN where none of its pixels has a valid depth
    centroid: np.ndarray  # 3, metres (NaN where no valid pixel)
    size: np.ndarray  # 3, metres: box width, height from the pixel box at the median depth; depth extent


def summarise_objects(objects: list[DynamicObject], mask: np.ndarray | None, depth: np.ndarray,
                      K: np.ndarray) -> list[ObjectSummary]:
    """Median depth, centroid and box size of each object from its pixels in ``mask`` (H×W ids) and ``depth``."""
    summaries = []
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    for obj in objects:
        pixels = (mask == obj.instance_id) if mask is not None else np.zeros(depth.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            pixels &= np.isfinite(depth) & (depth > 0)
        if not pixels.any():
            nan3 = np.full(3, np.nan)
            summaries.append(ObjectSummary(obj, float("nan"), nan3, nan3.copy()))
            continue
        rows, cols = np.nonzero(pixels)
        z = depth[rows, cols].astype(np.float64)
        points = np.stack([(cols - cx) / fx * z, (rows - cy) / fy * z, z], axis=1)
        median = float(np.median(z))
        x0, y0, x1, y1 = obj.box_xyxy
        size = np.array([(x1 - x0) / fx * median, (y1 - y0) / fy * median,
                         float(np.percentile(z, 90) - np.percentile(z, 10))])
        summaries.append(ObjectSummary(obj, median, points.mean(axis=0), np.maximum(size, 0.05)))
    return summaries
