"""Dyna-DM at inference: the truly dynamic objects of a stream, frame after frame (instances detected or given,
ids tracked from the previous frame, the theta filter of :mod:`mgdepth_core.dynamic` with the predicted depth and
ego-motion). Used by :class:`~mgdepth_core.inference.DepthEstimator`, the ROS node and the bag tools."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mgdepth_core import geometry
from mgdepth_core.dynamic import (
    BEYOND_LIMIT,
    DYNAMIC,
    STATIC,
    STATUS_NAMES,
    DynamicObjectsConfig,
    FrameInstances,
    match_instances,
    object_reports,
    resize_instances,
    theta_filter,
)
from mgdepth_core.models.instance_segmentation import InstanceSegmenter, class_name

VOTING_STATUSES = {STATUS_NAMES[code] for code in (STATIC, DYNAMIC, BEYOND_LIMIT)}  # objects the filter compared


@dataclass
class DynamicObject:
    """One truly dynamic object in a frame (Dyna-DM theta filter)."""

    instance_id: int  # value of this object's pixels in DepthResult.dynamic_mask
    class_id: int  # COCO category id (torchvision numbering: 1 person, 3 car, ...)
    class_name: str
    score: float  # detection score, 0..1
    dice: float  # Sørensen–Dice of the ego-motion-warped mask against the observed mask (< theta = moving)
    box_xyxy: tuple[float, float, float, float]  # pixels of the depth image
    pixel_count: int


class DynamicObjectTracker:
    """Dyna-DM at inference, one stream: instances of each frame (segmenter or given), ids tracked from the previous
    frame, theta filter with the predicted depth and ego-motion (previous frame warped to the current one).

    :meth:`update` returns (H×W uint16 map of the truly dynamic objects' track ids, 0 elsewhere; list of
    :class:`DynamicObject`). Track ids persist across frames (1..65535, then wrap). With ``vote_frames`` N > 1
    a track is dynamic when the median similarity of its last N compared frames is below θ (a temporal vote
    against the noise of predicted depth and pose; the N most clearly moving are kept, up to ``max_objects``).
    Without a previous frame or pose (first frame, gap) nothing is flagged.
    """

    def __init__(self, config: DynamicObjectsConfig, segmenter=None):
        if config.vote_frames < 1:
            raise ValueError(f"vote_frames must be at least 1, got {config.vote_frames}")
        self.config = config
        self.segmenter = segmenter
        self.previous: dict | None = None
        self.similarities: dict[int, list[float]] = {}  # track id → similarities of its last vote_frames frames
        self.next_track_id = 1

    def reset(self) -> None:
        """Forget the previous frame and the votes (a gap in the stream)."""
        self.previous = None
        self.similarities = {}

    def _voted_dynamic(self, reports: list, tracks: np.ndarray) -> set[int]:
        """Instance ids of the current frame that the vote calls truly dynamic (reports of compared objects)."""
        if self.config.vote_frames == 1:
            return {report.instance_id for report in reports if report.status == STATUS_NAMES[DYNAMIC]}
        compared = {report.instance_id: (int(tracks[report.instance_id]), report.similarity) for report in reports
                    if report.status in VOTING_STATUSES}
        self.similarities = {track: (self.similarities.get(track, []) + [similarity])[-self.config.vote_frames:]
                             for track, similarity in compared.values()}
        medians = sorted((float(np.median(self.similarities[track])), instance)
                         for instance, (track, _) in compared.items())
        moving = [instance for median, instance in medians if median < self.config.theta]
        return set(moving[:self.config.max_objects])

    def _detect(self, image: torch.Tensor) -> FrameInstances:
        if self.segmenter is None:
            self.segmenter = InstanceSegmenter.from_config(self.config).to(image.device)
        return self.segmenter(image)[0]

    def _new_track(self) -> int:
        track = self.next_track_id
        self.next_track_id = self.next_track_id % 65535 + 1
        return track

    def update(self, image: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, T_prev_current: torch.Tensor | None,
               instances: FrameInstances | None = None) -> tuple[np.ndarray, list]:
        """``image``: 1×3×h×w in [0, 1] (any size); ``depth``: 1×1×H×W metres; ``K``: 1×3×3 for the depth;
        ``T_prev_current``: 1×4×4 (current-camera points into the previous camera) or None."""
        detections = instances if instances is not None else self._detect(image)
        size = tuple(depth.shape[-2:])
        local = resize_instances(torch.from_numpy(np.asarray(detections.ids).astype(np.int64))[None, None], size)
        local = local.to(depth.device)
        count = len(detections.classes) - 1
        local_np = local[0, 0].cpu().numpy()
        tracks = np.zeros(count + 1, dtype=np.int64)
        previous = self.previous
        matches: dict[int, int] = {}
        if previous is not None:
            matches = match_instances(previous["local"], previous["classes"], local_np, detections.classes,
                                      self.config.association_min_iou)
        for k in range(1, count + 1):
            tracks[k] = previous["tracks"][matches[k]] if k in matches else self._new_track()
        dynamic_map = np.zeros(size, dtype=np.uint16)
        objects = []
        if previous is not None and T_prev_current is not None and count > 0:
            to_current = np.zeros(int(previous["local"].max(initial=0)) + 1, dtype=np.int64)
            for k, j in matches.items():
                to_current[j] = k
            source_ids = torch.from_numpy(to_current[previous["local"]])[None, None].to(depth.device)
            result = theta_filter(local, source_ids, previous["depth"], geometry.invert_pose(T_prev_current.float()),
                                  K.float(), local, self.config, num_ids=count, source_image=previous["image"],
                                  compare_image=image, compare_depth=depth)
            reports = object_reports(local_np, result, detections.classes, detections.scores)
            voted = self._voted_dynamic(reports, tracks)
            for report in reports:
                if report.instance_id not in voted:
                    continue
                track = int(tracks[report.instance_id])
                dynamic_map[local_np == report.instance_id] = track
                objects.append(DynamicObject(
                    instance_id=track, class_id=report.class_id, class_name=class_name(report.class_id),
                    score=report.score, dice=report.similarity, box_xyxy=report.box_xyxy,
                    pixel_count=report.pixel_count))
        self.previous = {"local": local_np, "classes": np.asarray(detections.classes), "tracks": tracks,
                         "depth": depth.detach(), "image": image.detach()}
        return dynamic_map, objects
