"""Training configuration: one dataclass tree, loadable from YAML (``config/train_*.yaml``) plus ``--set`` overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mgdepth_core.config import option
from mgdepth_core.data import DataConfig
from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.models import ModelConfig


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and the teacher/pose freeze (Manydepth's recipe)."""

    batch_size: int = option(12, "samples per optimisation step (per process under DDP)")
    learning_rate: float = option(1e-4, "Adam learning rate")
    scheduler_step: int = option(15, "StepLR period in epochs (learning rate × scheduler_gamma every period)")
    scheduler_gamma: float = option(0.1, "StepLR decay factor")
    epochs: int = option(20, "number of epochs")
    freeze_teacher_epoch: int = option(15, "freeze teacher + pose nets at the start of this epoch "
                                           "(Manydepth 15, Manydepth2 10, Cityscapes 5); -1 = never")
    freeze_teacher_step: int = option(-1, "freeze teacher + pose nets after this optimisation step "
                                          "(0-based, as the release counts); -1 = never")
    schedule_after_freeze: Literal["restart", "continue"] = option(
        "restart", "restart: a new StepLR starts at the base rate when the optimiser is rebuilt at the freeze "
                   "(the release: no decay with the default recipe); continue: keep the decay of the run so far")


@dataclass
class LossConfig:
    """Self-supervised loss terms (Monodepth2 / Manydepth)."""

    ssim_weight: float = option(0.85, "α of the photometric error α·(1−SSIM)/2 + (1−α)·L1")
    smoothness_weight: float = option(1e-3, "edge-aware smoothness weight at scale 0 (divided by 2^s at scale s)")
    consistency_weight: float = option(1.0, "weight of the student-teacher depth consistency L1")
    num_scales: int = option(4, "disparity scales that enter the loss (each upsampled to full resolution)")
    matching_augmentation: bool = option(True, "per sample: 25 % static camera (lookup = current frame), "
                                               "25 % zero pose (empty cost volume); student trusts the teacher there")
    static_camera_probability: float = option(0.25, "matching augmentation: probability of the static-camera case")
    zero_pose_probability: float = option(0.25, "matching augmentation: probability of the zero-pose case")
    disable_automasking: bool = option(False, "teacher loss without Monodepth2 auto-masking")
    automask_warmup_steps: int = option(
        0, "teacher loss without auto-masking for the first N optimisation steps, then with it; from random "
           "weights auto-masking at step 0 can lock the pose net into a sideways drift (docs/training.md); "
           "0 = auto-masking from the start, as the release")
    disable_motion_masking: bool = option(False, "student: do not mask out pixels where cost volume and teacher "
                                                 "disagree (trust mask = confidence only)")
    moving_pixels_to_teacher: bool = option(
        True, "student (Manydepth2 with flow): pixels the static reference marks as moving take the consistency loss "
              "with the teacher, not the reprojection loss the rigid warp cannot satisfy there; false = the release")
    depth_bin_momentum: float = option(0.99, "EMA momentum of the adaptive cost-volume depth range")
    pose_source: Literal["network", "dataset"] = option(
        "network", "network: the pose net's poses (self-supervised, as the papers); dataset: the data set's known "
                   "ego-motion (pose_gt: synthetic, odometry) for every warp and the cost volume; pose net untrained")
    dataset_pose_scale: float = option(0.1, "pose_source=dataset: translation × this (network units per metre); "
                                            "the trained depth in metres is the network depth / this factor")


@dataclass
class TrainConfig:
    """Everything one training run needs (saved as ``config.yaml`` in the run folder)."""

    model: ModelConfig = option(ModelConfig(), "networks (method = manydepth | manydepth2)")
    data: DataConfig = option(DataConfig(), "training data set")
    optim: OptimConfig = option(OptimConfig(), "optimiser, schedule and teacher freeze")
    losses: LossConfig = option(LossConfig(), "loss terms")
    log_dir: str = option("runs", "folder that holds run folders")
    run_name: str = option("", "run folder name under log_dir; empty = <method>_<dataset>")
    log_frequency: int = option(250, "TensorBoard scalars every N steps (images every 4·N)")
    save_frequency: int = option(1, "write weights_<epoch> every N epochs (the last epoch is always written)")
    save_every_steps: int = option(0, "also checkpoint every N steps inside an epoch (long epochs); 0 = off")
    seed: int = option(1, "random seed (Python, NumPy, torch, data order)")
    deterministic: bool = option(True, "deterministic cuDNN kernels (as the release)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N (under torchrun: the local rank's GPU)")
    max_steps: int = option(0, "stop after this many optimisation steps in total (short runs); 0 = all epochs")
    sync_batchnorm: bool = option(False, "DDP: convert BatchNorm layers to SyncBatchNorm (GPU only)")
    dynamic_objects: Literal["none", "dyna-dm"] = option(
        "none", "dynamic-object handling in the loss: none, or dyna-dm (object motion for truly dynamic objects)")
    dyna_dm: DynamicObjectsConfig = option(DynamicObjectsConfig(), "Dyna-DM options, used when dynamic_objects = "
                                                                   "dyna-dm (its mode field is ignored here)")
