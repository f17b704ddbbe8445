"""The original Manydepth networks (PyPI ``manydepth==1.0.0``, a test and benchmark oracle only, never a runtime
dependency) with random weights, saved as the original trainer saves a weights folder. Shared by the parity test
and bench/bench_inference.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def save_original_networks(folder: Path, height: int, width: int, min_depth_bin: float, max_depth_bin: float,
                           num_depth_bins: int = 96, prepare: Callable[[torch.nn.Module], None] | None = None
                           ) -> dict[str, torch.nn.Module]:
    """Build the six released networks (ResNet-18) with the current torch seed, apply ``prepare`` to each (e.g.
    random BatchNorm statistics), save ``<name>.pth`` into ``folder`` (the encoder with its size and depth-bin
    range, as the release does) and return them in eval mode."""
    from manydepth import networks

    nets = {"encoder": networks.ResnetEncoderMatching(18, False, input_height=height, input_width=width,
                                                      num_depth_bins=num_depth_bins, adaptive_bins=True),
            "mono_encoder": networks.ResnetEncoder(18, False),
            "pose_encoder": networks.ResnetEncoder(18, False, num_input_images=2)}
    nets["depth"] = networks.DepthDecoder(nets["encoder"].num_ch_enc)
    nets["mono_depth"] = networks.DepthDecoder(nets["mono_encoder"].num_ch_enc)
    nets["pose"] = networks.PoseDecoder(nets["pose_encoder"].num_ch_enc, num_input_features=1,
                                        num_frames_to_predict_for=2)
    for name, net in nets.items():
        if prepare is not None:
            prepare(net)
        net.eval()
        state = net.state_dict()
        if name == "encoder":
            state.update(height=height, width=width, min_depth_bin=min_depth_bin, max_depth_bin=max_depth_bin)
        torch.save(state, Path(folder) / f"{name}.pth")
    return nets
