"""Instances of potentially dynamic objects from torchvision's Mask R-CNN (COCO weights, never downloaded here).

:class:`InstanceSegmenter` turns B×3×H×W images in [0, 1] into one :class:`~mgdepth_core.dynamic.FrameInstances`
per image: an H×W id map (ids 1..n by descending score; a pixel claimed by two detections belongs to the one with
the higher score), and per id the COCO class, score and box. The post-processing
(:func:`detections_to_instances`) is separate from the network call so that it can be tested on known detections.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, MaskRCNN_ResNet50_FPN_Weights

from mgdepth_core.dynamic import DynamicObjectsConfig, FrameInstances
from mgdepth_core.torch_files import load_weights_only

log = logging.getLogger(__name__)

SEGMENTERS = {
    "maskrcnn_resnet50_fpn_v2": (torchvision.models.detection.maskrcnn_resnet50_fpn_v2,
                                 MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1),
    "maskrcnn_resnet50_fpn": (torchvision.models.detection.maskrcnn_resnet50_fpn,
                              MaskRCNN_ResNet50_FPN_Weights.COCO_V1),
}
COCO_CATEGORIES: list[str] = list(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])


def class_name(class_id: int) -> str:
    """COCO category name of a torchvision label id ("car" for 3)."""
    return COCO_CATEGORIES[class_id] if 0 <= class_id < len(COCO_CATEGORIES) else f"class_{class_id}"


def default_weights_path(segmenter: str) -> Path:
    """Where the official COCO checkpoint of ``segmenter`` is expected: the torch hub cache."""
    _, weights = SEGMENTERS[segmenter]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def detections_to_instances(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor,
                            classes: list[int], score_threshold: float, mask_threshold: float,
                            max_detections: int, output_size: tuple[int, int] | None = None) -> FrameInstances:
    """Mask R-CNN output of one image → id map + per-id class, score and box.

    ``boxes``: N×4 xyxy pixels of the mask image; ``labels``: N COCO ids; ``scores``: N; ``masks``: N×1×h×w soft
    masks in [0, 1]. Detections of other classes, below ``score_threshold`` or beyond the ``max_detections``
    best scores are dropped; masks are binarised at ``mask_threshold`` and resized (nearest) to ``output_size``
    (H, W) when given, boxes scaled with them. Ids are 1..n by descending score (ties: larger mask first);
    detections left without pixels are dropped. Returns ids H×W (uint8 when n < 256, else uint16).
    """
    height, width = masks.shape[-2:]
    out_h, out_w = output_size or (height, width)
    binary = masks[:, 0] >= mask_threshold if masks.numel() else torch.zeros(0, out_h, out_w, dtype=torch.bool)
    if masks.numel() and (out_h, out_w) != (height, width):
        binary = F.interpolate(binary[:, None].float(), size=(out_h, out_w), mode="nearest")[:, 0] > 0.5
    scale = torch.tensor([out_w / width, out_h / height, out_w / width, out_h / height])
    keep = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype)) & (scores >= score_threshold)
    index = torch.nonzero(keep).flatten()
    area = binary.flatten(1).sum(1) if binary.numel() else torch.zeros(0)
    order = sorted(index.tolist(), key=lambda i: (-float(scores[i]), -int(area[i])))[:max_detections]
    ids = torch.zeros(out_h, out_w, dtype=torch.int64)
    kept = []
    for i in order:  # descending score: a pixel goes to the first (best) detection that claims it
        free = binary[i] & (ids == 0)
        if free.any():
            kept.append(i)
            ids[free] = len(kept)
    n = len(kept)
    class_ids = np.zeros(n + 1, dtype=np.int64)
    score_values = np.zeros(n + 1, dtype=np.float32)
    box_values = np.zeros((n + 1, 4), dtype=np.float32)
    for new_id, i in enumerate(kept, start=1):
        class_ids[new_id] = int(labels[i])
        score_values[new_id] = float(scores[i])
        box_values[new_id] = (boxes[i].float().cpu() * scale).numpy()
    dtype = np.uint8 if n < 256 else np.uint16
    return FrameInstances(ids.numpy().astype(dtype), class_ids, score_values, box_values)


def build_segmenter_network(config: DynamicObjectsConfig) -> nn.Module:
    """Mask R-CNN of the configured kind with random weights (91 COCO classes), ready for a state dict."""
    if config.segmenter not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {config.segmenter!r}; choose one of {sorted(SEGMENTERS)}")
    builder, _ = SEGMENTERS[config.segmenter]
    return builder(weights=None, weights_backbone=None, num_classes=len(COCO_CATEGORIES),
                   min_size=config.segmenter_min_size, max_size=config.segmenter_max_size,
                   box_score_thresh=config.score_threshold, box_detections_per_img=100)


def load_segmenter_weights(network: nn.Module, path: str | Path, segmenter: str) -> None:
    """Load a COCO state dict into ``network``; a file of another architecture raises a ValueError naming it."""
    path = Path(path)
    state = load_weights_only(path, f"{segmenter} COCO state dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        expected = set(network.state_dict())
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        raise ValueError(f"{path} is not a {segmenter} COCO state dict: {len(missing)} missing keys "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}), "
                         f"or shapes differ: {str(exc).splitlines()[-1].strip()}") from exc


class InstanceSegmenter(nn.Module):
    """Mask R-CNN + post-processing: B×3×H×W images in [0, 1] → list of B FrameInstances at H×W."""

    def __init__(self, config: DynamicObjectsConfig, network: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.network = network if network is not None else build_segmenter_network(config)
        self.network.eval()

    @classmethod
    def from_config(cls, config: DynamicObjectsConfig) -> InstanceSegmenter:
        """Segmenter with COCO weights from ``config.segmenter_weights`` or the torch hub cache (never fetched)."""
        path = Path(config.segmenter_weights) if config.segmenter_weights else default_weights_path(config.segmenter)
        if not path.is_file():
            url = SEGMENTERS[config.segmenter][1].url if config.segmenter in SEGMENTERS else "?"
            raise FileNotFoundError(
                f"Mask R-CNN weights not found at {path}. Nothing is downloaded at run time: fetch {url} with "
                f"`mgdepth weights get` (see `mgdepth weights list`) or by hand and put it at "
                f"{default_weights_path(config.segmenter)} (or pass its path as segmenter_weights)")
        network = build_segmenter_network(config)
        load_segmenter_weights(network, path, config.segmenter)
        log.info("instance segmentation: %s with weights %s", config.segmenter, path)
        return cls(config, network)

    def train(self, mode: bool = True) -> InstanceSegmenter:
        """The segmenter stays in eval mode (it is never trained here)."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[FrameInstances]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B×3×H×W in [0, 1], got shape {tuple(images.shape)}")
        outputs = self.network(list(images.float()))
        size = tuple(images.shape[-2:])
        return [detections_to_instances(o["boxes"].cpu(), o["labels"].cpu(), o["scores"].cpu(), o["masks"].cpu(),
                                        self.config.classes, self.config.score_threshold,
                                        self.config.mask_threshold, self.config.max_detections, size)
                for o in outputs]
