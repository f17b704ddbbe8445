"""ONNX export of a model's networks, and :class:`OnnxRuntimeNetworks`, which runs them behind the model's methods.

One graph per network, static shapes (batch 1, the model's resolution), all inputs and outputs float32:

* ``pose.onnx``: ``pair`` 1×6×H×W (previous, current frame in [0, 1]) → ``axisangle``, ``translation`` 1×3
  (:meth:`~mgdepth_core.models.base.MultiFrameDepthModel.pose_network`);
* ``teacher.onnx``: ``image`` 1×3×H×W → ``disp`` 1×1×H×W sigmoid disparity (absent without teacher weights);
* ``matching.onnx``: ``image`` → ``features`` 1×C×H/4×W/4, the frame's cost-volume features;
* ``student.onnx``: ``image``, ``lookup_features`` (matching features of the lookup frame), ``T_lookup_current``
  1×4×4, ``K`` 1×3×3 (pixels of H×W) → ``disp``, ``matching_features``, ``cost_volume_depth`` and
  ``confidence_mask`` (1×1×H/4×W/4); the plane-sweep cost volume and the depth bins are inside the graph;
* ``flow.onnx`` (Manydepth2 with a flow network, where it exports): ``image``, ``lookup`` → ``flow``
  1×2×H/4×W/4, optical flow image → lookup in 1/4-resolution pixels.

``manifest.json`` lists the graphs with their input and output names and shapes, the method, the resolution, the
disparity → depth range and the cost-volume bins. Disparity to depth is ``1 / (1/max + (1/min − 1/max)·disp)``.
The static reference frame and the pre/post-processing are not networks: they stay in torch.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mgdepth_core.geometry import scale_intrinsics

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OPSET = 17


def _student(model: nn.Module, image, lookup_features, T_lookup_current, K) -> tuple[torch.Tensor, ...]:
    outputs = model.student_network(image, lookup_features, T_lookup_current, K)
    return outputs[("disp", 0)], outputs["matching_features"], outputs["cost_volume_depth"], outputs["confidence_mask"]


# name → (function of the model and the inputs, input names, output names)
GRAPHS: dict[str, tuple[Callable[..., Any], list[str], list[str]]] = {
    "pose": (lambda model, pair: model.pose_network(pair), ["pair"], ["axisangle", "translation"]),
    "teacher": (lambda model, image: model.teacher_forward(image)[("disp", 0)], ["image"], ["disp"]),
    "matching": (lambda model, image: model.matching_features(image), ["image"], ["features"]),
    "student": (_student, ["image", "lookup_features", "T_lookup_current", "K"],
                ["disp", "matching_features", "cost_volume_depth", "confidence_mask"]),
    "flow": (lambda model, image, lookup: model.quarter_flow(image, lookup), ["image", "lookup"], ["flow"]),
}


class _Graph(nn.Module):
    """One network of the model as a module for ``torch.onnx.export`` (the model's weights become initializers)."""

    def __init__(self, model: nn.Module, function: Callable[..., Any]):
        super().__init__()
        self.model = model
        self.function = function

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.function(self.model, *inputs)


def network_names(model: nn.Module) -> list[str]:
    """The graphs ``model`` has: no teacher without teacher weights, flow only for Manydepth2 with a network."""
    names = ["pose", "teacher", "matching", "student", "flow"]
    if not getattr(model, "has_teacher", True):
        names.remove("teacher")
    if getattr(model, "flow", None) is None:
        names.remove("flow")
    return names


def _example_inputs(model: nn.Module, height: int, width: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, height, width, generator=generator)
    lookup = torch.rand(1, 3, height, width, generator=generator)
    K = scale_intrinsics(torch.tensor([[[0.58, 0, 0.5], [0, 1.92, 0.5], [0, 0, 1]]]), width, height)
    T = torch.eye(4)[None]
    T[0, 0, 3] = 0.1
    with torch.no_grad():
        features = model.matching_features(lookup)
    return {"pair": torch.cat([lookup, image], 1), "image": image, "lookup": lookup, "lookup_features": features,
            "T_lookup_current": T, "K": K}


def export_onnx(model: nn.Module, folder: str | Path, height: int | None = None, width: int | None = None,
                opset: int = OPSET) -> dict:
    """Write one ``NAME.onnx`` per network of ``model`` (CPU, float32, eval mode) and ``manifest.json`` into
    ``folder``; returns the manifest. ``height``/``width``: input size (default the model's resolution).

    An optical flow network that fails to export is skipped with the exporter's reason in the manifest's
    ``"skipped"`` (the flow then stays in torch); any other failure raises.
    """
    config = model.config
    height, width = height or config.height, width or config.width
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    examples = _example_inputs(model, height, width)
    manifest: dict[str, Any] = {
        "format": "onnx", "opset": opset, "method": model.method, "height": height, "width": width,
        "min_depth": config.min_depth, "max_depth": config.max_depth,
        "depth_bins": {"min": float(model.min_depth_bin), "max": float(model.max_depth_bin),
                       "count": config.num_depth_bins, "binning": config.depth_binning},
        "flow": getattr(config, "flow", "none") if model.method == "manydepth2" else "none",
        "graphs": {}, "skipped": {},
    }
    for name in network_names(model):
        function, input_names, output_names = GRAPHS[name]
        inputs = tuple(examples[key] for key in input_names)
        graph = _Graph(model, function).eval()
        path = folder / f"{name}.onnx"
        try:
            with torch.no_grad():
                outputs = graph(*inputs)
                outputs = outputs if isinstance(outputs, tuple) else (outputs,)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter
                    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                    warnings.filterwarnings("ignore", message="Constant folding")  # strided slices stay as they are
                    torch.onnx.export(graph, inputs, str(path), dynamo=False, opset_version=opset,
                                      input_names=input_names, output_names=output_names)
        except Exception as error:
            if name != "flow":
                raise
            path.unlink(missing_ok=True)
            manifest["skipped"][name] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            log.warning("the optical flow network did not export to ONNX (%s); it stays in torch",
                        manifest["skipped"][name])
            continue
        manifest["graphs"][name] = {
            "file": path.name,
            "inputs": {key: list(examples[key].shape) for key in input_names},
            "outputs": {key: list(value.shape) for key, value in zip(output_names, outputs)},
        }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: str | Path) -> dict:
    """The manifest of an export folder (FileNotFoundError when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a folder written by `mgdepth export --format onnx`")
    return json.loads(path.read_text())


class OnnxRuntimeNetworks:
    """The exported graphs of a folder on onnxruntime's CPUExecutionProvider, bound in place of a model's network
    methods by :meth:`bind`; torch tensors go in and come out."""

    def __init__(self, folder: str | Path, num_threads: int = 0):
        import onnxruntime

        self.folder = Path(folder)
        self.manifest = read_manifest(folder)
        options = onnxruntime.SessionOptions()
        if num_threads > 0:
            options.intra_op_num_threads = num_threads
        self.sessions = {name: onnxruntime.InferenceSession(str(self.folder / graph["file"]), options,
                                                            providers=["CPUExecutionProvider"])
                         for name, graph in self.manifest["graphs"].items()}

    def run(self, name: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of graph ``name`` for ``inputs`` in the manifest's order (shapes must match it)."""
        session = self.sessions[name]
        feeds = {spec.name: np.ascontiguousarray(tensor.detach().cpu().float().numpy())
                 for spec, tensor in zip(session.get_inputs(), inputs)}
        return [torch.from_numpy(output) for output in session.run(None, feeds)]

    def check(self, method: str, height: int, width: int) -> None:
        """ValueError unless the graphs are a ``method`` model's at ``height``×``width``."""
        found = (self.manifest["method"], self.manifest["height"], self.manifest["width"])
        if found != (method, height, width):
            raise ValueError(f"{self.folder} holds {found[0]} graphs at {found[2]}×{found[1]}, but the estimator "
                             f"runs {method} at {width}×{height}")

    def bind(self, model: nn.Module) -> nn.Module:
        """Replace ``model``'s network methods (pose, teacher, matching features, student and, where exported,
        optical flow) on this instance with the graphs; everything else (static reference, depth bins tracking,
        the estimator's pre/post-processing) keeps running in torch. Returns ``model``."""
        graphs = self.sessions
        model.pose_network = lambda pair: tuple(self.run("pose", pair))
        model.matching_features = lambda image: self.run("matching", image)[0]
        if "teacher" in graphs:
            model.teacher_forward = lambda image: {("disp", 0): self.run("teacher", image)[0]}

        def student_network(image, lookup_features, T_lookup_current, K):
            disp, features, cost_volume_depth, confidence = self.run("student", image, lookup_features,
                                                                     T_lookup_current, K)
            return {("disp", 0): disp, "matching_features": features, "cost_volume_depth": cost_volume_depth,
                    "confidence_mask": confidence}

        model.student_network = student_network
        if "flow" in graphs:
            model.quarter_flow = lambda image, lookup, *features: self.run("flow", image, lookup)[0]
            model.flow_features = lambda image: None  # the graph takes images, not cached features
        return model
