"""Shared test fixtures: where ../shared/data is, a per-session ROS domain id, and the colcon workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from colcon_build import colcon_build, missing_build_tools

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MGDEPTH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real KITTI frames, splits, bags); skips with the reason where it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set MGDEPTH_SHARED_DATA to its path)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def isolated_ros_domain():
    """Keep ROS traffic of this test run on localhost and on a domain id of its own (derived from the pid)."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    yield


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """colcon build of this repository (mgdepth_ros) and msg/ (mgdepth_msgs) in a temporary workspace; its install
    folder."""
    reason = missing_build_tools()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("colcon_ws")
    result = colcon_build([REPO, REPO / "msg"], root)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "Finished <<< mgdepth_msgs" in result.stdout and "Finished <<< mgdepth_ros" in result.stdout
    return root / "install"
