"""Weights folders in the official Manydepth layout, written by us or by the original code.

A folder holds one ``torch.save``d state dict per network: ``encoder.pth`` (multi-frame encoder, plus the plain
entries ``height``, ``width``, ``min_depth_bin``, ``max_depth_bin``), ``depth.pth``, ``mono_encoder.pth``,
``mono_depth.pth``, ``pose_encoder.pth``, ``pose.pth``. Folders we write also hold ``mgdepth.yaml`` (the
:class:`~mgdepth_core.models.ModelConfig`); for official folders the architecture is read off the tensors.

Reading a folder dispatches on the method (:data:`FOLDER_FORMATS`): each format says how to recognise its
``encoder.pth``, how to derive a ModelConfig from the files, and how to map file keys onto the model's keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mgdepth_core.config import load_config, save_config
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.base import MultiFrameDepthModel
from mgdepth_core.torch_files import TorchFileError, atomic_torch_save, load_weights_only

log = logging.getLogger(__name__)

NETWORK_FILES = ("encoder", "depth", "mono_encoder", "mono_depth", "pose_encoder", "pose")
TEACHER_FILES = ("mono_encoder", "mono_depth")  # absent from some official releases (Cityscapes)
CONFIG_FILE = "mgdepth.yaml"
FLOW_FILE = "flow.pth"  # Manydepth2's optical flow network, when it has weights (mgdepth.yaml names it relatively)
ENCODER_ENTRIES = ("height", "width", "min_depth_bin", "max_depth_bin")
# Back-projection grids the original registers as parameters; their shapes depend on resolution and bins.
SKIPPED_PREFIXES = ("backprojector.", "backprojector_batch.", "projector.")


class WeightsError(ValueError):
    """A weights folder that cannot be loaded into the requested model; the message names file and tensor."""


@dataclass(frozen=True)
class FolderFormat:
    """How one method's weights folders are read."""

    recognises: Callable[[dict], bool]  # encoder.pth state → True when it is this method's encoder
    config_from_files: Callable[[dict[str, dict]], dict]  # file states → ModelConfig fields
    to_model_keys: Callable[[str, dict], dict] = lambda name, state: state  # file state → sub-module state


def _manydepth_config(states: dict[str, dict]) -> dict:
    """ModelConfig fields of an official Manydepth folder, read off its tensors and plain entries."""
    encoder = states["encoder"]
    reduce = encoder.get("reduce_conv.0.weight")
    if reduce is None:
        raise WeightsError("encoder.pth has no tensor 'reduce_conv.0.weight': not a Manydepth matching encoder")
    layer1_channels = reduce.shape[0]
    fields = {"method": "manydepth", "num_layers": 18 if layer1_channels == 64 else 50,
              "num_depth_bins": reduce.shape[1] - layer1_channels}
    pose_encoder = states.get("pose_encoder", {})
    fields["teacher_num_layers"] = 50 if "encoder.layer1.0.conv3.weight" in pose_encoder else 18
    return fields


def _manydepth2_config(states: dict[str, dict]) -> dict:
    """ModelConfig fields of an official Manydepth2 folder; the released static-reference behaviour is kept so
    the published numbers are reproduced (see docs/manydepth2.md)."""
    reduce = states["encoder"].get("reduce_conv.0.weight")
    if reduce is None:
        raise WeightsError("encoder.pth has no tensor 'reduce_conv.0.weight': not a Manydepth2 matching encoder")
    pose_encoder = states.get("pose_encoder", {})
    return {"method": "manydepth2", "num_depth_bins": reduce.shape[1] - reduce.shape[0],
            "static_reference": "release",
            "teacher_num_layers": 50 if "encoder.layer1.0.conv3.weight" in pose_encoder else 18}


def _manydepth2_keys(name: str, state: dict) -> dict:
    from mgdepth_core.models.hr_decoder import with_both_halves

    return with_both_halves(state) if name in ("depth", "mono_depth") else state


FOLDER_FORMATS: dict[str, FolderFormat] = {
    "manydepth": FolderFormat(recognises=lambda state: "layer0.0.weight" in state,
                              config_from_files=_manydepth_config),
    "manydepth2": FolderFormat(recognises=lambda state: "transition1.0.0.weight" in state,
                               config_from_files=_manydepth2_config, to_model_keys=_manydepth2_keys),
}


def save_weights(model: MultiFrameDepthModel, folder: str | Path) -> Path:
    """Write ``model`` as an official-layout weights folder plus ``mgdepth.yaml`` (and ``flow.pth``, Manydepth2's
    flow network where it has weights, so that the folder works anywhere); every file is atomic."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in NETWORK_FILES:
        state = {key: value.detach().cpu() for key, value in getattr(model, name).state_dict().items()}
        if name == "encoder":
            state.update(height=int(model.config.height), width=int(model.config.width),
                         min_depth_bin=float(model.min_depth_bin), max_depth_bin=float(model.max_depth_bin))
        atomic_torch_save(state, folder / f"{name}.pth")
    config = model.config
    flow = getattr(model, "flow", None)
    if flow is not None and flow.has_weights:  # the folder carries its own flow network: copy it anywhere
        atomic_torch_save({key: value.detach().cpu() for key, value in flow.net.state_dict().items()},
                          folder / FLOW_FILE)
        config = replace(config, flow_weights=FLOW_FILE)
    save_config(config, folder / CONFIG_FILE)
    return folder


def _read_state(path: Path) -> dict:
    numpy_scalars = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32))]
    numpy_scalars.append(np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar)
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            state = load_weights_only(path, "PyTorch state dict")
    except TorchFileError as error:
        raise WeightsError(str(error)) from error
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def detect_method(encoder_state: dict) -> str:
    """The method whose ``encoder.pth`` this is (see :data:`FOLDER_FORMATS`)."""
    for method, folder_format in FOLDER_FORMATS.items():
        if folder_format.recognises(encoder_state):
            return method
    raise WeightsError("encoder.pth matches no known encoder (expected keys such as 'layer0.0.weight')")


def _check_and_load(module: torch.nn.Module, state: dict, file_name: str) -> None:
    """Load ``state`` strictly into ``module``; mismatches raise WeightsError naming the file and tensor."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing:
        raise WeightsError(f"{file_name}: missing tensor(s) {missing[:5]}{' …' if len(missing) > 5 else ''} "
                           "(wrong architecture?)")
    if unexpected:
        raise WeightsError(f"{file_name}: unexpected tensor(s) {unexpected[:5]}"
                           f"{' …' if len(unexpected) > 5 else ''} (wrong architecture?)")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{file_name}: entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise WeightsError(f"{file_name}: tensor {key!r} has shape {tuple(value.shape)}, the model expects "
                               f"{tuple(expected[key].shape)} (wrong architecture, depth bins or network size?)")
    module.load_state_dict(state, strict=True)


def load_weights(folder: str | Path, config: ModelConfig | None = None,
                 device: str | torch.device = "cpu") -> MultiFrameDepthModel:
    """Model from a weights folder (ours or an official release), in eval mode on ``device``.

    ``config`` overrides ``mgdepth.yaml`` / the architecture read off official files. The cost-volume range
    (``min_depth_bin``/``max_depth_bin``) always comes from ``encoder.pth``. Teacher files may be missing (the
    official Cityscapes release lacks them): the model then has ``has_teacher = False``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"weights folder {folder} does not exist")
    required = [name for name in NETWORK_FILES if name not in TEACHER_FILES]
    missing = [f"{name}.pth" for name in required if not (folder / f"{name}.pth").is_file()]
    if missing:
        raise FileNotFoundError(f"weights folder {folder} lacks {', '.join(missing)}")
    states = {name: _read_state(folder / f"{name}.pth") for name in NETWORK_FILES
              if (folder / f"{name}.pth").is_file()}
    encoder_state = states["encoder"]
    entries = {key: encoder_state.pop(key) for key in ENCODER_ENTRIES if key in encoder_state}
    for key in [key for key in encoder_state if key.startswith(SKIPPED_PREFIXES)]:
        del encoder_state[key]
    method = detect_method(encoder_state)
    folder_format = FOLDER_FORMATS[method]

    if config is None and (folder / CONFIG_FILE).is_file():
        config = load_config(ModelConfig, folder / CONFIG_FILE)
    if config is None:
        fields = folder_format.config_from_files(states)
        if "height" in entries and "width" in entries:
            fields.update(height=int(entries["height"]), width=int(entries["width"]))
        config = ModelConfig(**fields)
        log.info("official %s weights in %s: %s", method, folder, fields)
    elif config.method != method:
        raise WeightsError(f"{folder / 'encoder.pth'} holds a {method} encoder but the config asks for "
                           f"method {config.method!r}")
    elif "height" in entries and (int(entries["height"]), int(entries["width"])) != (config.height, config.width):
        log.warning("%s was trained at %s×%s; running it at %d×%d", folder / "encoder.pth", int(entries["height"]),
                    int(entries["width"]), config.height, config.width)
    config = replace(config, pretrained=False)
    if config.flow_weights and not Path(config.flow_weights).is_absolute():
        config = replace(config, flow_weights=str(folder / config.flow_weights))  # relative to the folder
    if "min_depth_bin" in entries:
        config = replace(config, min_depth_bin=float(entries["min_depth_bin"]),
                         max_depth_bin=float(entries["max_depth_bin"]))

    model = build_model(config)
    for name, state in states.items():
        _check_and_load(getattr(model, name), folder_format.to_model_keys(name, state), f"{folder / name}.pth")
    model.has_teacher = all(name in states for name in TEACHER_FILES)
    if not model.has_teacher:
        log.warning("%s has no teacher weights (mono_encoder.pth, mono_depth.pth): single-frame fallback will "
                    "use the multi-frame network with an empty cost volume", folder)
    return model.to(device).eval()
