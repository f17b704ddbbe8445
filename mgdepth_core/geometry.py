"""Camera geometry, in one place: intrinsics scaling, back-projection, projection, poses, warping, splatting.

Conventions (used everywhere in the project):

* Camera frames follow the REP 103 optical convention: x right, y down, z forward; units are metres.
* ``K`` is a B×3×3 pinhole matrix in pixels of the image it is used with (scale it with
  :func:`scale_intrinsics` when the image is resized).
* A pose ``T_a_b`` is a B×4×4 rigid transform that maps points expressed in frame ``b`` into frame ``a``.
  For warping the target frame t from a source frame s the transform needed is ``T_s_t`` (target points into
  the source camera); Manydepth calls it ``cam_T_cam``.
* Pixel coordinates: (u, v) with u the column; pixel centres sit on integers (OpenCV convention), so
  normalised sampling coordinates use ``align_corners=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-7


def axis_angle_to_rotation_matrix(axisangle: torch.Tensor) -> torch.Tensor:
    """B×3 axis-angle (radians) → B×3×3 rotation, Rodrigues' formula as Monodepth2's ``rot_from_axisangle``
    computes it (axis = v / (|v| + 1e-7))."""
    angle = axisangle.norm(dim=1, keepdim=True)
    x, y, z = (axisangle / (angle + EPS)).unbind(1)
    ca, sa = torch.cos(angle[:, 0]), torch.sin(angle[:, 0])
    c = 1 - ca
    rows = [x * x * c + ca, x * y * c - z * sa, z * x * c + y * sa,
            x * y * c + z * sa, y * y * c + ca, y * z * c - x * sa,
            z * x * c - y * sa, y * z * c + x * sa, z * z * c + ca]
    return torch.stack(rows, 1).view(-1, 3, 3)


def rotation_matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """B×3×3 rotation → B×3 axis-angle (radians, angle in [0, π]) through the quaternion, robust at every angle
    (the quaternion component with the largest magnitude is recovered first)."""
    m = R.reshape(-1, 9).unbind(1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    magnitudes = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                              1 - m00 - m11 + m22], 1).clamp(min=0).sqrt()  # 2·|w|, 2·|x|, 2·|y|, 2·|z|
    candidates = torch.stack([
        torch.stack([magnitudes[:, 0] ** 2, m21 - m12, m02 - m20, m10 - m01], 1),
        torch.stack([m21 - m12, magnitudes[:, 1] ** 2, m10 + m01, m02 + m20], 1),
        torch.stack([m02 - m20, m10 + m01, magnitudes[:, 2] ** 2, m12 + m21], 1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, magnitudes[:, 3] ** 2], 1)], 1)
    candidates = candidates / (2 * magnitudes.clamp(min=0.1)).unsqueeze(-1)  # each row: a quaternion (w, x, y, z)
    quaternion = candidates[torch.arange(len(candidates)), magnitudes.argmax(1)]
    quaternion = torch.where(quaternion[:, :1] < 0, -quaternion, quaternion)  # w ≥ 0: angle ≤ π
    sin_half = quaternion[:, 1:].norm(dim=1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, quaternion[:, :1])
    scale = torch.where(sin_half > EPS, angle / sin_half.clamp(min=EPS), 2 / quaternion[:, :1].clamp(min=EPS))
    return quaternion[:, 1:] * scale


def scale_intrinsics(K: torch.Tensor, scale_x: float, scale_y: float) -> torch.Tensor:
    """K for an image resized by (scale_x, scale_y). ``K``: …×3×3 pixels. Returns a new tensor.

    As in Monodepth2/Manydepth, focal lengths and principal point are simply multiplied.
    """
    scaled = K.clone()
    scaled[..., 0, :] = scaled[..., 0, :] * scale_x
    scaled[..., 1, :] = scaled[..., 1, :] * scale_y
    return scaled


def intrinsics_at_scale(K: torch.Tensor, scale: int) -> torch.Tensor:
    """K (…×3×3, full-resolution pixels) for the feature map at 1/2^scale resolution."""
    factor = 1.0 / (2 ** scale)
    return scale_intrinsics(K, factor, factor)


def pixel_grid(height: int, width: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates, 3×H×W: rows (u, v, 1) with u the column index."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def backproject(depth: torch.Tensor, K_inv: torch.Tensor) -> torch.Tensor:
    """3-D points of every pixel. ``depth``: B×1×H×W metres; ``K_inv``: B×3×3. Returns B×3×H×W metres."""
    batch, _, height, width = depth.shape
    rays = K_inv @ pixel_grid(height, width, depth.device, depth.dtype).reshape(1, 3, -1)
    return (rays * depth.reshape(batch, 1, -1)).reshape(batch, 3, height, width)


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``T`` (B×4×4) to ``points`` (B×3×H×W). Returns B×3×H×W."""
    batch, _, height, width = points.shape
    flat = points.reshape(batch, 3, -1)
    return (T[:, :3, :3] @ flat + T[:, :3, 3:]).reshape(batch, 3, height, width)


def project(points: torch.Tensor, K: torch.Tensor, min_depth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels of camera-frame points. ``points``: B×3×H×W; ``K``: B×3×3.

    Returns (pixels B×2×H×W as (u, v), z B×1×H×W metres). z is clamped below at ``min_depth`` for the division
    only; the returned z is the true one so callers can test ``z > 0`` (in front of the camera).
    """
    batch, _, height, width = points.shape
    cam = (K @ points.reshape(batch, 3, -1)).reshape(batch, 3, height, width)
    z = points[:, 2:3]
    pixels = cam[:, :2] / cam[:, 2:3].clamp(min=min_depth)
    return pixels, z


def pixels_to_sampling_grid(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates B×2×h×w in an H×W image → ``grid_sample`` grid B×h×w×2 in [-1, 1] (align_corners)."""
    u = pixels[:, 0] / max(width - 1, 1) * 2 - 1
    v = pixels[:, 1] / max(height - 1, 1) * 2 - 1
    return torch.stack([u, v], dim=-1)


def pose_from_axisangle_translation(axisangle: torch.Tensor, translation: torch.Tensor,
                                    invert: bool = False) -> torch.Tensor:
    """4×4 pose from the pose network's 6 numbers (Monodepth2 parameterisation).

    ``axisangle``, ``translation``: B×3 (radians, metres up to scale). Returns B×4×4: T·R, or, with ``invert``,
    the exact inverse Rᵀ·T(−t).
    """
    rotation = axis_angle_to_rotation_matrix(axisangle)
    T = torch.eye(4, device=axisangle.device, dtype=axisangle.dtype).repeat(axisangle.shape[0], 1, 1)
    if invert:
        rotation = rotation.transpose(1, 2)
        T[:, :3, :3] = rotation
        T[:, :3, 3] = -(rotation @ translation.unsqueeze(-1)).squeeze(-1)
    else:
        T[:, :3, :3] = rotation
        T[:, :3, 3] = translation
    return T


def axisangle_translation_from_pose(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pose_from_axisangle_translation` (without invert): B×4×4 → (B×3 axis-angle, B×3 t)."""
    return rotation_matrix_to_axis_angle(T[:, :3, :3].contiguous()), T[:, :3, 3]


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Exact inverse of rigid transforms, B×4×4."""
    rotation_t = T[:, :3, :3].transpose(1, 2)
    inverse = torch.eye(4, device=T.device, dtype=T.dtype).repeat(T.shape[0], 1, 1)
    inverse[:, :3, :3] = rotation_t
    inverse[:, :3, 3] = -(rotation_t @ T[:, :3, 3:]).squeeze(-1)
    return inverse


def reproject(depth: torch.Tensor, T_source_target: torch.Tensor, K: torch.Tensor,
              K_source: torch.Tensor | None = None, point_offsets: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target pixel lands in the source camera.

    ``depth``: B×1×H×W target depth, metres; ``T_source_target``: B×4×4; ``K``: B×3×3 for the target image;
    ``K_source`` defaults to ``K``. ``point_offsets`` (B×3×H×W metres, source camera axes) moves individual
    points after the rigid motion: Dyna-DM's object translations (eq. 3). Returns (pixels B×2×H×W in the
    source image, z B×1×H×W in the source camera).
    """
    points = transform_points(T_source_target, backproject(depth, torch.linalg.inv(K)))
    if point_offsets is not None:
        points = points + point_offsets
    return project(points, K if K_source is None else K_source)


def rigid_flow(depth: torch.Tensor, T_source_target: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Optical flow (pixels, B×2×H×W) that a static scene of the given target depth would produce."""
    pixels, _ = reproject(depth, T_source_target, K)
    height, width = depth.shape[-2:]
    return pixels - pixel_grid(height, width, depth.device, depth.dtype)[:2].unsqueeze(0)


def sample(image: torch.Tensor, pixels: torch.Tensor, padding_mode: str = "border",
           mode: str = "bilinear") -> torch.Tensor:
    """Bilinearly sample ``image`` (B×C×H×W) at ``pixels`` (B×2×h×w, pixel units of ``image``). Returns B×C×h×w."""
    grid = pixels_to_sampling_grid(pixels, *image.shape[-2:])
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def in_image(pixels: torch.Tensor, height: int, width: int, margin: float = 0.0) -> torch.Tensor:
    """B×1×h×w bool: pixel coordinates at least ``margin`` pixels inside an H×W image."""
    u, v = pixels[:, 0:1], pixels[:, 1:2]
    return (u >= margin) & (u <= width - 1 - margin) & (v >= margin) & (v <= height - 1 - margin)


def inverse_warp(source: torch.Tensor, depth: torch.Tensor, T_source_target: torch.Tensor, K: torch.Tensor,
                 padding_mode: str = "border", point_offsets: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesise the target view from a source image (backward warping).

    ``source``: B×C×H×W; ``depth``: B×1×H×W target depth, metres; ``T_source_target``: B×4×4; ``K``: B×3×3;
    ``point_offsets``: optional per-pixel object translation (see :func:`reproject`).
    Returns (warped B×C×H×W, valid B×1×H×W bool: landed inside the source image and in front of the camera).
    """
    pixels, z = reproject(depth, T_source_target, K, point_offsets=point_offsets)
    warped = sample(source, pixels, padding_mode=padding_mode)
    valid = in_image(pixels, *source.shape[-2:]) & (z > 0)
    return warped, valid


def splat(values: torch.Tensor, pixels: torch.Tensor, priority: torch.Tensor,
          size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each source pixel's ``values`` to the nearest integer position of ``pixels``; where several land on
    one pixel the lowest ``priority`` wins (a z-buffer when it is depth).

    ``values``: B×C×h×w; ``pixels``: B×2×h×w target positions (u, v) in the H×W target image (``size``, default
    h×w); ``priority``: B×1×h×w, only finite values count (non-finite: the point is dropped). Returns (splatted
    values B×C×H×W, 0 where empty; winning priority B×1×H×W, 0 where empty; valid B×1×H×W bool: some point
    landed). No gradients.
    """
    with torch.no_grad():
        batch, channels = values.shape[:2]
        height, width = values.shape[-2:] if size is None else size
        u = pixels[:, 0].round().reshape(batch, -1)
        v = pixels[:, 1].round().reshape(batch, -1)
        key = priority.reshape(batch, -1)
        ok = (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1) & torch.isfinite(key) & torch.isfinite(
            u) & torch.isfinite(v)
        dump = height * width  # an extra slot that collects every point that falls outside
        target = v.clamp(0, height - 1).long() * width + u.clamp(0, width - 1).long()
        target = torch.where(ok, target, torch.full_like(target, dump))
        key = torch.where(ok, key, torch.full_like(key, float("inf")))
        best = torch.full((batch, dump + 1), float("inf"), device=key.device, dtype=key.dtype)
        best.scatter_reduce_(1, target, key, reduce="amin")
        winner = ok & (key <= best.gather(1, target))
        out = torch.zeros(batch, channels, dump + 1, device=values.device, dtype=values.dtype)
        index = torch.where(winner, target, torch.full_like(target, dump))
        out.scatter_(2, index.unsqueeze(1).expand(-1, channels, -1), values.reshape(batch, channels, -1))
        best = best[:, :dump]
        valid = torch.isfinite(best)
        best = torch.where(valid, best, torch.zeros_like(best))
        return (out[:, :, :dump].reshape(batch, channels, height, width), best.reshape(batch, 1, height, width),
                valid.reshape(batch, 1, height, width))


def forward_splat(values: torch.Tensor, depth: torch.Tensor, T_target_source: torch.Tensor, K: torch.Tensor,
                  upscale: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward-warp (splat) source-frame values into the target frame with a z-buffer.

    Each source pixel (optionally subdivided ``upscale``×``upscale`` times to fill holes, as Insta-DM does)
    is moved with its depth and ``T_target_source``, rounded to the nearest target pixel, and the nearest
    point wins. ``values``: B×C×H×W (e.g. instance masks); ``depth``: B×1×H×W source depth, metres;
    ``K``: B×3×3. Returns (splatted values B×C×H×W, splatted depth B×1×H×W metres (0 where empty),
    valid B×1×H×W bool: some point landed). No gradients flow (the operation is a discrete assignment).
    """
    with torch.no_grad():
        height, width = values.shape[-2:]
        if upscale > 1:
            values = F.interpolate(values, scale_factor=upscale, mode="nearest")
            depth = F.interpolate(depth, scale_factor=upscale, mode="nearest")
            K_fine = scale_intrinsics(K, upscale, upscale)
            # Sub-pixel centres of the fine grid expressed in coarse pixels: (i + 0.5)/s − 0.5.
            K_fine[:, 0, 2] = (K[:, 0, 2] + 0.5) * upscale - 0.5
            K_fine[:, 1, 2] = (K[:, 1, 2] + 0.5) * upscale - 0.5
        else:
            K_fine = K
        points = transform_points(T_target_source, backproject(depth, torch.linalg.inv(K_fine)))
        pixels, z = project(points, K)
        z = torch.where(z > 1e-3, z, torch.full_like(z, float("inf")))
        return splat(values, pixels, z, (height, width))


def disparity_to_depth(disp: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid network output → (scaled disparity, depth in metres), Monodepth2's ``disp_to_depth``."""
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled
