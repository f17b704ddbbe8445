"""Manydepth2's HRDepthDecoder: attention fusion blocks (efficient non-local + SE channel attention).

Input: the five HRNet maps ``[64@H/2, 118@H/4, 108@H/8, 144@H/16, 144@H/32]``. Output ``("disp", s)``:
B×1×H/2^s×W/2^s sigmoid disparity, s = 0..3 (Monodepth2's scale semantics).

The official file stores every tensor twice, under ``convs.<name>.*`` and ``decoder.<index>.*`` (the same modules
registered in a ModuleDict and a ModuleList). This module registers them the same way, so ``state_dict()`` writes
the official layout; :meth:`HRDepthDecoder.load_state_dict` accepts either half or both (and checks that both
halves agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (name, high-level channels, low-level channels, output channels); the order is the ModuleDict order.
ATTENTION_BLOCKS = (("72", 144, 144, 256), ("36", 256, 108, 128), ("18", 128, 118, 64), ("9", 64, 64, 32))
MODULE_ORDER = ("up_x9_0", "up_x9_1", "72", "36", "18", "9",
                "dispConvScale0", "dispConvScale1", "dispConvScale2", "dispConvScale3")


class Conv3x3(nn.Module):
    """Reflection-padded 3×3 convolution (keys ``conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class ConvBlock(nn.Module):
    """Conv3x3 + ELU (keys ``conv.conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.conv(x))


class EfficientNonLocalAttention(nn.Module):
    """Non-local attention on a 2×2 max-pooled map with C/16-channel query/key/value, residual weight γ (init 0).

    As in the release, A = row-softmax(QᵀK) (N×N over pooled positions) and the output is V·A, i.e. position j
    gathers Σ_i V_i A_ij — the transpose of the usual non-local form, kept for weight parity.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        inner = channels // reduction
        self.query_conv = nn.Conv2d(channels, inner, 1)
        self.key_conv = nn.Conv2d(channels, inner, 1)
        self.value_conv = nn.Conv2d(channels, inner, 1)
        self.out_conv = nn.Conv2d(inner, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(x, 2)
        b, _, h, w = pooled.shape
        query = self.query_conv(pooled).flatten(2)  # B×C'×N
        key = self.key_conv(pooled).flatten(2)
        value = self.value_conv(pooled).flatten(2)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # B×N×N
        out = self.out_conv((value @ attention).view(b, -1, h, w))
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation without biases: global average → C/16 → ReLU → C → sigmoid → rescale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean((2, 3))))[:, :, None, None]


class AttentionFusion(nn.Module):
    """Non-local attention on the high-level map, nearest ×2, concat low-level map, SE, 3×3 conv + ReLU."""

    def __init__(self, high_channels: int, low_channels: int, out_channels: int):
        super().__init__()
        self.EfficientNonLocalAttention = EfficientNonLocalAttention(high_channels)
        self.ca = ChannelAttention(high_channels + low_channels)
        self.conv_se = nn.Conv2d(high_channels + low_channels, out_channels, 3, padding=1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = F.interpolate(self.EfficientNonLocalAttention(high), scale_factor=2, mode="nearest")
        return F.relu(self.conv_se(self.ca(torch.cat([high, low], 1))))


class HRDepthDecoder(nn.Module):
    """Five HRNet maps → ``{("disp", s): B×1×H/2^s×W/2^s}`` for s = 0..3."""

    def __init__(self):
        super().__init__()
        modules: dict[str, nn.Module] = {"up_x9_0": ConvBlock(32, 16), "up_x9_1": ConvBlock(16, 16)}
        for name, high, low, out in ATTENTION_BLOCKS:
            modules[name] = AttentionFusion(high, low, out)
        for scale, channels in enumerate((16, 32, 64, 128)):
            modules[f"dispConvScale{scale}"] = Conv3x3(channels, 1)
        self.convs = nn.ModuleDict({name: modules[name] for name in MODULE_ORDER})
        self.decoder = nn.ModuleList(list(self.convs.values()))

    def forward(self, features: list[torch.Tensor]) -> dict:
        feat0, list18, list36, list72, deepest = features
        convs = self.convs
        outputs = {}
        x = convs["72"](deepest, list72)
        x = convs["36"](x, list36)
        outputs[("disp", 3)] = torch.sigmoid(convs["dispConvScale3"](x))
        x = convs["18"](x, list18)
        outputs[("disp", 2)] = torch.sigmoid(convs["dispConvScale2"](x))
        x = convs["9"](x, feat0)
        outputs[("disp", 1)] = torch.sigmoid(convs["dispConvScale1"](x))
        x = convs["up_x9_1"](F.interpolate(convs["up_x9_0"](x), scale_factor=2, mode="nearest"))
        outputs[("disp", 0)] = torch.sigmoid(convs["dispConvScale0"](x))
        return outputs

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a state dict holding ``convs.*``, ``decoder.*`` or both halves; both halves must agree."""
        return super().load_state_dict(with_both_halves(state_dict), strict=strict, assign=assign)


def with_both_halves(state_dict: dict) -> dict:
    """Complete an HRDepthDecoder state dict to the official layout (``convs.<name>.*`` and ``decoder.<i>.*``).

    Where a file holds both halves they must be equal; otherwise ValueError names the two keys.
    """
    index_of = {name: str(i) for i, name in enumerate(MODULE_ORDER)}
    name_of = {index: name for name, index in index_of.items()}
    state = dict(state_dict)
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        part, _, tail = rest.partition(".")
        if head == "convs" and part in index_of:
            twin = f"decoder.{index_of[part]}.{tail}"
        elif head == "decoder" and part in name_of:
            twin = f"convs.{name_of[part]}.{tail}"
        else:
            continue
        if twin in state_dict:
            other = state_dict[twin]
            if other.shape != value.shape or not torch.equal(other, value):
                raise ValueError(f"HRDepthDecoder weights disagree: {key} vs {twin}")
        else:
            state[twin] = value
    return state
