"""What ``make demo`` writes: depth and dynamic-mask scores against the synthetic ground truth, the PNG strips and
the MCAP of every topic."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.eval.metrics import dynamic_mask_from_instances, evaluate_depth


@dataclass
class MethodRun:
    """One method's pass over the demo sequence through the node: per frame, what came back."""

    method: str
    depths: list[np.ndarray] = field(default_factory=list)  # H×W float32 metres (network resolution)
    masks: list[np.ndarray | None] = field(default_factory=list)  # H×W uint16 published instance ids
    lookups: list[np.ndarray | None] = field(default_factory=list)  # H×W×3 uint8 RGB on static_reference
    process_ms: list[float] = field(default_factory=list)  # the estimator's time per frame in the node


def depth_scores(depths: list[np.ndarray], frames: list[dict]) -> dict:
    """abs_rel and a1 (per-image median scaling, 0 < truth < 80 m) over all, static and moving-object pixels."""
    truth = [frame["depth"] for frame in frames]
    moving = [dynamic_mask_from_instances(frame["instances"], frame["moving"]) for frame in frames]
    report = evaluate_depth([np.nan_to_num(d, nan=0.0) for d in depths], truth, moving, protocol="none",
                            max_depth=80.0)
    scores = {}
    for subset in ("overall", "static", "dynamic"):
        metrics = getattr(report, subset)
        name = "moving" if subset == "dynamic" else subset
        scores[f"{name}_abs_rel"] = None if metrics is None else round(metrics.abs_rel, 4)
        scores[f"{name}_a1"] = None if metrics is None else round(metrics.a1, 4)
    return scores


def mask_scores(masks: list[np.ndarray | None], frames: list[dict],
                min_area_fraction: float = DynamicObjectsConfig().min_area_fraction) -> dict:
    """The dynamic mask against the ground truth from the second frame on (the first has nothing to compare
    with): per object-frame (an object counts as flagged when any of its pixels carries a published id) and per
    pixel. precision = moving among flagged, recall = flagged among moving; None where undefined. The ``eligible_``
    counts keep only objects covering at least ``min_area_fraction`` of the frame: the ones Dyna-DM judges (smaller
    objects are never flagged, by design)."""
    counts = {f"{prefix}{kind}{suffix}": 0 for prefix in ("", "eligible_") for kind in ("moving", "static")
              for suffix in ("", "_flagged")}
    pixels = {"true_positive": 0, "flagged": 0, "moving": 0}
    for mask, frame in list(zip(masks, frames))[1:]:
        if mask is None:
            continue
        instances = cv2.resize(frame["instances"].astype(np.int32), (mask.shape[1], mask.shape[0]),
                               interpolation=cv2.INTER_NEAREST)
        moving_ids = np.asarray(frame["moving"], dtype=bool)
        flagged = mask > 0
        for instance in (int(i) for i in np.unique(instances) if i):
            pixels_of_object = instances == instance
            kind = "moving" if moving_ids[instance] else "static"
            hit = bool(flagged[pixels_of_object].any())
            prefixes = ("", "eligible_") if pixels_of_object.mean() >= min_area_fraction else ("",)
            for prefix in prefixes:
                counts[f"{prefix}{kind}"] += 1
                counts[f"{prefix}{kind}_flagged"] += hit
        truth = moving_ids[instances]
        pixels["true_positive"] += int((flagged & truth).sum())
        pixels["flagged"] += int(flagged.sum())
        pixels["moving"] += int(truth.sum())

    def ratio(numerator: int, denominator: int) -> float | None:
        return round(numerator / denominator, 4) if denominator else None

    scores = dict(counts)
    for prefix in ("", "eligible_"):
        moving_flagged = counts[f"{prefix}moving_flagged"]
        scores[f"{prefix}object_precision"] = ratio(moving_flagged, moving_flagged + counts[f"{prefix}static_flagged"])
        scores[f"{prefix}object_recall"] = ratio(moving_flagged, counts[f"{prefix}moving"])
    scores["pixel_precision"] = ratio(pixels["true_positive"], pixels["flagged"])
    scores["pixel_recall"] = ratio(pixels["true_positive"], pixels["moving"])
    scores["min_area_fraction"] = min_area_fraction
    return scores


def mask_to_bgr(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Instance ids → distinct colours (black = static); grey with a note where no mask was published."""
    if mask is None:
        return _note(shape, "no dynamic mask")
    palette = np.random.default_rng(0).integers(64, 256, size=(65536, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[mask.astype(np.int64)]


def _note(shape: tuple[int, int], text: str) -> np.ndarray:
    image = np.full((*shape, 3), 64, np.uint8)
    cv2.putText(image, text, (5, shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255))
    return image


def pick_strip_frames(frames: list[dict], count: int) -> list[int]:
    """Up to ``count`` frame indices (not the first: it has no previous frame) with the most moving-object pixels,
    in order."""
    share = [(float(dynamic_mask_from_instances(f["instances"], f["moving"]).mean()), i)
             for i, f in enumerate(frames) if i]
    return sorted(i for _, i in sorted(share, reverse=True)[:count])


def write_strips(path: Path, columns: list[tuple[str, list[np.ndarray]]]) -> None:
    """One PNG: a title row, then one row per frame of the ``(title, BGR images)`` columns (all one size)."""
    rows = [np.concatenate([images[r] for _, images in columns], axis=1) for r in range(len(columns[0][1]))]
    width = columns[0][1][0].shape[1]
    header = np.zeros((18, rows[0].shape[1], 3), np.uint8)
    for column, (title, _) in enumerate(columns):
        cv2.putText(header, title, (column * width + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255))
    temporary = path.with_suffix(".tmp.png")
    cv2.imwrite(str(temporary), np.concatenate([header, *rows], axis=0))
    os.replace(temporary, path)


def write_mcap(path: Path, messages: list[tuple[str, object, int]]) -> None:
    """Write (topic, rclpy message, stamp ns) to a rosbag2 MCAP folder with rosbags (atomic: temp + rename)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    staging = path.with_name(path.name + ".partial")
    temporary = staging / path.name  # rosbags names the .mcap file after the bag folder
    for stale in (staging, path):
        if stale.exists():
            shutil.rmtree(stale)
    staging.mkdir(parents=True)
    with Writer(temporary, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, msg, stamp in messages:
            msgtype = type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
            if msgtype not in typestore.fielddefs:
                continue  # mgdepth_msgs types: not in the Jazzy typestore (MarkerArray carries the same objects)
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
            writer.write(connections[topic], stamp, serialize_message(msg))
    os.replace(temporary, path)
    staging.rmdir()
