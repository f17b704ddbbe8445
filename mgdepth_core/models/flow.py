"""Frozen optical flow behind one interface: torchvision RAFT (small/large) or GMFlow (the paper's choice).

Weights are never downloaded: RAFT uses torchvision's own checkpoint from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/raft_small_C_T_V2-01064c6d.pth`` …) or a user path; GMFlow loads the official
``gmflow_sintel-0c07dcb3.pth`` (``checkpoint["model"]``, strict) from a user path or the same cache folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mgdepth_core.models.gmflow import GMFlow
from mgdepth_core.torch_files import load_weights_only

GMFLOW_CHECKPOINT = "gmflow_sintel-0c07dcb3.pth"
FLOW_BACKENDS = ("gmflow", "raft_small", "raft_large")


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _raft(backend: str) -> tuple[nn.Module, str]:
    from torchvision.models import optical_flow

    if backend == "raft_small":
        return optical_flow.raft_small(weights=None), os.path.basename(optical_flow.Raft_Small_Weights.DEFAULT.url)
    return optical_flow.raft_large(weights=None), os.path.basename(optical_flow.Raft_Large_Weights.DEFAULT.url)


def checkpoint_mismatch(model: nn.Module, state: dict) -> str:
    """Empty if ``state`` fits ``model`` exactly; otherwise a message naming the offending keys/shapes."""
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    wrong_shape = [f"{key}: file {tuple(state[key].shape)} vs network {tuple(own[key].shape)}"
                   for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches (first: {wrong_shape[0]})")
    return "; ".join(problems)


def load_flow_state(model: nn.Module, path: str | Path, backend: str) -> None:
    """Load a flow checkpoint strictly; a file for another network raises ValueError naming key and shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"optical flow checkpoint {path} does not exist")
    checkpoint = load_weights_only(path, f"{backend} checkpoint")
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a {backend} state dict (expected tensors, or a dict with key 'model')")
    problem = checkpoint_mismatch(model, state)
    if problem:
        raise ValueError(f"{path} does not match the {backend} network: {problem}")
    model.load_state_dict(state, strict=True)


def _check_pair(image1: torch.Tensor, image2: torch.Tensor) -> None:
    if image1.shape != image2.shape or image1.dim() != 4 or image1.shape[1] != 3:
        raise ValueError(f"flow inputs must be two B×3×H×W images of one shape, got {tuple(image1.shape)} and "
                         f"{tuple(image2.shape)}")


class FlowEstimator(nn.Module):
    """Frozen optical flow. ``forward(image1, image2)``: B×3×H×W in [0, 1] → flow image1 → image2, B×2×H×W pixels.

    Any frame size works: frames are replicate-padded up to the network's divisor (and a minimum size) and the
    flow is cropped back. ``weights``: checkpoint path; ``None`` looks in the torch hub cache (unless
    ``search_cache`` is false) and, when nothing is there, keeps random weights with a warning (``has_weights``
    tells which).
    """

    def __init__(self, backend: str = "gmflow", weights: str | Path | None = None, num_flow_updates: int = 12,
                 search_cache: bool = True):
        super().__init__()
        if backend not in FLOW_BACKENDS:
            raise ValueError(f"unknown flow backend {backend!r}; choose one of {', '.join(FLOW_BACKENDS)}")
        self.backend = backend
        self.num_flow_updates = num_flow_updates
        if backend == "gmflow":
            self.net = GMFlow()
            default_name = GMFLOW_CHECKPOINT
            self.divisor, self.min_size = self.net.divisor, 32
        else:
            self.net, default_name = _raft(backend)
            self.divisor, self.min_size = 8, 128  # RAFT's correlation pyramid needs ≥ 16 cells at 1/8
        if weights:
            load_flow_state(self.net, weights, backend)
            self.has_weights = True
        elif search_cache and (_hub_checkpoint_dir() / default_name).is_file():
            load_flow_state(self.net, _hub_checkpoint_dir() / default_name, backend)
            self.has_weights = True
        elif not search_cache:  # the caller wants random weights (flow training from scratch)
            self.has_weights = False
        else:
            warnings.warn(f"no {backend} weights found ({_hub_checkpoint_dir() / default_name}); optical flow "
                          "runs with random weights (`mgdepth weights list` says how to get them)", stacklevel=2)
            self.has_weights = False
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FlowEstimator:
        """The flow network is frozen: it stays in eval mode whatever its parent does."""
        return super().train(False)

    def _padding(self, height: int, width: int) -> tuple[int, int]:
        def target(size: int) -> int:
            size = max(size, self.min_size)
            return -(-size // self.divisor) * self.divisor
        return target(height) - height, target(width) - width

    @property
    def reuses_features(self) -> bool:
        """Whether a frame's features (:meth:`encode`) can be passed back in for its next pair (GMFlow)."""
        return self.backend == "gmflow"

    def _pad(self, image: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = self._padding(*image.shape[-2:])
        return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Features of one B×3×H×W frame in [0, 1] to pass as ``features1``/``features2`` of a later call with the
        same frame (padded as :meth:`forward` pads it); GMFlow only."""
        if not self.reuses_features:
            raise ValueError(f"{self.backend} features cannot be reused between pairs; call forward with images")
        return self.net.encode(self._pad(image))

    @torch.no_grad()
    def forward(self, image1: torch.Tensor, image2: torch.Tensor, features1: torch.Tensor | None = None,
                features2: torch.Tensor | None = None, downsample: int = 1) -> torch.Tensor:
        """``features1``/``features2``: :meth:`encode` of the two frames where known (GMFlow; the backbone then
        runs only for the other frame). ``downsample`` f (GMFlow; 1, 2, 4 or 8, dividing H and W): the flow at
        H/f×W/f in pixels of that grid, equal to :func:`resize_flow` of the full flow but cheaper."""
        _check_pair(image1, image2)
        if self.backend == "gmflow":
            height, width = image1.shape[-2] // downsample, image1.shape[-1] // downsample
            return self.net(self._pad(image1), self._pad(image2), features1, features2,
                            downsample)[..., :height, :width]
        if downsample != 1:
            raise ValueError(f"{self.backend} returns full-resolution flow only (downsample 1)")
        if features1 is not None or features2 is not None:
            raise ValueError(f"{self.backend} does not take precomputed features")
        return self.flow_predictions(image1, image2)[-1]

    def flow_predictions(self, image1: torch.Tensor, image2: torch.Tensor,
                         num_flow_updates: int | None = None) -> list[torch.Tensor]:
        """RAFT: the flow image1 → image2 after every refinement (``num_flow_updates`` of them, default the
        estimator's), each B×2×H×W pixels, with gradients where enabled: what flow training supervises."""
        if self.backend == "gmflow":
            raise ValueError("flow_predictions is RAFT's; GMFlow is loaded from the official checkpoint, not trained")
        _check_pair(image1, image2)
        height, width = image1.shape[-2:]
        predictions = self.net(2 * self._pad(image1) - 1, 2 * self._pad(image2) - 1,
                               num_flow_updates=num_flow_updates or self.num_flow_updates)
        return [flow[..., :height, :width] for flow in predictions]

    def resize_input(self, image: torch.Tensor, input_scale: float) -> torch.Tensor:
        """The frame as :meth:`at_scale` feeds it to the network (resized by ``input_scale``)."""
        if input_scale == 1.0:
            return image
        size = (max(1, round(image.shape[-2] * input_scale)), max(1, round(image.shape[-1] * input_scale)))
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)

    def at_scale(self, image1: torch.Tensor, image2: torch.Tensor, scale: int = 2, input_scale: float = 1.0,
                 features1: torch.Tensor | None = None, features2: torch.Tensor | None = None) -> torch.Tensor:
        """Flow at 1/2^scale resolution in pixels of that resolution (B×2×H/2^s×W/2^s). With ``input_scale`` 1 this
        is the release's recipe (full-resolution flow resized bilinearly and divided by 2^scale); a smaller
        ``input_scale`` runs the network on frames resized by that factor first (fewer pixels, coarser flow).
        ``features1``/``features2``: :meth:`encode` of ``resize_input(frame, input_scale)``, where known."""
        target = (image1.shape[-2] // 2 ** scale, image1.shape[-1] // 2 ** scale)
        image1, image2 = self.resize_input(image1, input_scale), self.resize_input(image2, input_scale)
        factor = image1.shape[-2] // target[0]
        if self.backend == "gmflow" and factor in (2, 4, 8) and tuple(image1.shape[-2:]) == (
                factor * target[0], factor * target[1]):  # GMFlow evaluates only the pixels the resize reads
            return self(image1, image2, features1, features2, downsample=factor)
        return resize_flow(self(image1, image2, features1, features2), target)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×2×h×w flow (pixels) resized bilinearly to ``size`` with its x/y components rescaled to the new pixels."""
    scale_y, scale_x = size[0] / flow.shape[-2], size[1] / flow.shape[-1]
    resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return resized * torch.tensor([scale_x, scale_y], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)


def downscale_flow(flow: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """B×2×H×W flow (pixels) → B×2×H/2^s×W/2^s flow in pixels of the smaller grid."""
    return resize_flow(flow, (flow.shape[-2] // 2 ** scale, flow.shape[-1] // 2 ** scale))


def build_flow(backend: str, weights: str = "", num_flow_updates: int = 12) -> FlowEstimator | None:
    """The FlowEstimator for ``ModelConfig.flow`` (``"none"`` → None, Manydepth2-NF; ``"dataset"`` → None, the
    flow comes with every sample)."""
    if backend in ("none", "dataset"):
        return None
    return FlowEstimator(backend, weights or None, num_flow_updates)
