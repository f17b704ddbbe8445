"""Precomputed instance masks on disk (written by ``mgdepth precompute-masks``, read by the data sets).

Layout: one compressed ``.npz`` per frame at ``<root>/<frame key without extension>.npz``, where the key is the
image's path relative to the data set root (``2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.png``
→ ``<root>/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.npz``). Each file holds ``ids``
(H×W uint8/uint16, also when read, at the image's original resolution, 0 = background, ids 1..n by descending
score), ``classes`` ((n+1,) int64 COCO ids), ``scores`` ((n+1,) float32) and ``boxes``
((n+1)×4 float32 xyxy pixels); entry 0 is unused. Files are written atomically, so a file that exists is complete.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from mgdepth_core.data.transforms import resize_nearest
from mgdepth_core.dynamic import FrameInstances, associate_instances


class MaskStore:
    """Reads and writes per-frame instance files under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path_for(self, key: str) -> Path:
        relative = PurePosixPath(str(key).replace(os.sep, "/"))
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"mask key {key!r} must be a relative path inside the data set")
        return self.root / relative.with_suffix(".npz")

    def has(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def write(self, key: str, instances: FrameInstances) -> Path:
        """Atomically write ``instances`` for frame ``key`` (temp file in the same folder, then os.replace)."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(instances.classes) - 1
        ids = np.asarray(instances.ids).astype(np.uint8 if n < 256 else np.uint16)
        boxes = instances.boxes if instances.boxes is not None else np.zeros((n + 1, 4), dtype=np.float32)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez_compressed(stream, ids=ids, classes=np.asarray(instances.classes, dtype=np.int64),
                                    scores=np.asarray(instances.scores, dtype=np.float32),
                                    boxes=np.asarray(boxes, dtype=np.float32))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def read(self, key: str) -> FrameInstances:
        """Instances of frame ``key``; a missing or damaged file raises an error naming it."""
        path = self.path_for(key)
        if not path.is_file():
            raise FileNotFoundError(f"no precomputed instance masks for {key} at {path} "
                                    f"(run `mgdepth precompute-masks` over this data set)")
        try:
            with np.load(path) as data:
                frame = FrameInstances(data["ids"], data["classes"], data["scores"], data["boxes"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"precomputed instance file {path} is damaged ({exc}); delete it and rerun "
                             f"`mgdepth precompute-masks`") from exc
        if frame.ids.ndim != 2 or int(frame.ids.max(initial=0)) >= len(frame.classes):
            raise ValueError(f"precomputed instance file {path}: ids {frame.ids.shape} do not fit "
                             f"{len(frame.classes)} class entries")
        return frame


def sample_instances(store: MaskStore, keys: dict[int, str], height: int, width: int, max_ids: int,
                     min_iou: float = 0.3) -> dict:
    """The instance keys of the sample layout for one sample: frames ``keys`` ({frame_id: key}) read, resized to
    height×width and associated once over all frames (consistent ids). Returns ``instances`` {f: 1×H×W int64},
    ``instance_class`` (max_ids+1,) int64 and ``instance_score`` (max_ids+1,) float32 (not flipped)."""
    frames = {}
    for frame_id, key in keys.items():
        frame = store.read(key)
        ids = resize_nearest(frame.ids, height, width).astype(np.int64)  # stored uint8/uint16: cv2 can resize it
        frames[frame_id] = FrameInstances(ids, frame.classes, frame.scores)
    ids, classes, scores = associate_instances(frames, max_ids, min_iou)
    return {"instances": {f: torch.from_numpy(ids[f])[None] for f in keys},
            "instance_class": torch.from_numpy(classes), "instance_score": torch.from_numpy(scores)}
