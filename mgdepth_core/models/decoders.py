"""Monodepth2's depth decoder, as Manydepth uses it for the student and the teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DECODER_CHANNELS = (16, 32, 64, 128, 256)


class Conv3x3(nn.Module):
    """3×3 convolution with reflection padding (keeps the size)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConvBlock(nn.Module):
    """:class:`Conv3x3` followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class DepthDecoder(nn.Module):
    """U-Net decoder: five encoder maps (H/2 … H/32) → ``{("disp", s): B×1×H/2^s×W/2^s sigmoid}`` for s in 0..3.

    ``decoder`` holds, in order, (upconv 4,0), (4,1), (3,0), …, (0,1) and the disparity heads of scales 0..3, so
    the state dict equals the official ``depth.pth`` (``decoder.{0..9}.conv.conv.*``, ``decoder.{10..13}.conv.*``).
    """

    def __init__(self, num_ch_enc: list[int], scales: tuple[int, ...] = (0, 1, 2, 3)):
        super().__init__()
        self.scales = tuple(scales)
        blocks: list[nn.Module] = []
        for level in range(4, -1, -1):
            blocks.append(ConvBlock(num_ch_enc[-1] if level == 4 else DECODER_CHANNELS[level + 1],
                                    DECODER_CHANNELS[level]))
            skip = num_ch_enc[level - 1] if level > 0 else 0
            blocks.append(ConvBlock(DECODER_CHANNELS[level] + skip, DECODER_CHANNELS[level]))
        blocks.extend(Conv3x3(DECODER_CHANNELS[s], 1) for s in self.scales)
        self.decoder = nn.ModuleList(blocks)

    def forward(self, features: list[torch.Tensor]) -> dict:
        outputs = {}
        x = features[-1]
        for step, level in enumerate(range(4, -1, -1)):
            x = F.interpolate(self.decoder[2 * step](x), scale_factor=2, mode="nearest")
            if level > 0:
                x = torch.cat([x, features[level - 1]], 1)
            x = self.decoder[2 * step + 1](x)
            if level in self.scales:
                head = self.decoder[10 + self.scales.index(level)]
                outputs[("disp", level)] = torch.sigmoid(head(x))
        return outputs
