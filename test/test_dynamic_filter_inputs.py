"""The theta filter's remedies for predicted geometry (``object_depth``, ``translation_scale``, ``both_directions``)
on rendered synthetic frames with a known error put into the exact depth or pose."""

from __future__ import annotations

import pytest
import torch

from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.dynamic import (
    DYNAMIC,
    STATIC,
    DynamicObjectsConfig,
    ground_contact_depth,
    photometric_translation_scale,
    theta_filter,
)

SEQUENCE = SyntheticSequence(seed=2001, num_frames=8, height=64, width=192)
PARKED, MOVING = (7, 8), 3  # parked cars and a moving one (in view from frame 3) of this sequence


def triplet(t: int) -> dict:
    """Frames t−1, t, t+1: ids, images (1×3×H×W in [0, 1]), exact depths (sky at 1000 m), T_{t+1,t−1}, K."""
    frames = {f: SEQUENCE.frame(t + f) for f in (-1, 0, 1)}
    depth = {f: torch.from_numpy(frames[f]["depth"])[None, None] for f in (-1, 1)}
    return {"ids": {f: torch.from_numpy(frames[f]["instances"])[None, None] for f in frames},
            "image": {f: torch.from_numpy(frames[f]["image"]).permute(2, 0, 1)[None].float() / 255 for f in (-1, 1)},
            "depth": {f: torch.where(d > 0, d, torch.full_like(d, 1000.0)) for f, d in depth.items()},
            "T": torch.from_numpy(SEQUENCE.relative_pose(t + 1, t - 1)).float()[None],
            "K": torch.from_numpy(SEQUENCE.K).float()[None]}


def statuses(scene: dict, depth: torch.Tensor, T: torch.Tensor, **options) -> dict[int, int]:
    result = theta_filter(scene["ids"][0], scene["ids"][-1], depth, T, scene["K"], scene["ids"][1],
                          DynamicObjectsConfig(**options), source_image=scene["image"][-1],
                          compare_image=scene["image"][1], compare_depth=scene["depth"][1])
    return {i: int(result.status[0, i]) for i in range(1, result.status.shape[1])
            if int(result.status[0, i]) in (STATIC, DYNAMIC)}


def test_ground_contact_depth_takes_the_background_just_below_each_object():
    depth = torch.arange(1.0, 7.0).view(6, 1).expand(6, 5).clone()[None, None]  # row r at depth r + 1
    ids = torch.zeros(1, 1, 6, 5, dtype=torch.long)
    ids[0, 0, 1:3, 1:4] = 1  # above background: its lowest row is 2, the row below it at depth 4
    ids[0, 0, 3, 3] = 2  # object 2 hides the background below object 1's last column
    ids[0, 0, 4:6, 0] = 3  # touches the image's bottom edge: nothing below, keeps its own depth
    out = ground_contact_depth(depth, ids)
    assert torch.equal(out[ids == 1], torch.full((6,), 4.0))  # median of columns 1, 2 (column 3 has object 2)
    assert out[0, 0, 3, 3] == 5.0
    assert torch.equal(out[ids == 3], depth[ids == 3])
    assert torch.equal(out[ids == 0], depth[ids == 0])


def test_ground_contact_keeps_a_parked_car_static_when_the_depth_on_it_is_wrong():
    for t in (1, 2, 3):
        scene = triplet(t)
        parked = torch.isin(scene["ids"][-1], torch.tensor(PARKED))
        wrong = torch.where(parked, scene["depth"][-1] * 0.6, scene["depth"][-1])  # 40 % too near, road exact
        own = statuses(scene, wrong, scene["T"], object_depth="own", translation_scale="pose", both_directions=False)
        contact = statuses(scene, wrong, scene["T"], object_depth="ground_contact", translation_scale="pose",
                           both_directions=False)
        assert [own[i] for i in PARKED] == [DYNAMIC, DYNAMIC], t
        assert [contact[i] for i in PARKED] == [STATIC, STATIC], t


def test_photometric_scale_undoes_a_known_translation_error():
    scene = triplet(1)
    short = scene["T"].clone()
    short[:, :3, 3] *= 0.7  # the pose net's translation 30 % short of the depth's scale
    k = photometric_translation_scale(scene["image"][-1], scene["image"][1], scene["depth"][1], scene["ids"][-1],
                                      scene["ids"][1], short, scene["K"])
    assert float(k) == pytest.approx(1 / 0.7, rel=0.04)
    paper = {"object_depth": "own", "both_directions": False}
    assert statuses(scene, scene["depth"][-1], short, translation_scale="pose", **paper)[7] == DYNAMIC
    assert statuses(scene, scene["depth"][-1], short, translation_scale="photometric", **paper) == {
        7: STATIC, 8: STATIC}


def test_both_directions_keep_a_parked_car_static_when_one_frame_has_bad_depth_on_it():
    for t in (1, 2, 3):
        scene = triplet(t)
        parked = torch.isin(scene["ids"][-1], torch.tensor(PARKED))
        wrong = torch.where(parked, scene["depth"][-1] * 0.6, scene["depth"][-1])  # only frame t−1 is wrong
        one_way = statuses(scene, wrong, scene["T"], object_depth="own", translation_scale="pose",
                           both_directions=False)
        both = statuses(scene, wrong, scene["T"], object_depth="own", translation_scale="pose", both_directions=True)
        assert [one_way[i] for i in PARKED] == [DYNAMIC, DYNAMIC], t
        assert [both[i] for i in PARKED] == [STATIC, STATIC], t


def test_the_remedies_leave_a_moving_car_dynamic():
    for t in (4, 5, 6):
        scene = triplet(t)
        result = statuses(scene, scene["depth"][-1], scene["T"])  # the defaults: every remedy on
        assert result[MOVING] == DYNAMIC, t


def test_photometric_scale_needs_the_images():
    scene = triplet(1)
    with pytest.raises(ValueError, match="photometric"):
        theta_filter(scene["ids"][0], scene["ids"][-1], scene["depth"][-1], scene["T"], scene["K"], scene["ids"][1],
                     DynamicObjectsConfig())
