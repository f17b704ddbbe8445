"""Dyna-DM at inference: tracked ids across frames and the theta filter with (here exact) depth and ego-motion."""

from __future__ import annotations

import numpy as np
import torch
from dynamic_scenes import Box, intrinsics, pose, render

from mgdepth_core.dynamic import DynamicObjectsConfig, FrameInstances
from mgdepth_core.dynamic_tracking import DynamicObjectTracker

HEIGHT, WIDTH, SPEED = 96, 320, 1.0
BOXES = [Box(x=-3.0, bottom=1.5, z=12.0, width=2.0, height=1.6),  # parked
         Box(x=3.0, bottom=1.5, z=15.0, width=2.0, height=1.6, velocity=(-0.8, 0.0, 0.0), class_id=1)]
# the paper's filter: the box scenes have no ground to stand on and black images
PAPER = {"object_depth": "own", "translation_scale": "pose", "both_directions": False}


def frame(index: int, swap: bool) -> tuple[torch.Tensor, FrameInstances]:
    depth, ids = render(BOXES, index, SPEED, HEIGHT, WIDTH)
    local = ids.copy()
    if swap:  # the detector numbers the objects differently in this frame
        local[ids == 1], local[ids == 2] = 2, 1
    classes = np.array([0, 1, 3] if swap else [0, 3, 1])
    return torch.from_numpy(depth)[None, None], FrameInstances(local, classes, np.array([0, 0.9, 0.8]))


class StubSegmenter:
    def __init__(self, frames):
        self.frames = list(frames)

    def __call__(self, image):
        return [self.frames.pop(0)]


def test_tracker_flags_the_moving_object_with_a_persistent_id():
    K = torch.from_numpy(intrinsics(HEIGHT, WIDTH))[None]
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    (depth_a, det_a), (depth_b, det_b), (depth_c, det_c) = frame(-1, False), frame(0, True), frame(1, False)
    tracker = DynamicObjectTracker(DynamicObjectsConfig(mode="dyna-dm", extra_distance=False, **PAPER),
                                   segmenter=StubSegmenter([det_a, det_b, det_c]))
    mask, objects = tracker.update(image, depth_a, K, None)
    assert objects == [] and not mask.any()  # no previous frame yet
    T_prev_current = torch.from_numpy(pose(-1, 0, SPEED))[None]
    mask, objects = tracker.update(image, depth_b, K, T_prev_current)
    assert len(objects) == 1
    moving = objects[0]
    assert moving.instance_id == 2  # the track id the moving box got in the first frame
    assert moving.class_name == "person" and moving.score == np.float32(0.9) and moving.dice < 0.9
    assert mask.dtype == np.uint16 and set(np.unique(mask)) == {0, 2}
    assert (mask == 2).sum() == moving.pixel_count == (det_b.ids == 1).sum()
    mask, objects = tracker.update(image, depth_c, K, torch.from_numpy(pose(0, 1, SPEED))[None])
    assert [o.instance_id for o in objects] == [2]
    tracker.reset()
    mask, objects = tracker.update(image, depth_c, K, torch.from_numpy(pose(0, 1, SPEED))[None],
                                   instances=det_c)
    assert objects == [] and not mask.any()  # after a gap nothing is compared


def test_temporal_vote_keeps_a_parked_car_static_through_one_frame_of_bad_depth():
    K = torch.from_numpy(intrinsics(HEIGHT, WIDTH))[None]
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    frames = {index: frame(index, False) for index in (-1, 0, 1, 2)}
    flagged = {}
    for vote_frames in (1, 3):
        tracker = DynamicObjectTracker(DynamicObjectsConfig(mode="dyna-dm", extra_distance=False,
                                                            vote_frames=vote_frames, **PAPER))
        per_frame = []
        for index in (-1, 0, 1, 2):
            depth, detections = frames[index]
            if index == 1:  # the depth network halves the parked car's distance in this one frame
                depth = torch.where(torch.from_numpy(detections.ids == 1)[None, None], depth * 0.5, depth)
            T = None if index == -1 else torch.from_numpy(pose(index - 1, index, SPEED))[None]
            _, objects = tracker.update(image, depth, K, T, instances=detections)
            per_frame.append(sorted(o.class_name for o in objects))
        flagged[vote_frames] = per_frame
    assert flagged[1] == [[], ["person"], ["person"], ["car", "person"]]  # frame 2 warps frame 1's bad depth
    assert flagged[3] == [[], ["person"], ["person"], ["person"]]


def test_tracker_handles_empty_frames_and_other_mask_sizes():
    K = torch.from_numpy(intrinsics(HEIGHT, WIDTH))[None]
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    depth_a, det_a = frame(-1, False)
    depth_b, det_b = frame(0, False)
    big = FrameInstances(np.kron(det_b.ids, np.ones((2, 2), dtype=det_b.ids.dtype)), det_b.classes, det_b.scores)
    empty = FrameInstances(np.zeros((HEIGHT, WIDTH), dtype=np.uint8), np.zeros(1, int), np.zeros(1))
    tracker = DynamicObjectTracker(DynamicObjectsConfig(mode="dyna-dm", **PAPER))
    T = torch.from_numpy(pose(-1, 0, SPEED))[None]
    assert tracker.update(image, depth_a, K, None, instances=empty)[1] == []
    assert tracker.update(image, depth_b, K, T, instances=empty)[1] == []
    tracker.reset()
    tracker.update(image, depth_a, K, None, instances=det_a)
    mask, objects = tracker.update(image, depth_b, K, T, instances=big)  # masks at twice the depth's size
    assert mask.shape == (HEIGHT, WIDTH) and [o.class_name for o in objects] == ["person"]


def test_depth_estimator_fills_dynamic_mask_and_objects():
    from mgdepth_core.data.synthetic import SyntheticSequence
    from mgdepth_core.inference import DepthEstimator, EstimatorConfig
    from mgdepth_core.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=64, width=192, pretrained=False, num_depth_bins=8))
    sequence = SyntheticSequence(seed=4, num_frames=3, height=128, width=384)  # masks at twice the depth size
    config = EstimatorConfig(device="cpu", min_translation=0.0, dynamic_objects=DynamicObjectsConfig(
        mode="dyna-dm", theta=1.01, min_area_fraction=0.001))  # θ > 1: every matched object counts as dynamic
    estimator = DepthEstimator(model.eval(), config)
    results = []
    for index in range(3):
        frame = sequence.frame(index)
        ids = frame["instances"]
        detections = FrameInstances(ids, frame["classes"], (frame["classes"] > 0).astype(np.float32))
        results.append(estimator.process(frame["image"], sequence.K, stamp=0.1 * index, instances=detections))
    assert results[0].objects == [] and not results[0].dynamic_mask.any()
    last = results[-1]
    assert last.dynamic_mask.shape == last.depth.shape and last.dynamic_mask.dtype == np.uint16
    assert last.objects and "dynamic_objects" in last.timings_ms
    for obj in last.objects:
        assert (last.dynamic_mask == obj.instance_id).sum() == obj.pixel_count
        assert obj.class_name in ("car", "person") and 0 <= obj.dice < 1.01
    estimator.reset()
    assert estimator.process(sequence.frame(2)["image"], sequence.K, instances=detections).objects == []
