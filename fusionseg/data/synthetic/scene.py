"""One frame's scene: open3d raycasting geometry with per-geometry class and material, decals, lights."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import open3d as o3d
from numpy.typing import NDArray

from fusionseg.data.synthetic.materials import MATERIAL_IDS
from fusionseg.data.synthetic.meshes import _Mesh


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
