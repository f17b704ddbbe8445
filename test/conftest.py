"""Shared test fixtures: where ../shared/data is, and a per-session ROS domain id."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
