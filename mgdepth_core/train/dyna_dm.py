"""Dyna-DM in the Manydepth / Manydepth2 trainer: background ego-motion, theta filter, object motion, extra losses.

:class:`DynaDM` is the trainer's dynamic-objects hook (see ``DynamicObjectsHook`` in
:mod:`mgdepth_core.train.trainer`). Per training step:

1. **Ego-motion from the background** (eq. 4–5): the pose net sees both images multiplied by the background mask,
   1 outside every potentially dynamic object of either frame (``ego_mask=all``; ``dynamic`` = the release, which
   hides only the truly dynamic ones and therefore selects them first with extra no-grad passes).
2. **Theta filter** (:func:`mgdepth_core.dynamic.theta_filter`) with the detached loss poses and the teacher's
   depth of frame t−1 (one extra no-grad teacher pass; with ``translation_scale: photometric`` or
   ``both_directions`` also of the comparison frame, reused by the geometric loss): truly dynamic objects only.
3. **Object motion** for those objects only (``object_motion_all`` = every potentially dynamic object, Insta-DM):
   :class:`~mgdepth_core.models.object_motion.ObjectMotionNet` on (I_t ⊙ M_k, ego-warped I_s ⊙ warped M_k),
   mid-grey outside, one translation per object and source frame.
4. **Composed warp** (eq. 3): :meth:`point_offsets` places each object's translation on its target-frame pixels;
   the trainer passes it to ``geometry.inverse_warp`` for every warp (teacher and student, every scale), so the
   photometric losses (with their masks) see object motion.
5. **Extra losses**: geometric consistency |Z − D̂|/(Z + D̂) against the (no-grad) teacher depth of each source
   frame (w_g), the object height prior |D_obj − f_y·h/h_pix| / mean depth with a learnable height h (w_o),
   w_hp·h (release scripts only), and the invariant pose loss (abstract v1, first epochs only; not in the release).
   Edge-aware smoothness stays the trainer's (Manydepth's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mgdepth_core import geometry, losses
from mgdepth_core.config import ConfigError
from mgdepth_core.dynamic import (
    SMALL,
    DynamicObjectsConfig,
    ThetaFilterResult,
    ids_mask,
    resize_instances,
    theta_filter,
)
from mgdepth_core.models.object_motion import ObjectMotionNet


@dataclass
class Selection:
    """What the theta filter decided for one batch."""

    ids: dict[int, torch.Tensor]  # {frame_id: B×1×H×W int64} instance ids at the training resolution
    result: ThetaFilterResult  # per-id status / similarity, B×(M+1)
    motion_ids: torch.Tensor  # B×(M+1) bool: ids that get object motion (truly dynamic unless object_motion_all)
    source_depths: dict[int, torch.Tensor]  # {s: B×1×H×W metres} no-grad teacher depth of source frames

    @property
    def num_ids(self) -> int:
        return self.motion_ids.shape[1] - 1


class DynaDM(nn.Module):
    """The Dyna-DM training hook. Its parameters (object motion net, learnable object height) join the optimiser
    through :meth:`parameter_groups`."""

    def __init__(self, config: DynamicObjectsConfig, min_depth: float, max_depth: float, pretrained: bool = False):
        super().__init__()
        self.config = config
        self.min_depth, self.max_depth = min_depth, max_depth
        self.object_motion = ObjectMotionNet(config.object_motion_layers, pretrained)
        self.object_height = nn.Parameter(torch.tensor(float(config.height_prior_init)))
        # height_prior_source "objects": running median object height in depth units (0 = not yet measured)
        self.register_buffer("measured_height", torch.zeros(()))
        self._selection_key: int | None = None
        self._selection: Selection | None = None
        self._translations: dict[int, torch.Tensor] = {}

    def parameter_groups(self, learning_rate: float) -> list[dict]:
        """Adam parameter groups: the object motion net at ``learning_rate``, h at the reference's 0.1×."""
        return [{"params": list(self.object_motion.parameters()), "lr": learning_rate},
                {"params": [self.object_height], "lr": learning_rate * self.config.height_prior_lr_factor}]

    # ------------------------------------------------------------------------------------------------ inputs
    def _ids(self, inputs: dict) -> dict[int, torch.Tensor]:
        if "instances" not in inputs:
            raise ConfigError("dynamic_objects=dyna-dm needs instance maps in the samples: set data.masks_path to "
                              "the output of `mgdepth precompute-masks`, or train on the synthetic set")
        size = tuple(inputs["color"][0].shape[-2:])
        return {f: resize_instances(ids.long(), size) for f, ids in inputs["instances"].items()}

    def teacher_depth(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """Teacher depth (B×1×H×W metres, no gradients) of another frame, at the image's resolution."""
        with torch.no_grad():
            disp = model.teacher_forward(image)[("disp", 0)]
            disp = F.interpolate(disp, image.shape[-2:], mode="bilinear", align_corners=False)
            return geometry.disparity_to_depth(disp, self.min_depth, self.max_depth)[1]

    def background_mask(self, ids: dict[int, torch.Tensor], frame_id: int, hidden: torch.Tensor | None
                        ) -> torch.Tensor:
        """B×1×H×W float, 0 on hidden objects of frame 0 or ``frame_id`` (``hidden`` B×(M+1) bool; None = all)."""
        if hidden is None:
            objects = (ids[0] > 0) | (ids[frame_id] > 0)
        else:
            objects = ids_mask(ids[0], hidden) | ids_mask(ids[frame_id], hidden)
        return (~objects).float()

    def background_images(self, inputs: dict, frame_id: int, target: torch.Tensor, source: torch.Tensor,
                          hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose-net inputs multiplied by the background mask (eq. 4–5)."""
        mask = self.background_mask(self._ids(inputs), frame_id, hidden)
        return target * mask, source * mask

    # ------------------------------------------------------------------------------------------------ hook API
    def pose_inputs(self, inputs: dict, frame_id: int, target: torch.Tensor, source: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.ego_mask == "all":
            return self.background_images(inputs, frame_id, target, source)
        selection = self._selection_for(inputs, model=self._model, poses=None)
        return self.background_images(inputs, frame_id, target, source, selection.result.dynamic)

    def prepare(self, inputs: dict, outputs: dict) -> None:
        poses = {f: T.detach() for f, T in outputs["poses"].items()}
        selection = self._selection_for(inputs, model=self._model, poses=poses)
        self._selection_key = None  # the next batch selects again
        if self.config.geometric_weight > 0:
            for f in poses:
                if f not in selection.source_depths:
                    selection.source_depths[f] = self.teacher_depth(self._model, inputs["color_aug"][f])
        outputs["dyna_dm"] = selection
        self._translations = self.object_translations(inputs, selection, poses, outputs["teacher_depth"][0].detach())

    def point_offsets(self, inputs: dict, outputs: dict, frame_id: int, network: str, scale: int
                      ) -> torch.Tensor | None:
        if frame_id not in self._translations:
            return None
        return self.offsets_from_translations(self._selection.ids[0], self._translations[frame_id])

    def extra_losses(self, inputs: dict, outputs: dict) -> dict[str, torch.Tensor]:
        config = self.config
        selection: Selection = outputs["dyna_dm"]
        terms: dict[str, torch.Tensor] = {}
        K = inputs["K"]
        depths = {"student": outputs["student_depth"][0]}
        if outputs["teacher_depth"][0].requires_grad:  # the teacher still trains
            depths["teacher"] = outputs["teacher_depth"][0]
        if config.geometric_weight > 0:
            for network, depth in depths.items():
                poses = outputs["poses"] if network == "teacher" else {f: T.detach()
                                                                       for f, T in outputs["poses"].items()}
                terms[f"geometric/{network}"] = config.geometric_weight * self.geometric_loss(
                    selection, depth, poses, K)
        if config.height_prior_weight > 0:
            for network, depth in depths.items():
                terms[f"height_prior/{network}"] = config.height_prior_weight * self.height_prior_loss(
                    selection, depth, K)
        if config.height_penalty_weight > 0:
            terms["height_penalty"] = config.height_penalty_weight * self.object_height
        epoch = int(outputs.get("epoch", 0))
        if config.invariant_pose_weight > 0 and epoch < config.invariant_pose_epochs:
            terms["invariant_pose"] = config.invariant_pose_weight * self.invariant_pose_loss(inputs, outputs)
        return terms

    # ------------------------------------------------------------------------------------------------ pieces
    def bind(self, model: nn.Module) -> DynaDM:
        """Remember the depth model (not registered as a sub-module: its weights stay the trainer's)."""
        object.__setattr__(self, "_model", model)
        return self

    def _selection_for(self, inputs: dict, model: nn.Module, poses: dict[int, torch.Tensor] | None) -> Selection:
        key = id(inputs["color"][0])
        if self._selection_key == key and self._selection is not None:
            return self._selection
        self._selection = self.select(inputs, model, poses)
        self._selection_key = key
        return self._selection

    @torch.no_grad()
    def select(self, inputs: dict, model: nn.Module, poses: dict[int, torch.Tensor] | None = None) -> Selection:
        """Run the theta filter on a batch. ``poses``: ``{s: T_s_0}`` background ego-motion (detached); None =
        estimate it here from the all-masked background images (no gradients)."""
        ids = self._ids(inputs)
        if -1 not in ids:
            raise ConfigError("dyna-dm needs frame −1 in data.frame_ids (the theta filter warps t−1)")
        num_ids = int(max(int(x.max()) for x in ids.values()))
        batch = ids[0].shape[0]
        if poses is None:
            poses = {}
            for f in ids:
                if f != 0:
                    target, source = self.background_images(inputs, f, inputs["color_aug"][0],
                                                            inputs["color_aug"][f])
                    poses[f] = model.relative_pose(target, source, source_is_before=f < 0)
        if num_ids == 0:
            empty = torch.zeros(batch, 1, dtype=torch.long, device=ids[0].device)
            result = ThetaFilterResult(empty, empty.float(), empty.float())
            return Selection(ids, result, torch.zeros(batch, 1, dtype=torch.bool, device=ids[0].device), {})
        depths = {-1: self.teacher_depth(model, inputs["color_aug"][-1])}
        if self.config.extra_distance and 1 in ids:
            T_compare_source, compare = poses[1] @ geometry.invert_pose(poses[-1]), 1
        else:
            T_compare_source, compare = geometry.invert_pose(poses[-1]), 0
        extra = {}
        if self.config.translation_scale == "photometric" or self.config.both_directions:
            depths[compare] = self.teacher_depth(model, inputs["color_aug"][compare])
            extra = {"source_image": inputs["color_aug"][-1], "compare_image": inputs["color_aug"][compare],
                     "compare_depth": depths[compare]}
        result = theta_filter(ids[0], ids[-1], depths[-1], T_compare_source, inputs["K"], ids[compare], self.config,
                              num_ids, **extra)
        motion_ids = result.present if self.config.object_motion_all else result.dynamic
        return Selection(ids, result, motion_ids, {f: depth for f, depth in depths.items() if f != 0})

    def object_translations(self, inputs: dict, selection: Selection, poses: dict[int, torch.Tensor],
                            target_depth: torch.Tensor) -> dict[int, torch.Tensor]:
        """``{s: B×(M+1)×3}`` object translations (target → source camera, metres) for the selected objects, zero
        elsewhere; one object-motion pass over every (object, source) crop pair of the batch."""
        batch_index, object_id = torch.nonzero(selection.motion_ids, as_tuple=True)
        if batch_index.numel() == 0:
            return {}
        ids, K = selection.ids, inputs["K"]
        target_image = inputs["color_aug"][0]
        sources = [f for f in poses]
        target_crops, reference_crops = [], []
        grey = torch.tensor(0.5, device=target_image.device)
        with torch.no_grad():
            mask_t = (ids[0][batch_index] == object_id.view(-1, 1, 1, 1))
            target_crop = torch.where(mask_t, target_image[batch_index], grey)
            for f in sources:
                pixels, _ = geometry.reproject(target_depth[batch_index], poses[f][batch_index], K[batch_index])
                warped = geometry.sample(inputs["color_aug"][f][batch_index], pixels)
                warped_ids = geometry.sample(ids[f][batch_index].float(), pixels, padding_mode="zeros",
                                             mode="nearest").round().long()
                reference_crops.append(torch.where(warped_ids == object_id.view(-1, 1, 1, 1), warped, grey))
                target_crops.append(target_crop)
        motion = self.object_motion(torch.cat(target_crops), torch.cat(reference_crops))
        count = batch_index.numel()
        out = {}
        for i, f in enumerate(sources):
            table = torch.zeros(ids[0].shape[0], selection.num_ids + 1, 3, device=motion.device, dtype=motion.dtype)
            out[f] = table.index_put((batch_index, object_id), motion[i * count:(i + 1) * count])
        return out

    @staticmethod
    def offsets_from_translations(target_ids: torch.Tensor, translations: torch.Tensor) -> torch.Tensor:
        """Per-pixel offsets B×3×H×W: each target pixel gets its object's translation (``translations``
        B×(M+1)×3, row 0 = background = 0)."""
        batch, _, height, width = target_ids.shape
        index = target_ids.flatten(1).clamp(0, translations.shape[1] - 1)
        per_pixel = torch.gather(translations, 1, index.unsqueeze(-1).expand(-1, -1, 3))
        return per_pixel.transpose(1, 2).reshape(batch, 3, height, width)

    def geometric_loss(self, selection: Selection, depth: torch.Tensor, poses: dict[int, torch.Tensor],
                       K: torch.Tensor) -> torch.Tensor:
        """SC-SfMLearner consistency: the target depth moved into each source camera (with object motion) against
        that source's teacher depth sampled there; masked mean over valid pixels, mean over sources."""
        total = 0.0
        for f, T in poses.items():
            source_depth = selection.source_depths[f]
            offsets = self.point_offsets({}, {}, f, "", 0)
            pixels, z = geometry.reproject(depth, T, K, point_offsets=offsets)
            projected = geometry.sample(source_depth, pixels)
            valid = (geometry.in_image(pixels, *depth.shape[-2:]) & (z > 1e-3)).float()
            total = total + losses.masked_mean(losses.geometric_consistency(z.clamp(min=1e-3), projected), valid)
        return total / max(len(poses), 1)

    def height_prior_loss(self, selection: Selection, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """Struct2Depth / Insta-DM object height prior on frame t's truly dynamic objects (or every object above
        the size threshold, ``height_prior_objects: all``): mean_k |D_obj − f_y·h/h_pix| / mean(D) (detached
        mean), 0 without objects. h is the learnable scalar or the objects' own running median height
        (``height_prior_source``)."""
        status = selection.result
        chosen = status.dynamic if self.config.height_prior_objects == "dynamic" else \
            status.present & (status.status != SMALL)
        batch_index, object_id = torch.nonzero(chosen, as_tuple=True)
        if batch_index.numel() == 0:
            return depth.sum() * 0.0
        masks = (selection.ids[0][batch_index] == object_id.view(-1, 1, 1, 1)).float()
        object_depth = (depth[batch_index] * masks).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp(min=1)
        rows = masks.amax(-1).flatten(1)  # N×H: rows the object touches
        row_index = torch.arange(rows.shape[1], device=rows.device, dtype=rows.dtype)
        top = torch.where(rows > 0, row_index, torch.full_like(rows, float("inf"))).amin(1)
        bottom = (rows * row_index).amax(1)
        pixel_height = (bottom - top + 1).clamp(min=1)
        focal = K[batch_index, 1, 1]
        if self.config.height_prior_source == "learned":
            height = self.object_height
        else:
            height = self._update_measured_height(object_depth.detach() * pixel_height / focal)
        apparent_depth = focal * height / pixel_height
        mean_depth = depth[batch_index].flatten(1).mean(1).detach().clamp(min=1e-3)
        return ((object_depth - apparent_depth).abs() / mean_depth).mean()

    def _update_measured_height(self, heights: torch.Tensor) -> torch.Tensor:
        """Fold this batch's object heights (N, depth units) into the running median estimate; returns h."""
        batch_median = heights.median()
        if self.training:
            momentum = self.config.height_prior_momentum if float(self.measured_height) > 0 else 0.0
            self.measured_height.copy_(momentum * self.measured_height + (1 - momentum) * batch_median)
        return self.measured_height if float(self.measured_height) > 0 else batch_median

    def invariant_pose_loss(self, inputs: dict, outputs: dict) -> torch.Tensor:
        """Pose from background-only images should equal pose from the full images: mean |Δ| of the 3×4 [R|t]."""
        total = 0.0
        for f, T_background in outputs["poses"].items():
            T_full = self._model.relative_pose(inputs["color_aug"][0], inputs["color_aug"][f], source_is_before=f < 0)
            total = total + (T_background[:, :3] - T_full[:, :3]).abs().mean()
        return total / max(len(outputs["poses"]), 1)


def build_training_hook(config) -> DynaDM:
    """The trainer's Dyna-DM hook for a TrainConfig (``config.dyna_dm`` holds the DynamicObjectsConfig)."""
    options = getattr(config, "dyna_dm", None) or DynamicObjectsConfig(mode="dyna-dm")
    return DynaDM(options, config.model.min_depth, config.model.max_depth, pretrained=config.model.pretrained)
