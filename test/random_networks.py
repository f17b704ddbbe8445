"""Randomly initialised models with plausible activations, for tests and benchmarks that compare depth.

A fresh network's batch norms hold mean 0 and variance 1, so activations grow through HRNet's many layers and the
disparity sigmoid saturates: depth is 0.1 or 100 m nearly everywhere, and comparing two paths says little.
:func:`calibrate_batch_norms` gives the batch norms the statistics of a few frames instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def calibrate_batch_norms(model, images: list[np.ndarray], K: np.ndarray) -> None:
    """Set every BatchNorm's running statistics to their cumulative average over training-mode passes of the
    teacher, the pose net and the student on consecutive ``images`` (H×W×3 uint8 at the model's size; ``K``
    3×3 pixels), on the model's device, then return the model to eval mode."""
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average
    device = next(model.parameters()).device
    frames = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in images]).to(device)
    K_tensor = torch.from_numpy(K).float().expand(len(images) - 1, 3, 3).to(device)
    model.train()
    model.teacher_forward(frames)
    current, previous = frames[1:], frames[:-1]
    T = model.relative_pose(current, previous, source_is_before=True)
    model.multi_frame_forward(current, previous, T, K_tensor, epoch=None)
    model.eval()
    for norm in norms:
        norm.momentum = 0.1
