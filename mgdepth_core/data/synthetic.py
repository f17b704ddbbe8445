"""Synthetic dynamic street scenes with exact depth, poses, instance maps and "moving" flags.

A camera (1.5 m above the road, KITTI-like normalised intrinsics fx = 0.58·W, fy = 1.92·H) drives forward along a
two-lane street between two building facades. The world holds boxes: parked cars at the kerbs and standing
pedestrians (static), a car driving ahead in the ego lane, oncoming cars in the other lane and pedestrians crossing
the street (moving). Everything is rendered analytically: vectorised ray–plane and ray–box intersections in numpy,
Lambertian shading from a fixed sun and procedural textures anchored in world (or object) coordinates, so a
static point looks the same from every frame and a photometric warp with the true depth and pose reproduces it.

World frame: x right, y down, z forward (the camera's optical convention with no rotation); the road is the plane
y = 1.5 m. Pixel (u, v) looks along K⁻¹·(u, v, 1) (pixel centres on integers); the returned depth is z along the
optical axis in metres, 0 for sky pixels (nothing hit).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from mgdepth_core.data import MAX_INSTANCES, DataConfig
from mgdepth_core.data.transforms import color_sample, draw_augmentation, flip_pose, maybe_flip

PERSON, CAR = 1, 3  # COCO ids (torchvision numbering)
CAMERA_HEIGHT = 1.5  # metres above the road
ROAD_Y = CAMERA_HEIGHT
LANE_X = 1.8  # centre of the ego (right) lane; the oncoming lane is at −LANE_X
KERB_X = 5.5  # kerb line; sidewalks beyond it
FACADE_X = 9.0  # building facades at x = ±FACADE_X
FACADE_TOP_Y = ROAD_Y - 12.0  # facades are 12 m tall
HELD_OUT_SEED_OFFSET = 1000  # val seeds start here above the train seeds, test seeds twice as far
TEXTURE_SIZE = 128  # texels per side of each periodic texture
SKY = 0  # material index of sky pixels (nothing hit)
SKY_DEPTH = 1000.0  # metres at which sky pixels (depth 0) move in the exact optical flow
SKY_HORIZON = np.array([0.75, 0.82, 0.9], dtype=np.float32)
SKY_ZENITH = np.array([0.35, 0.55, 0.85], dtype=np.float32)
SUN = np.array([-0.45, -1.0, -0.35]) / np.linalg.norm([-0.45, -1.0, -0.35])  # towards the sun (y is down)


@dataclass
class SceneObject:
    """One instance: boxes given relative to its anchor point, which moves linearly with time."""

    instance_id: int
    class_id: int
    moving: bool
    anchor: np.ndarray  # (3,) world position at frame 0, metres
    velocity: np.ndarray  # (3,) metres per frame
    boxes: list[tuple[np.ndarray, np.ndarray, int]]  # (lo, hi) offsets from the anchor, metres; material index


def _periodic_noise(rng: np.random.Generator, size: int, min_wavelength: float) -> np.ndarray:
    """size×size float32 in [0, 1]: tileable 1/f noise without wavelengths shorter than ``min_wavelength`` texels."""
    freq = np.fft.fftfreq(size)
    radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    amplitude = np.where((radius > 0) & (radius <= 1.0 / min_wavelength), 1.0 / np.maximum(radius, 1e-6) ** 1.2, 0)
    phase = rng.uniform(0, 2 * np.pi, (size, size))
    field = np.real(np.fft.ifft2(amplitude * np.exp(1j * phase)))
    field = (field - field.min()) / (field.max() - field.min())
    return field.astype(np.float32)


class SyntheticSequence:
    """One deterministic sequence of ``num_frames`` frames at height×width, generated from ``seed``.

    ``frame(i)`` renders frame i (0 ≤ i < num_frames). Rendering costs a few milliseconds at 320×96.
    """

    def __init__(self, seed: int, num_frames: int = 40, height: int = 96, width: int = 320,
                 ego_speed_range: tuple[float, float] = (0.5, 1.5)):
        if num_frames < 1 or height < 8 or width < 8:
            raise ValueError(f"SyntheticSequence needs num_frames >= 1 and an image of at least 8×8, got "
                             f"num_frames={num_frames}, {height}×{width}")
        self.seed, self.num_frames, self.height, self.width = seed, num_frames, height, width
        rng = np.random.default_rng(seed)
        self.K = np.array([[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1]],
                          dtype=np.float64)
        self.ego_speed = float(rng.uniform(*ego_speed_range))  # metres per frame
        self._yaw = (rng.uniform(0.005, 0.02), rng.uniform(20, 60), rng.uniform(0, 2 * np.pi))
        self._pitch = (rng.uniform(0.002, 0.006), rng.uniform(8, 20), rng.uniform(0, 2 * np.pi))
        self._lateral = (rng.uniform(0.05, 0.3), rng.uniform(30, 80), rng.uniform(0, 2 * np.pi))
        self._make_materials(rng)
        self.objects = self._make_objects(rng)
        self.classes = np.zeros(MAX_INSTANCES + 1, dtype=np.int64)
        self.moving = np.zeros(MAX_INSTANCES + 1, dtype=bool)
        for obj in self.objects:
            self.classes[obj.instance_id] = obj.class_id
            self.moving[obj.instance_id] = obj.moving
        # a building closes the street (bounded depth), beyond every car driving ahead
        last_z = [obj.anchor[2] + obj.velocity[2] * num_frames for obj in self.objects if obj.velocity[2] > 0]
        self.street_end = max([self.ego_speed * num_frames + 120.0] + [z + 40.0 for z in last_z])
        v, u = np.mgrid[0:height, 0:width].astype(np.float32)
        self._rays_camera = np.stack([(u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1],
                                      np.ones_like(u)]).astype(np.float32)  # 3×H×W, camera z = 1
        self._inv_ray_norm = 1.0 / np.linalg.norm(self._rays_camera, axis=0)  # rotation-invariant
        self._face_shades = np.array([[_lambert(np.eye(3)[a] * s) for s in (-1.0, 1.0)] for a in range(3)],
                                     dtype=np.float32)

    # ----------------------------------------------------------------- scene description
    def _make_materials(self, rng: np.random.Generator) -> None:
        """Material table: base RGB colour (0..1), texture index, texel size (metres)."""
        self.textures = np.stack([_periodic_noise(rng, TEXTURE_SIZE, w) for w in (3.0, 3.0, 4.0, 2.5, 3.0, 5.0)])
        colours, texture_ids, texel_sizes = [], [], []

        def add(colour, texture: int, texel: float) -> int:
            colours.append(colour)
            texture_ids.append(texture)
            texel_sizes.append(texel)
            return len(colours) - 1

        add((0.0, 0.0, 0.0), 0, 1.0)  # SKY: coloured by _shade
        self.road_material = add((0.36, 0.36, 0.38), 0, 0.15)
        self.sidewalk_material = add((0.62, 0.58, 0.52), 1, 0.12)
        self.facade_materials = tuple(add(tuple(rng.uniform(0.35, 0.8, 3)), 2, 0.2) for _ in range(3))
        self.tyre_material = add((0.1, 0.1, 0.11), 5, 0.03)
        self._add_material = add
        self._colours, self._texture_ids, self._texel_sizes = colours, texture_ids, texel_sizes

    def _finish_materials(self) -> None:
        self.material_colour = np.asarray(self._colours, dtype=np.float32)
        self.material_texture = np.asarray(self._texture_ids, dtype=np.int32)
        self.material_texel = np.asarray(self._texel_sizes, dtype=np.float32)

    def _car(self, rng: np.random.Generator, instance_id: int, anchor, velocity, moving: bool) -> SceneObject:
        length, width = rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9)
        body = self._add_material(tuple(rng.uniform(0.1, 0.9, 3)), 3, 0.05)
        cabin = self._add_material(tuple(np.array(self._colours[body]) * 0.5), 4, 0.05)
        body_box = (np.array([-width / 2, -1.0, -length / 2]), np.array([width / 2, -0.25, length / 2]))
        cabin_box = (np.array([-width / 2 + 0.1, -1.5, -length / 4]), np.array([width / 2 - 0.1, -1.0, length / 4]))
        # wheels and underbody: one dark box that grounds the car on the road
        wheels_box = (np.array([-width / 2 + 0.05, -0.45, -length / 2 + 0.45]),
                      np.array([width / 2 - 0.05, 0.0, length / 2 - 0.45]))
        return SceneObject(instance_id, CAR, moving, np.array(anchor, float), np.array(velocity, float),
                           [(body_box[0], body_box[1], body), (cabin_box[0], cabin_box[1], cabin),
                            (wheels_box[0], wheels_box[1], self.tyre_material)])

    def _person(self, rng: np.random.Generator, instance_id: int, anchor, velocity, moving: bool) -> SceneObject:
        clothes = self._add_material(tuple(rng.uniform(0.1, 0.9, 3)), 5, 0.04)
        legs = self._add_material(tuple(rng.uniform(0.05, 0.4, 3)), 5, 0.04)
        height = rng.uniform(1.6, 1.9)
        torso = (np.array([-0.25, -height, -0.15]), np.array([0.25, -0.85, 0.15]), clothes)
        lower = (np.array([-0.2, -0.85, -0.12]), np.array([0.2, 0.0, 0.12]), legs)
        return SceneObject(instance_id, PERSON, moving, np.array(anchor, float), np.array(velocity, float),
                           [torso, lower])

    def _make_objects(self, rng: np.random.Generator) -> list[SceneObject]:
        """Cars driving ahead / oncoming, pedestrians crossing, parked cars and standing people. Anchors sit on the
        road (y = ROAD_Y), box offsets extend upwards (negative y)."""
        objects: list[SceneObject] = []
        route = self.ego_speed * self.num_frames + 60.0  # metres of street the camera can see during the sequence
        next_id = iter(range(1, MAX_INSTANCES + 1))
        if rng.random() < 0.8:  # a car ahead in the ego lane, slightly slower or faster than the camera
            speed = self.ego_speed * rng.uniform(0.85, 1.3)
            objects.append(self._car(rng, next(next_id), (LANE_X, ROAD_Y, rng.uniform(12, 25)), (0, 0, speed), True))
        for _ in range(rng.integers(1, 4)):  # oncoming traffic in the other lane
            start = rng.uniform(25, route + 40)
            speed = rng.uniform(0.5, 1.5)
            objects.append(self._car(rng, next(next_id), (-LANE_X, ROAD_Y, start), (0, 0, -speed), True))
        crossings = []
        for _ in range(rng.integers(1, 3)):  # pedestrians crossing the street ahead of the camera
            crossing_z = rng.uniform(15, max(20.0, route - 30))
            direction = rng.choice([-1.0, 1.0])
            start_offset = rng.uniform(1.5, 6.5)  # starts on the road or the kerb: crosses during the sequence
            start_x = -direction * start_offset
            # 1.0–1.8 m/s at 10 frames/s, slower in long sequences so that nobody walks into a facade
            speed = min(rng.uniform(0.1, 0.18), (start_offset + FACADE_X - 0.5) / self.num_frames)
            objects.append(self._person(rng, next(next_id), (start_x, ROAD_Y, crossing_z),
                                        (direction * speed, 0, 0), True))
            crossings.append(crossing_z)
        z = rng.uniform(5, 12)
        while z < route and len(objects) < MAX_INSTANCES - 2:  # parked cars at both kerbs, leaving crossings free
            side = rng.choice([-1.0, 1.0])
            if all(abs(z - c) > 4.0 for c in crossings):
                objects.append(self._car(rng, next(next_id), (side * (KERB_X - 1.1), ROAD_Y, z), (0, 0, 0), False))
            z += rng.uniform(6, 16)
        for _ in range(rng.integers(1, 3)):  # people standing on the sidewalk
            if len(objects) >= MAX_INSTANCES:
                break
            side = rng.choice([-1.0, 1.0])
            objects.append(self._person(rng, next(next_id), (side * rng.uniform(6.2, 8.5), ROAD_Y,
                                                              rng.uniform(10, route)), (0, 0, 0), False))
        self._finish_materials()
        return objects

    # ----------------------------------------------------------------- poses
    def camera_pose(self, index: int) -> np.ndarray:
        """T_world_camera (4×4 float64) of frame ``index``: forward motion with gentle yaw, pitch and lane drift."""
        yaw = self._yaw[0] * np.sin(2 * np.pi * index / self._yaw[1] + self._yaw[2])
        pitch = self._pitch[0] * np.sin(2 * np.pi * index / self._pitch[1] + self._pitch[2])
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        rot_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rot_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        T = np.eye(4)
        T[:3, :3] = rot_yaw @ rot_pitch
        lateral = self._lateral[0] * np.sin(2 * np.pi * index / self._lateral[1] + self._lateral[2])
        T[:3, 3] = (LANE_X + lateral, 0.0, self.ego_speed * index)
        return T

    def relative_pose(self, frame: int, reference: int) -> np.ndarray:
        """T_frame_reference (4×4): maps camera points of frame ``reference`` into the camera of ``frame``."""
        return np.linalg.inv(self.camera_pose(frame)) @ self.camera_pose(reference)

    def optical_flow(self, target: int, reference: int, rendered: dict | None = None) -> np.ndarray:
        """Exact optical flow target → reference, 2×H×W float32 pixels: where each target pixel's surface point was
        seen in frame ``reference`` (camera motion and the objects' own motion). Sky pixels are taken at
        ``SKY_DEPTH``. ``rendered``: ``frame(target)`` where already rendered."""
        rendered = self.frame(target) if rendered is None else rendered
        depth = np.where(rendered["depth"] > 0, rendered["depth"], SKY_DEPTH).astype(np.float64)
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(self.K).T
        T_world_target = self.camera_pose(target)
        points = (rays * depth[..., None]) @ T_world_target[:3, :3].T + T_world_target[:3, 3]
        for obj in self.objects:
            if obj.moving:
                points[rendered["instances"] == obj.instance_id] -= obj.velocity * (target - reference)
        T_reference_world = np.linalg.inv(self.camera_pose(reference))
        camera = points @ T_reference_world[:3, :3].T + T_reference_world[:3, 3]
        pixels = camera @ self.K.T
        pixels = pixels[..., :2] / pixels[..., 2:]
        return (pixels - np.stack([u, v], -1)).transpose(2, 0, 1).astype(np.float32)

    # ----------------------------------------------------------------- rendering
    def frame(self, index: int, object_time: int | None = None) -> dict:
        """Render frame ``index``: the camera of that frame, the objects where they are at frame ``object_time``
        (default ``index``; another time renders e.g. the previous camera with every object held where it is now,
        the ideal static reference frame of Manydepth2).

        Returns a dict: ``image`` H×W×3 uint8 RGB, ``depth`` H×W float32 metres (0 = sky), ``K`` 3×3 float64,
        ``T_world_camera`` 4×4 float64, ``instances`` H×W int64 (0 = background), ``moving`` (MAX_INSTANCES+1,)
        bool and ``classes`` (MAX_INSTANCES+1,) int64 COCO ids, both indexed by instance id.
        """
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside 0..{self.num_frames - 1} of synthetic sequence seed={self.seed}")
        object_time = index if object_time is None else object_time
        T = self.camera_pose(index)
        origin = T[:3, 3].astype(np.float32)
        shape = (self.height, self.width)
        # 3×H×W world ray directions (camera z component 1, so the ray parameter is the depth)
        rays = (T[:3, :3].astype(np.float32) @ self._rays_camera.reshape(3, -1)).reshape(3, *shape)
        rays[np.abs(rays) < 1e-9] = 1e-9
        inv_rays = 1.0 / rays
        instances = np.zeros(shape, dtype=np.int64)
        depth, material, tex_a, tex_b, shade = self._render_planes(rays, origin)
        for obj in self.objects:
            anchor = obj.anchor + obj.velocity * object_time
            for lo, hi, box_material in obj.boxes:
                self._render_box(anchor + lo, anchor + hi, anchor, obj.instance_id, box_material, rays, inv_rays,
                                 T, depth, material, tex_a, tex_b, shade, instances)
        image = self._shade(rays, material, tex_a, tex_b, shade)
        depth[~np.isfinite(depth)] = 0.0
        return {"image": image, "depth": depth, "K": self.K.copy(), "T_world_camera": T, "instances": instances,
                "moving": self.moving.copy(), "classes": self.classes.copy()}

    def _render_planes(self, rays, origin):
        """Road/sidewalk (y = ROAD_Y), the two facades (x = ±FACADE_X, up to FACADE_TOP_Y) and the building that
        closes the street (z = self.street_end). Returns per-pixel depth (inf = sky), material, texture
        coordinates (metres) and shade, each H×W."""
        rx, ry, rz = rays
        ox, oy, oz = (float(c) for c in origin)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_road = (ROAD_Y - oy) / ry
            t_road[ry <= 1e-6] = np.inf
            left = rx < 0
            t_wall = np.where(left, np.float32(-FACADE_X - ox), np.float32(FACADE_X - ox)) / rx
            t_end = np.float32(self.street_end - oz) / rz
        t_wall[(t_wall <= 0) | (oy + t_wall * ry < FACADE_TOP_Y)] = np.inf
        t_end[(t_end <= 0) | (oy + t_end * ry < FACADE_TOP_Y)] = np.inf
        road = (t_road <= t_wall) & (t_road <= t_end) & (t_road < np.inf)
        end = ~road & (t_end < t_wall)
        wall = ~road & ~end & (t_wall < np.inf)
        depth = np.where(road, t_road, np.minimum(t_wall, t_end))
        finite = np.where(depth < np.inf, depth, np.float32(0))
        px, py, pz = ox + finite * rx, oy + finite * ry, oz + finite * rz
        material = np.full(depth.shape, SKY, dtype=np.int32)
        material[road] = self.road_material
        material[road & (np.abs(px) > KERB_X)] = self.sidewalk_material
        material[wall & left] = self.facade_materials[0]
        material[wall & ~left] = self.facade_materials[1]
        material[end] = self.facade_materials[2]
        tex_a = np.where(wall, pz, px)  # road: (x, z); facades: (z, y); end wall: (x, y)
        tex_b = np.where(road, pz, py)
        shade = np.full(depth.shape, _lambert(np.array([0.0, 0, -1.0])), dtype=np.float32)
        shade[road] = _lambert(np.array([0.0, -1.0, 0.0]))
        shade[wall & left] = _lambert(np.array([1.0, 0, 0]))
        shade[wall & ~left] = _lambert(np.array([-1.0, 0, 0]))
        return depth, material, tex_a, tex_b, shade

    def _screen_rect(self, lo, hi, T) -> tuple[int, int, int, int] | None:
        """Conservative pixel rectangle (v0, v1, u0, u1) covering the box, or None when it is behind the camera."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        camera = (corners - T[:3, 3]) @ T[:3, :3]
        z = camera[:, 2]
        if np.all(z < 0.05):
            return None
        if np.any(z < 0.05):
            return 0, self.height, 0, self.width
        u = self.K[0, 0] * camera[:, 0] / z + self.K[0, 2]
        v = self.K[1, 1] * camera[:, 1] / z + self.K[1, 2]
        u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, self.width)
        v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, self.height)
        if u0 >= u1 or v0 >= v1:
            return None
        return v0, v1, u0, u1

    def _render_box(self, lo, hi, anchor, instance_id, box_material, rays, inv_rays, T, depth, material,
                    tex_a, tex_b, shade, instances) -> None:
        """Slab test of one axis-aligned box against the rays of its screen rectangle, z-buffered."""
        rect = self._screen_rect(lo, hi, T)
        if rect is None:
            return
        v0, v1, u0, u1 = rect
        origin = T[:3, 3]
        sub_inv = inv_rays[:, v0:v1, u0:u1]
        t1 = (lo - origin).astype(np.float32)[:, None, None] * sub_inv
        t2 = (hi - origin).astype(np.float32)[:, None, None] * sub_inv
        t_min = np.minimum(t1, t2)
        t_near = t_min.max(axis=0)
        t_far = np.maximum(t1, t2).min(axis=0)
        sub_depth = depth[v0:v1, u0:u1]
        hit = (t_near <= t_far) & (t_near > 0.05) & (t_near < sub_depth)
        if not hit.any():
            return
        axis = t_min.argmax(axis=0)[hit]
        t_hit = t_near[hit]
        ray_hit = rays[:, v0:v1, u0:u1][:, hit]  # 3×n
        local = (origin - anchor).astype(np.float32)[:, None] + t_hit * ray_hit  # texture moves with the object
        # the visible face's normal points back towards the camera
        facing_positive = ray_hit[axis, np.arange(len(axis))] < 0
        sub_depth[hit] = t_hit
        material[v0:v1, u0:u1][hit] = box_material
        tex_a[v0:v1, u0:u1][hit] = np.choose(axis, [local[2], local[0], local[0]])
        tex_b[v0:v1, u0:u1][hit] = np.choose(axis, [local[1], local[2], local[1]])
        shade[v0:v1, u0:u1][hit] = self._face_shades[axis, facing_positive.astype(np.int64)]
        instances[v0:v1, u0:u1][hit] = instance_id

    def _shade(self, rays, material, tex_a, tex_b, shade) -> np.ndarray:
        """Colour = base colour × (0.55 + 0.9·texture) × Lambert shade, plus lane marks and windows; sky gradient."""
        texel = self.material_texel[material]
        texture = _bilinear_periodic(self.textures, self.material_texture[material], tex_a / texel, tex_b / texel)
        brightness = (0.55 + 0.9 * texture) * shade
        road = material == self.road_material  # road texture coordinates are world (x, z)
        centre_dash = (np.abs(tex_a) < 0.08) & (np.mod(tex_b, 6.0) < 3.0)
        kerb_line = np.abs(np.abs(tex_a) - (KERB_X - 0.25)) < 0.08
        marking = road & (centre_dash | kerb_line)
        facade = (material >= self.facade_materials[0]) & (material <= self.facade_materials[-1])
        along, up = np.mod(tex_a, 4.0), np.mod(tex_b - ROAD_Y, 3.5)  # facade coordinates are (z or x, y)
        window = facade & (along > 1.2) & (along < 3.0) & (up > 1.0) & (up < 2.6)
        brightness[window] *= 0.35
        brightness[marking] = 0.9 * shade[marking]
        colour = self.material_colour[material]
        colour[marking] = 1.0
        image = colour * brightness[..., None]
        sky = material == SKY
        if sky.any():
            blend = np.clip(-2.0 * rays[1][sky] * self._inv_ray_norm[sky], 0, 1)[:, None]  # elevation; up is −y
            image[sky] = (1 - blend) * SKY_HORIZON + blend * SKY_ZENITH
        return (np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def true_geometry_pair(sequence: SyntheticSequence, t: int) -> dict:
    """Frames t − 1 and t with perfect geometry, as 1-batch tensors (benchmarks and tests of the static reference
    and the flow): ``image`` (frame t) and ``reference`` (t − 1) B×3×H×W in [0, 1]; ``ideal`` (camera t − 1, every
    object where it is at t); ``depth`` (true, sky at SKY_DEPTH) and ``true_depth`` (0 = sky) B×1×H×W metres;
    ``moving`` B×1×H×W bool (moving-object pixels at t); ``flow`` exact t → t − 1, B×2×H×W pixels; ``T`` =
    T_{t−1, t} B×4×4; ``K`` B×3×3."""
    def image(rendered: dict) -> torch.Tensor:
        return torch.from_numpy(rendered["image"]).permute(2, 0, 1)[None].float() / 255

    target = sequence.frame(t)
    true_depth = target["depth"]
    moving_ids = [obj.instance_id for obj in sequence.objects if obj.moving]
    return {
        "seed": sequence.seed, "frame": t,
        "image": image(target), "reference": image(sequence.frame(t - 1)),
        "ideal": image(sequence.frame(t - 1, object_time=t)),
        "depth": torch.from_numpy(np.where(true_depth > 0, true_depth, SKY_DEPTH)).float()[None, None],
        "true_depth": torch.from_numpy(true_depth).float()[None, None],
        "moving": torch.from_numpy(np.isin(target["instances"], moving_ids))[None, None],
        "flow": torch.from_numpy(sequence.optical_flow(t, t - 1, target))[None],
        "T": torch.from_numpy(sequence.relative_pose(t - 1, t)).float()[None],
        "K": torch.from_numpy(sequence.K).float()[None],
    }


def _lambert(normal: np.ndarray) -> float:
    """Ambient + diffuse shading factor of a surface with unit ``normal`` under the fixed sun."""
    return 0.45 + 0.55 * max(0.0, float(normal @ SUN))


def _bilinear_periodic(textures: np.ndarray, texture_ids: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bilinear lookup in tileable textures (N×S×S) at texel coordinates (a = column, b = row), per pixel."""
    size = textures.shape[-1]
    flat = textures.reshape(-1)
    mask = size - 1  # size is a power of two
    a0, b0 = np.floor(a), np.floor(b)
    fa, fb = a - a0, b - b0
    a0 = a0.astype(np.int32) & mask
    b0 = b0.astype(np.int32) & mask
    a1, b1 = (a0 + 1) & mask, (b0 + 1) & mask
    base = texture_ids * (size * size)
    b0, b1 = base + b0 * size, base + b1 * size
    top = flat[b0 + a0] * (1 - fa) + flat[b0 + a1] * fa
    bottom = flat[b1 + a0] * (1 - fa) + flat[b1 + a1] * fa
    return top * (1 - fb) + bottom * fb


RENDERED_BYTES_PER_PIXEL = 15  # a rendered frame: uint8 RGB, float32 depth, int64 instance ids


class SyntheticDynamicDataset(Dataset):
    """Samples (see :mod:`mgdepth_core.data` for the layout) from synthetic sequences, one seed each.

    Every frame of every sequence is a target frame when all of ``frame_ids`` exist around it. Frames are rendered
    on demand at the training size (deterministic per seed), so nothing is stored on disk; the last
    ``cached_frames`` renders are kept, so sequential reading renders each frame once instead of once per sample.
    With ``with_flow`` each sample also carries ``"flow_gt"``: {frame id: 2×H×W exact optical flow frame 0 → that
    frame, pixels} for every source frame (flipped with the sample).
    """

    def __init__(self, seeds: list[int], num_frames: int, height: int, width: int, frame_ids: list[int],
                 augment: bool = False, flip_probability: float = 0.5, jitter_probability: float = 0.5,
                 cached_frames: int = 8, with_flow: bool = False):
        if not seeds:
            raise ValueError("SyntheticDynamicDataset needs at least one seed")
        if 0 not in frame_ids:
            raise ValueError(f"frame_ids {frame_ids} must contain the target frame 0")
        self.sequences = [SyntheticSequence(seed, num_frames, height, width) for seed in seeds]
        self.frame_ids = list(frame_ids)
        self.augment, self.flip_probability, self.jitter_probability = augment, flip_probability, jitter_probability
        first, last = -min(self.frame_ids), num_frames - max(self.frame_ids)
        if first >= last:
            raise ValueError(f"sequences of {num_frames} frames are too short for frame_ids {frame_ids}")
        self.index = [(s, i) for s in range(len(self.sequences)) for i in range(first, last)]
        self.cached_frames = cached_frames
        self.with_flow = with_flow
        self._cache: OrderedDict[tuple[int, int], dict] = OrderedDict()

    def _frame(self, sequence_index: int, frame: int) -> dict:
        key = (sequence_index, frame)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        rendered = self.sequences[sequence_index].frame(frame)
        if self.cached_frames > 0:
            self._cache[key] = rendered
            while len(self._cache) > self.cached_frames:
                self._cache.popitem(last=False)
        return rendered

    @classmethod
    def from_config(cls, config: DataConfig, split: str = "train", training: bool = True
                    ) -> SyntheticDynamicDataset:
        """train: seeds synthetic_seed + i; val: + 1000; test: + 2000 (disjoint for any sequence count < 1000)."""
        offsets = {"train": 0, "val": HELD_OUT_SEED_OFFSET, "test": 2 * HELD_OUT_SEED_OFFSET}
        if split not in offsets:
            raise ValueError(f"synthetic split must be one of {sorted(offsets)}, got {split!r}")
        seeds = [config.synthetic_seed + offsets[split] + i for i in range(config.synthetic_sequences)]
        cached_frames = max(8, int(config.synthetic_cache_mb * 2 ** 20 / (config.height * config.width
                                                                          * RENDERED_BYTES_PER_PIXEL)))
        return cls(seeds, config.synthetic_frames, config.height, config.width, config.frame_ids,
                   augment=training and config.augment, flip_probability=config.flip_probability,
                   jitter_probability=config.jitter_probability, cached_frames=cached_frames,
                   with_flow=config.exact_flow)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position: int) -> dict:
        sequence_index, target = self.index[position]
        sequence = self.sequences[sequence_index]
        frames = {frame_id: self._frame(sequence_index, target + frame_id) for frame_id in self.frame_ids}
        draw = draw_augmentation(self.augment, self.flip_probability, self.jitter_probability)
        sample = color_sample({f: frames[f]["image"] for f in self.frame_ids}, sequence.K, draw)
        sample["index"] = position
        # copies: the cached renders must not be shared with (and modified through) the sample
        sample["depth_gt"] = maybe_flip(torch.from_numpy(frames[0]["depth"].copy())[None], draw)
        sample["instances"] = {f: maybe_flip(torch.from_numpy(frames[f]["instances"].copy())[None], draw)
                               for f in self.frame_ids}
        sample["instance_class"] = torch.from_numpy(sequence.classes.copy())
        sample["instance_moving"] = torch.from_numpy(sequence.moving.copy())
        sample["instance_score"] = (sample["instance_class"] > 0).float()
        T_world_target = frames[0]["T_world_camera"]
        pose = {}
        for frame_id in self.frame_ids:
            T = torch.from_numpy(np.linalg.inv(frames[frame_id]["T_world_camera"]) @ T_world_target).float()
            pose[frame_id] = flip_pose(T) if draw.flip else T
        sample["pose_gt"] = pose
        if self.with_flow:
            sample["flow_gt"] = {}
            for frame_id in self.frame_ids:
                if frame_id != 0:
                    flow = torch.from_numpy(sequence.optical_flow(target, target + frame_id, frames[0]))
                    sample["flow_gt"][frame_id] = flow.flip(-1) * flow.new_tensor([-1.0, 1.0]).view(2, 1, 1) \
                        if draw.flip else flow
        return sample
