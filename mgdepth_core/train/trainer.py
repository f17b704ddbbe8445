"""The one trainer for Manydepth and Manydepth2 (Watson et al. 2021's ``process_batch``, shared by both methods).

One optimisation step (:class:`TrainingStep`):

1. Poses for the loss, with gradients: the pose net on temporal pairs ([I₋₁, I₀] inverted, [I₀, I₁]) →
   ``T_s_0`` for every source frame s.
2. Pose for the cost volume, without gradients: the pose net on [I₋₁, I₀] → ``T_{-1}_0``; zero for a sample
   whose lookup image is all black (missing frame). With ``losses.pose_source=dataset`` both come from the data
   set's known ego-motion instead (translation × ``dataset_pose_scale``) and the pose net is not used.
3. Matching augmentation (training only, per sample u ~ U(0, 1)): u < 0.25 → static camera (the lookup image
   becomes the un-augmented current frame, the pose stays as predicted, as in the release); 0.25 ≤ u < 0.5 →
   zero pose (empty cost volume). Both set the sample's augmentation mask.
4. Teacher (single frame) forward and the standard Monodepth2 loss: every scale's disparity upsampled to full
   resolution, photometric SSIM + L1 error of each warped source, per-pixel minimum over sources,
   auto-masking (after ``losses.automask_warmup_steps``), edge-aware smoothness 1e-3/2^s on mean-normalised
   disparity at the scale's own size.
5. Student forward (``model.multi_frame_forward``) with the detached teacher depth as context (Manydepth2).
6. Trust mask M = confidence ∧ factor-2 agreement of cost-volume depth and teacher depth, at full resolution.
7. Student loss (no auto-masking): reprojection on M·(1 − aug), consistency |D − D_teacher| on the rest (mean
   over all pixels), smoothness; warps use the detached loss poses.
8. While the teacher trains: loss = student + teacher, and the cost-volume depth range tracks the teacher's depth.

Freezing (``optim.freeze_teacher_epoch`` / ``freeze_teacher_step``): a new Adam over the student only, a new
StepLR, teacher and pose nets in eval mode. With ``schedule_after_freeze=restart`` (the release) the rebuilt
scheduler starts from the base rate again, so Manydepth's 20-epoch recipe never decays the learning rate.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from mgdepth_core import geometry, losses
from mgdepth_core.config import ConfigError, save_config, to_dict
from mgdepth_core.data import build_dataset
from mgdepth_core.models import build_model
from mgdepth_core.train import checkpoints
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.distributed import (
    DistributedContext,
    all_ranks_true,
    average_,
    barrier,
    broadcast_buffers,
    gather_objects,
    init_distributed,
)

LOG = logging.getLogger(__name__)

TEACHER_AND_POSE = ("mono_encoder", "mono_depth", "pose_encoder", "pose")
STUDENT = ("encoder", "depth")


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; training stopped without writing a checkpoint."""


class DynamicObjectsHook:
    """Where dynamic-object handling (Dyna-DM) plugs into a training step; this base class changes nothing.

    The trainer calls, in this order: :meth:`pose_inputs` for each loss pose, :meth:`prepare` once the poses
    and the teacher's depth exist, :meth:`point_offsets` for every warp of a source frame (teacher and
    student, every scale), and :meth:`extra_losses` at the end (each term is added to the total loss).
    """

    def pose_inputs(self, inputs: dict, frame_id: int, target: torch.Tensor, source: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two B×3×H×W images the pose net sees for ``T_{frame_id}_0``."""
        return target, source

    def prepare(self, inputs: dict, outputs: dict) -> None:
        """Called after the loss poses (``outputs["poses"]``) and the teacher outputs exist."""

    def point_offsets(self, inputs: dict, outputs: dict, frame_id: int, network: str, scale: int
                      ) -> torch.Tensor | None:
        """Per-pixel object translation (B×3×H×W metres, source-camera axes) for the warp of ``frame_id``
        into frame 0, for ``network`` "teacher" or "student" at ``scale``; None = rigid scene."""
        return None

    def extra_losses(self, inputs: dict, outputs: dict) -> dict[str, torch.Tensor]:
        """Additional weighted loss terms, keyed by name (logged and summed into the total)."""
        return {}


def build_dynamic_objects_hook(config: TrainConfig) -> DynamicObjectsHook:
    """The hook ``config.dynamic_objects`` names."""
    if config.dynamic_objects == "none":
        return DynamicObjectsHook()
    from mgdepth_core.train.dyna_dm import build_training_hook

    return build_training_hook(config)


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested dicts, lists, tuples) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


class TrainingStep(nn.Module):
    """Manydepth's ``process_batch`` as a module: ``forward(inputs, epoch, step) → (outputs, losses)``.

    It owns the model, so DistributedDataParallel can wrap it and all-reduce every gradient the step produces.
    ``losses["loss"]`` is the scalar to minimise; the other entries are detached terms for logging.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, hook: DynamicObjectsHook | None = None):
        super().__init__()
        self.model = model
        self.config = config
        self.hook = hook or DynamicObjectsHook()
        if hasattr(self.hook, "bind"):  # Dyna-DM: the hook runs the teacher and pose net of this model
            self.hook.bind(model)
        self.teacher_frozen = False
        self.source_ids = [f for f in config.data.frame_ids if f != 0]
        if -1 not in self.source_ids:
            raise ConfigError(f"data.frame_ids {config.data.frame_ids} must contain -1 (the cost-volume frame)")

    # ----------------------------------------------------------------------------------------------------------
    def forward(self, inputs: dict, epoch: int = 0, step: int | None = None) -> tuple[dict, dict]:
        """``epoch`` and ``step`` (0-based optimisation step; None = a step after every warm-up, e.g. for
        evaluation) select the parts of the recipe that depend on the training progress."""
        train_teacher = not self.teacher_frozen
        outputs = self.teacher_pass(inputs, epoch, step)
        self.hook.prepare(inputs, outputs)

        lookup, T_lookup_current, augmentation_mask = self.matching_inputs(inputs)
        outputs["lookup"], outputs["augmentation_mask"] = lookup, augmentation_mask
        outputs["student"] = self.student_forward(inputs, lookup, T_lookup_current,
                                                  outputs["teacher_depth"][0].detach(), epoch)
        outputs["student_depth"] = self.full_resolution_depths(outputs["student"])
        outputs["trust_mask"] = self.trust_mask(outputs["student"], outputs["teacher_depth"][0])

        terms: dict[str, torch.Tensor] = {}
        student_total = self.student_loss(inputs, outputs, terms)
        total = student_total
        if train_teacher:
            total = total + self.teacher_loss(inputs, outputs, terms)
        for name, value in self.hook.extra_losses(inputs, outputs).items():
            terms[f"extra/{name}"] = value
            total = total + value
        if train_teacher and self.training:
            self.model.update_depth_bins(outputs["teacher_depth"][0].detach(), self.config.losses.depth_bin_momentum)
        losses_out = {name: value.detach() for name, value in terms.items()}
        losses_out["loss"] = total
        return outputs, losses_out

    def teacher_pass(self, inputs: dict, epoch: int = 0, step: int | None = None) -> dict[str, Any]:
        """Steps 1 and 4 without the loss: ``{"epoch", "step", "poses", "teacher", "teacher_depth"}``, with
        gradients while the teacher trains; :meth:`teacher_loss` scores it."""
        outputs: dict[str, Any] = {"epoch": epoch, "step": step}
        with torch.set_grad_enabled(not self.teacher_frozen and torch.is_grad_enabled()):
            outputs["poses"] = self.loss_poses(inputs)
            outputs["teacher"] = self.model.teacher_forward(inputs["color_aug"][0])
        outputs["teacher_depth"] = self.full_resolution_depths(outputs["teacher"])
        return outputs

    def student_forward(self, inputs: dict, lookup: torch.Tensor, T_lookup_current: torch.Tensor,
                        teacher_depth: torch.Tensor, epoch: int = 0) -> dict:
        """The multi-frame network on the sample (step 2): ``lookup`` and ``T_lookup_current`` from
        :meth:`matching_inputs`, ``teacher_depth`` (B×1×H×W, no gradient) for Manydepth2's static reference, the
        sample's exact flow with ``model.flow: dataset``."""
        known_flow = {"flow": inputs["flow_gt"][-1]} if self.config.model.flow == "dataset" else {}
        return self.model.multi_frame_forward(inputs["color_aug"][0], lookup, T_lookup_current, inputs["K"],
                                              teacher_depth=teacher_depth, raw_image=inputs["color"][0],
                                              raw_lookup=inputs["color"][-1], epoch=epoch, **known_flow)

    # ----------------------------------------------------------------------------------------------------------
    def loss_poses(self, inputs: dict) -> dict[int, torch.Tensor]:
        """``{s: T_s_0}`` (B×4×4) for every source frame, from the pose net on temporal pairs (with gradients),
        or the data set's known poses with ``losses.pose_source=dataset``."""
        if self.config.losses.pose_source == "dataset":
            return {frame_id: self.dataset_pose(inputs, frame_id) for frame_id in self.source_ids}
        target = inputs["color_aug"][0]
        poses = {}
        for frame_id in self.source_ids:
            pose_target, pose_source = self.hook.pose_inputs(inputs, frame_id, target, inputs["color_aug"][frame_id])
            poses[frame_id] = self.model.relative_pose(pose_target, pose_source, source_is_before=frame_id < 0)
        return poses

    def dataset_pose(self, inputs: dict, frame_id: int) -> torch.Tensor:
        """The data set's ``T_{frame_id}_0`` (B×4×4) with its translation in network units
        (× ``losses.dataset_pose_scale``)."""
        if "pose_gt" not in inputs:
            raise ConfigError("losses.pose_source=dataset needs known poses (pose_gt) from the data set; "
                              f"{self.config.data.dataset!r} samples carry none: use pose_source=network")
        T = inputs["pose_gt"][frame_id].clone()
        T[:, :3, 3] *= self.config.losses.dataset_pose_scale
        return T

    @torch.no_grad()
    def matching_inputs(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lookup image B×3×H×W, ``T_lookup_current`` B×4×4 without gradients, augmentation mask (B,) float)."""
        lookup = inputs["color_aug"][-1]
        if self.config.losses.pose_source == "dataset":
            T_lookup_current = self.dataset_pose(inputs, -1)
        else:
            T_lookup_current = self.model.relative_pose(inputs["color_aug"][0], lookup, source_is_before=True)
        missing = lookup.flatten(1).abs().sum(1) == 0
        T_lookup_current = torch.where(missing[:, None, None], torch.zeros_like(T_lookup_current),
                                       T_lookup_current)
        batch = lookup.shape[0]
        augmentation_mask = torch.zeros(batch, device=lookup.device)
        options = self.config.losses
        if self.training and options.matching_augmentation:
            draw = torch.rand(batch).to(lookup.device)
            static_camera = draw < options.static_camera_probability
            zero_pose = (~static_camera) & (draw < options.static_camera_probability + options.zero_pose_probability)
            lookup = torch.where(static_camera[:, None, None, None], inputs["color"][0], lookup)
            T_lookup_current = torch.where(zero_pose[:, None, None], torch.zeros_like(T_lookup_current),
                                           T_lookup_current)
            augmentation_mask = (static_camera | zero_pose).float()
        return lookup, T_lookup_current, augmentation_mask

    def full_resolution_depths(self, network_outputs: dict) -> dict[int, torch.Tensor]:
        """``{s: depth}``: every scale's disparity bilinearly upsampled to H×W, then to metres (B×1×H×W)."""
        height, width = self.config.data.height, self.config.data.width
        depths = {}
        for scale in range(self.config.losses.num_scales):
            disp = F.interpolate(network_outputs[("disp", scale)], (height, width), mode="bilinear",
                                 align_corners=False)
            depths[scale] = geometry.disparity_to_depth(disp, self.config.model.min_depth,
                                                        self.config.model.max_depth)[1]
        return depths

    def trust_mask(self, student: dict, teacher_depth: torch.Tensor) -> torch.Tensor:
        """B×1×H×W float: cost volume confident (all bins valid) and its arg-min depth within a factor 2 of the
        teacher's (``compute_matching_mask``), and, with ``losses.moving_pixels_to_teacher``, not marked moving by
        Manydepth2's static reference; the lower-resolution masks are nearest-upsampled."""
        size = teacher_depth.shape[-2:]
        confidence = F.interpolate(student["confidence_mask"].float(), size, mode="nearest")
        if self.config.losses.moving_pixels_to_teacher and "motion_mask" in student:
            confidence = confidence * (1 - F.interpolate(student["motion_mask"].float(), size, mode="nearest"))
        if self.config.losses.disable_motion_masking:
            return confidence
        matching_depth = 1.0 / F.interpolate(student["lowest_cost"].float(), size, mode="nearest")
        agree = (((matching_depth - teacher_depth) / teacher_depth) < 1.0) & \
                (((teacher_depth - matching_depth) / matching_depth) < 1.0)
        return confidence * agree.float()

    def warp_source(self, inputs: dict, outputs: dict, frame_id: int, depth: torch.Tensor, T_source_target:
                    torch.Tensor, network: str, scale: int) -> torch.Tensor:
        """Frame ``frame_id`` (un-augmented, full res) warped into frame 0 with ``depth`` (B×1×H×W metres)."""
        offsets = self.hook.point_offsets(inputs, outputs, frame_id, network, scale)
        warped, _ = geometry.inverse_warp(inputs["color"][frame_id], depth, T_source_target, inputs["K"],
                                          padding_mode="border", point_offsets=offsets)
        return warped

    def _reprojection_errors(self, inputs: dict, outputs: dict, depth: torch.Tensor,
                             poses: dict[int, torch.Tensor], network: str, scale: int) -> list[torch.Tensor]:
        target = inputs["color"][0]
        alpha = self.config.losses.ssim_weight
        return [losses.photometric_error(self.warp_source(inputs, outputs, f, depth, poses[f], network, scale),
                                         target, alpha) for f in self.source_ids]

    def _smoothness(self, disp: torch.Tensor, inputs: dict, scale: int) -> torch.Tensor:
        image = inputs["color"][0]
        if scale > 0:
            image = F.interpolate(image, disp.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
        return self.config.losses.smoothness_weight * losses.edge_aware_smoothness(disp, image) / (2 ** scale)

    def automasking(self, step: int | None) -> bool:
        """Whether the teacher loss of optimisation ``step`` (None = after the warm-up) is auto-masked."""
        options = self.config.losses
        return not options.disable_automasking and (step is None or step >= options.automask_warmup_steps)

    def teacher_loss(self, inputs: dict, outputs: dict, terms: dict) -> torch.Tensor:
        """Monodepth2 loss of the teacher: min reprojection (auto-masked, see :meth:`automasking`) + smoothness,
        mean over scales."""
        target = inputs["color"][0]
        alpha = self.config.losses.ssim_weight
        automasking = self.automasking(outputs.get("step"))
        if automasking:
            identity = [losses.photometric_error(inputs["color"][f], target, alpha) for f in self.source_ids]
        total = 0.0
        for scale in range(self.config.losses.num_scales):
            errors = self._reprojection_errors(inputs, outputs, outputs["teacher_depth"][scale], outputs["poses"],
                                               "teacher", scale)
            if not automasking:
                per_pixel = torch.cat(errors, 1).min(1, keepdim=True).values
                reprojection = per_pixel.mean()
            else:
                per_pixel, mask = losses.min_reprojection_with_automask(errors, identity)
                reprojection = losses.masked_mean(per_pixel, mask)
            smoothness = self._smoothness(outputs["teacher"][("disp", scale)], inputs, scale)
            terms[f"teacher/reprojection/{scale}"] = reprojection
            terms[f"teacher/smoothness/{scale}"] = smoothness
            total = total + reprojection + smoothness
        total = total / self.config.losses.num_scales
        terms["teacher/loss"] = total
        return total

    def student_loss(self, inputs: dict, outputs: dict, terms: dict) -> torch.Tensor:
        """Manydepth's multi-frame loss: trust-masked reprojection (detached poses), consistency with the
        detached teacher elsewhere, smoothness; mean over scales."""
        options = self.config.losses
        reprojection_mask = outputs["trust_mask"]
        if options.matching_augmentation:
            reprojection_mask = reprojection_mask * (1 - outputs["augmentation_mask"]).view(-1, 1, 1, 1)
        consistency_mask = 1 - reprojection_mask
        outputs["reprojection_mask"] = reprojection_mask
        poses = {f: T.detach() for f, T in outputs["poses"].items()}
        total = 0.0
        for scale in range(options.num_scales):
            depth = outputs["student_depth"][scale]
            errors = self._reprojection_errors(inputs, outputs, depth, poses, "student", scale)
            per_pixel = torch.cat(errors, 1).min(1, keepdim=True).values
            reprojection = losses.masked_mean(per_pixel, reprojection_mask)
            consistency = options.consistency_weight * losses.depth_consistency(
                depth, outputs["teacher_depth"][scale], consistency_mask)
            smoothness = self._smoothness(outputs["student"][("disp", scale)], inputs, scale)
            terms[f"student/reprojection/{scale}"] = reprojection
            terms[f"student/consistency/{scale}"] = consistency
            terms[f"student/smoothness/{scale}"] = smoothness
            total = total + reprojection + consistency + smoothness
        total = total / options.num_scales
        terms["student/loss"] = total
        return total


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; deterministic cuDNN as the release (``train.py::seed_all``)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


class Trainer:
    """Runs a TrainConfig: data, model, optimiser, freeze, logging, checkpoints, resume, DDP.

    ``run_dir`` is the run folder (see :mod:`mgdepth_core.train.checkpoints`); with ``resume`` the newest
    checkpoint there is loaded and training continues exactly where it stopped (bit-for-bit with
    ``data.num_workers=0`` and a deterministic device).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False,
                 dataset: Dataset | None = None, context: DistributedContext | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        if (config.model.height, config.model.width) != (config.data.height, config.data.width):
            raise ConfigError(f"model.height/width {config.model.height}×{config.model.width} differ from "
                              f"data.height/width {config.data.height}×{config.data.width}; set both")
        if config.model.flow == "dataset" and not (config.data.dataset == "synthetic" and config.data.exact_flow):
            raise ConfigError("model.flow=dataset takes each sample's exact optical flow: it needs data.dataset="
                              "synthetic with data.exact_flow=true (or a flow network: gmflow, raft_small, ...)")
        self.context = context or init_distributed(config.device)
        self.device = self.context.device
        seed_everything(config.seed + self.context.rank, config.deterministic)

        self.dataset = dataset if dataset is not None else build_dataset(config.data, "train", training=True)
        self._check_dataset()
        self._warn_about_cold_start()
        self.model = build_model(config.model).to(self.device)
        self.step_module = TrainingStep(self.model, config, build_dynamic_objects_hook(config)).to(self.device)
        self.trainable = self.step_module
        if self.context.distributed:
            module: nn.Module = self.step_module
            if config.sync_batchnorm:
                if self.device.type != "cuda":
                    raise ConfigError("sync_batchnorm needs GPUs (NCCL); set sync_batchnorm=false on CPUs")
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            self.trainable = DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.optimizer, self.scheduler = self._build_optimizer(list(self._trainable_parameters()), 0)
        self.writer = None
        self.last_checkpoint: Path | None = None
        self._saved_step: int | None = None
        self._stop_requested = False
        self._on_step: Callable[[int], None] | None = None
        if resume:
            self._resume()
        self._set_modes()

    # ---------------------------------------------------------------------------------------------- setup
    def _check_dataset(self) -> None:
        batch = self.config.optim.batch_size * self.context.world_size
        where = self.config.data.path or f"the {self.config.data.dataset} data set"
        if len(self.dataset) == 0:
            raise ValueError(f"data: no training samples found in {where} (split {self.config.data.split!r}, "
                             f"frames {self.config.data.frame_ids})")
        if len(self.dataset) < batch:
            raise ValueError(f"data: {where} has {len(self.dataset)} training samples, fewer than one batch "
                             f"({batch} = optim.batch_size × processes)")

    def _warn_about_cold_start(self) -> None:
        """Random weights with auto-masking from step 0 tend to lock into a wrong solution (docs/training.md)."""
        from mgdepth_core.models.resnet import imagenet_weights_path

        losses_config, model = self.config.losses, self.config.model
        imagenet = model.pretrained and os.path.isfile(imagenet_weights_path(model.teacher_num_layers))
        if (self.context.is_main and not imagenet and not losses_config.disable_automasking
                and losses_config.automask_warmup_steps == 0):
            LOG.warning("the networks start from random weights with auto-masking from step 0: such runs often lock "
                        "into a wrong solution (a sideways drift of the pose net, or depth that fits the images but "
                        "not the scene); set losses.automask_warmup_steps (e.g. 200, see docs/training.md)")

    def _trainable_parameters(self) -> Iterator[nn.Parameter]:
        if self.step_module.teacher_frozen:
            modules = [getattr(self.model, name) for name in STUDENT]
            return (p for m in modules for p in m.parameters() if p.requires_grad)
        return (p for p in self.model.parameters() if p.requires_grad)

    def _build_optimizer(self, parameters: list[nn.Parameter], epoch: int):
        optim = self.config.optim
        learning_rate = optim.learning_rate
        if optim.schedule_after_freeze == "continue":
            learning_rate *= optim.scheduler_gamma ** (epoch // optim.scheduler_step)
        optimizer = torch.optim.Adam(parameters, lr=learning_rate)
        for group in getattr(self.step_module.hook, "parameter_groups", lambda lr: [])(learning_rate):
            optimizer.add_param_group(group)  # Dyna-DM: object motion net and learnable object height
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, optim.scheduler_step, optim.scheduler_gamma)
        return optimizer, scheduler

    def _set_modes(self) -> None:
        """Everything in train mode; after the freeze, teacher and pose nets in eval mode (BN running stats)."""
        self.trainable.train()
        if self.step_module.teacher_frozen:
            for name in TEACHER_AND_POSE:
                getattr(self.model, name).eval()

    def freeze_teacher(self) -> None:
        """Stop training teacher and pose nets: new Adam + StepLR over the student only (as the release)."""
        if self.step_module.teacher_frozen:
            return
        self.step_module.teacher_frozen = True
        if self.context.is_main:
            LOG.info("freezing teacher and pose networks at epoch %d, step %d", self.epoch, self.step)
        self.optimizer, self.scheduler = self._build_optimizer(list(self._trainable_parameters()), self.epoch)
        self._set_modes()

    # ---------------------------------------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "frozen": self.step_module.teacher_frozen,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "world_size": self.context.world_size, "method": self.config.model.method,
            "dynamic_objects": self.step_module.hook.state_dict() if isinstance(self.step_module.hook, nn.Module)
            else {},
        }

    def save_checkpoint(self, weights_name: str) -> Path | None:
        """Rank 0 writes ``models/<weights_name>`` and ``state.pt``. Every rank must call it: RNG states are
        gathered and rank 0's buffers (BatchNorm statistics of its last batch) become every rank's."""
        broadcast_buffers(self.model, self.context)
        rng_states = gather_objects(checkpoints.rng_state(), self.context)
        self._saved_step = self.step
        folder = None
        if self.context.is_main:
            folder = checkpoints.save_checkpoint(self.run_dir, self.model, weights_name,
                                                 {**self._state(), "rng": rng_states})
            self.last_checkpoint = folder
        barrier(self.context)
        return folder

    def _resume(self) -> None:
        from mgdepth_core.models.weights import load_weights

        state, weights = checkpoints.load_checkpoint(self.run_dir)
        if state["method"] != self.config.model.method:
            raise ConfigError(f"resume: {self.run_dir} was trained with method {state['method']!r}, "
                              f"not {self.config.model.method!r}")
        if state["world_size"] != self.context.world_size:
            LOG.warning("resume: checkpoint written by %d process(es), resuming with %d; the data order of the "
                        "interrupted epoch changes", state["world_size"], self.context.world_size)
        self.model.load_state_dict(load_weights(weights, self.config.model).state_dict())
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        if state["frozen"]:
            self.step_module.teacher_frozen = True
            self.optimizer, self.scheduler = self._build_optimizer(list(self._trainable_parameters()), self.epoch)
        if state.get("dynamic_objects") and isinstance(self.step_module.hook, nn.Module):
            self.step_module.hook.load_state_dict(state["dynamic_objects"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        checkpoints.set_rng_state(rng[self.context.rank] if self.context.rank < len(rng) else rng[0])
        self.last_checkpoint = weights
        self._saved_step = self.step
        if self.context.is_main:
            LOG.info("resumed %s from %s (epoch %d, step %d)", self.run_dir, weights.name, self.epoch, self.step)

    # ---------------------------------------------------------------------------------------------- loop
    def _loader(self, max_batches: int | None) -> tuple[DataLoader, int]:
        """The rest of this epoch's batches (at most ``max_batches``) and the number a full epoch has."""
        batch_size = self.config.optim.batch_size
        sampler = DistributedSampler(self.dataset, num_replicas=self.context.world_size, rank=self.context.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=True)
        sampler.set_epoch(self.epoch)
        batches_per_epoch = len(sampler) // batch_size
        indices = list(sampler)[self.batch_in_epoch * batch_size:batches_per_epoch * batch_size]
        if max_batches is not None:
            indices = indices[:max_batches * batch_size]
        # A private generator: creating the loader must not draw from the global RNG (exact resume).
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch * 1_009 + self.context.rank)
        loader = DataLoader(self.dataset, batch_sampler=BatchSampler(indices, batch_size, drop_last=True),
                            num_workers=self.config.data.num_workers, pin_memory=self.device.type == "cuda",
                            generator=generator)
        return loader, batches_per_epoch

    def _steps_left(self) -> int | None:
        return max(self.config.max_steps - self.step, 0) if self.config.max_steps else None

    def train(self, on_step: Callable[[int], None] | None = None) -> Path | None:
        """Train until ``optim.epochs`` (or ``max_steps``); returns the last weights folder written.

        ``on_step(step)`` is called after every optimisation step; with it the caller shows progress (the
        trainer's own progress bar is off)."""
        optim = self.config.optim
        self._on_step = on_step
        if self.context.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.run_dir.mkdir(parents=True, exist_ok=True)
            stale = checkpoints.remove_stale_temporaries(self.run_dir)
            if stale:
                LOG.info("removed what an interrupted save left behind: %s", ", ".join(stale))
            save_config(self.config, self.run_dir / checkpoints.CONFIG_FILE)
            self.writer = SummaryWriter(str(self.run_dir))
        previous_handlers = self._install_interrupt_handlers()
        try:
            while self.epoch < optim.epochs and self._steps_left() != 0 and not self._stop_requested:
                if 0 <= optim.freeze_teacher_epoch <= self.epoch:
                    self.freeze_teacher()
                if not self._run_epoch():
                    break
                self.scheduler.step()
                self.epoch += 1
                self.batch_in_epoch = 0
                if self.epoch % self.config.save_frequency == 0 or self.epoch == optim.epochs:
                    self.save_checkpoint(f"weights_{self.epoch - 1}")
            if self._saved_step != self.step:
                self.save_checkpoint(f"weights_{self.epoch}_{self.step}")
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if self.writer is not None:
                self.writer.close()
        if self._stop_requested:
            raise KeyboardInterrupt(f"stopped at epoch {self.epoch}, step {self.step}; checkpoint "
                                    f"{self.last_checkpoint}; continue with --resume {self.run_dir}")
        return self.last_checkpoint

    def _install_interrupt_handlers(self) -> dict:
        """Ctrl-C / SIGTERM: finish the current step, write a checkpoint, then stop (a second Ctrl-C aborts)."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.context.is_main:
                LOG.warning("%s: finishing this step and writing a checkpoint (Ctrl-C again to abort without one)",
                            signal.Signals(signum).name)

        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        previous = {signum: handler for signum, handler in previous.items() if handler is not signal.SIG_IGN}
        for signum in previous:
            signal.signal(signum, request_stop)
        return previous

    def _run_epoch(self) -> bool:
        """Train the rest of the current epoch; False when ``max_steps`` stopped it before the end."""
        loader, batches_per_epoch = self._loader(self._steps_left())
        bar = tqdm(total=batches_per_epoch, initial=self.batch_in_epoch,
                   disable=not self.context.is_main or self._on_step is not None,
                   desc=f"epoch {self.epoch + 1}/{self.config.optim.epochs}", unit="step", dynamic_ncols=True)
        self._set_modes()
        try:
            for inputs in loader:
                started = time.perf_counter()
                outputs, step_losses = self.trainable(to_device(inputs, self.device), self.epoch, self.step)
                self._check_finite(step_losses)
                self.optimizer.zero_grad(set_to_none=True)
                step_losses["loss"].backward()
                self.optimizer.step()
                # Each rank tracked the bins on its own batch: their mean is the range of the global batch.
                average_([self.model.min_depth_bin, self.model.max_depth_bin], self.context)
                duration = time.perf_counter() - started
                if self.config.optim.freeze_teacher_step >= 0 and self.step == self.config.optim.freeze_teacher_step:
                    self.freeze_teacher()
                self.step += 1
                self.batch_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{step_losses['loss'].item():.4f}")
                if self._on_step is not None:
                    self._on_step(self.step)
                if self.context.is_main and self.step % self.config.log_frequency == 0:
                    self._log(inputs, outputs, step_losses, duration)
                if (self.config.save_every_steps and self.step % self.config.save_every_steps == 0
                        and self.batch_in_epoch < batches_per_epoch):
                    self.save_checkpoint(f"weights_{self.epoch}_{self.step}")
                if not all_ranks_true(not self._stop_requested, self.context):
                    self._stop_requested = True
                    break
            return self.batch_in_epoch >= batches_per_epoch
        finally:
            bar.close()

    def _check_finite(self, step_losses: dict) -> None:
        finite = bool(torch.isfinite(step_losses["loss"]).item())
        if all_ranks_true(finite, self.context):
            return
        bad = sorted(k for k, v in step_losses.items() if not torch.isfinite(v).all()) or ["loss (another rank)"]
        last = self.last_checkpoint
        keep = (f"the last good checkpoint is {last} (resume with --resume {self.run_dir})" if last
                else "no checkpoint had been written yet")
        raise TrainingDivergedError(f"non-finite loss at epoch {self.epoch}, step {self.step} in {', '.join(bad)}; "
                               f"stopped without saving; {keep}. Try a lower optim.learning_rate or check the data.")

    def _log(self, inputs: dict, outputs: dict, step_losses: dict, duration: float) -> None:
        writer, step = self.writer, self.step
        for name, value in step_losses.items():
            writer.add_scalar(f"loss/{name}" if name != "loss" else "loss", value.item(), step)
        writer.add_scalar("learning_rate", self.optimizer.param_groups[0]["lr"], step)
        writer.add_scalar("depth_bins/min", float(self.model.min_depth_bin), step)
        writer.add_scalar("depth_bins/max", float(self.model.max_depth_bin), step)
        writer.add_scalar("teacher_frozen", float(self.step_module.teacher_frozen), step)
        writer.add_scalar("samples_per_second", self.config.optim.batch_size / max(duration, 1e-9), step)
        if step % (4 * self.config.log_frequency) == 0:
            writer.add_image("color/target", inputs["color"][0][0], step)
            writer.add_image("color/lookup", outputs["lookup"][0].detach().cpu(), step)
            for name in ("teacher", "student"):
                disp = outputs[name][("disp", 0)][0].detach().cpu()
                writer.add_image(f"disparity/{name}", disp / (disp.max() + 1e-7), step)
            writer.add_image("mask/reprojection", outputs["reprojection_mask"][0].detach().cpu(), step)
        writer.flush()


def default_run_dir(config: TrainConfig) -> Path:
    """``log_dir/run_name``, or ``log_dir/<method>_<dataset>`` when ``run_name`` is empty."""
    name = config.run_name or f"{config.model.method}_{config.data.dataset}"
    return Path(config.log_dir) / name


def run_training(config: TrainConfig, run_dir: str | Path | None = None, resume: bool = False) -> Trainer:
    """Train ``config`` in ``run_dir`` (default :func:`default_run_dir`); returns the finished Trainer."""
    trainer = Trainer(config, run_dir if run_dir is not None else default_run_dir(config), resume=resume)
    trainer.train()
    return trainer


def describe(config: TrainConfig) -> str:
    """One line for logs: method, data, resolution, batch, epochs."""
    data = to_dict(config.data)
    return (f"{config.model.method} on {data['dataset']} {data['height']}×{data['width']}, batch "
            f"{config.optim.batch_size}, {config.optim.epochs} epochs, freeze at epoch "
            f"{config.optim.freeze_teacher_epoch}" + (f", max {config.max_steps} steps" if config.max_steps else ""))


__all__ = ["DynamicObjectsHook", "Trainer", "TrainingDivergedError", "TrainingStep", "default_run_dir", "describe",
           "run_training"]
