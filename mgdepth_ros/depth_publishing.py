"""The depth node's outputs: one publisher per topic, and the messages a DepthResult becomes."""

from __future__ import annotations

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.lifecycle import LifecycleNodeMixin
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from mgdepth_core.outputs import (
    OdometryState,
    bgr_image,
    colorize_depth,
    depth_camera_info,
    depth_image,
    mask_image,
    rgb_image,
    summarise_objects,
)
from mgdepth_core.pointcloud import depth_to_points, pack_cloud
from mgdepth_ros import conversions

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # diagnostic_msgs is optional: statistics then go to the log only
    DiagnosticArray = None

OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)


class DepthPublishers:
    """The output publishers of ``node``; on a lifecycle node they are lifecycle publishers, which publish only
    while the node is active. ``p``: the node's parameters (which outputs, cloud and colour-map settings)."""

    def __init__(self, node: Node, p: dict[str, object]) -> None:
        managed = isinstance(node, LifecycleNodeMixin)
        create = node.create_lifecycle_publisher if managed else node.create_publisher
        self._destroy = node.destroy_lifecycle_publisher if managed else node.destroy_publisher
        self.p = p
        self.depth = create(Image, "depth/image_rect", OUTPUT_QOS)
        self.depth_info = create(CameraInfo, "depth/camera_info", OUTPUT_QOS)
        self.colorized = create(Image, "depth/colorized", OUTPUT_QOS)
        self.mask = create(Image, "dynamic_mask", OUTPUT_QOS)
        self.cloud = create(PointCloud2, "points", OUTPUT_QOS)
        self.odometry = create(Odometry, "odometry", OUTPUT_QOS)
        self.markers = create(MarkerArray, "dynamic_objects/markers", OUTPUT_QOS)
        self.static_reference = create(Image, "static_reference", OUTPUT_QOS)
        self.objects = None
        if conversions.HAVE_OBJECT_MESSAGES:
            self.objects = create(conversions.DynamicObjectArray, "dynamic_objects", OUTPUT_QOS)
        else:
            node.get_logger().info("mgdepth_msgs is not built or not sourced: dynamic objects go out as "
                                   "MarkerArray on dynamic_objects/markers only (see docs/ros.md)")
        self.diagnostics = create(DiagnosticArray, "/diagnostics", 10) if DiagnosticArray is not None else None

    @staticmethod
    def _wanted(*publishers) -> bool:
        """Whether anyone subscribes to one of ``publishers``: outputs nobody reads are neither computed nor
        serialised (a colourised image, a cloud or markers cost CPU and memory on every frame)."""
        return any(publisher is not None and publisher.get_subscription_count() > 0 for publisher in publishers)

    def publish(self, result, header: Header, odometry: OdometryState | None) -> None:
        """Publish the enabled outputs of one DepthResult that someone subscribes to, with the input ``header``;
        ``odometry``: the chained pose (None when odometry is off)."""
        p = self.p
        depth = result.depth.astype(np.float32)
        height, width = depth.shape
        if p["publish_depth"] and self._wanted(self.depth, self.depth_info):
            self.depth.publish(conversions.image_msg(depth_image(depth), header))
            self.depth_info.publish(conversions.camera_info_msg(depth_camera_info(result.K, height, width), header))
        if p["publish_colorized"] and self._wanted(self.colorized):
            bgr = colorize_depth(depth, float(p["colorize_min_depth"]), float(p["colorize_max_depth"]))
            self.colorized.publish(conversions.image_msg(bgr_image(bgr), header))
        if p["publish_mask"] and result.dynamic_mask is not None and self._wanted(self.mask):
            self.mask.publish(conversions.image_msg(mask_image(result.dynamic_mask, p["mask_encoding"]), header))
        if p["publish_cloud"] and self._wanted(self.cloud):
            points = depth_to_points(depth, result.K, result.image if p["cloud_colour"] else None,
                                     int(p["cloud_decimation"]), float(p["cloud_min_range"]),
                                     float(p["cloud_max_range"]))
            self.cloud.publish(conversions.cloud_msg(pack_cloud(points), header))
        if odometry is not None and self._wanted(self.odometry):
            self.odometry.publish(conversions.odometry_msg(odometry, header, p["odom_frame"], header.frame_id))
        if (p["publish_static_reference"] and result.lookup_image is not None
                and self._wanted(self.static_reference)):
            self.static_reference.publish(conversions.image_msg(rgb_image(result.lookup_image), header))
        if p["publish_objects"] and self._wanted(self.objects, self.markers):
            summaries = summarise_objects(result.objects, result.dynamic_mask, depth, result.K)
            if self.objects is not None:
                self.objects.publish(conversions.objects_msg(summaries, header))
            self.markers.publish(conversions.markers_msg(summaries, header, float(p["marker_lifetime_s"])))

    def publish_diagnostics(self, name: str, ok: bool, message: str, values: dict[str, str], stamp) -> None:
        """One DiagnosticStatus (level OK or WARN) on /diagnostics, where diagnostic_msgs is installed."""
        if self.diagnostics is None:
            return
        status = DiagnosticStatus(level=DiagnosticStatus.OK if ok else DiagnosticStatus.WARN, name=name,
                                  hardware_id="mgdepth", message=message,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = stamp
        self.diagnostics.publish(array)

    def destroy(self) -> None:
        """Destroy every publisher."""
        for publisher in (self.depth, self.depth_info, self.colorized, self.mask, self.cloud, self.odometry,
                          self.markers, self.static_reference, self.objects, self.diagnostics):
            if publisher is not None:
                self._destroy(publisher)
