"""``depth_node``: live monocular depth, dynamic objects, point cloud and visual odometry from one camera.

Subscribes to ``image`` (sensor_msgs/Image, or ``image/compressed`` with ``transport: compressed``) and
``camera_info``; publishes, with the input header: ``depth/image_rect`` (32FC1 metres, NaN invalid),
``depth/camera_info``, ``depth/colorized`` (bgr8), ``dynamic_mask`` (16UC1 instance ids), ``points``
(PointCloud2 xyz + rgb), ``odometry`` (nav_msgs/Odometry), ``dynamic_objects`` (mgdepth_msgs/DynamicObjectArray,
where built) and ``dynamic_objects/markers`` (MarkerArray). See docs/ros.md. The parameters are in
:mod:`mgdepth_ros.depth_parameters`, the work in :mod:`mgdepth_ros.depth_processing`, the outputs in
:mod:`mgdepth_ros.depth_publishing`; :mod:`mgdepth_ros.depth_lifecycle_node` is the managed variant.
"""

from __future__ import annotations

from rclpy.node import Node

from mgdepth_ros.depth_processing import DepthProcessing, run


class DepthNode(DepthProcessing, Node):
    """The depth node, processing from construction to destruction. ``estimator``: a ready DepthEstimator (tests,
    demo, benchmark); None builds one from the ``weights``/``method``/``device`` parameters."""

    def __init__(self, estimator=None, node_name: str = "mgdepth_depth", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self._init_depth()
        self._configure_depth(estimator)
        self._start_depth()


def main(args: list[str] | None = None) -> None:
    """Console script ``depth_node`` (``ros2 run mgdepth_ros depth_node``)."""
    run(DepthNode, args)


if __name__ == "__main__":
    main()
