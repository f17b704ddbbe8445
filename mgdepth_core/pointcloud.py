"""Depth image + intrinsics (+ colour) → 3-D points, and the sensor_msgs/PointCloud2 byte layout (no ROS imports).

Points are in the camera optical frame (REP 103: x right, y down, z forward), metres. The layout is the one
RViz's ``RGB8`` colour transformer and PCL expect: ``x, y, z`` float32 followed by ``rgb``, a float32 whose four
bytes hold the packed ``0x00RRGGBB`` integer. The node and the bag writer turn :class:`PackedCloud` into a
message of their own message library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# sensor_msgs/PointField datatype constants.
POINTFIELD_FLOAT32 = 7


@dataclass(frozen=True)
class CloudField:
    """One sensor_msgs/PointField: name, byte offset in a point, datatype constant, element count."""

    name: str
    offset: int
    datatype: int
    count: int = 1


XYZ_FIELDS = (
    CloudField("x", 0, POINTFIELD_FLOAT32),
    CloudField("y", 4, POINTFIELD_FLOAT32),
    CloudField("z", 8, POINTFIELD_FLOAT32),
)
XYZRGB_FIELDS = (*XYZ_FIELDS, CloudField("rgb", 12, POINTFIELD_FLOAT32))


@dataclass
class CloudPoints:
    """Valid points of a depth image. ``xyz``: N×3 float32 metres; ``rgb``: N×3 uint8 or None;
    ``rows``/``cols``: N int, the depth pixel each point comes from."""

    xyz: np.ndarray
    rgb: np.ndarray | None
    rows: np.ndarray
    cols: np.ndarray


@dataclass
class PackedCloud:
    """An unorganised (height 1) little-endian PointCloud2 payload."""

    fields: tuple[CloudField, ...]
    point_step: int
    width: int
    data: bytes

    @property
    def row_step(self) -> int:
        return self.point_step * self.width


def depth_to_points(depth: np.ndarray, K: np.ndarray, colour: np.ndarray | None = None, decimation: int = 1,
                    min_range: float = 0.0, max_range: float = float("inf")) -> CloudPoints:
    """Back-project every ``decimation``-th pixel (rows and columns) of ``depth``.

    ``depth``: H×W metres along the optical axis (Z), NaN/inf/≤0 invalid; ``K``: 3×3 pixels of ``depth``;
    ``colour``: H×W×3 uint8 RGB in the same geometry, or None. Points with Z outside
    (``min_range``, ``max_range``] or non-finite are dropped. Order: row-major over the decimated grid.
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be H×W, got shape {depth.shape}")
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3×3, got shape {K.shape}")
    if colour is not None and colour.shape[:2] != depth.shape:
        raise ValueError(f"colour {colour.shape[:2]} and depth {depth.shape} differ in size")
    if decimation < 1:
        raise ValueError(f"decimation must be ≥ 1, got {decimation}")
    rows, cols = np.mgrid[0:depth.shape[0]:decimation, 0:depth.shape[1]:decimation]
    z = depth[rows, cols].astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > min_range) & (z > 0) & (z <= max_range)
    rows, cols, z = rows[valid], cols[valid], z[valid]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (cols - cx) / fx * z
    y = (rows - cy) / fy * z
    xyz = np.stack([x, y, z], axis=1).astype(np.float32)
    rgb = colour[rows, cols].astype(np.uint8) if colour is not None else None
    return CloudPoints(xyz=xyz, rgb=rgb, rows=rows, cols=cols)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """N×3 uint8 RGB → N float32 whose bytes are the integer 0x00RRGGBB (PCL / RViz ``rgb`` field)."""
    rgb = rgb.astype(np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: N float32 → N×3 uint8 RGB."""
    value = np.ascontiguousarray(packed, dtype="<f4").view("<u4")
    return np.stack([(value >> 16) & 255, (value >> 8) & 255, value & 255], axis=1).astype(np.uint8)


def pack_cloud(points: CloudPoints) -> PackedCloud:
    """Points → PointCloud2 fields and bytes (x, y, z float32, plus packed rgb where ``points.rgb`` is set)."""
    if points.rgb is None:
        fields, columns = XYZ_FIELDS, [points.xyz.astype("<f4")]
    else:
        fields, columns = XYZRGB_FIELDS, [points.xyz.astype("<f4"), pack_rgb(points.rgb)[:, None]]
    array = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    return PackedCloud(fields=fields, point_step=4 * len(fields), width=len(array), data=array.tobytes())


def unpack_cloud(data: bytes, point_step: int, fields: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read float32 ``x, y, z`` (and packed ``rgb`` where present) back from PointCloud2 bytes.

    ``fields``: field name → byte offset. Returns (N×3 float32 xyz, N×3 uint8 rgb or None).
    """
    count = len(data) // point_step
    raw = np.frombuffer(data, dtype=np.uint8)[: count * point_step].reshape(count, point_step)

    def column(name: str) -> np.ndarray:
        offset = fields[name]
        return raw[:, offset:offset + 4].copy().view("<f4")[:, 0]

    xyz = np.stack([column("x"), column("y"), column("z")], axis=1)
    rgb = unpack_rgb(column("rgb")) if "rgb" in fields else None
    return xyz, rgb
