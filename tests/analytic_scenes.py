"""Plane scenes with exactly known geometry, rendered through the synthetic scenes' raycaster.

A test helper (tests of HHA, normals and the synthetic renderer compare against closed forms); it uses
the package's internal scene and raycasting steps, so what it checks is the code the datasets use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fusionseg.data.synthetic.camera import camera_rotation, gravity_in_camera
from fusionseg.data.synthetic.materials import GROUND, WALL
from fusionseg.data.synthetic.meshes import _quad
from fusionseg.data.synthetic.raycast import _cast_image, _labels_and_materials
from fusionseg.data.synthetic.scene import _Scene
from fusionseg.modalities.intrinsics import Intrinsics


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
