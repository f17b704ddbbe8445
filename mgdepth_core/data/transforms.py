"""Sample preparation shared by every data set: image resizing, one augmentation draw per sample, flips.

Monodepth2/Manydepth augmentation: with probability ``flip_probability`` every frame of a sample (and its depth,
instance maps and intrinsics) is flipped horizontally; with probability ``jitter_probability`` ONE colour-jitter
draw (brightness, contrast, saturation ±0.2, hue ±0.1, random order) is applied identically to every frame, so the
pose network sees consistent inputs. Losses use the un-jittered ``color``; networks read ``color_aug``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from kornia.enhance import adjust_hue
from torchvision.transforms import ColorJitter

BRIGHTNESS = (0.8, 1.2)
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)
HUE = (-0.1, 0.1)

# A horizontal mirror of the camera frame (x → −x); conjugating a pose by it gives the pose of flipped images.
MIRROR_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


@dataclass
class AugmentationDraw:
    """The random choices for one sample, applied to every frame of it."""

    flip: bool = False
    jitter: tuple | None = None  # (order, brightness, contrast, saturation, hue) from ColorJitter.get_params


def draw_augmentation(enabled: bool, flip_probability: float = 0.5, jitter_probability: float = 0.5
                      ) -> AugmentationDraw:
    """One draw per sample from torch's global generator (seeded per DataLoader worker)."""
    if not enabled:
        return AugmentationDraw()
    flip = bool(torch.rand(1).item() < flip_probability)
    jitter = None
    if torch.rand(1).item() < jitter_probability:
        jitter = ColorJitter.get_params(BRIGHTNESS, CONTRAST, SATURATION, HUE)
    return AugmentationDraw(flip=flip, jitter=jitter)


def apply_color_jitter(image: torch.Tensor, jitter: tuple | None) -> torch.Tensor:
    """``image``: 3×H×W float in [0, 1]; applies the drawn factors in the drawn order (torchvision semantics)."""
    if jitter is None:
        return image
    order, brightness, contrast, saturation, hue = jitter
    for index in order.tolist():
        if index == 0:
            image = TF.adjust_brightness(image, brightness)
        elif index == 1:
            image = TF.adjust_contrast(image, contrast)
        elif index == 2:
            image = TF.adjust_saturation(image, saturation)
        elif index == 3:  # kornia's hue shift equals torchvision's (hue in turns → radians) at ~2/3 of the cost
            image = adjust_hue(image[None], hue * 2 * math.pi)[0]
    return image


def flip_intrinsics(K: torch.Tensor, width: int) -> torch.Tensor:
    """K (…×3×3, pixels) of the horizontally flipped image of ``width`` pixels: cx → W − 1 − cx."""
    flipped = K.clone()
    flipped[..., 0, 2] = (width - 1) - K[..., 0, 2]
    return flipped


def flip_pose(T: torch.Tensor) -> torch.Tensor:
    """Relative camera pose (…×4×4) between horizontally flipped images: S·T·S with S = diag(−1, 1, 1, 1)."""
    mirror = MIRROR_X.to(T.dtype)
    return mirror @ T @ mirror


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """H×W×3 uint8 → height×width×3 uint8, with antialiasing when shrinking (cv2 INTER_AREA), bilinear otherwise."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    shrinking = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Label map (H×W, e.g. instance ids) resized by nearest neighbour."""
    if labels.shape[0] == height and labels.shape[1] == width:
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×H×W float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def color_sample(images: dict[int, np.ndarray], K: np.ndarray, draw: AugmentationDraw) -> dict:
    """``color``, ``color_aug`` and ``K`` keys of a sample from frames already at the training size.

    ``images``: {frame_id: H×W×3 uint8 RGB}; ``K``: 3×3 pixels of those images.
    """
    color, color_aug = {}, {}
    width = next(iter(images.values())).shape[1]
    for frame_id, image in images.items():
        tensor = to_tensor_image(image)
        if draw.flip:
            tensor = tensor.flip(-1)
        color[frame_id] = tensor
        color_aug[frame_id] = apply_color_jitter(tensor, draw.jitter)
    K_tensor = torch.as_tensor(K, dtype=torch.float32)
    if draw.flip:
        K_tensor = flip_intrinsics(K_tensor, width)
    return {"color": color, "color_aug": color_aug, "K": K_tensor}


def maybe_flip(map_: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
    """Flip a per-pixel map (…×H×W: depth, instance ids) when the sample is flipped."""
    return map_.flip(-1) if draw.flip else map_
