"""Manydepth's multi-frame encoder: a ResNet with a plane-sweep cost volume inserted after ``layer1``.

The cost volume is built at 1/4 resolution from the raw ``layer1`` features of the current and the lookup frame.
It is accumulated a few depth bins at a time and only where a hypothesis lands inside the lookup frame, so the
B×bins×C×h×w warped-feature volume of the original code never exists; everything about it runs without
gradients, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mgdepth_core.geometry import pixel_grid
from mgdepth_core.models.resnet import build_resnet, encoder_channels, normalise_image
from mgdepth_core.stages import stage

BORDER_PX = 2.0  # matches closer than this to either image border are not trusted (ResNet zero padding)


def depth_bin_values(min_depth_bin: float | torch.Tensor, max_depth_bin: float | torch.Tensor, num_bins: int,
                     binning: str = "linear") -> torch.Tensor:
    """Depth hypotheses, ascending, metres (float32, on the device of a tensor argument).

    ``linear`` spaces them uniformly in depth, ``inverse`` uniformly in inverse depth.
    """
    device = max_depth_bin.device if isinstance(max_depth_bin, torch.Tensor) else None
    low = torch.as_tensor(min_depth_bin, dtype=torch.float64, device=device)
    high = torch.as_tensor(max_depth_bin, dtype=torch.float64, device=device)
    steps = torch.linspace(0.0, 1.0, num_bins, dtype=torch.float64, device=device)
    if binning == "linear":
        bins = low + (high - low) * steps
    elif binning == "inverse":
        bins = 1.0 / (1.0 / high + (1.0 / low - 1.0 / high) * steps).flip(0)
    else:
        raise ValueError(f"depth_binning must be 'linear' or 'inverse', got {binning!r}")
    return bins.float()


@dataclass
class CostVolume:
    """Result of :func:`build_cost_volume`; maps are at the feature resolution h×w."""

    volume: torch.Tensor  # B×D×h×w mean |Δfeature|, invalid entries max-filled, zeroed where not confident
    cost: torch.Tensor  # B×D×h×w the same before zeroing: every pixel's matching costs, invalid ones max-filled
    confidence_mask: torch.Tensor  # B×1×h×w float, 1 where every depth hypothesis landed inside the lookup frame
    best_depth: torch.Tensor  # B×1×h×w metres, the bin with the lowest cost (the nearest bin where none is valid)


def _inverse_3x3(M: torch.Tensor) -> torch.Tensor:
    """Inverse of B×3×3 matrices by the adjugate (exportable to ONNX, which has no matrix inverse)."""
    rows = M.unbind(1)

    def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], 1)

    columns = torch.stack([cross(rows[1], rows[2]), cross(rows[2], rows[0]), cross(rows[0], rows[1])], 2)
    det = (rows[0] * columns[:, :, 0]).sum(1)
    return columns / det.view(-1, 1, 1)


def _project_bins(T: torch.Tensor, K: torch.Tensor, depth_bins: torch.Tensor, height: int, width: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where every pixel of the current h×w map lands in the lookup map at every depth hypothesis.

    ``T``: b×4×4, ``K``: b×3×3, ``depth_bins``: D. Returns lookup pixel coordinates u, v and the validity (at
    least 2 px inside the lookup map, in front of the camera, and from a pixel at least 2 px inside the current
    map), each b×D×(h·w).
    """
    grid = pixel_grid(height, width, T.device).reshape(1, 3, height * width)
    # A pixel at depth d lands at d·(K R K⁻¹ p) + K t (homogeneous), so one product serves every bin.
    rays = (K @ T[:, :3, :3] @ _inverse_3x3(K) @ grid).unsqueeze(1)  # b×1×3×N
    cam = rays * depth_bins.to(T.device, torch.float32).view(1, -1, 1, 1) + (K @ T[:, :3, 3:]).unsqueeze(1)
    z = cam[:, :, 2]  # b×D×N
    u = cam[:, :, 0] / (z + 1e-7)
    v = cam[:, :, 1] / (z + 1e-7)
    u0, v0 = grid[0, 0], grid[0, 1]
    inside_current = ((u0 >= BORDER_PX) & (u0 <= width - 1 - BORDER_PX)
                      & (v0 >= BORDER_PX) & (v0 <= height - 1 - BORDER_PX))
    valid = ((u >= BORDER_PX) & (u <= width - BORDER_PX) & (v >= BORDER_PX) & (v <= height - BORDER_PX)
             & (z > 0) & inside_current)
    return u, v, valid


def _sparse_cost(current: torch.Tensor, lookup: torch.Tensor, T_lookup_current: torch.Tensor, K: torch.Tensor,
                 depth_bins: torch.Tensor, chunk_elements: int, confident_only: bool = False) -> torch.Tensor:
    """B×D×N mean |Δfeature| of the valid (bin, pixel) pairs only, 0 elsewhere: the eager path.
    ``confident_only``: only pixels valid at every bin (the others' volume is zeroed anyway)."""
    batch, channels, height, width = current.shape
    num_bins = depth_bins.numel()
    pixels = height * width
    cost = torch.zeros(batch * num_bins * pixels, device=current.device)
    active = (torch.count_nonzero(T_lookup_current.flatten(1), dim=1) > 0).nonzero().squeeze(1)
    if len(active):
        u, v, valid = _project_bins(T_lookup_current[active].float(), K[active].float(), depth_bins, height, width)
        if confident_only:
            valid &= valid.all(1, keepdim=True)
        # Valid (sample, bin, pixel) triples as flat indices into the b×D×N volume of the active samples.
        selected = valid.view(-1).nonzero().squeeze(1)
        u, v = u.view(-1)[selected], v.view(-1)[selected]
        sample = selected // (num_bins * pixels)
        pixel = selected % pixels
        x0, y0 = u.floor(), v.floor()
        wx, wy = u - x0, v - y0
        # Row table: for active sample i, rows [2iN, 2iN + N) hold its lookup features, the next N its current ones.
        table = torch.stack([lookup[active], current[active]], 1).float().permute(0, 1, 3, 4, 2)
        table = table.reshape(-1, channels)
        corner = (y0 * width + x0).long() + sample * (2 * pixels)
        rows = torch.stack([corner, corner + 1, corner + width, corner + width + 1,
                            sample * (2 * pixels) + pixels + pixel], 1)
        weights = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy,
                               torch.full_like(wx, -1.0)], 1)
        values = torch.empty(len(selected), device=current.device)
        rows_per_chunk = max(1, chunk_elements // max(1, channels))
        for start in range(0, len(selected), rows_per_chunk):
            chunk = slice(start, start + rows_per_chunk)
            difference = F.embedding_bag(rows[chunk], table, per_sample_weights=weights[chunk], mode="sum")
            torch.sum(difference.abs_(), 1, out=values[chunk])  # (faster than vector_norm(ord=1) here)
        where = torch.zeros(batch, num_bins, pixels, dtype=torch.bool, device=current.device)
        where[active] = valid
        cost.masked_scatter_(where.view(-1), values / channels)  # row-major, the order of `selected`
    return cost.view(batch, num_bins, pixels)


def _dense_cost(current: torch.Tensor, lookup: torch.Tensor, T_lookup_current: torch.Tensor, K: torch.Tensor,
                depth_bins: torch.Tensor) -> torch.Tensor:
    """The same B×D×N costs with static shapes and no data-dependent control flow (one ``grid_sample`` per bin):
    the form an ONNX export traces. An all-zero pose projects everything to z = 0, so all its entries are 0."""
    batch, _, height, width = current.shape
    u, v, valid = _project_bins(T_lookup_current.float(), K.float(), depth_bins, height, width)
    # Pixel → normalised coordinates (align_corners); invalid ones are clamped so nothing becomes inf or NaN.
    x = (2 * u / (width - 1) - 1).clamp(-2, 2)
    y = (2 * v / (height - 1) - 1).clamp(-2, 2)
    costs = []
    for bin_index in range(depth_bins.numel()):
        grid = torch.stack([x[:, bin_index], y[:, bin_index]], -1).view(batch, height, width, 2)
        warped = F.grid_sample(lookup.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        difference = (warped - current.float()).abs().mean(1).view(batch, -1)
        costs.append(torch.where(valid[:, bin_index], difference, torch.zeros_like(difference)))
    return torch.stack(costs, 1)


def _interpolate_bins(cost: torch.Tensor, computed: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """B×D×N costs from the B×D'×N costs of the bins ``computed`` (D' ascending indices, first 0, last D − 1):
    linear in the bin index between computed neighbours; 0 (missing) where the bin is not ``valid`` (B×D×N) or
    a neighbour's cost is missing."""
    num_bins = valid.shape[1]
    index = torch.arange(num_bins, device=cost.device)
    upper = torch.searchsorted(computed, index).clamp(1, len(computed) - 1)  # right neighbour's slot
    low, high = computed[upper - 1], computed[upper]
    t = ((index - low) / (high - low)).view(1, -1, 1)
    below, above = cost[:, upper - 1], cost[:, upper]
    interpolated = torch.lerp(below, above, t.to(cost.dtype))
    return torch.where(valid & (below != 0) & (above != 0), interpolated, torch.zeros_like(interpolated))


@torch.no_grad()
@torch.autocast("cuda", enabled=False)  # projection and costs in float32 even inside an autocast region
@torch.autocast("cpu", enabled=False)
def build_cost_volume(current: torch.Tensor, lookup: torch.Tensor, T_lookup_current: torch.Tensor,
                      K: torch.Tensor, depth_bins: torch.Tensor, chunk_elements: int = 1 << 22,
                      bin_step: int = 1, confident_only: bool = False) -> CostVolume:
    """Plane-sweep L1 feature cost volume (Manydepth).

    ``current``, ``lookup``: B×C×h×w features; ``T_lookup_current``: B×4×4 (current-camera points into the lookup
    camera; an all-zero matrix marks a missing lookup frame, whose volume is then empty); ``K``: B×3×3 pixels of
    the h×w feature map; ``depth_bins``: D ascending depths, metres. Entry (d, v, u) is the channel mean of
    |lookup(warp of (u, v) at depth d) − current(u, v)| with bilinear sampling, valid where the warp lands at
    least 2 px inside the lookup map, in front of the camera, and (u, v) is at least 2 px inside the current map;
    invalid entries, and valid ones whose cost is exactly 0 (as in the original), count as missing.

    Eagerly on the CPU only valid (bin, pixel) pairs are sampled: bilinear sampling and the subtraction of the
    current feature are one fused ``embedding_bag`` over a table of lookup and current feature vectors;
    ``chunk_elements`` bounds the size of the block of feature differences that exists at once (2^22 floats =
    16 MB). On CUDA and inside an ONNX export the dense equivalent (:func:`_dense_cost`: static shapes, no host
    synchronisation, capturable in a CUDA graph) runs instead. ``bin_step`` k > 1 is an approximation for speed:
    costs are computed at every k-th bin (and the last) and linearly interpolated in between (validity stays
    exact per bin). ``confident_only`` (sparse path): skip the pixels with an invalid bin, whose volume is zeroed
    anyway: ``volume`` and ``confidence_mask`` are unchanged, ``cost`` and ``best_depth`` there are not (all
    missing, the nearest bin); what inference needs, a third of the work with a car's forward motion.
    """
    with stage("cost_volume"):
        batch, _, height, width = current.shape
        num_bins = depth_bins.numel()
        computed = torch.arange(num_bins, device=depth_bins.device)
        if bin_step > 1:
            computed = torch.unique(torch.cat([computed[::bin_step], computed[-1:]]))
        if torch.onnx.is_in_onnx_export() or current.is_cuda:
            cost = _dense_cost(current, lookup, T_lookup_current, K, depth_bins[computed])
        else:
            cost = _sparse_cost(current, lookup, T_lookup_current, K, depth_bins[computed], chunk_elements,
                                confident_only)
        if bin_step > 1:
            valid = _project_bins(T_lookup_current.float(), K.float(), depth_bins, height, width)[2]
            cost = _interpolate_bins(cost, computed.to(cost.device), valid)
        missing = cost == 0
        cost = torch.where(missing, cost.amax(1, keepdim=True), cost)
        confidence = (~missing).all(1, keepdim=True).float()
        best_depth = depth_bins.to(cost.device, torch.float32)[cost.argmin(1, keepdim=True)]
    return CostVolume(volume=(cost * confidence).view(batch, num_bins, height, width),
                      cost=cost.view(batch, num_bins, height, width),
                      confidence_mask=confidence.view(batch, 1, height, width),
                      best_depth=best_depth.view(batch, 1, height, width))


def plane_sweep_depth(current: torch.Tensor, lookup: torch.Tensor, T_lookup_current: torch.Tensor, K: torch.Tensor,
                      depth_bins: torch.Tensor, box: int = 1) -> torch.Tensor:
    """Best depth hypothesis (metres, B×1×h×w) of :func:`build_cost_volume`'s costs, optionally aggregated over a
    ``box``×``box`` window first (1 = the student's own per-pixel cost). Arguments as :func:`build_cost_volume`."""
    cost = build_cost_volume(current, lookup, T_lookup_current, K, depth_bins).cost
    if box > 1:
        cost = F.avg_pool2d(cost, box, stride=1, padding=box // 2, count_include_pad=False)
    return depth_bins.to(cost.device, torch.float32)[cost.argmin(1, keepdim=True)]


class ResnetEncoderMatching(nn.Module):
    """ResNet encoder with Manydepth's cost volume after ``layer1``.

    Sub-module names equal the official ``encoder.pth`` keys: ``layer0`` = (conv1, bn1, relu), ``layer1`` =
    (maxpool, ResNet layer1), ``layer2..4``, ``prematching_conv`` (defined but never used, as in the release),
    ``reduce_conv`` (fuses layer1 features with the volume).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_depth_bins: int = 96,
                 depth_binning: str = "linear", chunk_elements: int = 1 << 22):
        super().__init__()
        self.num_ch_enc = encoder_channels(num_layers)
        self.num_depth_bins = num_depth_bins
        self.depth_binning = depth_binning
        self.chunk_elements = chunk_elements
        self.bin_step = 1  # cost computed at every bin_step-th depth bin, the rest interpolated (inference speed)
        self.confident_only = False  # skip pixels with an invalid bin (inference: only the volume is used)
        resnet = build_resnet(num_layers, pretrained)
        self.layer0 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)
        self.layer1 = nn.Sequential(resnet.maxpool, resnet.layer1)
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.prematching_conv = nn.Sequential(nn.Conv2d(64, 16, kernel_size=1), nn.ReLU(inplace=True))
        self.reduce_conv = nn.Sequential(
            nn.Conv2d(self.num_ch_enc[1] + num_depth_bins, self.num_ch_enc[1], kernel_size=3, padding=1),
            nn.ReLU(inplace=True))

    def matching_features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """B×3×H×W in [0, 1] → [layer0 output (H/2), layer1 output (H/4, the matching features)]."""
        features_0 = self.layer0(normalise_image(image))
        return [features_0, self.layer1(features_0)]

    def fuse_and_encode(self, features: list[torch.Tensor], volume: torch.Tensor) -> list[torch.Tensor]:
        """The five maps from :meth:`matching_features`' two and the B×D×H/4×W/4 cost volume (fusion conv,
        layers 2-4)."""
        x = self.reduce_conv(torch.cat([features[1], volume.to(features[1].dtype)], 1))
        deeper = []
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            deeper.append(x)
        return [*features, *deeper]

    def forward(self, image: torch.Tensor, lookup_features: torch.Tensor, T_lookup_current: torch.Tensor,
                K_quarter: torch.Tensor, depth_bins: torch.Tensor) -> dict:
        """Encode ``image`` (B×3×H×W) against the lookup frame's matching features (B×C×H/4×W/4).

        ``K_quarter``: B×3×3 at 1/4 resolution; ``depth_bins``: D metres. Returns ``features`` (five maps),
        ``matching_features`` (this frame's layer1 output, detached, for reuse as the next lookup),
        ``lowest_cost`` (1 / best bin depth), ``cost_volume_depth`` (metres) and ``confidence_mask``,
        all B×1×H/4×W/4.
        """
        features = self.matching_features(image)
        volume = build_cost_volume(features[1], lookup_features, T_lookup_current, K_quarter, depth_bins,
                                   self.chunk_elements, self.bin_step, self.confident_only)
        features = self.fuse_and_encode(features, volume.volume)
        return {"features": features, "matching_features": features[1].detach(),
                "lowest_cost": 1.0 / volume.best_depth, "cost_volume_depth": volume.best_depth,
                "confidence_mask": volume.confidence_mask}
