"""Procedural multimodal scenes: RGB, dense/raw/sparse depth, NIR and labels from one raycaster.

Each frame is a random indoor-like room or outdoor-like trail scene built from triangle meshes and
rendered with open3d's `RaycastingScene` through a pinhole camera whose intrinsics, height, pitch, roll
and gravity direction are known exactly. The scenes are designed so that no single modality suffices:

* camouflaged objects share the texture of the wall or ground behind them (depth separates them);
* posters and ground markings are flat decals on a surface (only RGB shows them);
* dark and foggy frames degrade RGB while depth and NIR stay intact;
* green painted posts look like vegetation in RGB but are dark in NIR.

Frames are deterministic for (seed, index): per-frame random streams come from
`np.random.SeedSequence(seed, spawn_key=(index,))`, so results do not depend on the number of workers.

Coordinate frames. World: x east, y north, z up; gravity points along -z. Camera: x right, y down,
z forward (OpenCV). Depth is z-depth in metres (0 = the ray hits nothing). Positive pitch looks down,
positive roll turns the camera's right side down.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import open3d as o3d
from numpy.typing import NDArray

import fusionseg
from fusionseg.config import SyntheticConfig, config_to_dict
from fusionseg.data.datasets import SYNTHETIC
from fusionseg.data.io import write_depth, write_png
from fusionseg.data.listfile import write_list
from fusionseg.data.pool import init_worker
from fusionseg.errors import ConfigError, DataError
from fusionseg.fsutil import atomic_write_text, ensure_writable_dir
from fusionseg.modalities.intrinsics import Intrinsics

GENERATOR_NAME = "fusionseg.synthetic"
# Bump whenever the same (seed, index, config) would render different pixels.
GENERATOR_VERSION = 1

COLUMNS: tuple[str, ...] = ("rgb", "depth", "depth_raw", "depth_sparse", "nir", "label")
SPLITS: tuple[str, ...] = ("train", "val")
LAYOUTS: tuple[str, ...] = ("indoor", "outdoor")
CONDITIONS: tuple[str, ...] = ("clear", "dark", "fog")
DEPTH_SCALE_M = 0.001  # depth PNGs store millimetres

# Class ids, looked up by name in the one class list (fusionseg.data.datasets.SYNTHETIC).
VOID = SYNTHETIC.classes.index("void")
GROUND = SYNTHETIC.classes.index("ground")
WALL = SYNTHETIC.classes.index("wall")
FURNITURE = SYNTHETIC.classes.index("furniture")
VEGETATION = SYNTHETIC.classes.index("vegetation")
TRAIL = SYNTHETIC.classes.index("trail")
SKY = SYNTHETIC.classes.index("sky")
MARKING = SYNTHETIC.classes.index("marking")
OBSTACLE = SYNTHETIC.classes.index("obstacle")

GRAVITY_WORLD = np.array([0.0, 0.0, -1.0])
NO_MATERIAL = 255  # material id of pixels whose ray hits nothing
LIDAR_RANGE_NOISE_M = 0.01  # 1-sigma range noise of the sparse (LiDAR-like) depth
LIDAR_MAX_RANGE_M = 80.0
_TEXTURE_PX = 64  # side of one procedural texture tile


# ----------------------------------------------------------------------------------------------------
# Materials
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """A procedural surface material.

    Attributes:
        name: Unique name (`MATERIAL_IDS` maps it to the id in `render_frame(...)["material"]`).
        colour_a: Linear RGB in [0, 1] where the pattern is 0.
        colour_b: Linear RGB in [0, 1] where the pattern is 1.
        pattern: Texture of the mix between the two colours.
        tile_m: Size of one texture tile on the surface, metres.
        nir: Near-infrared reflectance in [0, 1] (vegetation is high, paint and rock low).
        random_colours: Draw both colours at random per frame (posters).
    """

    name: str
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    pattern: Literal["plain", "stripes", "checker", "noise"]
    tile_m: float
    nir: float
    random_colours: bool = False


MATERIALS: tuple[Material, ...] = (
    Material("floor_wood", (0.45, 0.28, 0.15), (0.30, 0.17, 0.08), "stripes", 0.6, 0.55),
    Material("floor_tiles", (0.72, 0.72, 0.68), (0.42, 0.42, 0.46), "checker", 1.2, 0.60),
    Material("carpet", (0.33, 0.20, 0.24), (0.22, 0.15, 0.18), "noise", 0.5, 0.45),
    Material("wall_paint", (0.78, 0.76, 0.68), (0.70, 0.68, 0.60), "noise", 2.0, 0.70),
    Material("wallpaper", (0.58, 0.64, 0.74), (0.46, 0.52, 0.66), "stripes", 0.4, 0.65),
    Material("brick", (0.55, 0.25, 0.18), (0.42, 0.20, 0.15), "checker", 0.5, 0.50),
    Material("ceiling", (0.85, 0.85, 0.83), (0.80, 0.80, 0.78), "plain", 2.0, 0.70),
    Material("furniture_wood", (0.30, 0.18, 0.10), (0.20, 0.11, 0.05), "stripes", 0.3, 0.50),
    Material("plastic_red", (0.60, 0.08, 0.06), (0.52, 0.06, 0.05), "plain", 1.0, 0.40),
    Material("plastic_blue", (0.08, 0.18, 0.55), (0.06, 0.14, 0.48), "plain", 1.0, 0.40),
    Material("metal", (0.50, 0.52, 0.55), (0.38, 0.40, 0.42), "noise", 0.3, 0.35),
    Material("grass", (0.18, 0.38, 0.08), (0.11, 0.27, 0.05), "noise", 1.0, 0.60),
    Material("soil", (0.40, 0.30, 0.20), (0.29, 0.21, 0.14), "noise", 0.8, 0.35),
    Material("gravel", (0.55, 0.50, 0.42), (0.40, 0.36, 0.30), "noise", 0.3, 0.38),
    Material("leaves", (0.20, 0.42, 0.10), (0.10, 0.26, 0.05), "noise", 0.5, 0.85),
    Material("bark", (0.30, 0.22, 0.15), (0.21, 0.15, 0.10), "stripes", 0.3, 0.45),
    Material("rock", (0.50, 0.50, 0.48), (0.34, 0.34, 0.33), "noise", 0.4, 0.30),
    Material("green_paint", (0.19, 0.41, 0.09), (0.12, 0.28, 0.06), "noise", 0.5, 0.12),
    Material("paint_white", (0.90, 0.90, 0.88), (0.84, 0.84, 0.82), "plain", 1.0, 0.60),
    Material("paint_yellow", (0.90, 0.72, 0.08), (0.84, 0.66, 0.06), "plain", 1.0, 0.60),
    Material("poster_checker", (0.9, 0.1, 0.1), (0.1, 0.1, 0.9), "checker", 0.4, 0.50, True),
    Material("poster_stripes", (0.9, 0.9, 0.1), (0.1, 0.6, 0.2), "stripes", 0.3, 0.50, True),
    Material("poster_noise", (0.8, 0.3, 0.6), (0.2, 0.7, 0.8), "noise", 0.5, 0.50, True),
)
MATERIAL_IDS: dict[str, int] = {m.name: i for i, m in enumerate(MATERIALS)}
_POSTERS = ("poster_checker", "poster_stripes", "poster_noise")


def _texture_tile(pattern: str, rng: np.random.Generator) -> NDArray[np.float32]:
    """(T, T) float32 mix factor in [0, 1] of one seamless texture tile."""
    t = _TEXTURE_PX
    coarse = rng.random((8, 8)).astype(np.float32)
    fine = rng.random((32, 32)).astype(np.float32)

    def upsample(grid: np.ndarray) -> np.ndarray:
        # tile 3x3 and keep the centre so the cubic interpolation wraps around seamlessly
        big = cv2.resize(np.tile(grid, (3, 3)), (3 * t, 3 * t), interpolation=cv2.INTER_CUBIC)
        return big[t : 2 * t, t : 2 * t]

    noise = 0.65 * upsample(coarse) + 0.35 * upsample(fine)  # (T, T), about [0, 1]
    ramp = (np.arange(t, dtype=np.float32) + 0.5) / t
    if pattern == "plain":
        mix = 0.25 * noise
    elif pattern == "stripes":
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * ramp)[None, :] + 0.3 * (noise - 0.5)
        mix = np.broadcast_to(np.clip(stripes, 0, 1), (t, t))
    elif pattern == "checker":
        squares = ((ramp[:, None] < 0.5) ^ (ramp[None, :] < 0.5)).astype(np.float32)
        mix = 0.85 * squares + 0.15 * noise
    elif pattern == "noise":
        mix = noise
    else:  # pragma: no cover - guarded by the Material literal
        raise ValueError(f"pattern must be plain, stripes, checker or noise, got {pattern!r}")
    return np.ascontiguousarray(np.clip(mix, 0.0, 1.0), dtype=np.float32)


@dataclass
class _Look:
    """A material as it appears in one frame: jittered colours and its texture tile."""

    colour_a: NDArray[np.float32]  # (3,) linear RGB
    colour_b: NDArray[np.float32]
    tile: NDArray[np.float32]  # (T, T) mix factor
    tile_m: float
    nir: float


def _draw_looks(rng: np.random.Generator) -> list[_Look]:
    """Per-frame appearance of every material (always all of them, so draws never depend on use)."""
    looks = []
    for mat in MATERIALS:
        if mat.random_colours:
            a, b = rng.uniform(0.05, 0.95, size=(2, 3))
        else:
            gain = rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, size=3)
            a, b = np.array(mat.colour_a) * gain, np.array(mat.colour_b) * gain
        looks.append(
            _Look(
                colour_a=np.clip(a, 0, 1).astype(np.float32),
                colour_b=np.clip(b, 0, 1).astype(np.float32),
                tile=_texture_tile(mat.pattern, rng),
                tile_m=mat.tile_m * float(rng.uniform(0.8, 1.25)),
                nir=mat.nir * float(rng.uniform(0.93, 1.07)),
            )
        )
    return looks


# ----------------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------------


def default_intrinsics(height_px: int, width_px: int, *, hfov_deg: float) -> Intrinsics:
    """Square-pixel pinhole intrinsics with the principal point at the image centre (0-based).

    Args:
        height_px: Image height, pixels.
        width_px: Image width, pixels.
        hfov_deg: Horizontal field of view, degrees.
    """
    fx = (width_px / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return Intrinsics(fx, fx, (width_px - 1) / 2.0, (height_px - 1) / 2.0)


def camera_rotation(pitch_deg: float, roll_deg: float, yaw_deg: float = 0.0) -> NDArray[np.float64]:
    """Camera-to-world rotation; its columns are the camera's x (right), y (down), z (forward) axes.

    Args:
        pitch_deg: Rotation about the camera x axis; positive looks down.
        roll_deg: Rotation about the optical axis; positive turns the camera's right side down.
        yaw_deg: Heading about the world z (up) axis; positive turns left (counter-clockwise from above).

    Returns:
        (3, 3) float64 rotation R with x_world = R @ x_cam.
    """
    p, r, y = (math.radians(a) for a in (pitch_deg, roll_deg, yaw_deg))
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # cam x, y, z -> E, down, N
    yaw = np.array([[math.cos(y), -math.sin(y), 0.0], [math.sin(y), math.cos(y), 0.0], [0.0, 0.0, 1.0]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), math.sin(p)], [0.0, -math.sin(p), math.cos(p)]])
    roll = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return yaw @ level @ pitch @ roll


def gravity_in_camera(rotation: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit gravity direction (pointing down) in camera coordinates for a camera-to-world rotation."""
    g = rotation.T @ GRAVITY_WORLD
    return g / np.linalg.norm(g)


def _pixel_directions(intrinsics: Intrinsics, height_px: int, width_px: int) -> NDArray[np.float32]:
    """(H, W, 3) camera-frame ray directions ((u-cx)/fx, (v-cy)/fy, 1): the hit distance is z-depth."""
    v, u = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    ones = np.ones_like(u)
    return np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, ones], -1)


# ----------------------------------------------------------------------------------------------------
# Meshes (numpy) and the scene
# ----------------------------------------------------------------------------------------------------

_Mesh = tuple[NDArray[np.float32], NDArray[np.uint32]]  # (V, 3) vertices, (F, 3) triangles


def _rot_z(yaw_rad: float) -> NDArray[np.float64]:
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _mesh(vertices: np.ndarray, faces: np.ndarray) -> _Mesh:
    return np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32)


def _quad(corners: np.ndarray) -> _Mesh:
    """Two triangles over four corners given in order around the quad."""
    return _mesh(corners, [[0, 1, 2], [0, 2, 3]])


def _box(center: np.ndarray, size: np.ndarray, yaw_rad: float = 0.0) -> _Mesh:
    """Box of `size` (x, y, z extents, metres) centred on `center`, turned by `yaw_rad` about z."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    vertices = (corners * size) @ _rot_z(yaw_rad).T + center
    faces = [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],  # -x, +x
        [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],  # -y, +y
        [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],  # -z, +z
    ]  # fmt: skip
    return _mesh(vertices, faces)


def _cylinder(base: np.ndarray, radius_m: float, height_m: float, segments: int = 16) -> _Mesh:
    """Closed vertical cylinder standing on `base`."""
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([radius_m * np.cos(angles), radius_m * np.sin(angles), np.zeros(segments)], -1)
    top = ring + [0.0, 0.0, height_m]
    vertices = np.concatenate([ring, top, [[0.0, 0.0, 0.0], [0.0, 0.0, height_m]]]) + base
    i = np.arange(segments)
    j = (i + 1) % segments
    bottom_c, top_c = 2 * segments, 2 * segments + 1
    faces = np.concatenate(
        [
            np.stack([i, j, j + segments], -1),
            np.stack([i, j + segments, i + segments], -1),
            np.stack([np.full(segments, bottom_c), j, i], -1),
            np.stack([np.full(segments, top_c), i + segments, j + segments], -1),
        ]
    )
    return _mesh(vertices, faces)


def _blob(
    center: np.ndarray,
    radii_m: np.ndarray,
    rng: np.random.Generator,
    *,
    roughness: float,
    n_lat: int = 10,
    n_lon: int = 16,
) -> _Mesh:
    """Lumpy ellipsoid (bushes, tree crowns, rocks): a UV sphere with random radial bumps."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    lat_g, lon_g = np.meshgrid(lat, lon, indexing="ij")
    unit = np.stack([np.sin(lat_g) * np.cos(lon_g), np.sin(lat_g) * np.sin(lon_g), np.cos(lat_g)], -1)
    unit = np.concatenate([unit.reshape(-1, 3), [[0, 0, 1], [0, 0, -1]]])
    bumps = 1.0 + roughness * rng.uniform(-1.0, 1.0, size=(len(unit), 1))
    vertices = unit * bumps * radii_m + center
    faces = []
    rows = n_lat - 1
    north, south = rows * n_lon, rows * n_lon + 1
    for r in range(rows - 1):
        for c in range(n_lon):
            a, b = r * n_lon + c, r * n_lon + (c + 1) % n_lon
            faces += [[a, a + n_lon, b + n_lon], [a, b + n_lon, b]]
    for c in range(n_lon):
        faces.append([north, c, (c + 1) % n_lon])
        last = (rows - 1) * n_lon
        faces.append([south, last + (c + 1) % n_lon, last + c])
    return _mesh(vertices, faces)


def _disk(center: np.ndarray, radius_m: float, segments: int = 64) -> _Mesh:
    """Horizontal disk (triangle fan) centred on `center`."""
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    rim = np.stack([radius_m * np.cos(angles), radius_m * np.sin(angles), np.zeros(segments)], -1)
    vertices = np.concatenate([[[0.0, 0.0, 0.0]], rim]) + center
    i = np.arange(segments)
    faces = np.stack([np.zeros(segments, int), 1 + i, 1 + (i + 1) % segments], -1)
    return _mesh(vertices, faces)


@dataclass(frozen=True)
class _RectDecal:
    """Flat rectangle painted on one geometry (poster, marking): changes RGB and label only."""

    parent: int  # geometry id it lies on
    center: NDArray[np.float64]  # (3,) world
    axis_u: NDArray[np.float64]  # (3,) unit, in the surface
    axis_v: NDArray[np.float64]  # (3,) unit, in the surface
    half_u_m: float
    half_v_m: float
    class_id: int
    material: int
    affects_nir: bool = False

    def contains(self, points: np.ndarray) -> np.ndarray:
        rel = points - self.center
        normal = np.cross(self.axis_u, self.axis_v)
        return (
            (np.abs(rel @ self.axis_u) <= self.half_u_m)
            & (np.abs(rel @ self.axis_v) <= self.half_v_m)
            & (np.abs(rel @ normal) <= 0.01)
        )


@dataclass(frozen=True)
class _StripDecal:
    """Curved strip on the ground along the trail centre line (trail surface, dashed lines)."""

    parent: int
    half_width_m: float
    trail: tuple[float, float, float, float]  # slope, amplitude_m, period_m, phase_rad of the centre line
    class_id: int
    material: int
    affects_nir: bool
    dash_period_m: float = 0.0  # 0 = continuous
    dash_duty: float = 1.0

    def contains(self, points: np.ndarray) -> np.ndarray:
        x, y = points[:, 0], points[:, 1]
        inside = np.abs(x - _trail_centre_x(y, self.trail)) <= self.half_width_m
        if self.dash_period_m > 0:
            inside &= np.mod(y, self.dash_period_m) < self.dash_duty * self.dash_period_m
        return inside


def _trail_centre_x(y_m: np.ndarray, trail: tuple[float, float, float, float]) -> np.ndarray:
    """x of the trail centre line at world y (passes through the origin, where the camera stands)."""
    slope, amplitude_m, period_m, phase = trail
    return slope * y_m + amplitude_m * (np.sin(y_m / period_m + phase) - math.sin(phase))


@dataclass
class _Scene:
    """Geometry plus per-geometry class and material, decals and lighting of one frame."""

    raycaster: Any = field(default_factory=o3d.t.geometry.RaycastingScene)
    geometry_class: list[int] = field(default_factory=list)
    geometry_material: list[int] = field(default_factory=list)
    decals: list[_RectDecal | _StripDecal] = field(default_factory=list)
    sun_dir: NDArray[np.float64] | None = None  # unit vector towards the sun (outdoor)
    lamp_pos: NDArray[np.float64] | None = None  # point light position (indoor)
    ambient: float = 0.4

    def add(self, mesh: _Mesh, class_id: int, material: str) -> int:
        vertices, faces = mesh
        gid = self.raycaster.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(faces))
        if gid != len(self.geometry_class):  # pragma: no cover - open3d numbers geometries 0, 1, ...
            raise RuntimeError(f"unexpected geometry id {gid}")
        self.geometry_class.append(class_id)
        self.geometry_material.append(MATERIAL_IDS[material])
        return gid


# ----------------------------------------------------------------------------------------------------
# Frame parameters and scene layouts
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameParams:
    """What is drawn per frame before any geometry: split, layout, condition and camera pose.

    Attributes:
        index: Frame number (0-based).
        id: File stem, e.g. "000042".
        split: "train" or "val".
        layout: "indoor" or "outdoor".
        condition: "clear", "dark" or "fog".
        camera_height_m: Height of the camera centre above the floor/ground, metres.
        pitch_deg: Downward pitch, degrees (positive looks down).
        roll_deg: Roll, degrees (positive: right side down).
        yaw_deg: Heading relative to the room or trail, degrees.
        gravity_cam: Unit gravity vector in camera coordinates (x right, y down, z forward).
    """

    index: int
    id: str
    split: str
    layout: str
    condition: str
    camera_height_m: float
    pitch_deg: float
    roll_deg: float
    yaw_deg: float
    gravity_cam: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the per-frame entry of meta.json)."""
        return asdict(self) | {"gravity_cam": list(self.gravity_cam)}


def _frame_streams(seed: int, index: int) -> list[np.random.Generator]:
    """Independent generators for (params, scene, appearance, sensors) of one frame."""
    children = np.random.SeedSequence(entropy=seed, spawn_key=(index,)).spawn(4)
    return [np.random.default_rng(c) for c in children]


def _split_of(index: int, val_fraction: float) -> str:
    """Evenly interleaved split that does not depend on the number of frames (resumable runs)."""
    return "val" if math.floor((index + 1) * val_fraction) > math.floor(index * val_fraction) else "train"


def frame_params(
    index: int, cfg: SyntheticConfig, *, layout: str | None = None, condition: str | None = None
) -> FrameParams:
    """Draw (or override) the split, layout, condition and camera pose of frame `index`.

    Args:
        index: Frame number, >= 0.
        cfg: Generator settings (seed and fractions).
        layout: Force "indoor" or "outdoor" (default: drawn with `cfg.outdoor_fraction`).
        condition: Force "clear", "dark" or "fog" (default: drawn with the dark/fog fractions).

    Raises:
        ValueError: negative index or unknown layout/condition.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if condition is not None and condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    rng = _frame_streams(cfg.seed, index)[0]
    # every draw happens whatever the overrides, so overriding one never changes the others
    drawn_layout = "outdoor" if rng.random() < cfg.outdoor_fraction else "indoor"
    u = rng.random()
    if u < cfg.dark_fraction:
        drawn_condition = "dark"
    elif u < cfg.dark_fraction + cfg.fog_fraction:
        drawn_condition = "fog"
    else:
        drawn_condition = "clear"
    unit_height, pitch_deg, roll_deg = rng.random(), rng.uniform(-4, 16), rng.uniform(-7, 7)
    yaw_deg = rng.uniform(-20, 20)
    layout = layout or drawn_layout
    height_m = (0.9 + 0.9 * unit_height) if layout == "indoor" else (0.5 + 1.5 * unit_height)
    gravity = gravity_in_camera(camera_rotation(pitch_deg, roll_deg, yaw_deg))
    return FrameParams(
        index=index,
        id=f"{index:06d}",
        split=_split_of(index, cfg.val_fraction),
        layout=layout,
        condition=condition or drawn_condition,
        camera_height_m=round(float(height_m), 6),
        pitch_deg=round(float(pitch_deg), 6),
        roll_deg=round(float(roll_deg), 6),
        yaw_deg=round(float(yaw_deg), 6),
        gravity_cam=tuple(round(float(g), 9) for g in gravity),
    )


def _in_view(rng: np.random.Generator, near_m: float, far_m: float, half_angle_deg: float) -> np.ndarray:
    """Random ground point (x, y) ahead of the camera (which looks along +y from the origin)."""
    dist = rng.uniform(near_m, far_m)
    bearing = math.radians(rng.uniform(-half_angle_deg, half_angle_deg))
    return np.array([dist * math.sin(bearing), dist * math.cos(bearing)])


def _pick(rng: np.random.Generator, names: list[str]) -> str:
    return str(rng.choice(names))


_X, _Y, _UP = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])


def _build_indoor(rng: np.random.Generator, camouflage_fraction: float) -> _Scene:
    """A room: floor, four walls, ceiling (void), furniture (some camouflaged), bins, posters, tape."""
    scene = _Scene(ambient=0.45)
    width, length, height = rng.uniform(4, 10), rng.uniform(5, 12), rng.uniform(2.5, 3.2)
    x0 = -width * rng.uniform(0.3, 0.7)  # the camera stands at the origin, inside the room
    x1, y0 = x0 + width, -rng.uniform(0.5, 1.5)
    y1 = y0 + length
    floor_mat = _pick(rng, ["floor_wood", "floor_tiles", "carpet"])
    wall_mat = _pick(rng, ["wall_paint", "wallpaper"])
    floor = scene.add(
        _quad(np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]])), GROUND, floor_mat
    )
    ceiling = np.array([[x0, y0, height], [x0, y1, height], [x1, y1, height], [x1, y0, height]])
    scene.add(_quad(ceiling), VOID, "ceiling")  # no ceiling class: void
    walls = {  # name: (start corner on the floor, unit direction along the wall, length)
        "far": (np.array([x0, y1, 0]), _X, width),
        "left": (np.array([x0, y0, 0]), _Y, length),
        "right": (np.array([x1, y1, 0]), -_Y, length),
        "back": (np.array([x1, y0, 0]), -_X, width),
    }
    wall_ids = {}
    for name, (start, along, span) in walls.items():
        end = start + along * span
        wall_ids[name] = scene.add(
            _quad(np.array([start, end, end + _UP * height, start + _UP * height])), WALL, wall_mat
        )

    for _ in range(int(rng.integers(3, 8))):  # furniture
        size = np.array([rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.3)])
        own = _pick(rng, ["furniture_wood", "plastic_red", "plastic_blue", "metal"])
        if rng.random() < 0.4:  # cabinet against the far wall, maybe textured like the wall
            xy, yaw = np.array([rng.uniform(x0 + 0.8, x1 - 0.8), y1 - size[1] / 2]), 0.0
            material = wall_mat if rng.random() < camouflage_fraction else own
        else:
            xy, yaw = _in_view(rng, 1.8, max(2.0, y1 - 0.8), 35), rng.uniform(0, np.pi)
            xy[0] = np.clip(xy[0], x0 + 0.8, x1 - 0.8)
            material = floor_mat if rng.random() < camouflage_fraction / 2 else own
        if material == floor_mat:
            size[2] = rng.uniform(0.15, 0.4)  # low platform, textured like the floor
        if material == own and rng.random() < 0.3:  # table: top slab on four legs
            top = size[2]
            scene.add(
                _box(np.array([*xy, top - 0.025]), np.array([size[0], size[1], 0.05]), yaw), FURNITURE, own
            )
            for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
                offset = _rot_z(yaw) @ np.array([sx * (size[0] / 2 - 0.04), sy * (size[1] / 2 - 0.04), 0.0])
                leg = np.array([xy[0] + offset[0], xy[1] + offset[1], (top - 0.05) / 2])
                scene.add(_box(leg, np.array([0.05, 0.05, top - 0.05])), FURNITURE, own)
        else:
            scene.add(_box(np.array([*xy, size[2] / 2]), size, yaw), FURNITURE, material)

    for _ in range(int(rng.integers(0, 3))):  # obstacles: bins
        xy = _in_view(rng, 1.5, max(2.0, y1 - 0.5), 35)
        xy[0] = np.clip(xy[0], x0 + 0.4, x1 - 0.4)
        bin_mesh = _cylinder(np.array([*xy, 0.0]), rng.uniform(0.12, 0.3), rng.uniform(0.4, 1.0))
        scene.add(bin_mesh, OBSTACLE, _pick(rng, ["metal", "green_paint", "plastic_red"]))

    for _ in range(int(rng.integers(1, 5))):  # posters: flat rectangles on the walls (RGB only)
        name = _pick(rng, ["far", "far", "left", "right"])
        start, along, span = walls[name]
        half_u, half_v = rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.6)
        centre = start + along * rng.uniform(half_u + 0.1, span - half_u - 0.1) + _UP * rng.uniform(1.0, 2.0)
        poster = MATERIAL_IDS[_pick(rng, list(_POSTERS))]
        scene.decals.append(_RectDecal(wall_ids[name], centre, along, _UP, half_u, half_v, MARKING, poster))
    for _ in range(int(rng.integers(0, 3))):  # tape lines on the floor
        centre = np.array([*_in_view(rng, 1.5, max(2.0, y1 - 1.0), 30), 0.0])
        yaw = rng.uniform(0, np.pi)
        axis_u = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        half_u, half_v = rng.uniform(0.4, 1.5), rng.uniform(0.03, 0.08)
        tape = MATERIAL_IDS[_pick(rng, ["paint_yellow", "paint_white"])]
        scene.decals.append(
            _RectDecal(floor, centre, axis_u, np.cross(_UP, axis_u), half_u, half_v, MARKING, tape)
        )
    scene.lamp_pos = np.array(
        [rng.uniform(x0 + 1, x1 - 1), rng.uniform(1.0, max(1.5, y1 - 1)), height - 0.05]
    )
    return scene


def _build_outdoor(rng: np.random.Generator, camouflage_fraction: float) -> _Scene:
    """Ground with a trail, bushes and trees, rocks and green posts, markings, maybe a building; sky."""
    scene = _Scene(ambient=0.35)
    ground_mat = _pick(rng, ["grass", "grass", "soil"])
    # a disk, so z-depth stays below 60 m (fits 16-bit millimetres); beyond it is sky
    ground = scene.add(_disk(np.zeros(3), 60.0), GROUND, ground_mat)
    trail = (
        rng.uniform(-0.15, 0.15),
        rng.uniform(0.5, 3.0),
        rng.uniform(4.0, 12.0),
        rng.uniform(0, 2 * np.pi),
    )
    half_width = rng.uniform(0.6, 1.6)
    scene.decals.append(
        _StripDecal(ground, half_width, trail, TRAIL, MATERIAL_IDS["gravel"], affects_nir=True)
    )
    if rng.random() < 0.5:  # dashed centre line painted on the trail
        paint = MATERIAL_IDS[_pick(rng, ["paint_white", "paint_yellow"])]
        dash_m = rng.uniform(1.5, 3.0)
        scene.decals.append(_StripDecal(ground, 0.06, trail, MARKING, paint, False, dash_m, 0.5))

    def off_trail(near_m: float, far_m: float, clearance_m: float) -> np.ndarray:
        for _ in range(20):
            xy = _in_view(rng, near_m, far_m, 45)
            if abs(xy[0] - _trail_centre_x(xy[1], trail)) > half_width + clearance_m:
                return xy
        return xy + np.array([half_width + clearance_m + 1.0, 0.0])

    for _ in range(int(rng.integers(5, 16))):  # bushes
        radii = np.array([rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.9)])
        xy = off_trail(3.0, 35.0, radii[0])
        scene.add(_blob(np.array([*xy, radii[2] * 0.7]), radii, rng, roughness=0.15), VEGETATION, "leaves")
    for _ in range(int(rng.integers(2, 9))):  # trees: trunk and crown
        xy = off_trail(5.0, 45.0, 1.0)
        trunk_m, crown_m = rng.uniform(1.5, 4.0), rng.uniform(1.0, 2.5)
        trunk = _cylinder(np.array([*xy, 0.0]), rng.uniform(0.1, 0.3), trunk_m + crown_m / 2, 10)
        scene.add(trunk, VEGETATION, "bark")
        radii = np.array([crown_m, crown_m, crown_m * rng.uniform(0.8, 1.4)])
        crown = _blob(np.array([*xy, trunk_m + radii[2] * 0.8]), radii, rng, roughness=0.2)
        scene.add(crown, VEGETATION, "leaves")
    for _ in range(int(rng.integers(2, 6))):  # green posts: RGB like leaves, dark in NIR
        xy = off_trail(2.5, 25.0, 0.2) if rng.random() < 0.7 else _in_view(rng, 3.0, 20.0, 25)
        post = _cylinder(np.array([*xy, 0.0]), rng.uniform(0.05, 0.15), rng.uniform(0.8, 1.6), 12)
        scene.add(post, OBSTACLE, "green_paint")
    for _ in range(int(rng.integers(1, 6))):  # rocks, some camouflaged like the ground
        radii = np.array([rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.7), rng.uniform(0.15, 0.45)])
        xy = _in_view(rng, 2.5, 25.0, 35)
        material = ground_mat if rng.random() < camouflage_fraction else "rock"
        rock = _blob(np.array([*xy, radii[2] * 0.4]), radii, rng, roughness=0.25, n_lat=8, n_lon=12)
        scene.add(rock, OBSTACLE, material)
    for _ in range(int(rng.integers(0, 3))):  # painted patches on the ground
        centre = np.array([*off_trail(2.0, 15.0, 0.3), 0.0])
        half_u, half_v = rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)
        paint = MATERIAL_IDS[_pick(rng, ["paint_white", "paint_yellow"])]
        scene.decals.append(_RectDecal(ground, centre, _X, _Y, half_u, half_v, MARKING, paint))
    if rng.random() < 0.4:  # a building beside the trail, posters on its front
        front_y, width, depth, height = (
            rng.uniform(15, 40),
            rng.uniform(6, 20),
            rng.uniform(4, 10),
            rng.uniform(3, 9),
        )
        centre_x = rng.choice([-1.0, 1.0]) * rng.uniform(half_width + width / 2 + 3.0, width / 2 + 15.0)
        size = np.array([width, depth, height])
        building = scene.add(_box(np.array([centre_x, front_y + depth / 2, height / 2]), size), WALL, "brick")
        for _ in range(int(rng.integers(0, 3))):
            half_u, half_v = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.0)
            x = centre_x + rng.uniform(-width / 2 + half_u, width / 2 - half_u)
            poster = MATERIAL_IDS[_pick(rng, list(_POSTERS))]
            centre = np.array([x, front_y, rng.uniform(1.2, 2.2)])
            scene.decals.append(_RectDecal(building, centre, _X, _UP, half_u, half_v, MARKING, poster))
    elevation, azimuth = math.radians(rng.uniform(25, 70)), rng.uniform(0, 2 * np.pi)
    scene.sun_dir = np.array(
        [
            math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
        ]
    )
    return scene


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Hits:
    """Result of casting one image of rays."""

    depth_m: NDArray[np.float32]  # (H, W), 0 = no hit
    geometry: NDArray[np.int64]  # (H, W), -1 = no hit
    normal: NDArray[np.float32]  # (H, W, 3) unit world normals facing the camera
    point: NDArray[np.float32]  # (H, W, 3) world hit points (0 where no hit)
    direction: NDArray[np.float32]  # (H, W, 3) world ray directions (camera z component 1)


def _cast(raycaster: Any, origins: np.ndarray, dirs: np.ndarray, nthreads: int) -> dict[str, np.ndarray]:
    """Cast rays from `origins` (broadcast to `dirs`' shape) along `dirs` (..., 3); numpy results."""
    rays = np.concatenate([np.broadcast_to(origins, dirs.shape), dirs], axis=-1).astype(np.float32)
    result = raycaster.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)), nthreads=nthreads)
    return {key: value.numpy() for key, value in result.items()}


def _cast_image(
    scene: _Scene,
    intrinsics: Intrinsics,
    shape: tuple[int, int],
    rotation: np.ndarray,
    origin: np.ndarray,
    nthreads: int,
) -> _Hits:
    dirs_cam = _pixel_directions(intrinsics, *shape)  # (H, W, 3), z = 1
    dirs_world = (dirs_cam @ rotation.T.astype(np.float32)).astype(np.float32)  # (H, W, 3)
    result = _cast(scene.raycaster, origin, dirs_world, nthreads)
    t_hit = result["t_hit"]
    hit = np.isfinite(t_hit)
    depth = np.where(hit, t_hit, 0.0).astype(np.float32)  # |d_cam . z| = 1, so t is z-depth
    geometry = np.where(hit, result["geometry_ids"].astype(np.int64), -1)  # (H, W), -1 = no hit
    normal = result["primitive_normals"].astype(np.float32)
    facing = np.sum(normal * dirs_world, axis=-1, keepdims=True) > 0
    normal = np.where(facing, -normal, normal)  # (H, W, 3), towards the camera
    point = (origin + dirs_world * depth[..., None]).astype(np.float32)
    return _Hits(depth, geometry, normal, point, dirs_world)


def _labels_and_materials(scene: _Scene, hits: _Hits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, material, nir_material) maps; decals override labels and RGB materials on their parent."""
    class_lut = np.array([*scene.geometry_class, SKY], dtype=np.uint8)  # index -1 -> sky
    material_lut = np.array([*scene.geometry_material, NO_MATERIAL], dtype=np.uint8)
    label = class_lut[hits.geometry]
    material = material_lut[hits.geometry]
    nir_material = material.copy()
    for decal in scene.decals:
        rows, cols = np.nonzero(hits.geometry == decal.parent)
        inside = decal.contains(hits.point[rows, cols].astype(np.float64))
        rows, cols = rows[inside], cols[inside]
        label[rows, cols] = decal.class_id
        material[rows, cols] = decal.material
        if decal.affects_nir:
            nir_material[rows, cols] = decal.material
    return label, material, nir_material


def _sample_tile(tile: np.ndarray, x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a (T, T) tile at (N,) texel coordinates, wrapping around its edges."""
    size = tile.shape[0]
    x0, y0 = np.floor(x_px), np.floor(y_px)
    fx, fy = (x_px - x0).astype(np.float32), (y_px - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64) % size, y0.astype(np.int64) % size
    x1, y1 = (x0 + 1) % size, (y0 + 1) % size
    top = tile[y0, x0] * (1 - fx) + tile[y0, x1] * fx
    bottom = tile[y1, x0] * (1 - fx) + tile[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _texture_mix(looks: list[_Look], material: np.ndarray, hits: _Hits) -> np.ndarray:
    """(H, W) float32 pattern value in [0, 1], textures mapped in world metres (tri-planar)."""
    mix = np.zeros(material.shape, np.float32)
    for mat_id in np.unique(material):
        if mat_id == NO_MATERIAL:
            continue
        look = looks[mat_id]
        rows, cols = np.nonzero(material == mat_id)
        p, n = hits.point[rows, cols], np.abs(hits.normal[rows, cols])  # (N, 3)
        axis = np.argmax(n, axis=1)  # dominant normal axis picks the projection plane
        s = np.where(axis == 0, p[:, 1], p[:, 0])
        t = np.where(axis == 2, p[:, 1], p[:, 2])
        scale = _TEXTURE_PX / look.tile_m
        mix[rows, cols] = _sample_tile(look.tile, s * scale, t * scale)
    return mix


def _shading(scene: _Scene, hits: _Hits, nthreads: int) -> np.ndarray:
    """(H, W) float32 direct-light factor in [0, 1] (Lambert with cast shadows), 0 where nothing is hit."""
    hit = hits.depth_m > 0
    origin = hits.point + hits.normal * np.float32(2e-3)  # (H, W, 3) lifted off the surface
    if scene.sun_dir is not None:
        to_light = np.broadcast_to((scene.sun_dir * 1000.0).astype(np.float32), origin.shape)
        falloff = np.float32(1.0)
    else:
        to_light = (scene.lamp_pos.astype(np.float32) - origin).astype(np.float32)
        dist2 = np.sum(to_light**2, axis=-1)
        falloff = (1.6 / (1.0 + 0.04 * dist2)).astype(np.float32)
    length = np.linalg.norm(to_light, axis=-1)  # (H, W)
    lambert = np.clip(np.sum(hits.normal * to_light, axis=-1) / np.maximum(length, 1e-6), 0.0, 1.0)
    t_shadow = _cast(scene.raycaster, origin[hit], to_light[hit], nthreads)["t_hit"]  # (N,)
    lit = np.zeros(hit.shape, np.float32)
    lit[hit] = (t_shadow >= 0.999).astype(np.float32)  # occluder between surface and light
    return (lambert * lit * falloff).astype(np.float32)


def _sky_rgb(direction: np.ndarray) -> np.ndarray:
    """(H, W, 3) linear sky colour from the ray elevation: pale at the horizon, blue above."""
    elevation = direction[..., 2] / np.linalg.norm(direction, axis=-1)  # sin(elevation)
    k = np.clip(elevation, 0.0, 1.0)[..., None] ** 0.5
    horizon, zenith = np.array([0.75, 0.82, 0.90], np.float32), np.array([0.25, 0.45, 0.85], np.float32)
    return (horizon * (1 - k) + zenith * k).astype(np.float32)


def _to_uint8(linear: np.ndarray) -> np.ndarray:
    """Gamma-encode linear [0, 1] values to 8 bits."""
    return np.rint(np.clip(linear, 0.0, 1.0) ** (1 / 2.2) * 255.0).astype(np.uint8)


def _camera_image(
    linear: np.ndarray, rng: np.random.Generator, *, illumination: float, target_mean: float, max_gain: float
) -> np.ndarray:
    """Expose `linear` radiance, add shot and read noise, apply a capped auto gain; gamma to uint8."""
    signal = linear * np.float32(illumination)
    sigma = np.sqrt(signal * 4e-4 + 0.006**2).astype(np.float32)
    noisy = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    gain = min(max_gain, target_mean / max(float(signal.mean()), 1e-6))  # noise is amplified too
    return _to_uint8(noisy * np.float32(gain))


def simulate_kinect_depth(
    depth_m: NDArray[np.float32],
    rng: np.random.Generator,
    *,
    max_range_m: float,
    noise_per_m: float,
    incidence_cos: NDArray[np.float32] | None = None,
    dropout_fraction: float = 0.04,
) -> NDArray[np.float32]:
    """Degrade dense depth like a structured-light sensor (Kinect v1 style).

    Noise grows with the square of distance; returns go missing at depth discontinuities, at grazing
    incidence, in random blobs and beyond the maximum range.

    Args:
        depth_m: (H, W) float32 dense depth, metres, 0 = no surface.
        rng: Source of the noise, blobs and jitter.
        max_range_m: Returns beyond this are missing.
        noise_per_m: k in sigma = k * z^2 (1/m); 0.0015 gives 1.5 mm at 1 m, 2.4 cm at 4 m.
        incidence_cos: Optional (H, W) |cos| of the angle between ray and surface normal; below 0.12
            the return is missing.
        dropout_fraction: Share of pixels removed by random blobs.

    Returns:
        (H, W) float32 metres, 0 = missing. The input is not modified.
    """
    if depth_m.ndim != 2 or depth_m.dtype != np.float32:
        raise ValueError(f"depth_m must be (H, W) float32, got {depth_m.shape} {depth_m.dtype}")
    h, w = depth_m.shape
    valid = (depth_m > 0) & (depth_m <= max_range_m)
    noisy = depth_m + (noise_per_m * depth_m**2) * rng.standard_normal((h, w), dtype=np.float32)
    # discontinuities: relative depth jump within a 3x3 neighbourhood (missing counts as far)
    far = np.where(depth_m > 0, depth_m, np.float32(1e4))
    kernel = np.ones((3, 3), np.uint8)
    jump = (cv2.dilate(far, kernel) - cv2.erode(far, kernel)) / np.maximum(cv2.erode(far, kernel), 1e-3)
    edges = cv2.dilate((jump > 0.05).astype(np.uint8), kernel) > 0
    # low-frequency blobs: smooth random field thresholded at its (1 - fraction) quantile
    field_small = rng.random((max(2, h // 24), max(2, w // 24))).astype(np.float32)
    blob_field = cv2.resize(field_small, (w, h), interpolation=cv2.INTER_CUBIC)
    blobs = blob_field > np.quantile(blob_field, 1.0 - dropout_fraction)
    keep = valid & ~edges & ~blobs
    if incidence_cos is not None:
        keep &= incidence_cos >= 0.12
    return np.where(keep, np.maximum(noisy, 0.0), 0.0).astype(np.float32)


def lidar_scan_mask(
    intrinsics: Intrinsics,
    shape: tuple[int, int],
    rotation: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    rows: int,
    density: float,
) -> NDArray[np.bool_]:
    """Pixels a spinning LiDAR at the camera centre samples: `rows` beams at fixed world elevations.

    The beam elevations are measured from the horizontal (so the scan lines tilt with roll and move
    with pitch) and spread evenly over the elevations the image sees; each beam sweeps in azimuth with
    a step chosen so that about `density` of the pixels receive a sample. Samples are snapped to the
    pixel they project into (no LiDAR-camera parallax).

    Args:
        intrinsics: Camera intrinsics.
        shape: (H, W) image size, pixels.
        rotation: (3, 3) camera-to-world rotation (`camera_rotation`).
        rng: Draws the elevation offset of the beam fan.
        rows: Number of beams; at most H // 3 are used.
        density: Target share of sampled pixels, in (0, 1).

    Returns:
        (H, W) bool, True where a beam samples.
    """
    h, w = shape
    rows = max(1, min(rows, h // 3))
    border = _pixel_directions(intrinsics, h, w)
    border = np.concatenate([border[0], border[-1], border[:, 0], border[:, -1]]) @ rotation.T  # (B, 3)
    elev = np.arcsin(border[:, 2] / np.linalg.norm(border, axis=1))
    azim = np.arctan2(border[:, 0], border[:, 1])  # about +y; the view never wraps around
    step = (elev.max() - elev.min()) / rows
    elevations = elev.min() + step * (np.arange(rows) + rng.uniform(0.2, 0.8))  # (R,)

    def project(n_azimuths: int) -> np.ndarray:
        """Flat pixel index of each beam sample inside the image."""
        e, a = np.meshgrid(elevations, np.linspace(azim.min(), azim.max(), n_azimuths), indexing="ij")
        dirs = np.stack([np.cos(e) * np.sin(a), np.cos(e) * np.cos(a), np.sin(e)], -1).reshape(-1, 3)
        cam = dirs @ rotation  # (N, 3) camera frame
        z = np.maximum(cam[:, 2], 1e-9)
        u = np.rint(intrinsics.fx * cam[:, 0] / z + intrinsics.cx)
        v = np.rint(intrinsics.fy * cam[:, 1] / z + intrinsics.cy)
        inside = (cam[:, 2] > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        return (v[inside] * w + u[inside]).astype(np.int64)

    trial = 64  # a trial sweep tells how many samples of a row land in the image
    share_inside = max(project(trial).size / (rows * trial), 1e-3)
    n_azimuths = max(2, math.ceil(density * h * w / (rows * share_inside)))
    mask = np.zeros(h * w, bool)
    mask[project(n_azimuths)] = True
    return mask.reshape(h, w)


def render_frame(
    index: int,
    cfg: SyntheticConfig,
    *,
    layout: str | None = None,
    condition: str | None = None,
    nthreads: int = 0,
) -> dict[str, np.ndarray]:
    """Render one frame (no I/O).

    Args:
        index: Frame number; with `cfg.seed` it fixes everything drawn.
        cfg: Generator settings (size, fractions, sensor settings).
        layout: Force "indoor" or "outdoor" (the scene then differs from the drawn one).
        condition: Force "clear", "dark" or "fog"; geometry and depth stay the same as drawn.
        nthreads: Raycasting threads (0 = all).

    Returns:
        "rgb": (H, W, 3) uint8, RGB order; "depth", "depth_raw", "depth_sparse": (H, W) float32 metres,
        0 = missing; "nir": (H, W) uint8; "label": (H, W) uint8 class ids of `SYNTHETIC`;
        "material": (H, W) uint8 index into `MATERIALS` of what RGB shows (`NO_MATERIAL` = sky).

    Raises:
        ConfigError: invalid `cfg`.
        ValueError: negative index or unknown layout/condition.
    """
    check_config(cfg)
    params = frame_params(index, cfg, layout=layout, condition=condition)
    _, scene_rng, look_rng, sensor_rng = _frame_streams(cfg.seed, index)
    shape = (cfg.height_px, cfg.width_px)
    intrinsics = frame_intrinsics(cfg)
    rotation = camera_rotation(params.pitch_deg, params.roll_deg, params.yaw_deg)
    builder = _build_outdoor if params.layout == "outdoor" else _build_indoor
    scene = builder(scene_rng, cfg.camouflage_fraction)
    origin = np.array([0.0, 0.0, params.camera_height_m], np.float32)

    hits = _cast_image(scene, intrinsics, shape, rotation, origin, nthreads)
    label, material, nir_material = _labels_and_materials(scene, hits)
    hit = hits.depth_m > 0

    looks = _draw_looks(look_rng)
    exposure_target = look_rng.uniform(0.28, 0.42)  # mean linear brightness the auto gain aims for
    dark_illumination = look_rng.uniform(0.02, 0.06)  # scene light in dark frames (clear = 1)
    fog_visibility_m = look_rng.uniform(8.0, 30.0)
    mix = _texture_mix(looks, material, hits)  # (H, W)
    direct = _shading(scene, hits, nthreads)  # (H, W)
    light = (scene.ambient + (1.0 - scene.ambient) * direct)[..., None]  # (H, W, 1)

    colour_a = np.stack([lk.colour_a for lk in looks] + [np.zeros(3, np.float32)])  # (M + 1, 3)
    colour_b = np.stack([lk.colour_b for lk in looks] + [np.zeros(3, np.float32)])
    mat_index = np.where(material == NO_MATERIAL, len(looks), material)
    albedo = colour_a[mat_index] * (1 - mix[..., None]) + colour_b[mat_index] * mix[..., None]
    rgb_lin = np.where(hit[..., None], albedo * light, _sky_rgb(hits.direction)).astype(np.float32)

    nir_lut = np.array([lk.nir for lk in looks] + [0.22], np.float32)  # last entry: sky
    nir_index = np.where(nir_material == NO_MATERIAL, len(looks), nir_material)
    nir_lin = nir_lut[nir_index] * np.where(hit, (0.9 + 0.2 * mix) * light[..., 0], 1.0)

    if params.condition == "fog":
        beta = 3.0 / fog_visibility_m  # extinction per metre (visibility = 3 / beta)
        far = np.where(hit, hits.depth_m, np.float32(1e3))
        transmit = np.exp(-beta * far)[..., None].astype(np.float32)
        rgb_lin = rgb_lin * transmit + np.float32(0.7) * (1 - transmit)
        transmit_nir = np.exp(-0.5 * beta * far).astype(np.float32)  # NIR scatters less in haze
        nir_lin = nir_lin * transmit_nir + np.float32(0.45) * (1 - transmit_nir)
    illumination = dark_illumination if params.condition == "dark" else 1.0
    rgb = _camera_image(
        rgb_lin, sensor_rng, illumination=illumination, target_mean=exposure_target, max_gain=2.0
    )
    # NIR: its own illuminator, so darkness does not reach it; the gain only ever darkens
    nir = _camera_image(nir_lin, sensor_rng, illumination=1.0, target_mean=0.35, max_gain=1.0)

    norm = np.linalg.norm(hits.direction, axis=-1)  # (H, W)
    incidence = (np.abs(np.sum(hits.normal * hits.direction, axis=-1)) / norm).astype(np.float32)
    depth_raw = simulate_kinect_depth(
        hits.depth_m,
        sensor_rng,
        max_range_m=cfg.raw_max_range_m,
        noise_per_m=cfg.raw_noise_per_m,
        incidence_cos=incidence,
        dropout_fraction=float(sensor_rng.uniform(0.02, 0.06)),
    )
    scan = lidar_scan_mask(
        intrinsics, shape, rotation, sensor_rng, rows=cfg.sparse_rows, density=cfg.sparse_density
    )
    range_noise_m = LIDAR_RANGE_NOISE_M * sensor_rng.standard_normal(shape, dtype=np.float32)
    z_noise_m = range_noise_m / norm  # noise along the ray, as z-depth
    sampled = scan & hit & (hits.depth_m * norm < LIDAR_MAX_RANGE_M)
    depth_sparse = np.where(sampled, np.maximum(hits.depth_m + z_noise_m, 1e-3), 0.0).astype(np.float32)
    return {
        "rgb": rgb,
        "depth": hits.depth_m,
        "depth_raw": depth_raw,
        "depth_sparse": depth_sparse,
        "nir": nir,
        "label": label,
        "material": material,
    }


# ----------------------------------------------------------------------------------------------------
# Analytic scenes for tests of other modules
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticFrame:
    """A frame of a plane scene with exactly known geometry.

    Attributes:
        depth_m: (H, W) float32 z-depth, metres, 0 where the ray hits nothing.
        label: (H, W) uint8: ground, wall, or sky where nothing is hit.
        intrinsics: The camera (0-based principal point).
        gravity_cam: (3,) unit gravity vector (pointing down) in camera coordinates.
        camera_height_m: Height of the camera centre above the floor plane, metres.
    """

    depth_m: NDArray[np.float32]
    label: NDArray[np.uint8]
    intrinsics: Intrinsics
    gravity_cam: NDArray[np.float64]
    camera_height_m: float


_ANALYTIC_EXTENT_M = 500.0  # half size of the "infinite" planes


def render_analytic_frame(
    kind: Literal["floor", "wall", "floor_and_wall"],
    *,
    height_px: int = 240,
    width_px: int = 320,
    intrinsics: Intrinsics | None = None,
    camera_height_m: float = 1.5,
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
    distance_m: float = 3.0,
) -> AnalyticFrame:
    """Render planes with known geometry through the same raycaster as the synthetic scenes.

    "floor": a horizontal plane `camera_height_m` below the camera. "wall": a vertical plane across the
    level viewing direction at horizontal distance `distance_m` (fronto-parallel when pitch = roll = 0).
    "floor_and_wall": both, the floor ending at the wall. The planes span 500 m from the camera, so the
    floor's z-depth at pixel (u, v) is h / (g . ((u-cx)/fx, (v-cy)/fy, 1)) with g = `gravity_cam`,
    which for roll = 0 is h / (sin(pitch) + cos(pitch) (v - cy) / fy).

    Args:
        kind: Which planes.
        height_px: Image height, pixels.
        width_px: Image width, pixels.
        intrinsics: Camera; default fx = fy = 0.9 * width_px, principal point at the image centre.
        camera_height_m: Camera height above the floor, metres (> 0).
        pitch_deg: Downward pitch, degrees (positive looks down).
        roll_deg: Roll about the optical axis, degrees (positive: right side down).
        distance_m: Horizontal distance to the wall, metres (> 0).

    Raises:
        ValueError: unknown kind, non-positive size, height or distance.
    """
    if kind not in ("floor", "wall", "floor_and_wall"):
        raise ValueError(f"kind must be 'floor', 'wall' or 'floor_and_wall', got {kind!r}")
    if height_px < 1 or width_px < 1:
        raise ValueError(f"height_px and width_px must be positive, got {height_px}x{width_px}")
    if not camera_height_m > 0 or not distance_m > 0:
        raise ValueError(f"camera_height_m and distance_m must be > 0, got {camera_height_m}, {distance_m}")
    if intrinsics is None:
        intrinsics = Intrinsics(0.9 * width_px, 0.9 * width_px, (width_px - 1) / 2.0, (height_px - 1) / 2.0)
    e, d = _ANALYTIC_EXTENT_M, distance_m
    scene = _Scene()
    # the camera sits at the origin; the floor is z = -camera_height_m, the wall y = distance_m
    z_floor = -camera_height_m
    if kind in ("floor", "floor_and_wall"):
        far_y = d if kind == "floor_and_wall" else e
        corners = np.array([[-e, -e, z_floor], [e, -e, z_floor], [e, far_y, z_floor], [-e, far_y, z_floor]])
        scene.add(_quad(corners), GROUND, "floor_tiles")
    if kind in ("wall", "floor_and_wall"):
        bottom = z_floor if kind == "floor_and_wall" else -e
        corners = np.array([[-e, d, bottom], [e, d, bottom], [e, d, e], [-e, d, e]])
        scene.add(_quad(corners), WALL, "wall_paint")
    rotation = camera_rotation(pitch_deg, roll_deg)
    hits = _cast_image(scene, intrinsics, (height_px, width_px), rotation, np.zeros(3, np.float32), 0)
    label, _, _ = _labels_and_materials(scene, hits)
    return AnalyticFrame(
        depth_m=hits.depth_m,
        label=label,
        intrinsics=intrinsics,
        gravity_cam=gravity_in_camera(rotation),
        camera_height_m=float(camera_height_m),
    )


# ----------------------------------------------------------------------------------------------------
# Dataset generation (I/O)
# ----------------------------------------------------------------------------------------------------


def check_config(cfg: SyntheticConfig) -> None:
    """Raise `ConfigError` naming the `synthetic.*` key of the first invalid setting."""
    checks = [
        ("num_frames", cfg.num_frames >= 1, "must be at least 1"),
        ("height_px", 16 <= cfg.height_px <= 4096, "must be between 16 and 4096"),
        ("width_px", 16 <= cfg.width_px <= 4096, "must be between 16 and 4096"),
        ("seed", cfg.seed >= 0, "must be >= 0"),
        ("val_fraction", 0.0 <= cfg.val_fraction <= 1.0, "must be in [0, 1]"),
        ("outdoor_fraction", 0.0 <= cfg.outdoor_fraction <= 1.0, "must be in [0, 1]"),
        ("dark_fraction", 0.0 <= cfg.dark_fraction <= 1.0, "must be in [0, 1]"),
        (
            "fog_fraction",
            0.0 <= cfg.fog_fraction <= 1.0 - cfg.dark_fraction,
            "must be in [0, 1 - dark_fraction]",
        ),
        ("camouflage_fraction", 0.0 <= cfg.camouflage_fraction <= 1.0, "must be in [0, 1]"),
        ("sparse_rows", cfg.sparse_rows >= 1, "must be at least 1"),
        ("sparse_density", 0.0 < cfg.sparse_density <= 0.5, "must be in (0, 0.5]"),
        ("raw_max_range_m", cfg.raw_max_range_m > 0, "must be > 0"),
        ("raw_noise_per_m", cfg.raw_noise_per_m >= 0, "must be >= 0"),
        ("hfov_deg", 10.0 <= cfg.hfov_deg <= 150.0, "must be between 10 and 150"),
        ("workers", cfg.workers >= 0, "must be >= 0 (0 = all cores)"),
    ]
    for key, ok, rule in checks:
        if not ok:
            raise ConfigError(f"synthetic.{key} {rule}, got {getattr(cfg, key)!r}")


def frame_intrinsics(cfg: SyntheticConfig) -> Intrinsics:
    """Intrinsics of every generated frame (square pixels, centred principal point, `cfg.hfov_deg`)."""
    return default_intrinsics(cfg.height_px, cfg.width_px, hfov_deg=cfg.hfov_deg)


def frame_paths(root: Path, params: FrameParams) -> dict[str, Path]:
    """Column -> file of one frame: `<root>/<split>/<column>/<id>.png`."""
    return {col: root / params.split / col / f"{params.id}.png" for col in COLUMNS}


def _write_frame(index: int, cfg: SyntheticConfig, root: str, nthreads: int) -> int:
    """Render frame `index` and write its files (runs in worker processes)."""
    arrays = render_frame(index, cfg, nthreads=nthreads)
    paths = frame_paths(Path(root), frame_params(index, cfg))
    write_png(paths["rgb"], np.ascontiguousarray(arrays["rgb"][:, :, ::-1]))  # files are BGR
    for col in ("depth", "depth_raw", "depth_sparse"):
        write_depth(paths[col], arrays[col], depth_scale_m=DEPTH_SCALE_M)
    write_png(paths["nir"], arrays["nir"])
    write_png(paths["label"], arrays["label"])
    return index


def _meta(cfg: SyntheticConfig, frames: list[FrameParams], *, complete: bool) -> dict[str, Any]:
    settings = config_to_dict(cfg)
    settings.pop("workers")
    return {
        "generator": {
            "name": GENERATOR_NAME,
            "version": GENERATOR_VERSION,
            "fusionseg": fusionseg.__version__,
        },
        "complete": complete,
        "seed": cfg.seed,
        "config": settings,
        "classes": list(SYNTHETIC.classes),
        "palette": [list(c) for c in SYNTHETIC.palette],
        "columns": list(COLUMNS),
        "image_size": {"height_px": cfg.height_px, "width_px": cfg.width_px},
        "intrinsics": frame_intrinsics(cfg).as_dict(),
        "depth_unit": "mm",
        "depth_scale_m": DEPTH_SCALE_M,
        "coordinates": "camera x right, y down, z forward; gravity_cam points down",
        "frames": [p.as_dict() for p in frames],
    }


def _meta_json(meta: dict[str, Any]) -> str:
    """meta.json text: one line per top-level key and one line per frame (diff- and grep-friendly)."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in meta.items() if key != "frames"]
    frames = ",\n".join(f"    {json.dumps(frame)}" for frame in meta["frames"])
    return "{\n" + "\n".join(lines) + '\n  "frames": [\n' + frames + "\n  ]\n}\n"


def _check_existing_meta(path: Path, current: dict[str, Any]) -> None:
    """Refuse to add frames to a folder generated with other settings (resuming must be consistent)."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read existing meta.json ({exc}); use an empty output folder"
        ) from None
    ignore = {"num_frames"}
    old_cfg = {k: v for k, v in (old.get("config") or {}).items() if k not in ignore}
    new_cfg = {k: v for k, v in current["config"].items() if k not in ignore}
    if old.get("generator", {}).get("version") != GENERATOR_VERSION or old_cfg != new_cfg:
        differ = sorted(k for k in new_cfg.keys() | old_cfg.keys() if old_cfg.get(k) != new_cfg.get(k))
        what = f"synthetic.{', synthetic.'.join(differ)}" if differ else "generator version"
        raise DataError(f"{path}: folder was generated with different settings ({what}); use another --out")


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_dataset` did.

    Attributes:
        out_dir: Dataset root.
        num_frames: Frames in the dataset.
        num_rendered: Frames rendered in this call.
        num_skipped: Frames whose files all existed already.
        num_train: Frames in train.txt.
        num_val: Frames in val.txt.
        workers: Processes used.
        seconds: Wall time of the call.
        meta_path: The meta.json file.
        list_paths: Split -> list file.
    """

    out_dir: Path
    num_frames: int
    num_rendered: int
    num_skipped: int
    num_train: int
    num_val: int
    workers: int
    seconds: float
    meta_path: Path
    list_paths: dict[str, Path]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        out = asdict(self)
        out["out_dir"], out["meta_path"] = str(self.out_dir), str(self.meta_path)
        out["list_paths"] = {k: str(v) for k, v in self.list_paths.items()}
        return out


def generate_dataset(
    out_dir: str | Path,
    cfg: SyntheticConfig,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticSummary:
    """Render `cfg.num_frames` frames into `out_dir` (resumable, parallel, deterministic).

    Writes `<out_dir>/<split>/<column>/<id>.png` for the columns in `COLUMNS`, `train.txt` and
    `val.txt` (DeepScene list format with a `# columns:` header; a split without frames gets no
    list) and `meta.json`. Frames whose files all exist are skipped. Frame i is in val when
    floor((i + 1) * val_fraction) > floor(i * val_fraction), so splits do not depend on `num_frames`.

    Args:
        out_dir: Dataset root (created if needed).
        cfg: Generator settings; `cfg.workers` processes (0 = all cores).
        progress: Called as progress(done, total) with the number of frames rendered so far and to
            render in this call, first with done = 0.

    Raises:
        ConfigError: invalid settings (names the key).
        DataError: output folder not writable, or holding frames generated with other settings.
    """
    start = time.perf_counter()
    check_config(cfg)
    root = ensure_writable_dir(out_dir)
    frames = [frame_params(i, cfg) for i in range(cfg.num_frames)]
    meta_path = root / "meta.json"
    meta = _meta(cfg, frames, complete=False)
    _check_existing_meta(meta_path, meta)
    atomic_write_text(meta_path, _meta_json(meta))

    todo = [p.index for p in frames if not all(f.exists() for f in frame_paths(root, p).values())]
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(todo)))
    if progress is not None:
        progress(0, len(todo))
    if workers == 1:
        for done, index in enumerate(todo, start=1):
            _write_frame(index, cfg, str(root), 0)
            if progress is not None:
                progress(done, len(todo))
    elif todo:
        _run_pool(todo, cfg, root, workers, progress)

    list_paths = {}
    for split in SPLITS:
        rows = [frame_paths(root, p) for p in frames if p.split == split]
        if rows:  # an empty list is not a valid list file
            list_paths[split] = write_list(root / f"{split}.txt", COLUMNS, rows)
    atomic_write_text(meta_path, _meta_json(_meta(cfg, frames, complete=True)))
    return SyntheticSummary(
        out_dir=root,
        num_frames=len(frames),
        num_rendered=len(todo),
        num_skipped=len(frames) - len(todo),
        num_train=sum(p.split == "train" for p in frames),
        num_val=sum(p.split == "val" for p in frames),
        workers=workers,
        seconds=time.perf_counter() - start,
        meta_path=meta_path,
        list_paths=list_paths,
    )


def _run_pool(
    todo: list[int],
    cfg: SyntheticConfig,
    root: Path,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Render frames in a pool of spawned processes (spawn: safe whatever threads the parent runs)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=init_worker, initargs=(os.getpid(),)
    ) as pool:
        pending: set[Future[int]] = {pool.submit(_write_frame, i, cfg, str(root), 1) for i in todo}
        done_count = 0
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # re-raises a worker's error here
                    done_count += 1
                if progress is not None:
                    progress(done_count, len(todo))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
