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
STEPS_COLD_START = 60


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


def _pose_cosine_after_teacher_steps(warmup_steps: int, steps: int) -> float:
    """Train teacher and pose net only (the student adds nothing to the pose) from random weights on synthetic
    street scenes; the cosine between the pose net's translation and the true one on the last batches."""
    torch.manual_seed(0)
    config = from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": 64, "width": 192, "pretrained": False, "num_depth_bins": 8},
        "data": {"dataset": "synthetic", "height": 64, "width": 192, "synthetic_sequences": 4,
                 "synthetic_frames": 20, "augment": False},
        "losses": {"automask_warmup_steps": warmup_steps}})
    data = build_dataset(config.data, "train", training=False)
    step = TrainingStep(build_model(config.model), config).train()
    parameters = [p for name in ("mono_encoder", "mono_depth", "pose_encoder", "pose")
                  for p in getattr(step.model, name).parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.optim.learning_rate)
    order = torch.randperm(len(data) * (4 * steps // len(data) + 1)) % len(data)
    cosines = []
    for index in range(steps):
        batch = default_collate([data[int(i)] for i in order[4 * index:4 * index + 4]])
        outputs = step.teacher_pass(batch, step=index)
        loss = step.teacher_loss(batch, outputs, {})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        cosines.append(torch.nn.functional.cosine_similarity(
            outputs["poses"][1][:, :3, 3].detach(), batch["pose_gt"][1][:, :3, 3], dim=1).mean().item())
    return sum(cosines[-10:]) / 10


@pytest.mark.slow
def test_pose_net_from_random_weights_finds_the_forward_motion_with_the_automask_warmup_only():
    """The cold start (docs/training.md): scoring every pixel first, the pose net learns the direction the camera
    really moves within 60 steps; with auto-masking from step 0 it is pulled along its random initial direction
    and stays well off."""
    with_warmup = _pose_cosine_after_teacher_steps(warmup_steps=1000, steps=STEPS_COLD_START)
    release = _pose_cosine_after_teacher_steps(warmup_steps=0, steps=STEPS_COLD_START)
    print(f"cosine of the pose net's translation to the true one after {STEPS_COLD_START} steps: "
          f"{with_warmup:.3f} with the warm-up, {release:.3f} auto-masked from step 0")
    # Measured on this machine: 0.999 with the warm-up, 0.597 auto-masked from step 0.
    assert with_warmup > 0.95
    assert release < 0.8
