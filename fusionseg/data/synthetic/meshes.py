"""Triangle meshes (numpy) the scenes are built from: quads, boxes, cylinders, lumpy blobs, disks."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

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
