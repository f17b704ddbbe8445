"""Evidence of learning: the trainer's step, repeated on a fixed batch of synthetic frames, lowers the loss and the
teacher's photometric error (measured in eval mode, no augmentation, fixed noise)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from mgdepth_core.config import from_dict
from mgdepth_core.data import build_dataset
from mgdepth_core.models import build_model
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.trainer import TrainingStep

STEPS = 30


@torch.no_grad()
def _evaluate(step: TrainingStep, batch: dict) -> dict[str, float]:
    step.eval()
    torch.manual_seed(0)  # the auto-masking tie-break noise
    _, losses = step(batch)
    step.train()
    return {name: value.item() for name, value in losses.items()}


@pytest.mark.slow
def test_repeated_training_steps_lower_the_loss_and_the_teacher_photometric_error():
    torch.manual_seed(1)
    config = from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": 64, "width": 64, "pretrained": False, "num_depth_bins": 16},
        "data": {"dataset": "synthetic", "height": 64, "width": 64, "synthetic_sequences": 1,
                 "synthetic_frames": 12}})
    data = build_dataset(config.data, "train", training=False)
    batch = default_collate([data[i] for i in (0, 3, 6, 9)])
    step = TrainingStep(build_model(config.model), config)
    optimizer = torch.optim.Adam(step.parameters(), lr=config.optim.learning_rate)
    before = _evaluate(step, batch)
    for _ in range(STEPS):
        _, losses = step(batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    after = _evaluate(step, batch)
    print(f"before {before['loss']:.4f} / {before['teacher/reprojection/0']:.4f}, after {STEPS} steps "
          f"{after['loss']:.4f} / {after['teacher/reprojection/0']:.4f} (loss / teacher photometric)")
    # Measured on this machine: loss 0.353 → 0.290, teacher photometric 0.169 → 0.116.
    assert after["loss"] < 0.9 * before["loss"]
    assert after["teacher/reprojection/0"] < 0.8 * before["teacher/reprojection/0"]
