"""A tiny exact scene for the Dyna-DM tests: fronto-parallel boxes over a far wall, a camera driving forward.

Every quantity is known: per-frame depth (metres), instance ids, the camera poses and which boxes move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Box:
    """A fronto-parallel rectangle in frame-0 camera coordinates (metres); ``velocity`` per frame."""

    x: float  # centre, lateral
    bottom: float  # y of the lower edge (y points down; the camera is 1.5 m above the ground)
    z: float
    width: float
    height: float
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    class_id: int = 3

    @property
    def moving(self) -> bool:
        return any(v != 0.0 for v in self.velocity)


def intrinsics(height: int, width: int) -> np.ndarray:
    return np.array([[0.58 * width, 0, width / 2 - 0.5], [0, 1.92 * height, height / 2 - 0.5], [0, 0, 1]],
                    dtype=np.float32)


def render(boxes: list[Box], frame: int, camera_speed: float, height: int, width: int,
           wall_depth: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """(depth H×W float32 metres, ids H×W int64 with box i → id i+1) of frame ``frame``."""
    K = intrinsics(height, width)
    depth = np.full((height, width), wall_depth - camera_speed * frame, dtype=np.float32)
    ids = np.zeros((height, width), dtype=np.int64)
    order = sorted(range(len(boxes)), key=lambda i: -(boxes[i].z + boxes[i].velocity[2] * frame))
    for i in order:
        box = boxes[i]
        x = box.x + box.velocity[0] * frame
        y = box.bottom + box.velocity[1] * frame
        z = box.z + box.velocity[2] * frame - camera_speed * frame
        if z <= 0.5:
            continue
        u0 = K[0, 0] * (x - box.width / 2) / z + K[0, 2]
        u1 = K[0, 0] * (x + box.width / 2) / z + K[0, 2]
        v0 = K[1, 1] * (y - box.height) / z + K[1, 2]
        v1 = K[1, 1] * y / z + K[1, 2]
        c0, c1 = int(np.clip(np.ceil(u0 - 0.5), 0, width)), int(np.clip(np.floor(u1 + 0.5), 0, width))
        r0, r1 = int(np.clip(np.ceil(v0 - 0.5), 0, height)), int(np.clip(np.floor(v1 + 0.5), 0, height))
        depth[r0:r1, c0:c1] = z
        ids[r0:r1, c0:c1] = i + 1
    return depth, ids


def pose(frame_to: int, frame_from: int, camera_speed: float) -> np.ndarray:
    """T_to_from for a camera translating along +z by ``camera_speed`` per frame."""
    T = np.eye(4, dtype=np.float32)
    T[2, 3] = -camera_speed * (frame_to - frame_from)
    return T


def random_boxes(rng: np.random.Generator, count: int, moving_share: float = 0.5) -> list[Box]:
    """Boxes at 8–25 m, parked or moving clearly (lateral 0.4–0.9 m/frame, or oncoming)."""
    boxes = []
    for _ in range(count):
        z = rng.uniform(8, 25)
        x = rng.uniform(-0.5, 0.5) * z * 0.9
        velocity = (0.0, 0.0, 0.0)
        if rng.random() < moving_share:
            if rng.random() < 0.7:
                velocity = (float(rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)), 0.0, 0.0)
            else:
                velocity = (0.0, 0.0, float(-rng.uniform(1.0, 2.0)))
        boxes.append(Box(x=x, bottom=1.5, z=z, width=rng.uniform(1.6, 2.6), height=rng.uniform(1.4, 2.0),
                         velocity=velocity))
    return boxes


def triplet_tensors(boxes: list[Box], camera_speed: float, height: int, width: int) -> dict:
    """Frames −1, 0, 1 as B=1 tensors: depth, ids, K and T_1_-1 / T_0_-1."""
    out = {"K": torch.from_numpy(intrinsics(height, width))[None]}
    for frame in (-1, 0, 1):
        depth, ids = render(boxes, frame, camera_speed, height, width)
        out[("depth", frame)] = torch.from_numpy(depth)[None, None]
        out[("ids", frame)] = torch.from_numpy(ids)[None, None]
    out["T_1_-1"] = torch.from_numpy(pose(1, -1, camera_speed))[None]
    out["T_0_-1"] = torch.from_numpy(pose(0, -1, camera_speed))[None]
    return out


def unoccluded_boxes(rng: np.random.Generator, count: int, camera_speed: float, height: int, width: int,
                     moving_share: float = 0.5) -> list[Box]:
    """Random boxes that stay fully visible and never overlap in frames −1, 0, 1 (rejection sampling)."""
    while True:
        boxes = random_boxes(rng, count, moving_share)
        visible = True
        for frame in (-1, 0, 1):
            _, ids = render(boxes, frame, camera_speed, height, width)
            for i, box in enumerate(boxes):
                _, alone = render([box], frame, camera_speed, height, width)
                inside = alone[:, 0].sum() + alone[:, -1].sum() == 0
                if not inside or (ids == i + 1).sum() != (alone == 1).sum() or (alone == 1).sum() == 0:
                    visible = False
        if visible:
            return boxes
