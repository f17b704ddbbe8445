"""``mgdepth infer``: depth for a sequence of image files (a folder or a glob), written as .npy and coloured PNG.

Frames are taken in sorted file-name order as one stream: each frame is matched against the previous one (the
first frame, and frames where the camera did not move, get single-frame depth). For every image ``NAME.ext`` the
output folder gets ``NAME_depth.npy`` (H×W float32 metres at the network resolution, NaN invalid) and
``NAME_depth.png`` (inverse depth on the magma colour map), plus one ``intrinsics.json`` with K of the depth maps.
Existing outputs are kept (an interrupted run resumes); ``--overwrite`` recomputes them.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

HELP = "estimate depth for a folder or glob of images (writes depth .npy and colour-mapped .png per frame)"
LOG = logging.getLogger("mgdepth.infer")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="DIR", default=None,
                        help="weights folder (ours or an official Manydepth release); omitted = random weights "
                             "(meaningless depth, for smoke tests)")
    parser.add_argument("--images", required=True, metavar="GLOB|DIR",
                        help="a folder of images or a quoted glob such as 'seq/*.png'; sorted by name")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--intrinsics", type=Path, metavar="K.json",
                        help="JSON: a 3×3 matrix, or {\"K\": 3×3} or {\"fx\", \"fy\", \"cx\", \"cy\"}, in pixels "
                             "of the input images (see --normalised-intrinsics)")
    parser.add_argument("--normalised-intrinsics", action="store_true",
                        help="the intrinsics are in units of image width/height (Manydepth's JSON format)")
    for name in ("fx", "fy", "cx", "cy"):
        parser.add_argument(f"--{name}", type=float, help=f"{name} in pixels (instead of --intrinsics)")
    parser.add_argument("--method", choices=["manydepth2", "manydepth"], default=None,
                        help="model for random weights; with --weights the folder decides")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--height", type=int, default=0, help="network input height; 0 = from the weights")
    parser.add_argument("--width", type=int, default=0, help="network input width; 0 = from the weights")
    parser.add_argument("--depth-scale", type=float, default=1.0,
                        help="multiplier to metres (self-supervised depth is only known up to scale)")
    parser.add_argument("--scale-source", choices=["fixed", "camera_height"], default="fixed",
                        help="metric scale: fixed (--depth-scale) or camera_height (ground plane below the camera "
                             "at --camera-height-m; --depth-scale until the first fit)")
    parser.add_argument("--camera-height-m", type=float, default=1.65,
                        help="--scale-source camera_height: camera height above the road, metres")
    parser.add_argument("--min-translation", type=float, default=0.01,
                        help="metres of camera motion below which a frame gets single-frame depth")
    parser.add_argument("--colour-min-depth", type=float, default=1.0, help="nearest depth of the colour map, m")
    parser.add_argument("--colour-max-depth", type=float, default=80.0, help="farthest depth of the colour map, m")
    parser.add_argument("--overwrite", action="store_true", help="recompute frames whose outputs exist")


def find_images(pattern: str) -> list[Path]:
    """Sorted image files of a folder, or the files a glob matches."""
    path = Path(pattern)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        found = [Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def read_intrinsics(args, width: int, height: int) -> np.ndarray:
    """3×3 K in pixels of the input images, from --intrinsics or --fx/--fy/--cx/--cy."""
    given = [getattr(args, name) for name in ("fx", "fy", "cx", "cy")]
    if args.intrinsics is not None:
        try:
            data = json.loads(args.intrinsics.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--intrinsics {args.intrinsics}: cannot read JSON ({error})") from error
        if isinstance(data, dict) and "K" in data:
            data = data["K"]
        if isinstance(data, dict):
            missing = [k for k in ("fx", "fy", "cx", "cy") if k not in data]
            if missing:
                raise ValueError(f"--intrinsics {args.intrinsics}: missing {', '.join(missing)}")
            K = np.array([[data["fx"], 0, data["cx"]], [0, data["fy"], data["cy"]], [0, 0, 1]], dtype=np.float64)
        else:
            K = np.asarray(data, dtype=np.float64)
            if K.shape in ((4, 4), (3, 4)):
                K = K[:3, :3]
            if K.shape != (3, 3):
                raise ValueError(f"--intrinsics {args.intrinsics}: expected a 3×3 matrix, got shape {K.shape}")
    elif all(value is not None for value in given):
        fx, fy, cx, cy = given
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    else:
        raise ValueError("give the camera intrinsics: --intrinsics K.json, or all of --fx --fy --cx --cy")
    if args.normalised_intrinsics:
        K = K.copy()
        K[0] *= width
        K[1] *= height
    return K


def _write_atomic(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from mgdepth_core.inference import DepthEstimator
    from mgdepth_core.outputs import colorize_depth

    images = find_images(args.images)
    if not images:
        LOG.error("no images (%s) found for --images %s", ", ".join(sorted(IMAGE_SUFFIXES)), args.images)
        return 2

    def load(path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    first = load(images[0])
    try:
        K = read_intrinsics(args, first.shape[1], first.shape[0])
    except ValueError as error:
        LOG.error("%s", error)
        return 2
    estimator = DepthEstimator.from_weights(args.weights, method=args.method, device=args.device,
                                            depth_scale=args.depth_scale, scale_source=args.scale_source,
                                            camera_height_m=args.camera_height_m, min_translation=args.min_translation,
                                            height=args.height, width=args.width)
    args.out.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    previous_skipped: Path | None = None
    for path in tqdm(images, desc="infer", unit="frame"):
        depth_path = args.out / f"{path.stem}_depth.npy"
        png_path = args.out / f"{path.stem}_depth.png"
        if not args.overwrite and depth_path.is_file() and png_path.is_file():
            previous_skipped, skipped = path, skipped + 1
            continue
        if previous_skipped is not None:  # resuming: refill the frame buffer with the frame before this one
            estimator.process(load(previous_skipped), K)
            previous_skipped = None
        image = load(path)
        if image.shape != first.shape:
            LOG.warning("%s is %d×%d, the first image %d×%d: K is scaled to it", path, image.shape[1],
                        image.shape[0], first.shape[1], first.shape[0])
        frame_K = K.copy()
        frame_K[0] *= image.shape[1] / first.shape[1]
        frame_K[1] *= image.shape[0] / first.shape[0]
        result = estimator.process(image, frame_K)
        buffer = io.BytesIO()
        np.save(buffer, result.depth)
        _write_atomic(depth_path, buffer.getvalue())
        _, png = cv2.imencode(".png", colorize_depth(result.depth, args.colour_min_depth, args.colour_max_depth))
        _write_atomic(png_path, png.tobytes())
        if written == 0:
            record = {"K": result.K.tolist(), "width": result.depth.shape[1], "height": result.depth.shape[0]}
            _write_atomic(args.out / "intrinsics.json", (json.dumps(record, indent=2) + "\n").encode())
        written += 1
    LOG.info("wrote %d depth maps to %s (%d already there)", written, args.out, skipped)
    return 0
