"""Mask R-CNN instance source: post-processing contract on known detections, and weight loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.models import instance_segmentation as seg

CLASSES = DynamicObjectsConfig().classes


def box_mask(height: int, width: int, x0: int, y0: int, x1: int, y1: int, value: float = 0.9) -> torch.Tensor:
    mask = torch.zeros(1, height, width)
    mask[0, y0:y1, x0:x1] = value
    return mask


def detections(specs, height=20, width=30):
    """specs: (label, score, (x0, y0, x1, y1), soft value)."""
    boxes = torch.tensor([s[2] for s in specs], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([s[0] for s in specs], dtype=torch.int64)
    scores = torch.tensor([s[1] for s in specs], dtype=torch.float32)
    masks = torch.stack([box_mask(height, width, *s[2], s[3]) for s in specs]) if specs else torch.zeros(0, 1, height,
                                                                                                           width)
    return boxes, labels, scores, masks


def test_output_contract_ids_by_score_and_overlap_goes_to_the_best():
    boxes, labels, scores, masks = detections([
        (3, 0.7, (0, 0, 10, 10), 0.9),  # car
        (1, 0.95, (5, 5, 15, 15), 0.9),  # person, best score, overlaps the car
        (18, 0.99, (20, 0, 30, 10), 0.9),  # dog: not potentially dynamic
        (8, 0.4, (20, 10, 30, 20), 0.9),  # truck below the score threshold
        (6, 0.8, (0, 15, 5, 20), 0.3),  # bus whose soft mask is below the mask threshold everywhere
    ])
    out = seg.detections_to_instances(boxes, labels, scores, masks, CLASSES, 0.5, 0.5, 20)
    assert out.ids.shape == (20, 30) and out.ids.dtype == np.uint8
    assert out.classes.tolist() == [0, 1, 3]
    assert out.scores.tolist() == pytest.approx([0, 0.95, 0.7])
    assert out.boxes[1].tolist() == [5, 5, 15, 15]
    assert (out.ids == 1).sum() == 100
    assert (out.ids == 2).sum() == 100 - 25  # the overlap belongs to the person
    assert set(np.unique(out.ids)) == {0, 1, 2}


def test_top_k_limit_and_resize_to_output_size():
    specs = [(3, 0.5 + 0.02 * k, (k, 0, k + 1, 4), 0.9) for k in range(25)]
    boxes, labels, scores, masks = detections(specs)
    out = seg.detections_to_instances(boxes, labels, scores, masks, CLASSES, 0.5, 0.5, 20)
    assert len(out.classes) == 21
    assert out.scores[1] == pytest.approx(0.98) and out.scores[20] == pytest.approx(0.6)
    assert (out.ids[:, :5] == 0).all()  # the five lowest scores (columns 0..4) were dropped
    big = seg.detections_to_instances(boxes, labels, scores, masks, CLASSES, 0.5, 0.5, 3, output_size=(40, 60))
    assert big.ids.shape == (40, 60)
    assert (big.ids == 1).sum() == 2 * 8  # 1×4 px column → 2×8 px
    assert big.boxes[1].tolist() == [48, 0, 50, 8]


def test_no_detections_and_uint16_for_many():
    boxes, labels, scores, masks = detections([])
    out = seg.detections_to_instances(boxes, labels, scores, masks, CLASSES, 0.5, 0.5, 20, output_size=(8, 9))
    assert out.ids.shape == (8, 9) and not out.ids.any() and out.classes.tolist() == [0]
    specs = [(1, 0.9, (k % 30, k // 30, k % 30 + 1, k // 30 + 1), 0.9) for k in range(300)]
    out = seg.detections_to_instances(*detections(specs), CLASSES, 0.5, 0.5, 300)
    assert out.ids.dtype == np.uint16 and out.ids.max() == 300


@pytest.mark.slow
def test_state_dict_of_the_right_architecture_loads_and_a_wrong_one_errors(tmp_path):
    config = DynamicObjectsConfig(segmenter="maskrcnn_resnet50_fpn", segmenter_min_size=64, segmenter_max_size=96)
    torch.manual_seed(0)
    source = seg.build_segmenter_network(config)
    path = tmp_path / "maskrcnn.pth"
    torch.save(source.state_dict(), path)
    config.segmenter_weights = str(path)
    loaded = seg.InstanceSegmenter.from_config(config)
    assert torch.equal(loaded.network.state_dict()["roi_heads.mask_predictor.mask_fcn_logits.weight"],
                       source.state_dict()["roi_heads.mask_predictor.mask_fcn_logits.weight"])
    out = loaded(torch.rand(2, 3, 48, 64))
    assert len(out) == 2 and out[0].ids.shape == (48, 64)
    v2 = DynamicObjectsConfig(segmenter_weights=str(path), segmenter_min_size=64, segmenter_max_size=96)
    with pytest.raises(ValueError, match="is not a maskrcnn_resnet50_fpn_v2 COCO state dict"):
        seg.InstanceSegmenter.from_config(v2)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"maskrcnn_resnet50_fpn_v2_coco-73cbd019\.pth"):
        seg.InstanceSegmenter.from_config(DynamicObjectsConfig())
    assert seg.class_name(3) == "car" and seg.class_name(8) == "truck"
