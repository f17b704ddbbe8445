"""``mgdepth export --format onnx``: one static-shape ONNX graph per network plus ``manifest.json`` (docs/inference.md).

The graphs are those :func:`mgdepth_core.export.export_onnx` writes (pose, teacher, matching features, student
with the cost volume inside, and Manydepth2's optical flow where it exports). ``DepthEstimator`` runs such a folder
with ``backend: onnxruntime`` and ``onnx_dir``; ``trtexec --onnx=student.onnx --fp16`` builds a TensorRT engine.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from mgdepth_core.config import ConfigError, from_dict

HELP = "export the networks of a weights folder as ONNX graphs (one per network, static shapes) with a manifest"
LOG = logging.getLogger("mgdepth.export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    parser.add_argument("--weights", metavar="DIR", default=None,
                        help="weights folder (ours or an official release); omitted = random initialisation of the "
                             "--config architecture (meaningless depth, for trying the toolchain)")
    parser.add_argument("--config", type=Path, metavar="CFG", default=None,
                        help="YAML with the model options (a training config's `model:` section, or a bare "
                             "mapping like the weights folder's mgdepth.yaml); overrides what the folder says")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")


def model_config(path: Path | None):
    """The ModelConfig of ``--config``: its ``model:`` section, or the whole file; None without a file."""
    from mgdepth_core.models import ModelConfig

    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return from_dict(ModelConfig, data.get("model", data), "model")


def _shapes(specs: dict[str, list[int]]) -> str:
    return ", ".join(f"{name} {'×'.join(map(str, shape))}" for name, shape in specs.items())


def run(args: argparse.Namespace) -> int:
    from mgdepth_core.export import export_onnx
    from mgdepth_core.models import ModelConfig, build_model
    from mgdepth_core.models.weights import load_weights

    if args.opset < 17:
        raise ValueError(f"--opset must be 17 or newer (GridSample, LayerNormalization), got {args.opset}")
    config = model_config(args.config)
    if args.weights:
        model = load_weights(args.weights, config)
    else:
        LOG.warning("no --weights: exporting RANDOMLY initialised networks (meaningless depth)")
        model = build_model(config or ModelConfig(pretrained=False))
    manifest = export_onnx(model, args.output, opset=args.opset)
    for graph in manifest["graphs"].values():
        print(f"{args.output / graph['file']}: {_shapes(graph['inputs'])} → {_shapes(graph['outputs'])}")
    for name, reason in manifest["skipped"].items():
        print(f"{name}: NOT exported, it stays in torch ({reason})")
    if manifest["method"] == "manydepth2" and manifest["flow"] == "none":
        print("flow: none (Manydepth2-NF: the lookup is the previous frame, no flow network)")
    print(f"{args.output / 'manifest.json'}: {manifest['method']} at {manifest['width']}×{manifest['height']}, "
          f"depth {manifest['min_depth']}–{manifest['max_depth']} m")
    return 0
