"""Dyna-DM / Insta-DM object motion network: a 3-D translation per object, no rotation.

Input: the target frame masked to one object (I_t ⊙ M_k) and the reference frame warped into the target with the
background ego-motion and masked to the same object, both mid-grey (0.5) outside the object, concatenated to
B×6×H×W in [0, 1]. The encoder is the pose net's two-image ResNet (:class:`~mgdepth_core.models.resnet.
ResnetEncoder`); the head mirrors the pose decoder with three outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from mgdepth_core.models.resnet import ResnetEncoder


class ObjectMotionHead(nn.Module):
    """Last encoder map (N×C×h×w) → translation N×3 (metres up to the depth scale): 1×1 C→256, 3×3, 3×3, 1×1 →3
    with ReLU between, spatial mean, ×0.01 (as the pose decoder)."""

    def __init__(self, in_channels: int = 512):
        super().__init__()
        self.net = nn.ModuleList([
            nn.Conv2d(in_channels, 256, 1),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.Conv2d(256, 3, 1),
        ])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for conv in self.net[:3]:
            x = torch.relu(conv(x))
        return 0.01 * self.net[3](x).mean((2, 3))


class ObjectMotionNet(nn.Module):
    """(target crop N×3×H×W, ego-warped reference crop N×3×H×W) in [0, 1] → object translation N×3 from the
    target to the reference camera (added to the object's points after the ego-motion, geometry.reproject)."""

    def __init__(self, num_layers: int = 18, pretrained: bool = False):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, pretrained, num_input_images=2)
        self.head = ObjectMotionHead(self.encoder.num_ch_enc[-1])

    def forward(self, target_crop: torch.Tensor, reference_crop: torch.Tensor) -> torch.Tensor:
        if target_crop.shape != reference_crop.shape or target_crop.dim() != 4 or target_crop.shape[1] != 3:
            raise ValueError(f"object crops must both be N×3×H×W, got {tuple(target_crop.shape)} and "
                             f"{tuple(reference_crop.shape)}")
        return self.head(self.encoder(torch.cat([target_crop, reference_crop], 1))[-1])
