"""``mgdepth precompute-masks``: Mask R-CNN instance masks for every frame of a data set (Dyna-DM training input).

One ``.npz`` per frame in the :class:`~mgdepth_core.masks.MaskStore` layout; frames already done are skipped, so an
interrupted run resumes where it stopped. Point ``data.masks_path`` of a training config at ``--out``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from mgdepth_core.data.splits import SplitError, read_split, split_file
from mgdepth_core.dynamic import DynamicObjectsConfig
from mgdepth_core.masks import MaskStore

HELP = "run Mask R-CNN over every frame of a data set and store instance masks (resumable) for Dyna-DM training"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LOG = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DynamicObjectsConfig()
    parser.add_argument("--data", required=True, help="data set root (KITTI raw root, or any folder of images)")
    parser.add_argument("--dataset", choices=["kitti", "folder"], default="folder",
                        help="kitti: frames of --split (or every image_02/image_03 frame); folder: every image below "
                             "--data")
    parser.add_argument("--split", default="",
                        help="KITTI split name or folder: only frames its lines (and their ±1 neighbours) use")
    parser.add_argument("--subsets", default="train,val", help="split lists to read, comma separated")
    parser.add_argument("--out", required=True, help="output folder (one .npz per frame, keyed by its path)")
    parser.add_argument("--weights", default=defaults.segmenter_weights,
                        help="Mask R-CNN COCO state dict (default: the official file in the torch hub cache)")
    parser.add_argument("--segmenter", default=defaults.segmenter,
                        choices=["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn"], help="torchvision builder")
    parser.add_argument("--min-size", type=int, default=defaults.segmenter_min_size,
                        help="Mask R-CNN input shorter side, pixels")
    parser.add_argument("--max-size", type=int, default=defaults.segmenter_max_size,
                        help="Mask R-CNN input longer side at most, pixels")
    parser.add_argument("--score-threshold", type=float, default=defaults.score_threshold,
                        help="keep detections with at least this score")
    parser.add_argument("--max-detections", type=int, default=defaults.max_detections,
                        help="at most this many detections per frame, by score")
    parser.add_argument("--classes", default=",".join(str(c) for c in defaults.classes),
                        help="COCO class ids kept (torchvision numbering), comma separated")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--image-ext", default=".png", help="KITTI image extension (.png or .jpg)")


def kitti_frames(root: Path, split: str, subsets: list[str], image_ext: str) -> list[str]:
    """Keys (paths relative to ``root``) of the KITTI frames a split uses, ±1 neighbours included; without a split
    every frame of every image_02/image_03 folder."""
    if not split:
        return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/image_0[23]/data/*")
                      if p.suffix.lower() in IMAGE_SUFFIXES)
    keys: set[str] = set()
    for subset in subsets:
        try:
            lines = read_split(split_file(split, subset), min_fields=3)
        except SplitError as exc:
            LOG.warning("%s", exc)
            continue
        for line in lines:
            folder, frame, side = line.fields[:3]
            camera = {"l": 2, "r": 3}.get(side)
            if camera is None:
                raise SplitError(f"{line.where()}: side must be 'l' or 'r', got {side!r}")
            for offset in (-1, 0, 1):
                path = root / folder / f"image_0{camera}" / "data" / f"{int(frame) + offset:010d}{image_ext}"
                if path.is_file():
                    keys.add(path.relative_to(root).as_posix())
    return sorted(keys)


def folder_frames(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def run(args: argparse.Namespace) -> int:
    from mgdepth_core.models.instance_segmentation import InstanceSegmenter

    root = Path(args.data).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a folder")
    if args.dataset == "kitti":
        keys = kitti_frames(root, args.split, [s for s in args.subsets.split(",") if s], args.image_ext)
    else:
        keys = folder_frames(root)
    if not keys:
        raise ValueError(f"no images found under {root} (dataset {args.dataset}, split {args.split or 'none'})")
    store = MaskStore(args.out)
    todo = [k for k in keys if not store.has(k)]
    print(f"{len(keys)} frames, {len(keys) - len(todo)} already done, {len(todo)} to segment → {store.root}")
    if not todo:
        return 0
    config = DynamicObjectsConfig(
        mode="dyna-dm", segmenter=args.segmenter, segmenter_weights=args.weights, segmenter_min_size=args.min_size,
        segmenter_max_size=args.max_size, score_threshold=args.score_threshold, max_detections=args.max_detections,
        classes=[int(c) for c in args.classes.split(",") if c.strip()])
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    segmenter = InstanceSegmenter.from_config(config).to(device)
    with tqdm(total=len(keys), initial=len(keys) - len(todo), unit="frame", desc="precompute-masks") as bar:
        for key in todo:
            image = cv2.imread(str(root / key), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot decode image {root / key}")
            tensor = torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255.0
            store.write(key, segmenter(tensor[None].to(device))[0])
            bar.update(1)
    return 0
