"""Start mgdepth's depth node (and optionally RViz).

    ros2 launch mgdepth_ros depth.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info \
        weights:=/path/to/weights rviz:=true

``lifecycle:=true`` starts the managed node (depth_lifecycle_node) instead: it waits, unconfigured, for
``ros2 lifecycle set /mgdepth_depth configure`` and ``activate``.

Arguments override config/depth.yaml (or the file given as params_file). Run ``--show-args`` for the list.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "mgdepth_ros"

# Launch arguments that are node parameters of the same name (checked against the node by the tests).
NODE_PARAMETER_ARGUMENTS = {
    "weights": ("", "checkpoint file or directory; empty = random init (useless depth)"),
    "method": ("manydepth2", "manydepth2 or manydepth"),
    "device": ("cpu", "torch device: cpu, cuda, cuda:1, ..."),
    "transport": ("raw", "raw (sensor_msgs/Image) or compressed (image/compressed)"),
    "input_reliability": ("auto", "auto (match the camera publisher), reliable or best_effort"),
    "depth_scale": ("1.0", "metres per network depth unit"),
    "scale_source": ("fixed", "metric scale: fixed (depth_scale), camera_height or odometry (odometry_in)"),
    "camera_height_m": ("1.65", "scale_source camera_height: camera height above the road, metres"),
}


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument("image", default_value="image", description="input image topic (remaps 'image')"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="input camera_info topic (remaps 'camera_info')"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "depth.yaml"]),
                              description="node parameters (YAML); the arguments below override it"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="start the managed (lifecycle) node, driven by ros2 lifecycle set"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/mgdepth.rviz"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (ros2 bag play --clock)"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=description)
                  for name, (default, description) in NODE_PARAMETER_ARGUMENTS.items()]
    overrides = {name: LaunchConfiguration(name) for name in NODE_PARAMETER_ARGUMENTS}
    overrides["use_sim_time"] = LaunchConfiguration("use_sim_time")
    depth = {
        "package": PACKAGE,
        "name": "mgdepth_depth",
        "namespace": LaunchConfiguration("namespace"),
        "parameters": [LaunchConfiguration("params_file"), overrides],
        "remappings": [("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
        "output": "screen",
    }
    lifecycle = LaunchConfiguration("lifecycle")
    depth_node = Node(executable="depth_node", condition=UnlessCondition(lifecycle), **depth)
    managed_depth_node = LifecycleNode(executable="depth_lifecycle_node", condition=IfCondition(lifecycle), **depth)
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="mgdepth_rviz",
        arguments=["-d", PathJoinSubstitution([share, "config", "mgdepth.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*arguments, depth_node, managed_depth_node, rviz])
