"""Streaming inference: :class:`DepthEstimator` turns frames, one at a time, into :class:`DepthResult`.

The ROS node, ``mgdepth process-bag``, ``mgdepth infer`` and the benchmarks all use it. It keeps a frame buffer
(the previous frame's image, features, flow and masks) so that nothing is computed twice in a stream.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from mgdepth_core.acceleration import autocast_dtype, compile_networks
from mgdepth_core.config import from_dict, option, to_dict
from mgdepth_core.dynamic import DynamicObjectsConfig, FrameInstances
from mgdepth_core.dynamic_tracking import DynamicObject, DynamicObjectTracker
from mgdepth_core.geometry import disparity_to_depth, scale_intrinsics
from mgdepth_core.models.resnet import fold_batch_norms
from mgdepth_core.scale import ScaleEstimator

log = logging.getLogger(__name__)
MIN_IMAGE_SIZE = 2  # pixels: the smallest input height and width (resizing needs two samples per axis)


@dataclass
class DepthResult:
    """Everything the estimator knows about one frame. Arrays are at the depth image's resolution."""

    depth: np.ndarray  # H×W float32, metres (network depth × scale), NaN where invalid
    K: np.ndarray  # 3×3 float64 intrinsics of `depth`, pixels
    image: np.ndarray  # H×W×3 uint8 RGB, the input resized to the depth resolution (for coloured clouds)
    T_prev_current: np.ndarray | None  # 4×4 camera motion: current-camera points into the previous camera
    multi_frame: bool  # False where the single-frame teacher produced depth (first frame, gap, static camera)
    dynamic_mask: np.ndarray | None = None  # H×W uint16 instance ids of truly dynamic objects, 0 = static
    objects: list[DynamicObject] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0  # metres per network depth unit applied to depth and T_prev_current
    scale_source: str = "fixed"  # where `scale` came from: fixed (depth_scale, also the fallback), camera_height
    # or odometry
    lookup_image: np.ndarray | None = None  # H×W×3 uint8 RGB the cost volume matched against: Manydepth2's static
    # reference frame (moving objects put back where the camera alone would see them), Manydepth's previous frame;
    # None for single-frame depth
    motion_mask: np.ndarray | None = None  # H×W bool, Manydepth2: pixels the flow marked as moving (lookup redrawn)


@dataclass
class EstimatorConfig:
    """How :class:`DepthEstimator` runs a model on a stream of frames."""

    weights: str = option("", "weights folder (ours or an official release); empty = random initialisation, "
                              "which gives meaningless depth (tests and benchmarks only)")
    method: str = option("", "manydepth2 or manydepth; empty = what the weights folder holds (manydepth2 for "
                             "random initialisation)")
    device: str = option("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    height: int = option(0, "network input height; 0 = the resolution the weights were trained at")
    width: int = option(0, "network input width; 0 = the resolution the weights were trained at")
    depth_scale: float = option(1.0, "multiplier from network depth to metres (also applied to the pose "
                                     "translation): self-supervised depth is only known up to scale, so calibrate "
                                     "it, e.g. from the camera height or a stereo/LiDAR median ratio; the "
                                     "scale_source fallback")
    scale_source: Literal["fixed", "camera_height", "odometry"] = option(
        "fixed", "metric scale: fixed (depth_scale), camera_height (ground plane below the camera at "
                 "camera_height_m) or odometry (pose-net translation matched to process(measured_translation=))")
    camera_height_m: float = option(1.65, "scale_source camera_height: camera height above the road, metres")
    ground_rows: float = option(0.35, "scale_source camera_height: fraction of the image rows, from the bottom, "
                                      "searched for the ground plane")
    scale_window: int = option(10, "scale_source odometry: frames whose translations are matched (ratio of sums)")
    scale_smoothing: float = option(0.2, "weight of a new scale measurement in the exponential moving average "
                                         "(1 = no smoothing)")
    max_gap_s: float = option(0.5, "a larger gap between stamps, or a stamp going backwards, restarts the frame "
                                   "buffer (single-frame depth for that frame)")
    min_translation: float = option(0.01, "camera translation since the previous frame (metres, after "
                                          "the scale) below which the camera counts as static and the "
                                          "single-frame fallback is used; 0 disables the check")
    fallback: Literal["teacher", "empty_cost_volume"] = option(
        "teacher", "single-frame depth from the teacher network, or from the multi-frame network with an empty "
                   "cost volume (used automatically when the weights have no teacher)")
    channels_last: bool = option(True, "channels-last memory format for the networks (faster convolutions)")
    fold_batch_norm: bool = option(True, "fold batch norms into the preceding convolutions (only for a model the "
                                         "estimator built itself, see from_weights)")
    autocast: Literal["auto", "off", "float16", "bfloat16"] = option(
        "auto", "mixed precision for the networks: auto = float16 on CUDA, off on the CPU; bfloat16 also pays on "
                "CPUs with AVX-512 BF16 (an approximation: see docs/inference.md); the cost volume, the static "
                "reference and the flow's matching stay float32")
    compile: Literal["off", "default", "reduce-overhead"] = option(
        "off", "torch.compile the networks (the first frames compile them: minutes on a CPU); reduce-overhead "
               "replays CUDA graphs on CUDA (fixed image size)")
    flow_input_scale: float = option(0.0, "Manydepth2: run the optical flow on frames resized by this factor "
                                          "(0.5 = 4× fewer pixels, an approximation); 0 = the model's setting")
    skip_release_motion: bool = option(
        False, "Manydepth2 with static_reference release (official weights): skip the optical flow and the teacher, "
               "which reach at most 4 pixels of the release's 1/4-resolution static reference (its unit bug), and "
               "match against 0.75·previous + 0.25·blurred previous frame (an approximation)")
    cost_volume_bin_step: int = option(1, "compute the matching cost at every Nth depth bin and interpolate the "
                                          "others linearly (an approximation for speed); 1 = every bin")
    num_threads: int = option(0, "torch CPU threads (and onnxruntime's); 0 = leave the library's setting")
    backend: Literal["torch", "onnxruntime"] = option(
        "torch", "run the networks in torch, or as exported ONNX graphs on onnxruntime's CPU provider (device cpu; "
                 "the static reference and pre/post-processing stay in torch)")
    onnx_dir: str = option("", "backend onnxruntime: a folder written by `mgdepth export --format onnx` for these "
                               "weights; empty = export the model into a temporary folder at start-up")
    dynamic_objects: DynamicObjectsConfig = option(
        DynamicObjectsConfig(), "Dyna-DM at inference: mode dyna-dm fills DepthResult.dynamic_mask and objects "
                                "(Mask R-CNN weights from the torch hub cache or segmenter_weights)")


@dataclass
class FrameBuffer:
    """What the estimator keeps of the previous frame so that nothing is computed twice in a stream.

    Methods and add-ons keep their own per-frame caches (optical flow, instance masks, objects) in ``extras``;
    it is cleared with the buffer.
    """

    image: torch.Tensor  # 1×3×H×W in [0, 1], model resolution, on the device
    K: torch.Tensor  # 1×3×3, pixels of the model resolution
    stamp: float | None  # seconds
    features: torch.Tensor | None = None  # matching features of the frame as lookup (model.matching_features)
    extras: dict[str, Any] = field(default_factory=dict)


def _resolve_device(name: str, backend: str = "torch") -> torch.device:
    if backend == "onnxruntime":
        if name not in ("auto", "cpu"):
            raise ValueError(f"backend onnxruntime runs on the CPU (CPUExecutionProvider); got device {name!r}")
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


class DepthEstimator:
    """Depth for a stream of frames from one camera, with a one-frame buffer.

    Per frame: the pose net on (previous, current) gives ``T_prev_current``; the multi-frame network matches the
    current frame against the buffered previous one, whose matching features are reused rather than recomputed.
    The single-frame fallback (:attr:`EstimatorConfig.fallback`) serves the first frame, the frame after a
    :meth:`reset` or a stamp gap, and frames where the camera has not moved (a cost volume needs a baseline).
    """

    def __init__(self, model: torch.nn.Module, config: EstimatorConfig | None = None, owns_model: bool = False):
        """``owns_model``: the model is used for nothing else, so it may be rewritten for speed (batch norms
        folded into convolutions). The model is always moved to the device, put in eval mode and given the
        inference settings (the cost volume's shortcuts, the flow's input scale, compilation)."""
        self.config = config = config or EstimatorConfig()
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.device = _resolve_device(config.device, config.backend)
        self.model = model.to(self.device).eval()
        if owns_model and config.fold_batch_norm:
            fold_batch_norms(self.model)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast_dtype = autocast_dtype(config.autocast, self.device)
        if config.flow_input_scale:
            model.config = dataclasses.replace(model.config, flow_input_scale=config.flow_input_scale)
        model.encoder.bin_step = config.cost_volume_bin_step
        model.encoder.confident_only = True  # depth needs the volume only where every bin is valid
        if config.compile != "off":
            compile_networks(model, config.compile)
        # CUDA graphs (reduce-overhead) reuse their output memory at every replay: a new step per frame, and what
        # the buffer keeps for the next frame is copied out of it
        self._cuda_graphs = config.compile == "reduce-overhead" and self.device.type == "cuda"
        model_config = model.config
        self.height = config.height or model_config.height
        self.width = config.width or model_config.width
        if self.height % 32 or self.width % 32:
            raise ValueError(f"network input size must be a multiple of 32, got {self.height}×{self.width}")
        self.min_depth, self.max_depth = model_config.min_depth, model_config.max_depth
        self._onnx_tmp: tempfile.TemporaryDirectory | None = None
        if config.backend == "onnxruntime":
            self._bind_onnxruntime()
        self.reuses_features = bool(getattr(model, "accepts_lookup_features", False))
        self.fallback = config.fallback
        if self.fallback == "teacher" and not getattr(model, "has_teacher", True):
            log.warning("the weights have no teacher: single-frame depth comes from the multi-frame network with "
                        "an empty cost volume")
            self.fallback = "empty_cost_volume"
        self.scale = ScaleEstimator(config.scale_source, config.depth_scale, config.camera_height_m,
                                    config.scale_window, config.scale_smoothing, config.ground_rows,
                                    config.min_translation)
        self.buffer: FrameBuffer | None = None
        self._warned_sizes: set[tuple[int, int]] = set()
        self.dynamic_objects = (DynamicObjectTracker(config.dynamic_objects)
                                if config.dynamic_objects.mode == "dyna-dm" else None)

    def _bind_onnxruntime(self) -> None:
        """Run the model's networks as ONNX graphs (:class:`~mgdepth_core.export.OnnxRuntimeNetworks`), exported
        here into a temporary folder unless ``onnx_dir`` names one."""
        from mgdepth_core.export import OnnxRuntimeNetworks, export_onnx

        folder = self.config.onnx_dir
        if not folder:
            self._onnx_tmp = tempfile.TemporaryDirectory(prefix="mgdepth-onnx-")
            folder = self._onnx_tmp.name
            log.info("exporting the %s networks to ONNX at %d×%d for onnxruntime", self.model.method, self.width,
                     self.height)
            export_onnx(self.model, folder, self.height, self.width)
        networks = OnnxRuntimeNetworks(folder, self.config.num_threads)
        networks.check(self.model.method, self.height, self.width)
        networks.bind(self.model)

    @classmethod
    def from_weights(cls, weights: str | Path | None = None, method: str | None = None, device: str = "auto",
                     **overrides) -> DepthEstimator:
        """Estimator for a weights folder (None or "" = random initialisation, logged as untrained).

        ``overrides`` are :class:`EstimatorConfig` fields. With a folder, ``method`` is what the folder holds;
        a different ``method`` argument is ignored with a warning.
        """
        from mgdepth_core.models import ModelConfig, build_model
        from mgdepth_core.models.weights import load_weights

        config = from_dict(EstimatorConfig, {**overrides, "weights": str(weights or ""), "method": method or "",
                                             "device": device})
        resolved_device = _resolve_device(config.device, config.backend)
        if config.weights:
            model = load_weights(config.weights, device=resolved_device)
            if config.method and config.method != model.method:
                log.warning("weights folder %s holds a %s model; ignoring method=%s", config.weights, model.method,
                            config.method)
        else:
            fields = {"method": config.method or "manydepth2", "pretrained": False}
            if config.height and config.width:
                fields.update(height=config.height, width=config.width)
            model = build_model(ModelConfig(**fields))
            log.warning("DepthEstimator: NO WEIGHTS GIVEN - %s with RANDOM weights, its depth is meaningless "
                        "(use this for tests and benchmarks only)", fields["method"])
        config.method = model.method
        return cls(model, config, owns_model=True)

    def reset(self) -> None:
        """Forget the previous frame: the next frame gets single-frame depth."""
        self.buffer = None
        if self.dynamic_objects is not None:
            self.dynamic_objects.reset()

    def _check_inputs(self, image: np.ndarray, K: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 RGB, got dtype {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be H×W×3 RGB, got shape {image.shape}")
        if image.shape[0] < MIN_IMAGE_SIZE or image.shape[1] < MIN_IMAGE_SIZE:
            raise ValueError(f"image is too small: {image.shape}")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"K must be a finite 3×3 pinhole matrix with positive focal lengths, got {K.tolist()}")
        return K

    def _prepare(self, image: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resize to the network size, scaling K. Returns (H×W×3 uint8, 3×3 K)."""
        in_height, in_width = image.shape[:2]
        if (in_height, in_width) == (self.height, self.width):
            return image, K
        if (in_height, in_width) not in self._warned_sizes:
            self._warned_sizes.add((in_height, in_width))
            aspect_change = abs(in_width / in_height - self.width / self.height) > 1e-3
            log.info("resizing %d×%d input to the network's %d×%d%s", in_width, in_height, self.width,
                     self.height, " (aspect ratio changes; K is scaled per axis)" if aspect_change else "")
        shrinking = in_height * in_width > self.height * self.width
        resized = cv2.resize(image, (self.width, self.height),
                             interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        scaled_K = scale_intrinsics(torch.from_numpy(K), self.width / in_width, self.height / in_height).numpy()
        return resized, scaled_K

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        if not image.flags.writeable:  # e.g. a view of a ROS message buffer
            image = image.copy()
        tensor = torch.from_numpy(image).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        return tensor.contiguous(memory_format=memory_format)

    def _gap_resets(self, stamp: float | None) -> None:
        if self.buffer is None or stamp is None or self.buffer.stamp is None:
            return
        gap = stamp - self.buffer.stamp
        if gap < 0 or gap > self.config.max_gap_s:
            log.info("stamp gap %.3f s (limit %.3f s, or going backwards): restarting the frame buffer", gap,
                     self.config.max_gap_s)
            self.reset()

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def process(self, image: np.ndarray, K: np.ndarray, stamp: float | None = None,
                instances: FrameInstances | None = None, known_motion: np.ndarray | None = None,
                measured_translation: float | None = None) -> DepthResult:
        """Depth for the next frame of the stream.

        ``image``: H×W×3 uint8 RGB (any size; resized to the network's); ``K``: 3×3 intrinsics in pixels of
        ``image``; ``stamp``: seconds (None = no gap checks); ``instances``: this frame's instance map (any size)
        for the dynamic-object filter instead of running the segmenter; ``known_motion``: 4×4 camera motion since
        the previous frame (metres, current-camera points into the previous camera; e.g. from odometry) used
        instead of the pose net (models trained with ``losses.pose_source=dataset`` need it);
        ``measured_translation``: metres the camera moved since the previous frame by an external odometry
        (scale_source odometry). Raises ValueError for a wrong dtype, shape, K or motion.
        """
        started = time.perf_counter()
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        K = self._check_inputs(image, K)
        known_T = None if known_motion is None else self._network_units(known_motion)
        resized, K_net = self._prepare(image, K)
        self._gap_resets(stamp)
        if self.buffer is not None and not np.allclose(self.buffer.K.cpu().numpy()[0], K_net):
            log.info("intrinsics changed: restarting the frame buffer")
            self.reset()
        current = self._to_tensor(resized)
        K_tensor = torch.from_numpy(K_net).float().unsqueeze(0).to(self.device)
        timings: dict[str, float] = {"preprocess": 0.0}
        autocast = torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                  enabled=self.autocast_dtype is not None)
        with torch.inference_mode(), autocast:
            mark = self._sync()
            timings["preprocess"] = (mark - started) * 1000
            T_prev_current = None
            multi_frame = False
            if self.buffer is not None:
                T_prev_current = known_T if known_T is not None else self.model.relative_pose(
                    current, self.buffer.image, source_is_before=True).float()
                now = self._sync()
                timings["pose"], mark = (now - mark) * 1000, now
                moved = float(T_prev_current[0, :3, 3].norm()) * self.scale.scale
                multi_frame = moved >= self.config.min_translation
                if not multi_frame:
                    log.debug("camera moved %.4f m < min_translation: single-frame depth", moved)
            context = {"lookup_features": self.buffer.features} if multi_frame and self.reuses_features else {}
            if multi_frame and "flow_features" in self.buffer.extras:
                context["lookup_flow_features"] = self.buffer.extras["flow_features"]
            if self.config.skip_release_motion:
                context["skip_release_motion"] = True
            if multi_frame:
                outputs = self.model.multi_frame_forward(current, self.buffer.image, T_prev_current, K_tensor,
                                                         **context)
                features = outputs.get("matching_features")
            elif self.fallback == "empty_cost_volume":
                outputs = self.model.multi_frame_forward(current, current, K_tensor.new_zeros(1, 4, 4), K_tensor)
                features = outputs.get("matching_features")
            else:
                outputs = self.model.teacher_forward(current)
                features = None
            if self.reuses_features and features is None:
                features = self.model.matching_features(current)
            disp = outputs[("disp", 0)].float()
            depth = disparity_to_depth(disp, self.min_depth, self.max_depth)[1]  # network units
            now = self._sync()
            timings["depth"], mark = (now - mark) * 1000, now
            scale = self.scale.update(depth[0, 0], K_tensor[0], None if T_prev_current is None
                                      else float(T_prev_current[0, :3, 3].norm()), measured_translation)
            depth_np = (depth[0, 0] * scale).cpu().numpy().astype(np.float32)
            now = self._sync()
            timings["scale"] = (now - mark) * 1000
            dynamic_mask, objects = None, []
            if self.dynamic_objects is not None:  # Dyna-DM theta filter against the previous frame
                dynamic_mask, objects = self.dynamic_objects.update(
                    current, depth, K_tensor, T_prev_current, instances)
                mark, now = now, self._sync()
                timings["dynamic_objects"] = (now - mark) * 1000
        depth_np[~np.isfinite(depth_np) | (depth_np <= 0)] = np.nan
        lookup_image, motion_mask = (self._matched_view(outputs, self.buffer.image, depth_np.shape) if multi_frame
                                     else (None, None))
        keep = (lambda tensor: tensor.clone()) if self._cuda_graphs else (lambda tensor: tensor)
        self.buffer = FrameBuffer(image=current, K=K_tensor, stamp=stamp,
                                  features=keep(features) if self.reuses_features else None)
        if multi_frame and outputs.get("flow_features") is not None:  # Manydepth2 + GMFlow: next pair's lookup
            self.buffer.extras["flow_features"] = keep(outputs["flow_features"])
        T_np = None
        if T_prev_current is not None:
            T_np = T_prev_current[0].double().cpu().numpy()
            T_np[:3, 3] *= scale
        timings["total"] = (time.perf_counter() - started) * 1000
        return DepthResult(depth=depth_np, K=K_net, image=np.ascontiguousarray(resized), T_prev_current=T_np,
                           multi_frame=multi_frame, dynamic_mask=dynamic_mask, objects=objects,
                           timings_ms=timings, scale=scale, scale_source=self.scale.source,
                           lookup_image=lookup_image, motion_mask=motion_mask)

    @staticmethod
    def _matched_view(outputs: dict, previous: torch.Tensor, shape: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """What the cost volume matched against (DepthResult.lookup_image: Manydepth2's static reference, else
        ``previous``, 1×3×h×w) and Manydepth2's motion mask, both at ``shape`` H×W."""
        lookup = outputs.get("lookup_image", previous).float()
        if tuple(lookup.shape[-2:]) != shape:  # the lookup is built at the network's size, as the depth: rarely
            lookup = torch.nn.functional.interpolate(lookup, size=shape, mode="bilinear", align_corners=False)
        image = (lookup[0].clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
        motion = outputs.get("motion_mask")
        if motion is not None:
            if tuple(motion.shape[-2:]) != shape:  # static_reference_resolution quarter
                motion = torch.nn.functional.interpolate(motion.float(), size=shape, mode="nearest")
            motion = motion[0, 0].bool().cpu().numpy()
        return image, motion

    def _network_units(self, motion: np.ndarray) -> torch.Tensor:
        """A 4×4 motion in metres as a 1×4×4 pose in the network's units (translation / the current scale)."""
        motion = np.asarray(motion, dtype=np.float64)
        if motion.shape != (4, 4) or not np.isfinite(motion).all() or not np.allclose(motion[3], [0, 0, 0, 1]):
            raise ValueError(f"known_motion must be a finite 4×4 homogeneous transform (last row 0 0 0 1), got "
                             f"shape {motion.shape}")
        T = torch.from_numpy(motion).float().unsqueeze(0).to(self.device)
        T[:, :3, 3] /= self.scale.scale
        return T

    def describe(self) -> dict:
        """The estimator's settings, for logs and benchmark records."""
        return {**to_dict(self.config), "height": self.height, "width": self.width, "device": str(self.device)}
