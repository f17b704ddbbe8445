"""HRNet-18 encoders of Manydepth2: the single-frame teacher and the cost-volume student.

Both wrap timm's ``hrnet_w18`` (HighResolutionNet) without its classification head and run its stages by hand to
expose the maps Manydepth2's decoder needs. Sub-module names are timm's (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition1``, ``stage2`` … ``stage4``), which are the keys of the official ``mono_encoder.pth`` /
``encoder.pth``. The HRNets see RGB in [0, 1] without normalisation, as in the release.

Encoder output (both): five maps
``[feat0 64@H/2, list18 118@H/4, list36 108@H/8, list72 144@H/16, 144@H/32]`` where list18 = (stem 64@H/4,
stage-2/3/4 18-channel branches), list36 = stage-2/3/4 36-channel branches, list72 = stage-3/4 72-channel branches,
each concatenated in that order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mgdepth_core.models.cost_volume import build_cost_volume
from mgdepth_core.torch_files import load_weights_only

HRNET_MODULES = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
                 "transition3", "stage4")
HRNET_OUTPUT_CHANNELS = (64, 118, 108, 144, 144)
STAGE1_CHANNELS = 256
TIMM_HF_REPO = "timm/hrnet_w18.ms_aug_in1k"


def find_imagenet_hrnet(path: str | Path | None = None) -> Path | None:
    """The ImageNet HRNet-W18 checkpoint: ``path`` if given, else timm's file in the Hugging Face cache, else None.

    Nothing is downloaded.
    """
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"HRNet-W18 ImageNet weights {path} do not exist")
        return path
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(TIMM_HF_REPO, filename)
        if isinstance(cached, str):
            return Path(cached)
    return None


def _read_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    return load_weights_only(path, "HRNet-W18 checkpoint")


class HRNetEncoder(nn.Module):
    """Manydepth2's teacher encoder (``mono_hrnet_encoder``): B×3×H×W in [0, 1] → the five maps above."""

    num_ch_enc = HRNET_OUTPUT_CHANNELS

    def __init__(self, pretrained: bool = False, weights_path: str | Path | None = None):
        super().__init__()
        backbone = timm.create_model("hrnet_w18", pretrained=False)
        for name in HRNET_MODULES:
            setattr(self, name, getattr(backbone, name))
        if pretrained:
            self.load_imagenet(weights_path)

    def load_imagenet(self, weights_path: str | Path | None = None) -> bool:
        """Copy timm's ImageNet weights (backbone part) when they are on disk; warns and returns False otherwise."""
        path = find_imagenet_hrnet(weights_path)
        if path is None:
            warnings.warn(f"no ImageNet HRNet-W18 weights in the Hugging Face cache ({TIMM_HF_REPO}); the HRNet "
                          "starts from random weights", stacklevel=2)
            return False
        state = {key: value for key, value in _read_state(path).items() if key.split(".")[0] in HRNET_MODULES}
        missing, _ = self.load_state_dict(state, strict=False)
        backbone_missing = [key for key in missing if key.split(".")[0] in HRNET_MODULES]
        if backbone_missing:
            raise ValueError(f"{path} is not an HRNet-W18 checkpoint: missing {backbone_missing[0]}")
        return True

    def stem(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(feat0 64@H/2, stem 64@H/4)."""
        feat0 = F.relu(self.bn1(self.conv1(image)))
        return feat0, F.relu(self.bn2(self.conv2(feat0)))

    def high_resolution_stages(self, stage1: torch.Tensor) -> list[list[torch.Tensor]]:
        """Stage-1 output (256@H/4) → branch outputs of stages 2, 3 and 4 (2, 3 and 4 maps)."""
        stage2 = self.stage2([transition(stage1) for transition in self.transition1])
        inputs = [stage2[i] if isinstance(t, nn.Identity) else t(stage2[-1]) for i, t in enumerate(self.transition2)]
        stage3 = self.stage3(inputs)
        inputs = [stage3[i] if isinstance(t, nn.Identity) else t(stage3[-1]) for i, t in enumerate(self.transition3)]
        return [stage2, stage3, self.stage4(inputs)]

    @staticmethod
    def collect(feat0: torch.Tensor, stem: torch.Tensor, stages: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        stage2, stage3, stage4 = stages
        return [feat0,
                torch.cat([stem, stage2[0], stage3[0], stage4[0]], 1),
                torch.cat([stage2[1], stage3[1], stage4[1]], 1),
                torch.cat([stage3[2], stage4[2]], 1),
                stage4[3]]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feat0, stem = self.stem(image)
        return self.collect(feat0, stem, self.high_resolution_stages(self.layer1(stem)))


class HRNetEncoderMatching(HRNetEncoder):
    """Manydepth2's student encoder (``HRnetEncoderMatching``): HRNet-18 with the cost volume after stage 1.

    The 96-bin volume is built on stage-1 features (256@H/4) against the lookup frame, fused with them by
    ``reduce_conv`` (concat 256 + bins → 3×3 conv → 256, ReLU) and fed to stage 2. ``prematching_conv`` exists
    only for key parity with the official file (the release never calls it).
    """

    def __init__(self, pretrained: bool = False, num_depth_bins: int = 96, weights_path: str | Path | None = None,
                 chunk_elements: int = 1 << 22):
        super().__init__(pretrained, weights_path)
        self.num_depth_bins = num_depth_bins
        self.chunk_elements = chunk_elements
        self.bin_step = 1  # cost computed at every bin_step-th depth bin, the rest interpolated (inference speed)
        self.confident_only = False  # skip pixels with an invalid bin (inference: only the volume is used)
        self.prematching_conv = nn.Sequential(nn.Conv2d(64, 16, kernel_size=1), nn.ReLU(inplace=True))
        self.reduce_conv = nn.Sequential(nn.Conv2d(STAGE1_CHANNELS + num_depth_bins, STAGE1_CHANNELS, 3, padding=1),
                                         nn.ReLU(inplace=True))

    def matching_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(feat0, stem, stage-1 output 256@H/4 = the matching features) of B×3×H×W in [0, 1]."""
        feat0, stem = self.stem(image)
        return feat0, stem, self.layer1(stem)

    def fuse_and_encode(self, feat0: torch.Tensor, stem: torch.Tensor, stage1: torch.Tensor, volume: torch.Tensor
                        ) -> list[torch.Tensor]:
        """The five maps from :meth:`matching_features`' outputs and the B×D×H/4×W/4 cost volume (fusion conv,
        stages 2-4)."""
        fused = self.reduce_conv(torch.cat([stage1, volume.to(stage1.dtype)], 1))
        return self.collect(feat0, stem, self.high_resolution_stages(fused))

    def forward(self, image: torch.Tensor, lookup_features: torch.Tensor, T_lookup_current: torch.Tensor,
                K_quarter: torch.Tensor, depth_bins: torch.Tensor) -> dict:
        """Encode ``image`` against the lookup frame's stage-1 features (B×256×H/4×W/4).

        ``K_quarter``: B×3×3 at 1/4 resolution; ``depth_bins``: D metres. Returns ``features`` (five maps),
        ``matching_features`` (this frame's stage-1 output, detached, reusable as the next lookup),
        ``lowest_cost`` (1 / best bin depth), ``cost_volume_depth`` (metres) and ``confidence_mask``
        (B×1×H/4×W/4 each).
        """
        feat0, stem, stage1 = self.matching_features(image)
        volume = build_cost_volume(stage1, lookup_features, T_lookup_current, K_quarter, depth_bins,
                                   self.chunk_elements, self.bin_step, self.confident_only)
        features = self.fuse_and_encode(feat0, stem, stage1, volume.volume)
        return {"features": features, "matching_features": stage1.detach(), "lowest_cost": 1.0 / volume.best_depth,
                "cost_volume_depth": volume.best_depth, "confidence_mask": volume.confidence_mask}
