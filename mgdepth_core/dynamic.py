"""Dyna-DM dynamic objects: which potentially dynamic objects are *truly* dynamic (the theta filter).

Instances come as per-pixel id maps (B×1×H×W int64, 0 = background, ids consistent across the frames of a
sample, see :mod:`mgdepth_core.data`). The filter, for each object present in the target frame t:

1. drops it when it covers less than ``min_area_fraction`` of frame t (status ``SMALL``);
2. forward-warps (z-buffered splat, :func:`mgdepth_core.geometry.forward_splat`) its mask from a source frame
   with the source depth and the *background* ego-motion, i.e. as if the object were static. Options make this
   hold with predicted geometry: ``object_depth: ground_contact`` gives each object the depth of the background
   just below it (:func:`ground_contact_depth`) and ``translation_scale: photometric`` rescales the translation to
   the depth's units on the background (:func:`photometric_translation_scale`); ``both_directions`` also warps
   the comparison frame's mask back with its own depth and keeps the higher similarity;
3. compares the warped mask with the observed mask of the same id in the comparison frame by Sørensen–Dice
   2|A∩B|/(|A|+|B|) (or IoU), inside the part of the comparison frame that the source frame sees (pixels no
   splatted point reached are left out, so objects entering the view are not mistaken for moving ones; the
   release compares whole masks). With ``extra_distance`` the source is t−1 and the comparison frame t+1 (two
   frames of motion, the exact composed pose, not Dyna-DM's doubled 6-vector); otherwise t−1 is warped to t;
4. similarity < θ → ``DYNAMIC`` (moved unlike the background), ≥ θ → ``STATIC``;
5. an object without a counterpart (absent from the source or the comparison frame, or warped out of view) is
   ``UNMATCHED``: not dynamic, gets no object motion, but stays masked out of the ego-pose input like every
   potentially dynamic object (Dyna-DM's release would compare it against the count channel and call it dynamic,
   pitfall 1);
6. candidates are ranked (lowest similarity first by default: the most clearly moving objects) and at most
   ``max_objects`` are kept; the rest are ``BEYOND_LIMIT``.

Instance maps of another size than the depth are resized with nearest-neighbour sampling (ids stay ids).
Nothing here produces NaN: empty masks give similarity 0 and status codes say why.

:func:`associate_instances` gives per-frame detections consistent ids across frames (greedy mutual-best matching
on mask IoU within the same class), once over the whole triplet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mgdepth_core import geometry, losses
from mgdepth_core.config import option

POTENTIALLY_DYNAMIC_COCO_CLASSES = [1, 2, 3, 4, 6, 7, 8]  # person, bicycle, car, motorcycle, bus, train, truck

# Status of one instance id in a ThetaFilterResult.status tensor.
ABSENT = 0  # id not present in the target frame t
STATIC = 1  # warped mask agrees with the observation (similarity ≥ θ)
DYNAMIC = 2  # truly dynamic: similarity < θ and within the max_objects kept
SMALL = 3  # smaller than min_area_fraction in frame t
UNMATCHED = 4  # no counterpart in the source or comparison frame (or warped out of view)
BEYOND_LIMIT = 5  # dynamic but beyond max_objects
TRANSLATION_SCALES = torch.exp(torch.linspace(-0.7, 0.7, 41))  # photometric search: ×0.50 … ×2.01, 3.6 % steps
SCALE_SEARCH_WIDTH = 320  # pixels: wider images are searched at this width (the factor is one number per frame)
STATUS_NAMES = {ABSENT: "absent", STATIC: "static", DYNAMIC: "dynamic", SMALL: "small", UNMATCHED: "unmatched",
                BEYOND_LIMIT: "beyond_limit"}


@dataclass
class DynamicObjectsConfig:
    """Dyna-DM: instance source, theta filter and the extra loss terms."""

    mode: Literal["none", "dyna-dm"] = option("none", "none, or dyna-dm (object motion for truly dynamic objects)")
    theta: float = option(0.9, "similarity below this marks an object truly dynamic (Dyna-DM θ)")
    min_area_fraction: float = option(0.0075, "objects covering less of frame t are ignored (0.75 %)")
    max_objects: int = option(20, "at most this many truly dynamic objects per frame")
    similarity: Literal["dice", "iou"] = option("dice", "mask similarity: Sørensen–Dice (paper) or IoU")
    extra_distance: bool = option(True, "compare t−1 warped to t+1 (two frames of motion) instead of t−1 to t")
    vote_frames: int = option(3, "streaming only: an object is truly dynamic when the median similarity of its "
                                 "last N frames is below θ (1 = frame by frame, as the paper)")
    object_depth: Literal["own", "ground_contact"] = option(
        "ground_contact", "depth of an object's pixels for the warp: its own prediction, or the median depth of the "
                          "background pixels just below its lowest pixels (its ground contact)")
    both_directions: bool = option(
        True, "also warp the comparison frame's mask back with its own depth; the higher similarity counts (a parked "
              "object must fail both ways to be flagged)")
    translation_scale: Literal["pose", "photometric"] = option(
        "photometric", "ego translation's length for the warp: the pose net's, or ×0.5–2 rescaled to minimise the "
                       "background photometric error between source and comparison frame (fixes pose/depth scale)")
    keep_order: Literal["lowest_similarity", "highest_similarity"] = option(
        "lowest_similarity", "which candidates max_objects keeps: the most clearly moving ones, or (release) the "
                             "highest-similarity ones first")
    splat_upscale: int = option(2, "forward-splat sub-pixels per pixel and axis (fills holes; Insta-DM uses 3)")
    ego_mask: Literal["all", "dynamic"] = option(
        "all", "ego-pose inputs hide every potentially dynamic object (paper eq. 4–5) or only the truly dynamic "
               "ones (release)")
    classes: list[int] = option(list(POTENTIALLY_DYNAMIC_COCO_CLASSES),
                                "potentially dynamic COCO class ids (torchvision numbering)")
    score_threshold: float = option(0.5, "keep detections with at least this score")
    mask_threshold: float = option(0.5, "binarise Mask R-CNN's soft masks at this value")
    max_detections: int = option(20, "keep at most this many detections per frame, by score")
    segmenter: Literal["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn"] = option(
        "maskrcnn_resnet50_fpn_v2", "torchvision Mask R-CNN builder")
    segmenter_weights: str = option("", "Mask R-CNN COCO state dict; empty = the official file in the torch hub "
                                        "cache (torch.hub.get_dir()/checkpoints)")
    segmenter_min_size: int = option(800, "Mask R-CNN input: shorter side resized to this many pixels")
    segmenter_max_size: int = option(1333, "Mask R-CNN input: longer side at most this many pixels")
    association_min_iou: float = option(0.3, "instances of consecutive frames are the same object above this IoU")
    geometric_weight: float = option(1.0, "w_g: SC-SfMLearner geometric consistency |Z − D̂|/(Z + D̂)")
    height_prior_weight: float = option(0.02, "w_o: object height prior |D_obj − f_y·h/h_pix| / mean depth")
    height_prior_init: float = option(0.02, "initial learnable object height h (depth units; Insta-DM init 0.02)")
    height_prior_objects: Literal["dynamic", "all"] = option(
        "dynamic", "objects the height prior constrains: the truly dynamic ones (Dyna-DM) or every object in frame t "
                   "large enough (Struct2Depth, Insta-DM), so static objects teach the moving ones their size")
    height_prior_source: Literal["learned", "objects"] = option(
        "learned", "h: a learnable scalar (Insta-DM; starts at height_prior_init in the network's depth units) or "
                   "the median of D_obj·h_pix/f_y over the batch's objects, detached and averaged over steps (in "
                   "whatever units the depth has; no unit to choose)")
    height_prior_momentum: float = option(0.99, "with height_prior_source objects: h ← m·h + (1 − m)·batch median")
    height_prior_lr_factor: float = option(0.1, "learning rate of h relative to the networks (reference 0.1)")
    height_penalty_weight: float = option(0.0, "w_hp·h added to the loss: 0 (paper), 0.2 (release scripts)")
    invariant_pose_weight: float = option(0.0, "invariant pose loss (abstract v1; not in the release): pose from "
                                               "background-only images ≈ pose from full images")
    invariant_pose_epochs: int = option(5, "the invariant pose loss is used in the first N epochs only")
    object_motion_layers: int = option(18, "ResNet depth of the object motion network")
    object_motion_all: bool = option(False, "ablation: object motion for EVERY potentially dynamic object "
                                            "(Insta-DM), not only the truly dynamic ones")


@dataclass
class ThetaFilterResult:
    """Per instance id (index 0..M, index 0 unused) for each sample of a batch. Tensors are B×(M+1)."""

    status: torch.Tensor  # int64 status code (ABSENT … BEYOND_LIMIT)
    similarity: torch.Tensor  # float Dice/IoU of warped vs observed mask, 0 where not computed
    area_fraction: torch.Tensor  # float share of frame t's pixels

    @property
    def dynamic(self) -> torch.Tensor:
        """B×(M+1) bool: truly dynamic ids."""
        return self.status == DYNAMIC

    @property
    def present(self) -> torch.Tensor:
        """B×(M+1) bool: ids present in frame t (potentially dynamic objects)."""
        return self.status != ABSENT


def resize_instances(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an id map (B×1×h×w int64) to ``size`` = (H, W); a no-op at the right size."""
    if tuple(ids.shape[-2:]) == tuple(size):
        return ids
    return F.interpolate(ids.float(), size=size, mode="nearest").long()


def one_hot_instances(ids: torch.Tensor, num_ids: int) -> torch.Tensor:
    """B×1×H×W id map → B×num_ids×H×W float masks; channel k−1 holds id k (ids above num_ids are dropped)."""
    values = torch.arange(1, num_ids + 1, device=ids.device).view(1, -1, 1, 1)
    return (ids == values).float()


def mask_similarity(a: torch.Tensor, b: torch.Tensor, kind: str = "dice") -> torch.Tensor:
    """Dice 2|A∩B|/(|A|+|B|) or IoU |A∩B|/|A∪B| of binary masks B×M×H×W → B×M; 0 where both are empty."""
    intersection = (a * b).flatten(2).sum(-1)
    total = a.flatten(2).sum(-1) + b.flatten(2).sum(-1)
    if kind == "dice":
        return torch.where(total > 0, 2 * intersection / total.clamp(min=1), torch.zeros_like(total))
    if kind == "iou":
        union = total - intersection
        return torch.where(union > 0, intersection / union.clamp(min=1), torch.zeros_like(union))
    raise ValueError(f"similarity must be 'dice' or 'iou', got {kind!r}")


def ground_contact_depth(depth: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``depth`` (B×1×H×W) with every object's pixels set to its ground-contact depth: the median depth of the
    background pixels right below the object's lowest pixel in each of its columns (a parked car at the depth of
    the road it stands on). Objects with no background below them keep their own depth. ``ids``: B×1×H×W int64."""
    num_ids = int(ids.max())
    if num_ids == 0:
        return depth
    height = depth.shape[-2]
    masks = one_hot_instances(ids, num_ids) > 0  # B×M×H×W
    rows = torch.arange(height, device=ids.device).view(1, 1, -1, 1)
    bottom = torch.where(masks, rows, torch.full_like(rows, -1)).amax(2)  # B×M×W, −1 = column not covered
    below = (bottom + 1).clamp(max=height - 1).unsqueeze(2)  # B×M×1×W
    expand = (-1, num_ids, -1, -1)
    ids_below = ids.expand(*expand).gather(2, below).squeeze(2)
    depth_below = depth.expand(*expand).gather(2, below).squeeze(2)
    contact = (bottom >= 0) & (bottom + 1 < height) & (ids_below == 0)
    median = torch.where(contact, depth_below, torch.full_like(depth_below, float("nan"))).nanmedian(-1).values
    table = F.pad(torch.where(contact.any(-1), median, torch.full_like(median, float("nan"))), (1, 0),
                  value=float("nan"))  # B×(M+1), index = id, NaN = keep the own depth
    per_pixel = table.gather(1, ids.flatten(1)).view_as(depth)
    return torch.where(per_pixel.isnan(), depth, per_pixel)


def photometric_translation_scale(source_image: torch.Tensor, compare_image: torch.Tensor,
                                  compare_depth: torch.Tensor, source_ids: torch.Tensor, compare_ids: torch.Tensor,
                                  T_compare_source: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Factor k (B,) of :data:`TRANSLATION_SCALES` for the translation of ``T_compare_source`` (B×4×4) that
    minimises the photometric error (SSIM + L1) of the background: the comparison frame (image B×3×H×W in [0, 1],
    depth B×1×H×W) against the source image sampled where its pixels land. The pose net's translation drifts
    against the depth's scale frame by frame; its rotation and direction are far better. 1 without background.

    Searched coarse to fine (every 4th factor, then the 6 around the best) on images at most
    :data:`SCALE_SEARCH_WIDTH` pixels wide."""
    height, width = compare_depth.shape[-2:]
    if width > SCALE_SEARCH_WIDTH:
        size = (max(round(height * SCALE_SEARCH_WIDTH / width), 1), SCALE_SEARCH_WIDTH)
        K = geometry.scale_intrinsics(K, size[1] / width, size[0] / height)
        source_image, compare_image = (F.interpolate(x, size=size, mode="area") for x in (source_image, compare_image))
        compare_depth = F.interpolate(compare_depth, size=size, mode="nearest")
        source_ids, compare_ids = resize_instances(source_ids, size), resize_instances(compare_ids, size)
    T_source_compare = geometry.invert_pose(T_compare_source.float())
    batch = compare_depth.shape[0]
    points = geometry.backproject(compare_depth.float(), torch.linalg.inv(K))
    rotated = (T_source_compare[:, :3, :3] @ points.flatten(2)).view_as(points)
    # (T_c_s with translation k·t)⁻¹ = (R_s_c, k·t_s_c): the same factor on the inverse's translation
    translation = T_source_compare[:, :3, 3].view(batch, 3, 1, 1)
    scales = TRANSLATION_SCALES.to(K.device)
    error = torch.full((batch, len(scales)), float("inf"), device=K.device)

    def evaluate(indices: list[int]) -> None:
        for i in indices:
            pixels, z = geometry.project(rotated + scales[i] * translation, K)
            warped = geometry.sample(source_image, pixels)
            warped_ids = geometry.sample(source_ids.float(), pixels, padding_mode="zeros", mode="nearest")
            valid = ((compare_ids == 0) & (warped_ids == 0) & (z > 1e-3)
                     & geometry.in_image(pixels, *compare_depth.shape[-2:])).float()
            count = valid.flatten(1).sum(1)
            total = (losses.photometric_error(warped, compare_image) * valid).flatten(1).sum(1)
            error[:, i] = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("inf")))

    coarse = list(range(0, len(scales), 4))
    evaluate(coarse)
    near = {i + offset for i in error.argmin(1).tolist() for offset in (-3, -2, -1, 1, 2, 3)}
    evaluate(sorted(i for i in near if 0 <= i < len(scales) and i not in coarse))
    best = scales[error.argmin(1)]
    return torch.where(error[:, coarse].isfinite().all(1), best, torch.ones_like(best))


def theta_filter(target_ids: torch.Tensor, source_ids: torch.Tensor, source_depth: torch.Tensor,
                 T_compare_source: torch.Tensor, K: torch.Tensor, compare_ids: torch.Tensor,
                 config: DynamicObjectsConfig, num_ids: int | None = None, source_image: torch.Tensor | None = None,
                 compare_image: torch.Tensor | None = None, compare_depth: torch.Tensor | None = None
                 ) -> ThetaFilterResult:
    """Classify the objects of frame t as static, truly dynamic, small or unmatched.

    ``target_ids``: frame t id map (B×1×H×W int64); ``source_ids`` + ``source_depth`` (B×1×H×W metres): the
    frame whose masks are warped; ``compare_ids``: the frame they are compared with; ``T_compare_source``
    (B×4×4) the background ego-motion from source to comparison frame; ``K`` (B×3×3) in pixels of the depth.
    Id maps of another size are resized (nearest). ``num_ids`` (default: largest id present) sets M.
    ``translation_scale: photometric`` needs ``source_image``, ``compare_image`` (B×3×H×W in [0, 1]) and
    ``compare_depth`` (B×1×H×W, the comparison frame's depth), ``both_directions`` the latter (resized as needed).
    """
    size = tuple(source_depth.shape[-2:])
    target_ids, source_ids, compare_ids = (resize_instances(x, size) for x in (target_ids, source_ids, compare_ids))
    if num_ids is None:
        num_ids = int(max(target_ids.max(), source_ids.max(), compare_ids.max(), 0))
    batch = target_ids.shape[0]
    status = torch.zeros(batch, num_ids + 1, dtype=torch.long, device=target_ids.device)
    similarity = torch.zeros(batch, num_ids + 1, device=target_ids.device)
    area = torch.zeros(batch, num_ids + 1, device=target_ids.device)
    if num_ids == 0:
        return ThetaFilterResult(status, similarity, area)
    target_masks = one_hot_instances(target_ids, num_ids)
    source_masks = one_hot_instances(source_ids, num_ids)
    compare_masks = one_hot_instances(compare_ids, num_ids)
    source_depth, compare_depth, T_compare_source = filter_geometry(
        source_ids, source_depth.detach().float(), T_compare_source.detach().float(), K, compare_ids, config,
        source_image, compare_image, compare_depth)
    score, has_pair = warped_similarity(source_masks, source_depth, T_compare_source, K, compare_masks, config)
    if config.both_directions:  # the comparison frame's masks warped back with its own depth; the higher counts
        back, back_pair = warped_similarity(compare_masks, compare_depth, geometry.invert_pose(T_compare_source), K,
                                            source_masks, config)
        score = torch.where(has_pair & back_pair, torch.maximum(score, back), score)
    area[:, 1:] = target_masks.flatten(2).mean(-1)
    present = area[:, 1:] > 0
    small = present & (area[:, 1:] < config.min_area_fraction)
    unmatched = present & ~small & ~has_pair
    candidate = present & ~small & has_pair & (score < config.theta)
    static = present & ~small & has_pair & (score >= config.theta)
    key = score if config.keep_order == "lowest_similarity" else -score
    key = torch.where(candidate, key, torch.full_like(key, float("inf")))
    rank = key.argsort(dim=1).argsort(dim=1)
    kept = candidate & (rank < config.max_objects)
    codes = torch.zeros_like(score, dtype=torch.long)
    for mask, code in ((static, STATIC), (small, SMALL), (unmatched, UNMATCHED), (candidate, BEYOND_LIMIT),
                       (kept, DYNAMIC)):
        codes = torch.where(mask, torch.full_like(codes, code), codes)
    status[:, 1:] = codes
    similarity[:, 1:] = torch.where(has_pair, score, torch.zeros_like(score))
    return ThetaFilterResult(status, similarity, area)


def warped_similarity(source_masks: torch.Tensor, source_depth: torch.Tensor, T_compare_source: torch.Tensor,
                      K: torch.Tensor, compare_masks: torch.Tensor, config: DynamicObjectsConfig
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarity B×M, has a counterpart B×M bool) of the source masks (B×M×H×W) forward-splatted with
    ``source_depth`` and ``T_compare_source`` against ``compare_masks`` inside the part of the comparison frame
    that the source sees (pixels no splatted point reached cannot be compared)."""
    warped, _, reached = geometry.forward_splat(source_masks, source_depth, T_compare_source, K,
                                                upscale=config.splat_upscale)
    warped = (warped > 0.5).float()
    compare_masks = compare_masks * reached.float()
    has_pair = (source_masks.flatten(2).amax(-1) > 0) & (compare_masks.flatten(2).amax(-1) > 0) & (
        warped.flatten(2).amax(-1) > 0)
    return mask_similarity(warped, compare_masks, config.similarity), has_pair


def filter_geometry(source_ids: torch.Tensor, source_depth: torch.Tensor, T_compare_source: torch.Tensor,
                    K: torch.Tensor, compare_ids: torch.Tensor, config: DynamicObjectsConfig,
                    source_image: torch.Tensor | None, compare_image: torch.Tensor | None,
                    compare_depth: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(source depth, comparison depth, pose) the theta filter warps with, after ``object_depth`` and
    ``translation_scale``, at the source depth's size (shapes and units as :func:`theta_filter`'s arguments)."""
    size = tuple(source_depth.shape[-2:])
    needs = {"compare_depth": config.translation_scale == "photometric" or config.both_directions,
             "images": config.translation_scale == "photometric"}
    if (needs["compare_depth"] and compare_depth is None) or (
            needs["images"] and (source_image is None or compare_image is None)):
        raise ValueError("translation_scale photometric needs source_image, compare_image and compare_depth; "
                         "both_directions needs compare_depth")

    def resized(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or tuple(x.shape[-2:]) == size:
            return None if x is None else x.detach().float()
        return F.interpolate(x.detach().float(), size=size, mode="bilinear", align_corners=False)

    compare_depth = resized(compare_depth)
    if config.object_depth == "ground_contact":
        source_depth = ground_contact_depth(source_depth, source_ids)
        compare_depth = None if compare_depth is None else ground_contact_depth(compare_depth, compare_ids)
    if needs["images"]:
        scale = photometric_translation_scale(resized(source_image), resized(compare_image), compare_depth,
                                              source_ids, compare_ids, T_compare_source, K)
        T_compare_source = T_compare_source.clone()
        T_compare_source[:, :3, 3] *= scale.view(-1, 1)
    return source_depth, compare_depth, T_compare_source


def ids_mask(ids: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """B×1×H×W bool: pixels whose id is selected. ``selected``: B×(M+1) bool (index 0 is ignored)."""
    selected = selected.clone()
    selected[:, 0] = False
    table = F.pad(selected, (0, max(int(ids.max()) + 1 - selected.shape[1], 0)))
    return torch.gather(table, 1, ids.flatten(1).clamp(min=0)).view_as(ids)


@dataclass
class ObjectReport:
    """One object of frame t as the filter saw it (for inference results and benchmarks)."""

    instance_id: int
    class_id: int
    score: float
    similarity: float
    status: str
    box_xyxy: tuple[float, float, float, float]
    pixel_count: int


def object_reports(ids: np.ndarray, result: ThetaFilterResult, classes: np.ndarray, scores: np.ndarray,
                   sample: int = 0) -> list[ObjectReport]:
    """Per-object description of sample ``sample``. ``ids``: H×W id map at the depth's size; ``classes``,
    ``scores``: indexed by id."""
    reports = []
    status = result.status[sample].cpu().numpy()
    similarity = result.similarity[sample].cpu().numpy()
    for instance_id in range(1, status.shape[0]):
        if status[instance_id] == ABSENT:
            continue
        rows, cols = np.nonzero(ids == instance_id)
        if rows.size == 0:
            continue
        reports.append(ObjectReport(
            instance_id=instance_id,
            class_id=int(classes[instance_id]) if instance_id < len(classes) else 0,
            score=float(scores[instance_id]) if instance_id < len(scores) else 0.0,
            similarity=float(similarity[instance_id]), status=STATUS_NAMES[int(status[instance_id])],
            box_xyxy=(float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)),
            pixel_count=int(rows.size)))
    return reports


def iou_table(ids_a: np.ndarray, ids_b: np.ndarray) -> np.ndarray:
    """IoU of every id of ``ids_a`` (H×W int) against every id of ``ids_b``: (max_a+1)×(max_b+1), row/col 0 = 0."""
    if ids_a.shape != ids_b.shape:
        raise ValueError(f"instance maps differ in size: {ids_a.shape} vs {ids_b.shape}")
    na, nb = int(ids_a.max(initial=0)) + 1, int(ids_b.max(initial=0)) + 1
    joint = np.bincount((ids_a.astype(np.int64) * nb + ids_b).ravel(), minlength=na * nb).reshape(na, nb)
    area_a, area_b = joint.sum(1), joint.sum(0)
    union = area_a[:, None] + area_b[None, :] - joint
    iou = np.where(union > 0, joint / np.maximum(union, 1), 0.0)
    iou[0, :] = 0
    iou[:, 0] = 0
    return iou


def match_instances(ids_a: np.ndarray, classes_a: np.ndarray, ids_b: np.ndarray, classes_b: np.ndarray,
                    min_iou: float) -> dict[int, int]:
    """Greedy mutual-best matching of the instances of two frames by mask IoU, same class only.

    ``classes_*`` are indexed by id. Returns {id in b: id in a}; pairs are taken in order of decreasing IoU and
    each id is used once.
    """
    iou = iou_table(ids_a, ids_b)
    ca = np.asarray(classes_a)[: iou.shape[0]] if len(classes_a) else np.zeros(iou.shape[0], int)
    cb = np.asarray(classes_b)[: iou.shape[1]] if len(classes_b) else np.zeros(iou.shape[1], int)
    ca = np.pad(ca, (0, iou.shape[0] - len(ca)))
    cb = np.pad(cb, (0, iou.shape[1] - len(cb)))
    iou = np.where(ca[:, None] == cb[None, :], iou, 0.0)
    matches: dict[int, int] = {}
    used_a: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        a, b = np.unravel_index(flat, iou.shape)
        if iou[a, b] <= min_iou:
            break
        if a in used_a or int(b) in matches:
            continue
        matches[int(b)] = int(a)
        used_a.add(int(a))
    return matches


@dataclass
class FrameInstances:
    """Detections of one frame: ``ids`` H×W int (0 = background); ``classes`` (n+1,) int COCO ids, ``scores``
    (n+1,) float and ``boxes`` ((n+1)×4 float xyxy pixels, optional) are indexed by id (entry 0 unused)."""

    ids: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray | None = None


def associate_instances(frames: dict[int, FrameInstances], max_ids: int, min_iou: float = 0.3
                        ) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """Give the instances of a frame triplet (or pair) consistent ids, once over all frames.

    ``frames``: {frame_id: FrameInstances}, frame 0 is the target. Objects of t±1 are matched to t; objects
    missing from t are matched between t−1 and t+1; the rest get ids of their own. At most ``max_ids`` ids are
    kept (highest score first). Returns ({frame_id: H×W int64 id map}, classes (max_ids+1,) int64,
    scores (max_ids+1,) float32).
    """
    if 0 not in frames:
        raise ValueError("associate_instances needs the target frame 0")
    tracks: list[dict] = []  # each: {frame_id: local id}, class, score
    target = frames[0]
    for local in np.unique(target.ids):
        if local:
            tracks.append({"members": {0: int(local)}, "class": int(target.classes[local]),
                           "score": float(target.scores[local])})
    by_target = {t["members"][0]: t for t in tracks}
    leftovers: dict[int, list[int]] = {}
    for frame_id in sorted(f for f in frames if f != 0):
        frame = frames[frame_id]
        matches = match_instances(target.ids, target.classes, frame.ids, frame.classes, min_iou)
        for local in np.unique(frame.ids):
            if not local:
                continue
            if int(local) in matches:
                by_target[matches[int(local)]]["members"][frame_id] = int(local)
            else:
                leftovers.setdefault(frame_id, []).append(int(local))
    others = sorted(leftovers)
    if len(others) == 2:
        first, second = others
        fa, fb = frames[first], frames[second]
        keep_a = np.where(np.isin(fa.ids, leftovers[first]), fa.ids, 0)
        keep_b = np.where(np.isin(fb.ids, leftovers[second]), fb.ids, 0)
        pairs = match_instances(keep_a, fa.classes, keep_b, fb.classes, min_iou)
        for local_b, local_a in pairs.items():
            tracks.append({"members": {first: local_a, second: local_b}, "class": int(fa.classes[local_a]),
                           "score": float(max(fa.scores[local_a], fb.scores[local_b]))})
            leftovers[first].remove(local_a)
            leftovers[second].remove(local_b)
    for frame_id, locals_ in leftovers.items():
        frame = frames[frame_id]
        for local in locals_:
            tracks.append({"members": {frame_id: local}, "class": int(frame.classes[local]),
                           "score": float(frame.scores[local])})
    tracks.sort(key=lambda t: (0 not in t["members"], -t["score"]))
    tracks = tracks[:max_ids]
    out = {f: np.zeros(frames[f].ids.shape, dtype=np.int64) for f in frames}
    classes = np.zeros(max_ids + 1, dtype=np.int64)
    scores = np.zeros(max_ids + 1, dtype=np.float32)
    for new_id, track in enumerate(tracks, start=1):
        classes[new_id] = track["class"]
        scores[new_id] = track["score"]
        for frame_id, local in track["members"].items():
            out[frame_id][frames[frame_id].ids == local] = new_id
    return out, classes, scores
