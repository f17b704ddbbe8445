"""Training step: warps with known depth/pose, trust mask, matching augmentation, gradient routing, freezing."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from mgdepth_core.config import ConfigError, from_dict
from mgdepth_core.data import build_dataset
from mgdepth_core.models import build_model
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.trainer import TEACHER_AND_POSE, Trainer, TrainingStep


def tiny_config(tmp_path=None, height=64, width=64, **top) -> TrainConfig:
    data = {"dataset": "synthetic", "height": height, "width": width, "num_workers": 0, "synthetic_sequences": 2,
            "synthetic_frames": 6}
    data.update(top.pop("data", {}))
    optim = {"batch_size": 2, "epochs": 2, "freeze_teacher_epoch": 1}
    optim.update(top.pop("optim", {}))
    return from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": height, "width": width, "pretrained": False,
                  "num_depth_bins": 8},
        "data": data, "optim": optim, "log_dir": str(tmp_path or "runs"), "log_frequency": 1, "device": "cpu",
        **top})


def _batch(config: TrainConfig, indices, training=False) -> dict:
    data = build_dataset(config.data, "train", training=training)
    return default_collate([data[i] for i in indices])


def test_warp_with_ground_truth_depth_and_pose_reproduces_target():
    """The trainer's warp (un-augmented source, K, T_s_0) with the synthetic set's exact depth and poses
    explains the target far better than no motion or a wrong depth."""
    config = tiny_config(height=64, width=160, data={"synthetic_frames": 8, "synthetic_sequences": 1})
    batch = _batch(config, [3, 5])
    step = TrainingStep(build_model(config.model), config)
    depth = batch["depth_gt"].clamp(min=0.5)  # sky (0 = unknown) is far away; any large depth warps it alike
    depth = torch.where(batch["depth_gt"] > 0, depth, torch.full_like(depth, 200.0))
    valid = batch["depth_gt"] > 0
    poses = {f: batch["pose_gt"][f] for f in (-1, 1)}
    with torch.no_grad():
        exact = step._reprojection_errors(batch, {}, depth, poses, "teacher", 0)
        wrong = step._reprojection_errors(batch, {}, depth * 1.6, poses, "teacher", 0)
    from mgdepth_core.losses import photometric_error
    identity = [photometric_error(batch["color"][f], batch["color"][0]) for f in (-1, 1)]
    for f_index in range(2):
        e, w, i = (x[f_index][valid].mean().item() for x in (exact, wrong, identity))
        assert e < 0.5 * i and e < 0.7 * w, (e, w, i)


def test_trust_mask_is_confidence_and_factor_two_agreement():
    config = tiny_config()
    step = TrainingStep(build_model(config.model), config)
    teacher_depth = torch.full((1, 1, 32, 64), 10.0)
    cost_depth = torch.tensor([4.9, 5.1, 10.0, 19.9, 20.1, 10.0, 7.0, 15.0]).repeat(8, 2).reshape(1, 1, 8, 16)
    confidence = torch.ones(1, 1, 8, 16)
    confidence[..., 5::8] = 0  # the column holding 10 m is not confident
    mask = step.trust_mask({"lowest_cost": 1 / cost_depth, "confidence_mask": confidence}, teacher_depth)
    expected_low = torch.tensor([0, 1, 1, 1, 0, 0, 1, 1.0]).repeat(8, 2).reshape(1, 1, 8, 16)
    assert mask.shape == (1, 1, 32, 64)
    assert torch.equal(mask, expected_low.repeat_interleave(4, 2).repeat_interleave(4, 3))


def test_pixels_the_static_reference_marks_moving_take_the_consistency_loss():
    """Manydepth2: the rigid warp cannot explain a moving object, so its pixels leave the trust mask (and so the
    student's reprojection loss) even where cost volume and teacher agree; ``moving_pixels_to_teacher: false``
    keeps the release's mask."""
    config = tiny_config()
    step = TrainingStep(build_model(config.model), config)
    teacher_depth = torch.full((1, 1, 32, 64), 10.0)
    motion = torch.zeros(1, 1, 32, 64, dtype=torch.bool)
    motion[..., 8:16, 20:40] = True
    student = {"lowest_cost": torch.full((1, 1, 8, 16), 0.1), "confidence_mask": torch.ones(1, 1, 8, 16),
               "motion_mask": motion}
    mask = step.trust_mask(student, teacher_depth)
    assert torch.equal(mask, (~motion).float())
    step.config.losses.moving_pixels_to_teacher = False
    assert torch.equal(step.trust_mask(student, teacher_depth), torch.ones(1, 1, 32, 64))


def test_matching_augmentation_draws_static_camera_and_zero_pose():
    config = tiny_config()
    step = TrainingStep(build_model(config.model), config)
    batch_size = 96
    torch.manual_seed(0)
    current = torch.rand(batch_size, 3, 32, 64)
    inputs = {"color": {0: current}, "color_aug": {0: current * 0.9, -1: torch.rand(batch_size, 3, 32, 64)}}
    step.eval()
    with torch.no_grad():
        predicted = step.model.relative_pose(inputs["color_aug"][0], inputs["color_aug"][-1], source_is_before=True)
        lookup, T, mask = step.matching_inputs(inputs)
    assert mask.sum() == 0 and torch.equal(lookup, inputs["color_aug"][-1]) and torch.allclose(T, predicted)
    step.train()
    with torch.no_grad():
        predicted = step.model.relative_pose(inputs["color_aug"][0], inputs["color_aug"][-1], source_is_before=True)
        lookup, T, mask = step.matching_inputs(inputs)
    static = (lookup == current).flatten(1).all(1)
    zero_pose = (T == 0).flatten(1).all(1)
    untouched = (lookup == inputs["color_aug"][-1]).flatten(1).all(1)
    assert not (static & zero_pose).any()
    assert torch.equal(mask.bool(), static | zero_pose)
    assert torch.equal(untouched, ~static)
    assert 0.15 < static.float().mean() < 0.35 and 0.15 < zero_pose.float().mean() < 0.35
    # Poses stay as predicted except for the zero-pose draws (static camera keeps the predicted pose, as released).
    assert torch.allclose(T[~zero_pose], predicted[~zero_pose], atol=1e-6)


def test_missing_lookup_frame_gets_zero_pose():
    config = tiny_config(losses={"matching_augmentation": False})
    step = TrainingStep(build_model(config.model), config).train()
    lookup = torch.rand(2, 3, 32, 64)
    lookup[1] = 0
    inputs = {"color": {0: torch.rand(2, 3, 32, 64)}, "color_aug": {0: torch.rand(2, 3, 32, 64), -1: lookup}}
    _, T, mask = step.matching_inputs(inputs)
    assert (T[1] == 0).all() and (T[0] != 0).any() and mask.sum() == 0


def test_dataset_pose_source_warps_and_matches_with_the_known_ego_motion_in_network_units():
    config = tiny_config(losses={"pose_source": "dataset", "dataset_pose_scale": 0.25,
                                 "matching_augmentation": False})
    step = TrainingStep(build_model(config.model), config).train()
    batch = _batch(config, [1, 2])
    poses = step.loss_poses(batch)
    _, T_lookup_current, _ = step.matching_inputs(batch)
    for frame_id, T in [*poses.items(), (-1, T_lookup_current)]:
        expected = batch["pose_gt"][frame_id]
        assert torch.equal(T[:, :3, :3], expected[:, :3, :3])
        assert torch.allclose(T[:, :3, 3], 0.25 * expected[:, :3, 3])
        assert expected[:, 2, 3].abs().min() > 0.5  # the synthetic camera moves about a metre per frame
    _, terms = step(batch)
    owners = _grad_owners(step.model, terms["loss"])
    assert "pose" not in owners and "pose_encoder" not in owners and "mono_depth" in owners  # no pose net
    del batch["pose_gt"]
    with pytest.raises(ConfigError, match="pose_source=dataset needs known poses"):
        step.loss_poses(batch)


def _grad_owners(model, loss) -> set[str]:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name for name in ("encoder", "depth") + TEACHER_AND_POSE
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, name).parameters())}


def test_gradients_student_loss_trains_student_only_teacher_loss_trains_teacher_and_pose():
    config = tiny_config()
    torch.manual_seed(0)
    step = TrainingStep(build_model(config.model), config).train()
    batch = _batch(config, [0, 1])
    bins_before = (step.model.min_depth_bin.clone(), step.model.max_depth_bin.clone())
    outputs, terms = step(batch)
    assert set(terms) >= {"loss", "teacher/loss", "student/loss", "student/consistency/3", "teacher/smoothness/0"}
    assert torch.isclose(terms["loss"].detach(), terms["teacher/loss"] + terms["student/loss"])
    assert not torch.equal(bins_before[1], step.model.max_depth_bin)  # adaptive bins move while the teacher trains
    assert _grad_owners(step.model, step.student_loss(batch, outputs, {})) == {"encoder", "depth"}
    assert _grad_owners(step.model, step.teacher_loss(batch, outputs, {})) == set(TEACHER_AND_POSE)


def _learning_rates_with_freeze(trainer: Trainer, epochs: int, freeze_epoch: int) -> list[float]:
    """The learning rate of each epoch, freezing the teacher from ``freeze_epoch`` on as the trainer does."""
    rates = []
    for epoch in range(epochs):
        trainer.epoch = epoch
        if epoch >= freeze_epoch:
            trainer.freeze_teacher()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.scheduler.step()
    return rates


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no steps are taken here
def test_freeze_rebuilds_optimiser_and_the_release_schedule_never_decays(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, optim={"epochs": 20, "freeze_teacher_epoch": 15}), tmp_path / "run")
    all_params = {id(p) for p in trainer.model.parameters()}
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == all_params
    rates = _learning_rates_with_freeze(trainer, epochs=20, freeze_epoch=15)
    assert rates == [1e-4] * 20  # the rebuilt StepLR(15) starts again at epoch 15: no decay within 20 epochs
    student = {id(p) for name in ("encoder", "depth") for p in getattr(trainer.model, name).parameters()}
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == student
    assert all(not getattr(trainer.model, name).training for name in TEACHER_AND_POSE)
    assert trainer.model.encoder.training and trainer.model.depth.training

    continued = Trainer(tiny_config(tmp_path, optim={"epochs": 20, "freeze_teacher_epoch": 15,
                                                     "schedule_after_freeze": "continue"}), tmp_path / "run2")
    rates = _learning_rates_with_freeze(continued, epochs=20, freeze_epoch=15)
    assert rates[:15] == [1e-4] * 15 and rates[15:] == pytest.approx([1e-5] * 5)


def test_frozen_step_changes_only_the_student(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, optim={"freeze_teacher_epoch": 0}, max_steps=1), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"encoder", "depth"}  # teacher, pose (BN statistics included) and the depth bins are fixed


def test_automask_warmup_scores_every_pixel_until_its_step_then_auto_masks(tmp_path):
    """Before ``automask_warmup_steps`` the teacher's reprojection term is the plain per-pixel minimum over all
    pixels; from that step on (and in evaluation, step None) it is the auto-masked mean, which differs."""
    config = tiny_config(losses={"automask_warmup_steps": 3, "matching_augmentation": False})
    torch.manual_seed(0)
    step = TrainingStep(build_model(config.model), config).eval()
    batch = _batch(config, [1, 2])
    with torch.no_grad():
        outputs, warmup = step(batch, 0, 2)
        errors = step._reprojection_errors(batch, outputs, outputs["teacher_depth"][0], outputs["poses"], "teacher",
                                           0)
        every_pixel = torch.cat(errors, 1).min(1).values.mean()
        terms = {}
        for step_index in (3, None):
            torch.manual_seed(1)  # the auto-mask's tie-break noise
            terms[step_index] = step(batch, 0, step_index)[1]["teacher/reprojection/0"]
    assert warmup["teacher/reprojection/0"] == pytest.approx(every_pixel.item(), rel=1e-6)
    assert terms[3] == terms[None]
    assert abs(terms[3].item() - every_pixel.item()) > 1e-3

    trainer = Trainer(tiny_config(tmp_path, losses={"automask_warmup_steps": 1}, max_steps=2), tmp_path / "run")
    seen = []
    automasking = trainer.step_module.automasking
    trainer.step_module.automasking = lambda index: seen.append(index) or automasking(index)
    trainer.train()
    assert seen == [0, 1]  # the trainer hands its optimisation step to the loss
    assert [automasking(index) for index in seen] == [False, True]


def test_dataset_flow_feeds_the_samples_exact_flow_to_the_static_reference(tmp_path):
    """model.flow=dataset: the student's static reference uses each sample's exact flow (synthetic set with
    data.exact_flow); without that flow in the data the run is refused with the fix."""
    model = {"method": "manydepth2", "flow": "dataset", "height": 64, "width": 64, "pretrained": False,
             "num_depth_bins": 8, "flow_start_epoch": 0}
    with pytest.raises(ConfigError, match="data.exact_flow=true"):
        Trainer(tiny_config(tmp_path, model=model), tmp_path / "refused")
    config = tiny_config(tmp_path, model=model, data={"exact_flow": True})
    step = TrainingStep(build_model(config.model), config).eval()
    batch = _batch(config, [1, 2])
    assert batch["flow_gt"][-1].shape == (2, 2, 64, 64)
    with torch.no_grad():
        outputs, _ = step(batch)
        moved = {**batch, "flow_gt": {f: flow + 40.0 for f, flow in batch["flow_gt"].items()}}
        everything_moves, _ = step(moved)
    assert "motion_mask" in outputs["student"]
    assert bool(everything_moves["student"]["motion_mask"].all())
    assert outputs["student"]["motion_mask"].float().mean() < 1.0
