"""Dyna-DM in the training step: composed warp with object motion, background pose inputs, selection, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from mgdepth_core import geometry
from mgdepth_core.config import from_dict
from mgdepth_core.data import build_dataset
from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.dynamic import DYNAMIC, DynamicObjectsConfig
from mgdepth_core.losses import photometric_error
from mgdepth_core.models import build_model
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.dyna_dm import DynaDM, build_training_hook
from mgdepth_core.train.trainer import TrainingStep


def tiny_config(height=64, width=128, **dyna) -> TrainConfig:
    config = from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": height, "width": width, "pretrained": False, "num_depth_bins": 8},
        "data": {"dataset": "synthetic", "height": height, "width": width, "num_workers": 0,
                 "synthetic_sequences": 1, "synthetic_frames": 8, "augment": False},
        "losses": {"num_scales": 2}, "device": "cpu", "dynamic_objects": "dyna-dm"})
    config.dyna_dm = DynamicObjectsConfig(mode="dyna-dm", **dyna)
    return config


def batch_of(config: TrainConfig, indices) -> dict:
    data = build_dataset(config.data, "train", training=False)
    return default_collate([data[i] for i in indices])


def test_offsets_place_each_objects_translation_on_its_target_pixels():
    ids = torch.tensor([[[[0, 1, 1], [2, 0, 1]]]])
    translations = torch.zeros(1, 3, 3)
    translations[0, 1] = torch.tensor([1.0, 2.0, 3.0])
    translations[0, 2] = torch.tensor([-1.0, 0.0, 0.5])
    offsets = DynaDM.offsets_from_translations(ids, translations)
    assert offsets.shape == (1, 3, 2, 3)
    assert offsets[0, :, 0, 1].tolist() == [1, 2, 3] and offsets[0, :, 1, 0].tolist() == [-1, 0, 0.5]
    assert offsets[0, :, 0, 0].tolist() == [0, 0, 0] and offsets[0, :, 1, 1].tolist() == [0, 0, 0]


def test_composed_warp_with_true_object_motion_explains_the_moving_object():
    """Eq. 3 on exact data: the ego-motion alone cannot explain a moving car; ego-motion plus its true translation
    (world velocity in source-camera axes, placed with the target mask) reproduces it."""
    sequence = SyntheticSequence(seed=4, num_frames=4, height=96, width=320)
    target, source = sequence.frame(1), sequence.frame(2)
    moving = [o for o in sequence.objects if o.moving and (target["instances"] == o.instance_id).sum() > 300]
    assert moving, "the scene should show a moving object"
    obj = moving[0]
    image = {k: torch.from_numpy(f["image"]).permute(2, 0, 1)[None].float() / 255
             for k, f in ((0, target), (1, source))}
    depth = torch.from_numpy(target["depth"])[None, None]
    depth = torch.where(depth > 0, depth, torch.full_like(depth, 500.0))
    K = torch.from_numpy(sequence.K).float()[None]
    T = torch.from_numpy(sequence.relative_pose(2, 1)).float()[None]
    R_source = sequence.camera_pose(2)[:3, :3]
    translations = torch.zeros(1, obj.instance_id + 1, 3)
    translations[0, obj.instance_id] = torch.from_numpy(R_source.T @ obj.velocity).float()
    ids = torch.from_numpy(target["instances"])[None, None]
    offsets = DynaDM.offsets_from_translations(ids, translations)
    mask = (ids == obj.instance_id)
    errors, per_pixel = {}, {}
    for name, point_offsets in (("ego", None), ("composed", offsets)):
        warped, valid = geometry.inverse_warp(image[1], depth, T, K, point_offsets=point_offsets)
        per_pixel[name] = photometric_error(warped, image[0])
        errors[name] = per_pixel[name][mask & valid].mean().item()
    far = torch.nn.functional.max_pool2d((ids > 0).float(), 5, 1, 2) == 0  # beyond SSIM's 3×3 window of objects
    assert torch.allclose(per_pixel["ego"][far], per_pixel["composed"][far])  # the rest is left alone
    assert errors["composed"] < 0.4 * errors["ego"], errors


def test_pose_inputs_hide_potentially_dynamic_objects():
    config = tiny_config()
    batch = batch_of(config, [2])
    model = build_model(config.model)
    hook = build_training_hook(config).bind(model)
    target, source = hook.pose_inputs(batch, -1, batch["color_aug"][0], batch["color_aug"][-1])
    objects = (batch["instances"][0] > 0) | (batch["instances"][-1] > 0)
    assert objects.any()
    assert (target * objects).abs().sum() == 0 and (source * objects).abs().sum() == 0
    assert torch.equal(target[~objects.expand_as(target)], batch["color_aug"][0][~objects.expand_as(target)])


@pytest.mark.slow
def test_training_step_trains_object_motion_for_dynamic_objects_only():
    config = tiny_config(theta=1.01, min_area_fraction=0.002, invariant_pose_weight=0.1, height_penalty_weight=0.2)
    batch = batch_of(config, [2])
    torch.manual_seed(0)
    model = build_model(config.model)
    hook = build_training_hook(config).bind(model)
    step = TrainingStep(model, config, hook)
    outputs, losses = step(batch, epoch=0)
    losses["loss"].backward()
    selection = outputs["dyna_dm"]
    dynamic = selection.result.status == DYNAMIC
    assert dynamic.any() and torch.equal(selection.motion_ids, dynamic)
    for name in ("extra/geometric/student", "extra/geometric/teacher", "extra/height_prior/student",
                 "extra/invariant_pose", "extra/height_penalty"):
        assert name in losses and torch.isfinite(losses[name]), name
    assert torch.isfinite(losses["loss"])
    grads = {n: p.grad for n, p in hook.object_motion.named_parameters() if ".fc." not in n}  # fc: unused
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert grads["head.net.3.weight"].abs().sum() > 0 and grads["encoder.encoder.conv1.weight"].abs().sum() > 0
    assert hook.object_height.grad is not None and hook.object_height.grad != 0
    offsets = hook.point_offsets(batch, outputs, 1, "student", 0)
    moving_pixels = dynamic.gather(1, selection.ids[0].flatten(1)).view_as(selection.ids[0])
    assert (offsets.abs().sum(1, keepdim=True)[~moving_pixels] == 0).all()
    assert (offsets.abs().sum(1, keepdim=True)[moving_pixels] > 0).all()
    outputs["epoch"] = config.dyna_dm.invariant_pose_epochs
    assert "invariant_pose" not in hook.extra_losses(batch, outputs)


@pytest.mark.slow
def test_training_step_without_objects_is_plain_and_finite():
    config = tiny_config()
    batch = batch_of(config, [2])
    batch["instances"] = {f: torch.zeros_like(ids) for f, ids in batch["instances"].items()}
    model = build_model(config.model)
    hook = build_training_hook(config).bind(model)
    outputs, losses = TrainingStep(model, config, hook)(batch, epoch=0)
    losses["loss"].backward()
    assert outputs["dyna_dm"].num_ids == 0
    assert hook.point_offsets(batch, outputs, -1, "teacher", 0) is None
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert losses["extra/height_prior/student"] == 0
    assert all(p.grad is None for p in hook.object_motion.parameters())


def test_missing_instances_is_a_clear_error():
    config = tiny_config()
    batch = batch_of(config, [2])
    del batch["instances"]
    hook = build_training_hook(config).bind(build_model(config.model))
    with pytest.raises(ValueError, match="masks_path"):
        hook.pose_inputs(batch, -1, batch["color_aug"][0], batch["color_aug"][-1])
    assert np.isclose(hook.object_height.item(), 0.02)


@pytest.mark.slow
def test_trainer_runs_dyna_dm_and_checkpoints_its_networks(tmp_path):
    from mgdepth_core.train.trainer import Trainer

    config = tiny_config(height=64, width=128, theta=1.01, min_area_fraction=0.002)
    config.optim.batch_size, config.max_steps, config.log_dir = 1, 2, str(tmp_path)
    trainer = Trainer(config, tmp_path / "run")
    hook = trainer.step_module.hook
    before = {n: p.detach().clone() for n, p in hook.named_parameters()}
    assert any(p is hook.object_height for g in trainer.optimizer.param_groups for p in g["params"])
    trainer.train()
    changed = [n for n, p in hook.named_parameters() if not torch.equal(before[n], p.detach())]
    assert "object_height" in changed and any(n.startswith("object_motion.") for n in changed)
    resumed = Trainer(config, tmp_path / "run", resume=True)
    assert torch.equal(resumed.step_module.hook.object_height, hook.object_height)


@pytest.mark.slow
def test_manydepth2_training_step_with_dyna_dm():
    config = tiny_config(height=64, width=128, theta=1.01, min_area_fraction=0.002)
    config.model.method, config.model.flow = "manydepth2", "none"
    batch = batch_of(config, [2])
    model = build_model(config.model)
    hook = build_training_hook(config).bind(model)
    outputs, losses = TrainingStep(model, config, hook)(batch, epoch=0)
    losses["loss"].backward()
    assert outputs["dyna_dm"].motion_ids.any() and torch.isfinite(losses["loss"])
    assert hook.object_motion.head.net[3].weight.grad.abs().sum() > 0


def _height_prior_scene():
    """Three objects on a 40×60 map (f_y = 100 px, true height 1.5 m): two static ones at their true depth
    (1.5·100/h_pix: 15 m and 30 m) and a moving one whose depth (3 m) its motion pulled to the wrong value (7.5 m)."""
    from mgdepth_core.dynamic import SMALL, STATIC, ThetaFilterResult
    from mgdepth_core.train.dyna_dm import Selection

    ids = torch.zeros(1, 1, 40, 60, dtype=torch.long)
    depth = torch.full((1, 1, 40, 60), 20.0)
    for object_id, rows, value in ((1, slice(10, 20), 15.0), (2, slice(20, 40), 3.0), (3, slice(0, 5), 30.0)):
        ids[..., rows, 10 * object_id:10 * object_id + 8] = object_id
        depth[..., rows, 10 * object_id:10 * object_id + 8] = value
    ids[..., 30:32, 50:52] = 4  # a small object: never constrained
    depth[..., 30:32, 50:52] = 1.0
    status = torch.tensor([[0, STATIC, DYNAMIC, STATIC, SMALL]])
    result = ThetaFilterResult(status, torch.zeros(1, 5), torch.zeros(1, 5))
    selection = Selection({0: ids}, result, status == DYNAMIC, {})
    K = torch.tensor([[[100.0, 0, 30], [0, 100.0, 20], [0, 0, 1]]])
    return selection, depth.requires_grad_(), K


def test_height_prior_from_every_objects_own_size_pulls_a_moving_object_to_its_true_depth():
    selection, depth, K = _height_prior_scene()
    hook = DynaDM(DynamicObjectsConfig(mode="dyna-dm", height_prior_objects="all", height_prior_source="objects"),
                  0.1, 100.0).train()
    loss = hook.height_prior_loss(selection, depth, K)
    assert float(hook.measured_height) == pytest.approx(1.5)  # median of 1.5, 0.6, 1.5: the static objects win
    loss.backward()
    moving = selection.ids[0] == 2
    assert float(depth.grad[moving].sum()) < 0  # descent raises the moving object's depth towards 7.5 m
    for static_id in (1, 3, 4):  # exactly explained, or too small to count
        assert float(depth.grad[selection.ids[0] == static_id].abs().sum()) == 0.0
    # the running estimate moves by (1 − momentum) of the next batch's median
    hook.height_prior_loss(selection, depth * 2, K)
    assert float(hook.measured_height) == pytest.approx(0.99 * 1.5 + 0.01 * 3.0)


def test_height_prior_with_insta_dm_units_and_dynamic_objects_pulls_the_other_way():
    """The default (Dyna-DM: dynamic objects, learnable h starting at Insta-DM's 0.02) wants the moving object at
    100·0.02/20 = 0.1 depth units: towards the camera, away from its true depth."""
    selection, depth, K = _height_prior_scene()
    hook = DynaDM(DynamicObjectsConfig(mode="dyna-dm"), 0.1, 100.0).train()
    hook.height_prior_loss(selection, depth, K).backward()
    assert float(depth.grad[selection.ids[0] == 2].sum()) > 0
    assert float(depth.grad[selection.ids[0] == 1].abs().sum()) == 0.0
