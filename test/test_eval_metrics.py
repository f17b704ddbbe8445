"""Depth metrics against numbers worked out by hand; protocols, median scaling, static/dynamic split, errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from mgdepth_core.eval.metrics import (
    EvaluationInputError,
    compute_depth_errors,
    dynamic_mask_from_instances,
    evaluate_depth,
    garg_crop_mask,
)


def test_seven_metrics_on_two_pixels():
    # gt (2, 4), pred (1, 5): errors −1 and +1
    errors = dict(zip(("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"),
                      compute_depth_errors(np.array([2.0, 4.0]), np.array([1.0, 5.0]))))
    assert errors["abs_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2)  # 0.375
    assert errors["sq_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2)  # squared errors are 1 as well
    assert errors["rmse"] == pytest.approx(1.0)
    assert errors["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(4 / 5) ** 2) / 2))  # 0.5149
    # ratios max(gt/pred, pred/gt) are 2 and 1.25: none < 1.25; 1.25 < 1.5625; 2 ≥ 1.953
    assert (errors["a1"], errors["a2"], errors["a3"]) == (0.0, 0.5, 0.5)


def test_median_scaling_and_ratio_statistics():
    gt = np.array([[1.0, 2.0], [3.0, 4.0]])
    # image 0 predicted at twice the depth, image 1 exactly: ratios 0.5 and 1.0
    report = evaluate_depth([2 * gt, gt.copy()], [gt, gt], protocol="none")
    assert [r.ratio for r in report.per_image] == pytest.approx([0.5, 1.0])
    assert report.overall.abs_rel == pytest.approx(0.0) and report.overall.a1 == 1.0
    assert report.ratio_median == pytest.approx(0.75)
    assert report.ratio_std == pytest.approx(np.std([0.5 / 0.75, 1.0 / 0.75]))  # 1/3
    plain = evaluate_depth([2 * gt], [gt], protocol="none", median_scaling=False)
    assert plain.overall.abs_rel == pytest.approx(1.0)  # |gt − 2gt| / gt
    assert plain.overall.rmse == pytest.approx(math.sqrt((1 + 4 + 9 + 16) / 4))
    # disparities are inverted before anything else: 1/(2·gt) is the same prediction
    as_disparity = evaluate_depth([1 / (2 * gt)], [gt], protocol="none", median_scaling=False,
                                  predictions_are="disparity")
    assert as_disparity.overall.abs_rel == pytest.approx(1.0)


def test_predictions_are_clamped_and_resized_to_the_ground_truth():
    gt = np.full((4, 6), 40.0)
    report = evaluate_depth([np.full((2, 3), 200.0)], [gt], protocol="none", median_scaling=False)
    assert report.overall.abs_rel == pytest.approx(1.0)  # 200 clamped to 80: |40 − 80| / 40
    small = evaluate_depth([np.full((2, 3), 10.0)], [gt], protocol="none", median_scaling=False)
    assert small.per_image[0].pixels == 24 and small.overall.abs_rel == pytest.approx(0.75)


def test_garg_crop_and_eigen_mask():
    mask = garg_crop_mask(100, 200)
    rows, cols = np.where(mask)
    # rows 40.81 → 40 … 99.19 → 99 (exclusive), cols 7.19 → 7 … 192.81 → 192 (exclusive)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (40, 98, 7, 191)
    gt = np.full((100, 200), 10.0)
    gt[60, 50] = 85.0  # beyond 80 m: masked out under eigen, kept under eigen_benchmark
    prediction = gt.copy()
    prediction[60, 50] = 10.0
    prediction[10, 100] = 30.0  # wrong, but above the crop
    eigen = evaluate_depth([prediction], [gt], protocol="eigen", median_scaling=False)
    assert eigen.overall.abs_rel == 0.0 and eigen.per_image[0].pixels == 59 * 185 - 1
    benchmark = evaluate_depth([prediction], [gt], protocol="eigen_benchmark", median_scaling=False)
    # every pixel counts: one at |30 − 10|/10 = 2, one at |10 − 85|/85 (pred clamped to 80 is not involved)
    assert benchmark.per_image[0].pixels == 20_000
    assert benchmark.overall.abs_rel == pytest.approx((2.0 + 75 / 85) / 20_000)


def test_cityscapes_protocol_keeps_top_rows_then_crops():
    gt = np.zeros((1024, 2048))
    gt[256:768, 192:1856] = 20.0  # the evaluated window of the top-75 % image
    gt[800:, :] = 5.0  # ego car rows: cut off by the 75 % crop
    prediction = np.full((1024 // 8, 2048 // 8), 40.0)
    report = evaluate_depth([prediction], [gt], protocol="cityscapes", median_scaling=False)
    assert report.per_image[0].pixels == 512 * 1664
    assert report.overall.abs_rel == pytest.approx(1.0)


def test_static_and_dynamic_pixels_are_scored_separately():
    gt = np.full((2, 2), 10.0)
    prediction = np.array([[10.0, 10.0], [20.0, 20.0]])
    instances = np.array([[0, 2], [1, 1]])
    moving = np.array([False, True, False])  # id 1 moves, id 2 (e.g. a parked car) does not
    dynamic = dynamic_mask_from_instances(instances, moving)
    np.testing.assert_array_equal(dynamic, [[False, False], [True, True]])
    report = evaluate_depth([prediction, gt.copy()], [gt, gt], [dynamic, np.zeros((2, 2), bool)],
                            protocol="none", median_scaling=False)
    assert report.static.abs_rel == pytest.approx(0.0) and report.static.images == 2
    assert report.dynamic.abs_rel == pytest.approx(1.0) and report.dynamic.images == 1
    assert report.overall.abs_rel == pytest.approx((0.5 + 0.0) / 2)
    assert report.per_image[0].dynamic_pixels == 2 and report.per_image[1].dynamic is None
    assert "dynamic" in report.table()


def test_per_image_csv(tmp_path):
    gt = np.full((2, 2), 10.0)
    report = evaluate_depth([gt * 2, gt], [gt, gt], protocol="none", median_scaling=False)
    report.write_csv(tmp_path / "out.csv", labels=["a 1 l", "b 2 l"])
    rows = list(csv.DictReader((tmp_path / "out.csv").read_text().splitlines()))
    assert [r["label"] for r in rows] == ["a 1 l", "b 2 l"]
    assert float(rows[0]["abs_rel"]) == pytest.approx(1.0) and float(rows[1]["abs_rel"]) == 0.0


def test_bad_input_is_rejected_before_any_metric():
    gt = np.full((2, 2), 10.0)
    with pytest.raises(EvaluationInputError, match="empty"):
        evaluate_depth([], [])
    with pytest.raises(EvaluationInputError, match="2 predictions but 1 ground-truth"):
        evaluate_depth([gt, gt], [gt])
    broken = gt.copy()
    broken[0, 1] = np.nan
    with pytest.raises(EvaluationInputError, match="prediction 1 holds 1 NaN"):
        evaluate_depth([gt, broken], [gt, gt])
    with pytest.raises(EvaluationInputError, match="zero disparities"):
        evaluate_depth([np.zeros((2, 2))], [gt], predictions_are="disparity")
    with pytest.raises(EvaluationInputError, match="no valid pixel"):
        evaluate_depth([gt], [np.zeros((2, 2))], protocol="none")
    with pytest.raises(EvaluationInputError, match="1 dynamic masks for 2 images"):
        evaluate_depth([gt, gt], [gt, gt], [np.zeros((2, 2), bool)])
