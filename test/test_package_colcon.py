"""The ROS 2 package as ROS tools see it: colcon build of mgdepth_ros + mgdepth_msgs, installed paths, the launch
file's arguments, the parameter file and the RViz layout."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from colcon_build import VENV_PREFIX
from conftest import REPO


@pytest.mark.slow
def test_colcon_installs_where_ros2_run_and_launch_look(workspace):
    share = workspace / "mgdepth_ros" / "share" / "mgdepth_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "depth.launch.py").is_file()
    assert (share / "config" / "depth.yaml").is_file() and (share / "config" / "mgdepth.rviz").is_file()
    assert (workspace / "mgdepth_ros" / "share" / "ament_index" / "resource_index" / "packages" / "mgdepth_ros"
            ).is_file()
    for executable in ("depth_node", "depth_lifecycle_node", "bag_trainer", "demo", "mgdepth"):
        path = workspace / "mgdepth_ros" / "lib" / "mgdepth_ros" / executable
        assert path.is_file() and os.access(path, os.X_OK), path
    script = (workspace / "mgdepth_ros" / "lib" / "mgdepth_ros" / "depth_node").read_text()
    assert "mgdepth_ros.depth_node" in script or "depth_node" in script
    assert (workspace / "mgdepth_msgs" / "share" / "mgdepth_msgs" / "msg" / "DynamicObjectArray.msg").is_file()


@pytest.mark.slow
def test_built_messages_travel_through_rclpy_and_the_node_uses_them(workspace):
    """With the built mgdepth_msgs on the path (as `source install/setup.sh` does), the conversions find them
    and a DynamicObjectArray made from an object summary round-trips through Fast DDS."""
    env = dict(os.environ)
    msgs = workspace / "mgdepth_msgs"
    env["PYTHONPATH"] = os.pathsep.join([str(msgs / "lib" / "python3.11" / "site-packages"), str(REPO)])
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(msgs / "lib"), env.get("LD_LIBRARY_PATH", "")])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(msgs), str(VENV_PREFIX)])
    program = textwrap.dedent("""
        import time
        import numpy as np
        import rclpy
        from std_msgs.msg import Header
        from mgdepth_core.dynamic_tracking import DynamicObject
        from mgdepth_core.outputs import summarise_objects
        from mgdepth_ros import conversions
        assert conversions.HAVE_OBJECT_MESSAGES
        depth = np.full((20, 40), 8.0, np.float32)
        mask = np.zeros((20, 40), np.uint16)
        mask[5:10, 10:20] = 4
        K = np.array([[30.0, 0, 20], [0, 30.0, 10], [0, 0, 1]])
        summaries = summarise_objects([DynamicObject(4, 3, "car", 0.9, 0.3, (10, 5, 20, 10), 50)], mask, depth, K)
        rclpy.init()
        node = rclpy.create_node("msgs_check")
        received = []
        node.create_subscription(conversions.DynamicObjectArray, "objects", received.append, 10)
        publisher = node.create_publisher(conversions.DynamicObjectArray, "objects", 10)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            publisher.publish(conversions.objects_msg(summaries, Header(frame_id="cam")))
            rclpy.spin_once(node, timeout_sec=0.1)
        obj = received[0].objects[0]
        print(received[0].header.frame_id, obj.class_name, obj.instance_id, round(obj.median_depth, 3),
              round(obj.centroid.z, 3), [float(v) for v in obj.box_xyxy])
    """)
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["cam", "car", "4", "8.0", "8.0", "[10.0,", "5.0,", "20.0,", "10.0]"]


def _launch_arguments() -> tuple[dict[str, ast.Call], dict]:
    tree = ast.parse((REPO / "launch" / "depth.launch.py").read_text())
    declared = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument"
                and node.args and isinstance(node.args[0], ast.Constant)):
            declared[node.args[0].value] = node
    namespace: dict = {}
    for node in tree.body:  # the NODE_PARAMETER_ARGUMENTS table (declared in a comprehension)
        if isinstance(node, ast.Assign) and node.targets[0].id == "NODE_PARAMETER_ARGUMENTS":
            namespace = ast.literal_eval(node.value)
    return declared, namespace


def test_launch_file_compiles_and_its_arguments_match_the_node():
    from mgdepth_ros.depth_parameters import PARAMETERS

    source = (REPO / "launch" / "depth.launch.py").read_text()
    compile(source, "depth.launch.py", "exec")
    declared, parameter_arguments = _launch_arguments()
    names = set(declared) | set(parameter_arguments)
    assert {"weights", "image", "camera_info", "device", "method", "params_file", "rviz", "namespace",
            "lifecycle"} <= names
    for name, (default, _) in parameter_arguments.items():
        assert name in PARAMETERS, f"launch argument {name} is not a node parameter"
        assert str(PARAMETERS[name][0]) == default, f"launch default of {name} differs from the node's"
    assert "generate_launch_description" in source and "mgdepth.rviz" in source and "depth.yaml" in source
    assert '"depth_lifecycle_node"' in source and "LifecycleNode(" in source


def test_parameter_file_matches_the_declared_parameters():
    from mgdepth_ros.depth_parameters import PARAMETERS

    parameters = yaml.safe_load((REPO / "config" / "depth.yaml").read_text())["/**"]["ros__parameters"]
    assert parameters == {name: default for name, (default, _) in PARAMETERS.items()}


def test_rviz_layout_shows_every_output_in_the_camera_frame():
    layout = yaml.safe_load((REPO / "config" / "mgdepth.rviz").read_text())["Visualization Manager"]
    assert layout["Global Options"]["Fixed Frame"] == "camera_optical"
    displays = {d["Topic"]["Value"]: d for d in layout["Displays"]}
    assert set(displays) == {"/image", "/depth/image_rect", "/depth/colorized", "/dynamic_mask", "/points",
                             "/odometry", "/dynamic_objects/markers", "/static_reference"}
    assert displays["/static_reference"]["Enabled"] is False  # off: the node then does not compute it
    depth = displays["/depth/image_rect"]
    assert (depth["Normalize Range"], depth["Min Value"], depth["Max Value"]) == (False, 0, 80)
    assert displays["/points"]["Class"] == "rviz_default_plugins/PointCloud2"
    assert displays["/points"]["Color Transformer"] == "RGB8"
    assert displays["/odometry"]["Class"] == "rviz_default_plugins/Odometry"
    assert displays["/dynamic_objects/markers"]["Class"] == "rviz_default_plugins/MarkerArray"
