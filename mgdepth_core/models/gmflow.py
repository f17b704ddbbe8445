"""GMFlow (Xu et al., CVPR 2022) in the single-scale configuration Manydepth2 uses, written for this project.

Global matching optical flow: a CNN extracts 1/8-resolution features of both images, a transformer (self- and
cross-attention in split windows, the second of every pair of blocks shifted) makes them discriminative, a softmax
over the all-pairs correlation gives the flow, a self-attention over the first image's features propagates it to
occluded pixels and a learnt convex combination upsamples it ×8.

Module names follow the official implementation so that the official checkpoint
(``gmflow_sintel-0c07dcb3.pth``, ``checkpoint["model"]``) loads with ``strict=True``: ``backbone.*``,
``transformer.layers.{i}.{self_attn,cross_attn_ffn}.*``, ``feature_flow_attn.*``, ``upsampler.*``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with instance norm (no affine parameters) and a 1×1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(out_channels)
        self.norm2 = nn.InstanceNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_channels == out_channels:
            self.downsample = None
        else:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride),
                                            nn.InstanceNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class CNNEncoder(nn.Module):
    """Feature extractor: B×3×H×W (ImageNet-normalised) → B×C×H/8×W/8."""

    def __init__(self, output_dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.norm1 = nn.InstanceNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, stride=2), ResidualBlock(96, 96))
        self.layer3 = nn.Sequential(ResidualBlock(96, 128, stride=2), ResidualBlock(128, 128))
        self.conv2 = nn.Conv2d(128, output_dim, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def split_windows(x: torch.Tensor, splits: int) -> torch.Tensor:
    """B×H×W×C → (B·splits²)×H/splits×W/splits×C, windows in row-major order per batch entry."""
    b, h, w, c = x.shape
    x = x.view(b, splits, h // splits, splits, w // splits, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * splits * splits, h // splits, w // splits, c)


def merge_windows(x: torch.Tensor, splits: int) -> torch.Tensor:
    """Inverse of :func:`split_windows`."""
    bw, h, w, c = x.shape
    b = bw // (splits * splits)
    x = x.view(b, splits, splits, h, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, splits * h, splits * w, c)


def shifted_window_mask(height: int, width: int, splits: int, device: torch.device) -> torch.Tensor:
    """Additive attention mask (splits²×n×n, 0 or −100) that stops shifted windows mixing wrapped-around regions."""
    wh, ww = height // splits, width // splits
    sh, sw = wh // 2, ww // 2
    region = torch.zeros(1, height, width, 1, device=device)
    label = 0
    for rows in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
        for cols in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
            region[:, rows, cols, :] = label
            label += 1
    windows = split_windows(region, splits).view(-1, wh * ww)
    difference = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.where(difference != 0, torch.full_like(difference, -100.0), torch.zeros_like(difference))


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, height: int, width: int, splits: int,
                     shift: bool, mask: torch.Tensor | None) -> torch.Tensor:
    """Single-head softmax attention inside splits×splits windows. q, k, v: B×(H·W)×C. Returns B×(H·W)×C."""
    b, _, c = q.shape
    q, k, v = (t.view(b, height, width, c) for t in (q, k, v))
    if shift:
        offset = (-(height // splits // 2), -(width // splits // 2))
        q, k, v = (torch.roll(t, shifts=offset, dims=(1, 2)) for t in (q, k, v))
    q, k, v = (split_windows(t, splits).flatten(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype).repeat(b, 1, 1) if shift else None)
    out = merge_windows(out.view(-1, height // splits, width // splits, c), splits)
    if shift:
        out = torch.roll(out, shifts=(height // splits // 2, width // splits // 2), dims=(1, 2))
    return out.reshape(b, -1, c)


class TransformerLayer(nn.Module):
    """Attention of ``source`` tokens over ``target`` tokens, merge + LayerNorm, optionally an FFN on the concat."""

    def __init__(self, channels: int, with_ffn: bool, ffn_expansion: int, shift: bool):
        super().__init__()
        self.shift = shift
        self.q_proj = nn.Linear(channels, channels, bias=False)
        self.k_proj = nn.Linear(channels, channels, bias=False)
        self.v_proj = nn.Linear(channels, channels, bias=False)
        self.merge = nn.Linear(channels, channels, bias=False)
        self.norm1 = nn.LayerNorm(channels)
        self.with_ffn = with_ffn
        if with_ffn:
            hidden = 2 * channels * ffn_expansion
            self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden, bias=False), nn.GELU(),
                                     nn.Linear(hidden, channels, bias=False))
            self.norm2 = nn.LayerNorm(channels)

    def forward(self, source: torch.Tensor, target: torch.Tensor, height: int, width: int, splits: int,
                mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.q_proj(source), self.k_proj(target), self.v_proj(target)
        if splits > 1:
            message = window_attention(q, k, v, height, width, splits, self.shift, mask)
        else:
            message = F.scaled_dot_product_attention(q, k, v)
        message = self.norm1(self.merge(message))
        if self.with_ffn:
            message = self.norm2(self.mlp(torch.cat([source, message], dim=-1)))
        return source + message


class TransformerBlock(nn.Module):
    """Self-attention, then cross-attention followed by the FFN."""

    def __init__(self, channels: int, ffn_expansion: int, shift: bool):
        super().__init__()
        self.self_attn = TransformerLayer(channels, with_ffn=False, ffn_expansion=ffn_expansion, shift=shift)
        self.cross_attn_ffn = TransformerLayer(channels, with_ffn=True, ffn_expansion=ffn_expansion, shift=shift)

    def forward(self, source, target, height, width, splits, mask):
        source = self.self_attn(source, source, height, width, splits, mask)
        return self.cross_attn_ffn(source, target, height, width, splits, mask)


class FeatureTransformer(nn.Module):
    """Six blocks updating both images' features symmetrically (the two directions run as one batch)."""

    def __init__(self, num_layers: int = 6, channels: int = 128, ffn_expansion: int = 4):
        super().__init__()
        self.layers = nn.ModuleList([TransformerBlock(channels, ffn_expansion, shift=i % 2 == 1)
                                     for i in range(num_layers)])
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, feature0: torch.Tensor, feature1: torch.Tensor, splits: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = feature0.shape
        mask = shifted_window_mask(h, w, splits, feature0.device) if splits > 1 else None
        tokens0 = feature0.flatten(2).transpose(1, 2)
        tokens1 = feature1.flatten(2).transpose(1, 2)
        source = torch.cat([tokens0, tokens1], dim=0)
        target = torch.cat([tokens1, tokens0], dim=0)
        for layer in self.layers:
            source = layer(source, target, h, w, splits, mask)
            target = torch.cat(source.chunk(2, dim=0)[::-1], dim=0)
        out0, out1 = source.chunk(2, dim=0)
        return (out0.transpose(1, 2).reshape(b, c, h, w), out1.transpose(1, 2).reshape(b, c, h, w))


class FeatureFlowAttention(nn.Module):
    """Global flow propagation: flow re-estimated as a softmax(self-similarity of image-1 features) average."""

    def __init__(self, channels: int):
        super().__init__()
        self.q_proj = nn.Linear(channels, channels)
        self.k_proj = nn.Linear(channels, channels)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feature.shape
        query = self.q_proj(feature.flatten(2).transpose(1, 2))
        key = self.k_proj(query)
        value = flow.flatten(2).transpose(1, 2)
        prob = torch.softmax(query @ key.transpose(1, 2) / math.sqrt(c), dim=-1)
        return (prob @ value).transpose(1, 2).reshape(b, flow.shape[1], h, w)


def sine_position_encoding(channels: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """DETR-style normalised sine/cosine encoding, channels×H×W (first half from y, second from x)."""
    half = channels // 2
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + 1e-6) * 2 * math.pi
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half)

    def encode(values: torch.Tensor) -> torch.Tensor:
        scaled = values[:, None] / dim_t
        return torch.stack([scaled[:, 0::2].sin(), scaled[:, 1::2].cos()], dim=2).flatten(1)  # n×half

    pos_y = encode(y)[:, None, :].expand(height, width, half)
    pos_x = encode(x)[None, :, :].expand(height, width, half)
    return torch.cat([pos_y, pos_x], dim=2).permute(2, 0, 1)


def global_matching_flow(feature0: torch.Tensor, feature1: torch.Tensor) -> torch.Tensor:
    """Flow 0→1 (B×2×h×w, feature pixels) as the softmax-weighted mean of all image-1 positions."""
    b, c, h, w = feature0.shape
    correlation = feature0.flatten(2).transpose(1, 2) @ feature1.flatten(2) / math.sqrt(c)
    ys, xs = torch.meshgrid(torch.arange(h, device=feature0.device, dtype=feature0.dtype),
                            torch.arange(w, device=feature0.device, dtype=feature0.dtype), indexing="ij")
    grid = torch.stack([xs, ys]).flatten(1).T  # (h·w)×2, (x, y)
    correspondence = torch.softmax(correlation, dim=-1) @ grid
    return (correspondence - grid).transpose(1, 2).reshape(b, 2, h, w)


class GMFlow(nn.Module):
    """Single-scale GMFlow. ``forward(image0, image1)``: B×3×H×W in [0, 1], H and W multiples of 8·attn_splits;
    returns the flow image0 → image1, B×2×H×W pixels."""

    def __init__(self, feature_channels: int = 128, upsample_factor: int = 8, num_transformer_layers: int = 6,
                 ffn_dim_expansion: int = 4, attn_splits: int = 2):
        super().__init__()
        self.feature_channels = feature_channels
        self.upsample_factor = upsample_factor
        self.attn_splits = attn_splits
        self.backbone = CNNEncoder(feature_channels)
        self.transformer = FeatureTransformer(num_transformer_layers, feature_channels, ffn_dim_expansion)
        self.feature_flow_attn = FeatureFlowAttention(feature_channels)
        self.upsampler = nn.Sequential(nn.Conv2d(2 + feature_channels, 256, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(256, upsample_factor ** 2 * 9, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (8 for the backbone × the attention splits)."""
        return 8 * self.attn_splits

    def convex_upsample(self, flow: torch.Tensor, feature: torch.Tensor, downsample: int = 1) -> torch.Tensor:
        """×upsample_factor: every fine pixel is a learnt convex combination of its 3×3 coarse neighbours.

        ``downsample`` f (a divisor of upsample_factor, 1 or even): the fine flow resized by 1/f as
        :func:`~mgdepth_core.models.flow.resize_flow` resizes it (bilinear, align_corners=False: the mean of a 2×2
        block of fine pixels), in pixels of that grid, with the convex combination evaluated only at the fine pixels
        the resize reads (a quarter of them for f = 4). Returns B×2×(k·h/f)×(k·w/f).
        """
        b, _, h, w = flow.shape
        k = self.upsample_factor
        if k % downsample or (downsample > 1 and downsample % 2):
            raise ValueError(f"downsample must be 1 or an even divisor of {k}, got {downsample}")
        per_cell = k // downsample  # output pixels per coarse cell and axis
        taps = 1 if downsample == 1 else 2  # fine rows (columns) averaged per output row (column)
        rows = list(range(k)) if downsample == 1 else [downsample * j + downsample // 2 - 1 + t
                                                      for j in range(per_cell) for t in range(taps)]
        channels = torch.tensor([n * k * k + r * k + c for n in range(9) for r in rows for c in rows],
                                device=flow.device)
        hidden, last = self.upsampler[1](self.upsampler[0](torch.cat([flow, feature], dim=1))), self.upsampler[2]
        weights = F.conv2d(hidden, last.weight[channels], last.bias[channels])
        weights = weights.view(b, 1, 9, len(rows), len(rows), h, w).softmax(dim=2)
        neighbours = F.unfold(k * flow, 3, padding=1).view(b, 2, 9, 1, 1, h, w)
        up = (weights * neighbours).sum(dim=2)  # B×2×rows×rows×h×w
        up = up.view(b, 2, per_cell, taps, per_cell, taps, h, w).mean((3, 5)) / downsample
        return up.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, per_cell * h, per_cell * w)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """CNN features of one B×3×H×W image in [0, 1] (B×C×H/8×W/8). Instance-normalised per image, so a frame's
        features do not depend on its partner and can be reused for the next pair of a stream."""
        height, width = image.shape[-2:]
        if height % self.divisor or width % self.divisor:
            raise ValueError(f"GMFlow input {height}×{width} is not a multiple of {self.divisor}; pad it first "
                             "(FlowEstimator does)")
        return self.backbone((image - self.mean) / self.std)

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, feature0: torch.Tensor | None = None,
                feature1: torch.Tensor | None = None, downsample: int = 1) -> torch.Tensor:
        """``feature0``/``feature1``: :meth:`encode` of the images, when already known (the backbone is skipped);
        ``downsample``: return the flow at 1/downsample resolution (see :meth:`convex_upsample`)."""
        if feature0 is None and feature1 is None:
            feature0, feature1 = self.encode(torch.cat([image0, image1], dim=0)).chunk(2, dim=0)
        else:
            feature0 = self.encode(image0) if feature0 is None else feature0
            feature1 = self.encode(image1) if feature1 is None else feature1
        s = self.attn_splits
        h, w = feature0.shape[-2:]
        position = sine_position_encoding(self.feature_channels, h // s, w // s, feature0.device).repeat(1, s, s)
        feature0, feature1 = self.transformer(feature0 + position, feature1 + position, s)
        with torch.autocast(feature0.device.type, enabled=False):  # pixel coordinates need float32
            feature0, feature1 = feature0.float(), feature1.float()
            flow = global_matching_flow(feature0, feature1)
            flow = self.feature_flow_attn(feature0, flow)
            return self.convex_upsample(flow, feature0, downsample)
