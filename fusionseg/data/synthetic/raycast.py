"""Casting rays through the scene: per-pixel depth, geometry, normals and hit points; label maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import open3d as o3d
from numpy.typing import NDArray

from fusionseg.data.synthetic.camera import _pixel_directions
from fusionseg.data.synthetic.materials import NO_MATERIAL, SKY
from fusionseg.data.synthetic.scene import _Scene
from fusionseg.modalities.intrinsics import Intrinsics


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
