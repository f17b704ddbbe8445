"""rclpy message adapters around :mod:`mgdepth_core.outputs` and :mod:`mgdepth_core.pointcloud`.

Image / CompressedImage / CameraInfo → numpy, and depth, masks, colourised depth, camera_info, PointCloud2,
Odometry, DynamicObjectArray (mgdepth_msgs, where built) and MarkerArray ← numpy.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from mgdepth_core.outputs import (
    CameraInfoFields,
    ImageFields,
    ObjectSummary,
    OdometryState,
    decode_compressed,
    decode_image,
)
from mgdepth_core.pointcloud import PackedCloud, unpack_cloud

try:
    from mgdepth_msgs.msg import DynamicObject as DynamicObjectMsg
    from mgdepth_msgs.msg import DynamicObjectArray
except ImportError:  # the interface package is not built or not sourced: the node publishes MarkerArray only
    DynamicObjectMsg = DynamicObjectArray = None

HAVE_OBJECT_MESSAGES = DynamicObjectArray is not None


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) → H×W×3 uint8 RGB. Raises UnsupportedEncodingError."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) → H×W×3 uint8 RGB. Raises UnsupportedEncodingError."""
    return decode_compressed(msg.data)


def camera_info_intrinsics(msg: CameraInfo) -> np.ndarray:
    """3×3 intrinsics (pixels of the image the CameraInfo describes)."""
    return np.asarray(msg.k, dtype=np.float64).reshape(3, 3)


def image_msg(fields: ImageFields, header: Header) -> Image:
    """ImageFields → sensor_msgs/Image with ``header``."""
    msg = Image(header=header, height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    msg.data = fields.data
    return msg


def image_msg_to_array(msg: Image) -> np.ndarray:
    """32FC1 / 16UC1 / mono8 / rgb8 / bgr8 Image → H×W (×C) numpy array, no colour conversion."""
    dtype, channels = {"32FC1": ("<f4", 1), "16UC1": ("<u2", 1), "mono8": ("u1", 1), "rgb8": ("u1", 3),
                       "bgr8": ("u1", 3)}[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    array = rows[:, : msg.width * channels * itemsize].copy().view(dtype)
    return array.reshape(msg.height, msg.width, channels) if channels > 1 else array.reshape(msg.height, msg.width)


def camera_info_msg(fields: CameraInfoFields, header: Header) -> CameraInfo:
    """CameraInfoFields → sensor_msgs/CameraInfo with ``header``."""
    return CameraInfo(header=header, height=fields.height, width=fields.width,
                      distortion_model=fields.distortion_model, d=fields.d, k=fields.k, r=fields.r, p=fields.p)


def cloud_msg(cloud: PackedCloud, header: Header) -> PointCloud2:
    """PackedCloud → unorganised sensor_msgs/PointCloud2 (height 1, dense, little-endian)."""
    msg = PointCloud2(header=header, height=1, width=cloud.width, is_bigendian=False, point_step=cloud.point_step,
                      row_step=cloud.row_step, is_dense=True,
                      fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                              for f in cloud.fields])
    msg.data = cloud.data
    return msg


def cloud_msg_to_points(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with float32 x, y, z (and packed rgb) → (N×3 float32, N×3 uint8 or None)."""
    return unpack_cloud(bytes(msg.data), msg.point_step, {f.name: f.offset for f in msg.fields})


def odometry_msg(state: OdometryState, header: Header, odom_frame: str, child_frame: str) -> Odometry:
    """OdometryState → nav_msgs/Odometry: pose in ``odom_frame``, twist in ``child_frame``. Covariance
    diagonals are 1e3 (uninformative): monocular scale and drift are not estimated."""
    msg = Odometry()
    msg.header.stamp = header.stamp
    msg.header.frame_id = odom_frame
    msg.child_frame_id = child_frame
    position = msg.pose.pose.position
    position.x, position.y, position.z = (float(v) for v in state.position)
    orientation = msg.pose.pose.orientation
    orientation.x, orientation.y, orientation.z, orientation.w = (float(v) for v in state.orientation_xyzw)
    linear, angular = msg.twist.twist.linear, msg.twist.twist.angular
    linear.x, linear.y, linear.z = (float(v) for v in state.linear_velocity)
    angular.x, angular.y, angular.z = (float(v) for v in state.angular_velocity)
    covariance = np.diag(np.full(6, 1e3)).ravel().tolist()
    msg.pose.covariance = covariance
    msg.twist.covariance = covariance
    return msg


def _point(xyz: np.ndarray) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def objects_msg(summaries: list[ObjectSummary], header: Header):
    """ObjectSummaries → mgdepth_msgs/DynamicObjectArray (only where mgdepth_msgs is importable)."""
    if not HAVE_OBJECT_MESSAGES:
        raise RuntimeError("mgdepth_msgs is not built or not sourced (see docs/ros.md, 'Custom messages')")
    msg = DynamicObjectArray(header=header)
    for summary in summaries:
        obj = summary.object
        msg.objects.append(DynamicObjectMsg(
            instance_id=int(obj.instance_id), class_id=int(obj.class_id), class_name=obj.class_name,
            score=float(obj.score), dice=float(obj.dice), box_xyxy=[float(v) for v in obj.box_xyxy],
            pixel_count=int(obj.pixel_count), median_depth=float(summary.median_depth),
            centroid=_point(summary.centroid)))
    return msg


def markers_msg(summaries: list[ObjectSummary], header: Header, lifetime_s: float = 0.5) -> MarkerArray:
    """ObjectSummaries → MarkerArray: a DELETEALL, then per object with a valid depth a translucent CUBE at its
    centroid sized by its extent and a TEXT label ("car 0.93, dice 0.41") above it."""
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for summary in summaries:
        if not np.all(np.isfinite(summary.centroid)):
            continue
        obj = summary.object
        cube = Marker(header=header, ns="dynamic_objects", id=int(obj.instance_id), type=Marker.CUBE,
                      action=Marker.ADD, lifetime=lifetime)
        cube.pose.position = _point(summary.centroid)
        cube.pose.orientation.w = 1.0
        cube.scale.x, cube.scale.y, cube.scale.z = (float(v) for v in summary.size)
        cube.color.r, cube.color.g, cube.color.b, cube.color.a = 1.0, 0.3, 0.1, 0.5
        label = Marker(header=header, ns="dynamic_object_labels", id=int(obj.instance_id),
                       type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, lifetime=lifetime,
                       text=f"{obj.class_name} {obj.score:.2f}, dice {obj.dice:.2f}")
        label.pose.position = _point(summary.centroid - np.array([0.0, summary.size[1] / 2 + 0.3, 0.0]))
        label.pose.orientation.w = 1.0
        label.scale.z = 0.5
        label.color.r = label.color.g = label.color.b = label.color.a = 1.0
        markers.extend([cube, label])
    return MarkerArray(markers=markers)
