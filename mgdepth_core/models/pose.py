"""Monodepth2's pose decoder and the pose network built from it."""

from __future__ import annotations

import torch
from torch import nn


class PoseDecoder(nn.Module):
    """Last encoder map (B×C×h×w) → 6-DoF motion for ``num_frames`` frames: (axis-angle B×F×3, translation B×F×3).

    ``net`` = (1×1 squeeze C→256, 3×3 256→256, 3×3 256→256, 1×1 256→6F); ReLU between, spatial mean, ×0.01.
    Keys equal the official ``pose.pth``.
    """

    def __init__(self, in_channels: int = 512, num_frames: int = 2):
        super().__init__()
        self.num_frames = num_frames
        self.net = nn.ModuleList([
            nn.Conv2d(in_channels, 256, 1),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.Conv2d(256, 6 * num_frames, 1),
        ])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features
        for conv in self.net[:3]:
            x = torch.relu(conv(x))
        motion = 0.01 * self.net[3](x).mean((2, 3)).view(-1, self.num_frames, 6)
        return motion[..., :3], motion[..., 3:]
