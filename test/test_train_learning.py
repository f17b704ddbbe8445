"""Evidence of learning: a short Manydepth run on the synthetic scenes lowers the held-out photometric error and the
median-scaled depth error of the teacher and of the student."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from mgdepth_core.config import from_dict
from mgdepth_core.data import build_dataset
from mgdepth_core.eval.metrics import compute_depth_errors
from mgdepth_core.geometry import disparity_to_depth, inverse_warp
from mgdepth_core.losses import photometric_error
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.trainer import Trainer

STEPS = 60


def learning_config(tmp_path, steps: int) -> TrainConfig:
    return from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": 64, "width": 64, "pretrained": False, "num_depth_bins": 16},
        "data": {"dataset": "synthetic", "height": 64, "width": 64, "num_workers": 0, "synthetic_sequences": 8,
                 "synthetic_frames": 40},
        "optim": {"batch_size": 4, "learning_rate": 5e-4, "epochs": 100}, "log_dir": str(tmp_path),
        "log_frequency": 1000, "device": "cpu", "max_steps": steps})


@torch.no_grad()
def held_out_errors(model, samples: list[dict]) -> dict[str, float]:
    """Mean over held-out frames: teacher photometric error (its own depth and poses, min over t±1) and the
    median-scaled abs_rel of teacher and student depth against the exact synthetic depth (0.1-80 m)."""
    model.eval()
    photometric, abs_rel = [], {"teacher": [], "student": []}
    for sample in samples:
        batch = default_collate([sample])
        current, K = batch["color"][0], batch["K"]
        teacher = disparity_to_depth(model.teacher_forward(current)[("disp", 0)])[1]
        errors = []
        for frame in (-1, 1):
            pose = model.relative_pose(current, batch["color"][frame], source_is_before=frame < 0)
            warped, _ = inverse_warp(batch["color"][frame], teacher, pose, K)
            errors.append(photometric_error(warped, current))
        photometric.append(torch.cat(errors, 1).min(1).values.mean().item())
        pose = model.relative_pose(current, batch["color"][-1], source_is_before=True)
        student = model.multi_frame_forward(current, batch["color"][-1], pose, K, teacher_depth=teacher)
        student = disparity_to_depth(student[("disp", 0)])[1]
        truth = batch["depth_gt"]
        valid = (truth > 0.1) & (truth < 80)
        for name, depth in (("teacher", teacher), ("student", student)):
            gt, pred = truth[valid].numpy(), depth[valid].numpy()
            pred = np.clip(pred * np.median(gt) / np.median(pred), 1e-3, 80)
            abs_rel[name].append(compute_depth_errors(gt, pred)[0])
    return {"photometric": float(np.mean(photometric)), **{k: float(np.mean(v)) for k, v in abs_rel.items()}}


@pytest.mark.slow
def test_short_training_lowers_held_out_photometric_and_depth_error(tmp_path):
    config = learning_config(tmp_path, STEPS)
    held_out = build_dataset(config.data, "val", training=False)
    samples = [held_out[i] for i in range(0, len(held_out), 19)]  # 16 frames from 8 unseen sequences
    trainer = Trainer(config, tmp_path / "run")
    before = held_out_errors(trainer.model, samples)
    trainer.train()
    after = held_out_errors(trainer.model, samples)
    print(f"held-out before {before}, after {STEPS} steps {after}")
    assert after["photometric"] < 0.9 * before["photometric"]
    assert after["teacher"] < before["teacher"] - 0.02
    assert after["student"] < before["student"] - 0.02
