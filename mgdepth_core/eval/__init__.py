"""Depth evaluation: metrics and protocols (:mod:`.metrics`), LiDAR ground truth export (:mod:`.export_gt`) and
running predictions or a model over a split (:mod:`.evaluate`)."""

from mgdepth_core.eval.metrics import (
    METRIC_NAMES,
    EvalReport,
    EvaluationInputError,
    MetricSet,
    compute_depth_errors,
    dynamic_mask_from_instances,
    evaluate_depth,
)

__all__ = ["METRIC_NAMES", "EvalReport", "EvaluationInputError", "MetricSet", "compute_depth_errors",
           "dynamic_mask_from_instances", "evaluate_depth"]
