"""The depth node's parameters: names, defaults and descriptions, reading and checking them, and the estimator they
describe. config/depth.yaml carries the same defaults; docs/ros.md lists them."""

from __future__ import annotations

import typing

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.node import Node

from mgdepth_core.config import to_dict
from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.inference import DepthEstimator, EstimatorConfig
from mgdepth_ros.qos import RELIABILITY_MODES

# name: (default, description)
PARAMETERS: dict[str, tuple[object, str]] = {
    "weights": ("", "checkpoint file or directory (ours or the official Manydepth/Manydepth2 release); "
                    "empty = random init, useless depth, for plumbing tests only"),
    "method": ("manydepth2", "manydepth2 (motion-aware cost volume) or manydepth (the baseline)"),
    "device": ("cpu", "torch device: cpu, cuda, cuda:1, ..."),
    "depth_scale": (1.0, "metres per network depth unit (DepthEstimator): scales depth, cloud and odometry "
                         "translation (self-supervised monocular depth has no metric scale of its own); the "
                         "fallback of the other scale sources"),
    "scale_source": ("fixed", "metric scale: fixed (depth_scale), camera_height (ground plane below the camera at "
                              "camera_height_m) or odometry (pose-net translation matched to nav_msgs/Odometry on "
                              "'odometry_in')"),
    "camera_height_m": (1.65, "scale_source camera_height: camera height above the road, metres"),
    "ground_rows": (0.35, "scale_source camera_height: fraction of the image rows, from the bottom, searched for "
                          "the ground plane"),
    "scale_window": (10, "scale_source odometry: frames whose translations are matched (ratio of sums)"),
    "scale_smoothing": (0.2, "weight of a new scale measurement in the exponential moving average (1 = none)"),
    "transport": ("raw", "raw: sensor_msgs/Image on 'image'; compressed: CompressedImage on 'image/compressed'"),
    "input_reliability": ("auto", "auto: copy the image publisher's reliability (best effort until one is seen); "
                                  "reliable; best_effort"),
    "queue_depth": (1, "input subscription queue depth (the newest frame wins anyway; frames the queue replaces "
                       "are counted as lost)"),
    "max_gap_s": (0.5, "a larger gap between input stamps restarts the frame buffer (single-frame depth) "
                       "(DepthEstimator)"),
    "fallback_intrinsics": ([0.0, 0.0, 0.0, 0.0], "fx, fy, cx, cy in input pixels used when no camera_info has "
                                                  "arrived for the image's frame_id; zeros = skip such frames"),
    "publish_depth": (True, "publish depth/image_rect and depth/camera_info"),
    "publish_colorized": (True, "publish depth/colorized (bgr8, inverse depth on magma)"),
    "publish_mask": (True, "publish dynamic_mask (instance ids of truly dynamic objects)"),
    "publish_cloud": (True, "publish points (PointCloud2)"),
    "publish_odometry": (True, "publish odometry (camera motion chained from the pose network)"),
    "publish_objects": (True, "publish dynamic_objects (mgdepth_msgs, where built) and dynamic_objects/markers"),
    "publish_static_reference": (True, "publish static_reference (rgb8): the view the cost volume matched "
                                       "against (Manydepth2's static reference frame, Manydepth's previous frame)"),
    "mask_encoding": ("16UC1", "dynamic_mask encoding: 16UC1 or mono8"),
    "cloud_decimation": (2, "keep every n-th depth pixel in rows and columns for the point cloud"),
    "cloud_min_range": (0.1, "drop cloud points nearer than this, metres (along z)"),
    "cloud_max_range": (80.0, "drop cloud points farther than this, metres (along z)"),
    "cloud_colour": (True, "add the packed rgb field (RViz colour transformer RGB8)"),
    "colorize_min_depth": (0.0, "depth/colorized: nearest depth of the colour map, metres; 0 = per frame (5th "
                                "percentile)"),
    "colorize_max_depth": (0.0, "depth/colorized: farthest depth of the colour map, metres; 0 = per frame (95th "
                                "percentile)"),
    "odom_frame": ("odom", "frame_id of odometry; the child frame is the camera's optical frame (input frame_id)"),
    "marker_lifetime_s": (0.5, "lifetime of the dynamic-object markers, seconds"),
    "stats_period_s": (1.0, "period of the rate / drop / latency report (log and /diagnostics), seconds"),
    "warning_period_s": (5.0, "a repeated warning of one kind is logged at most once per this period, seconds"),
    "backend": ("torch", "run the networks in torch, or as exported ONNX graphs on onnxruntime's CPU provider "
                         "(device cpu)"),
    "num_threads": (0, "torch CPU threads (and onnxruntime's); 0 = leave the library's setting"),
    "autocast": ("auto", "mixed precision of the networks: auto (float16 on CUDA, off on the CPU), off, float16, "
                         "bfloat16 (an approximation: docs/inference.md)"),
    "compile": ("off", "torch.compile the networks: off, default, reduce-overhead (CUDA graphs on CUDA); the first "
                       "frames compile them (minutes on a CPU)"),
    "flow_input_scale": (0.0, "Manydepth2: optical flow on frames resized by this factor (0.5 = a quarter of the "
                              "pixels, an approximation); 0 = the model's setting"),
    "cost_volume_bin_step": (1, "matching cost at every Nth depth bin, the others interpolated (an approximation); "
                                "1 = every bin"),
    "skip_release_motion": (False, "Manydepth2 official weights (static_reference release): skip the flow and the "
                                   "teacher, which reach at most 4 pixels of the release's static reference"),
    "dynamic_objects": ("none", "Dyna-DM dynamic objects: none (off) or dyna-dm; true/false also accepted. Fills "
                                "dynamic_mask and dynamic_objects"),
    "instances_source": ("segmenter", "where instances come from: segmenter (Mask R-CNN in the node) or topic "
                                      "(16UC1/mono8 instance ids on 'instances', paired with the image by exact "
                                      "stamp)"),
    "segmenter_weights": ("", "Mask R-CNN COCO state dict; empty = the official file in the torch hub cache "
                              "(torch.hub.get_dir()/checkpoints); never downloaded"),
    "dynamic_theta": (0.9, "Dyna-DM theta: Sørensen–Dice of the ego-motion-warped mask below this = truly dynamic"),
    "dynamic_min_area_fraction": (0.0075, "objects covering less of the frame are ignored (0.75 %)"),
}
DYNAMIC_TYPED = {"dynamic_objects"}  # accepts a bool or a string
CHOICES = {"transport": ("raw", "compressed"), "input_reliability": RELIABILITY_MODES,
           "instances_source": ("segmenter", "topic"), "scale_source": ("fixed", "camera_height", "odometry"),
           "mask_encoding": ("16UC1", "mono8"),
           **{name: typing.get_args(typing.get_type_hints(EstimatorConfig)[name])  # the estimator's own choices
              for name in ("backend", "autocast", "compile")}}
MINIMUM = {"queue_depth": 1, "cloud_decimation": 1, "scale_window": 1, "stats_period_s": 0.05, "max_gap_s": 0.0,
           "cloud_min_range": 0.0, "cloud_max_range": 0.0, "colorize_min_depth": 0.0, "colorize_max_depth": 0.0,
           "marker_lifetime_s": 0.0, "warning_period_s": 0.0, "num_threads": 0, "flow_input_scale": 0.0,
           "cost_volume_bin_step": 1}
# Read for every frame, so a change applies from the next one; every other parameter is read when the node starts
# (the lifecycle node: on configure).
LIVE = {"publish_depth", "publish_colorized", "publish_mask", "publish_cloud", "publish_odometry", "publish_objects",
        "mask_encoding", "cloud_decimation", "cloud_min_range", "cloud_max_range", "cloud_colour",
        "colorize_min_depth", "colorize_max_depth", "marker_lifetime_s", "odom_frame", "warning_period_s"}


def declare_parameters(node: Node) -> None:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` with its description."""
    for name, (default, description) in PARAMETERS.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                  dynamic_typing=name in DYNAMIC_TYPED))


def value_error(name: str, value: object) -> str | None:
    """Why ``value`` is not a valid value of parameter ``name`` (None when it is)."""
    if name in CHOICES and value not in CHOICES[name]:
        return f"parameter {name} must be one of {', '.join(CHOICES[name])}, got {value!r}"
    if name in MINIMUM and not value >= MINIMUM[name]:
        return f"parameter {name} must be at least {MINIMUM[name]}, got {value!r}"
    return None


def change_error(name: str, value: object, running: bool) -> str | None:
    """Why a node (``running``: with its estimator built) refuses to set parameter ``name`` to ``value`` (None when
    it accepts): a bad value, or a parameter read only when the node starts."""
    if running and name in PARAMETERS and name not in LIVE:
        return (f"parameter {name} is read when the node starts (the lifecycle node: on configure): restart it (or "
                "cleanup and configure) to change it; the output settings (publish_*, cloud_*, colorize_*, "
                "mask_encoding, odom_frame, marker_lifetime_s, warning_period_s) change while it runs")
    return value_error(name, value)


def read_parameters(node: Node) -> dict[str, object]:
    """The current values of the declared parameters; a value outside its choices or below its minimum raises
    ValueError."""
    p = {name: node.get_parameter(name).value for name in PARAMETERS}
    for name, value in p.items():
        error = value_error(name, value)
        if error:
            raise ValueError(error)
    return p


def dynamic_objects_config(p: dict[str, object]) -> DynamicObjectsConfig | None:
    """The Dyna-DM settings of parameters ``p``, or None when dynamic objects are off."""
    value = p["dynamic_objects"]
    mode = {True: "dyna-dm", False: "none"}[value] if isinstance(value, bool) else str(value).lower()
    if mode not in ("none", "dyna-dm"):
        raise ValueError(f"parameter dynamic_objects must be none, dyna-dm, true or false, got {value!r}")
    if mode == "none":
        return None
    return DynamicObjectsConfig(mode="dyna-dm", theta=float(p["dynamic_theta"]),
                                min_area_fraction=float(p["dynamic_min_area_fraction"]),
                                segmenter_weights=str(p["segmenter_weights"]))


def estimator_from_parameters(p: dict[str, object], dynamic_config: DynamicObjectsConfig | None,
                              logger: RcutilsLogger):
    """The DepthEstimator that parameters ``p`` describe (weights loaded onto ``device``)."""
    weights = p["weights"] or None
    if weights is None:
        logger.warning("NO WEIGHTS GIVEN (parameter 'weights'): the network is randomly initialised and its depth "
                       "is meaningless")
    dynamic = {"dynamic_objects": to_dict(dynamic_config)} if dynamic_config is not None else {}
    estimator = DepthEstimator.from_weights(weights, method=p["method"], device=p["device"],
                                            depth_scale=float(p["depth_scale"]), max_gap_s=float(p["max_gap_s"]),
                                            scale_source=p["scale_source"], camera_height_m=float(p["camera_height_m"]),
                                            ground_rows=float(p["ground_rows"]), scale_window=int(p["scale_window"]),
                                            scale_smoothing=float(p["scale_smoothing"]), backend=p["backend"],
                                            num_threads=int(p["num_threads"]), autocast=p["autocast"],
                                            compile=p["compile"], flow_input_scale=float(p["flow_input_scale"]),
                                            cost_volume_bin_step=int(p["cost_volume_bin_step"]),
                                            skip_release_motion=bool(p["skip_release_motion"]), **dynamic)
    logger.info(f"estimator: method {p['method']}, weights {weights or 'random init'}, device {p['device']}")
    return estimator
