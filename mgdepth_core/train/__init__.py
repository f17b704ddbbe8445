"""Training: one Trainer for Manydepth and Manydepth2 (teacher + student, matching augmentation, freeze),
atomic checkpoints with exact resume, DistributedDataParallel under torchrun. See docs/training.md."""

from mgdepth_core.train.config import LossConfig, OptimConfig, TrainConfig

__all__ = ["LossConfig", "OptimConfig", "TrainConfig"]
