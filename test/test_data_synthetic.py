"""Synthetic dynamic-scene set: exact depth and pose reproduce static pixels, not moving ones; determinism; layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgdepth_core.data import MAX_INSTANCES, DataConfig, build_dataset
from mgdepth_core.data.synthetic import CAR, FACADE_X, PERSON, ROAD_Y, SyntheticDynamicDataset, SyntheticSequence
from mgdepth_core.geometry import backproject, inverse_warp, reproject, sample


def _warp_errors(color_source, color_target, depth, T_source_target, K, inst_source, inst_target, moving):
    """Per-pixel mean absolute colour error of the warped source, and masks of static / moving target pixels."""
    warped, valid = inverse_warp(color_source[None], depth[None], T_source_target[None], K[None])
    error = (warped - color_target[None]).abs().mean(1)[0]
    pixels, _ = reproject(depth[None].clamp(min=1e-3), T_source_target[None], K[None])
    source_ids = sample(inst_source[None].float(), pixels, mode="nearest")[0, 0].long()
    usable = valid[0, 0] & (depth[0] > 0)
    moving_target = moving[inst_target[0]]
    # static: neither this pixel nor the source pixel it samples belongs to a moving object (disocclusions)
    static = usable & ~moving_target & ~moving[source_ids]
    return error, static, usable & moving_target


def _frame_with_most_motion(sequence: SyntheticSequence) -> int:
    counts = [sequence.moving[sequence.frame(t)["instances"]].sum() for t in range(1, sequence.num_frames)]
    return 1 + int(np.argmax(counts))


def test_warp_with_true_depth_and_pose_reproduces_static_pixels_not_moving_ones():
    sequence = SyntheticSequence(seed=1, num_frames=24, height=96, width=320)
    target = _frame_with_most_motion(sequence)
    previous, current = sequence.frame(target - 1), sequence.frame(target)
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1).float() / 255  # noqa: E731
    error, static, moving = _warp_errors(
        to_tensor(previous["image"]), to_tensor(current["image"]), torch.from_numpy(current["depth"])[None],
        torch.from_numpy(sequence.relative_pose(target - 1, target)).float(), torch.from_numpy(sequence.K).float(),
        torch.from_numpy(previous["instances"])[None], torch.from_numpy(current["instances"])[None],
        torch.from_numpy(sequence.moving))
    assert static.sum() > 10_000 and moving.sum() > 300
    identity = (to_tensor(previous["image"]) - to_tensor(current["image"])).abs().mean(0)[static].mean()
    assert error[static].mean() < 0.025  # colour units in [0, 1]
    assert error[static].mean() < 0.4 * identity  # the camera really moved
    assert error[moving].mean() > 3 * error[static].mean()


def test_depth_is_consistent_with_pose_and_road_plane():
    sequence = SyntheticSequence(seed=2, num_frames=10, height=48, width=160)
    frame = sequence.frame(5)
    depth = torch.from_numpy(frame["depth"])[None, None]
    K = torch.from_numpy(sequence.K).float()[None]
    points = backproject(depth, torch.linalg.inv(K))[0].reshape(3, -1).double().numpy()
    T = frame["T_world_camera"]
    world = T[:3, :3] @ points + T[:3, 3:]
    road = (frame["instances"].reshape(-1) == 0) & (frame["depth"].reshape(-1) > 0) & (world[1] > ROAD_Y - 0.05)
    road &= (np.abs(world[0]) < FACADE_X - 0.05) & (world[2] < sequence.street_end - 0.05)  # not a facade's foot
    assert road.sum() > 500  # the lower image is road
    np.testing.assert_allclose(world[1, road], ROAD_Y, atol=1e-3)
    # a static surface point seen in frame 5 is seen at the depth frame 3's map holds, where visible
    T_3_5 = torch.from_numpy(sequence.relative_pose(3, 5)).float()[None]
    pixels, z = reproject(depth.clamp(min=1e-3), T_3_5, K)
    other = torch.from_numpy(sequence.frame(3)["depth"])[None, None]
    looked_up = sample(other, pixels, mode="nearest")[0, 0]
    static = torch.from_numpy(~sequence.moving[frame["instances"]]) & (depth[0, 0] > 0) & (looked_up > 0)
    inside = (pixels[0, 0] > 1) & (pixels[0, 0] < 158) & (pixels[0, 1] > 1) & (pixels[0, 1] < 46)
    relative = ((z[0, 0] - looked_up).abs() / looked_up)[static & inside]
    assert relative.numel() > 3000
    assert relative.median() < 0.01


def test_sequences_are_deterministic_per_seed_and_differ_between_seeds():
    first, again, other = (SyntheticSequence(s, 6, 32, 96) for s in (7, 7, 8))
    a, b, c = first.frame(4), again.frame(4), other.frame(4)
    for key in ("image", "depth", "instances", "T_world_camera"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])
    assert a["image"].shape == (32, 96, 3) and a["image"].dtype == np.uint8
    assert a["depth"].dtype == np.float32 and 0 < a["depth"].max() < 400


def test_scene_has_moving_and_parked_cars_and_people_with_consistent_flags():
    sequence = SyntheticSequence(seed=0, num_frames=40)
    classes = {(o.class_id, o.moving) for o in sequence.objects}
    assert (CAR, True) in classes and (CAR, False) in classes and (PERSON, True) in classes
    ids = [o.instance_id for o in sequence.objects]
    assert len(set(ids)) == len(ids) and max(ids) <= MAX_INSTANCES
    for obj in sequence.objects:
        assert sequence.moving[obj.instance_id] == (np.linalg.norm(obj.velocity) > 0)
        assert sequence.classes[obj.instance_id] == obj.class_id
    assert 0.5 <= sequence.ego_speed <= 1.5
    with pytest.raises(IndexError, match="frame 40"):
        sequence.frame(40)


@pytest.mark.parametrize("num_frames", [40, 400])
def test_moving_objects_stay_inside_the_street_for_the_whole_sequence(num_frames):
    for seed in range(6):
        sequence = SyntheticSequence(seed, num_frames, 16, 32)
        for obj in sequence.objects:
            end = obj.anchor + obj.velocity * (num_frames - 1)
            assert abs(end[0]) < FACADE_X - 0.3  # nobody walks into a facade
            assert end[2] + 3 < sequence.street_end  # no car drives into the building closing the street


def test_dataset_sample_layout_and_flipped_samples_still_warp():
    dataset = SyntheticDynamicDataset([3], num_frames=8, height=64, width=192, frame_ids=[0, -1, 1],
                                      augment=True, flip_probability=1.0, jitter_probability=0.0)
    assert len(dataset) == 6
    sample = dataset[3]
    assert set(sample["color"]) == {0, -1, 1} and sample["color"][0].shape == (3, 64, 192)
    assert sample["depth_gt"].shape == (1, 64, 192) and sample["instances"][-1].shape == (1, 64, 192)
    assert sample["instance_class"].shape == (MAX_INSTANCES + 1,) and sample["instance_moving"].dtype == torch.bool
    torch.testing.assert_close(sample["pose_gt"][0], torch.eye(4))
    sequence = dataset.sequences[0]
    assert sample["K"][0, 2].item() == pytest.approx(191 - sequence.K[0, 2])
    unflipped = sequence.frame(4)
    torch.testing.assert_close(sample["depth_gt"][0], torch.from_numpy(unflipped["depth"]).flip(-1))
    error, static, _ = _warp_errors(sample["color"][-1], sample["color"][0], sample["depth_gt"], sample["pose_gt"][-1],
                                    sample["K"], sample["instances"][-1], sample["instances"][0],
                                    sample["instance_moving"])
    assert static.sum() > 5000 and error[static].mean() < 0.03


def test_from_config_uses_disjoint_seeds_per_split():
    config = DataConfig(dataset="synthetic", height=32, width=64, synthetic_sequences=2, synthetic_frames=5)
    train, val, test = (build_dataset(config, split, training=False) for split in ("train", "val", "test"))
    seeds = [{s.seed for s in d.sequences} for d in (train, val, test)]
    assert seeds[0] == {0, 1} and not (seeds[0] & seeds[1]) and not (seeds[1] & seeds[2])
    assert len(train) == 2 * 3
    with pytest.raises(ValueError, match="split"):
        SyntheticDynamicDataset.from_config(config, "holdout")


def test_sequential_reading_renders_each_frame_once_and_samples_stay_independent():
    cached = SyntheticDynamicDataset([4], num_frames=7, height=24, width=64, frame_ids=[0, -1, 1])
    uncached = SyntheticDynamicDataset([4], num_frames=7, height=24, width=64, frame_ids=[0, -1, 1],
                                       cached_frames=0)
    sequence = cached.sequences[0]
    rendered = []
    render = sequence.frame
    sequence.frame = lambda i: rendered.append(i) or render(i)
    first = cached[0]
    first["depth_gt"].zero_()  # a consumer editing its sample in place must not reach the cache
    first["instances"][1].zero_()
    samples = [cached[i] for i in range(1, len(cached))]
    assert sorted(rendered) == list(range(7))  # 5 samples × 3 frames, yet every frame rendered once
    np.testing.assert_array_equal(cached._frame(0, 1)["depth"], render(1)["depth"])
    for position, item in enumerate(samples, start=1):
        reference = uncached[position]
        torch.testing.assert_close(item["depth_gt"], reference["depth_gt"])
        torch.testing.assert_close(item["instances"][0], reference["instances"][0])
        torch.testing.assert_close(item["color"][-1], reference["color"][-1])
