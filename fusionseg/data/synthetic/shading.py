"""Appearance: textures mapped in world metres, Lambert shading with cast shadows, sky, camera exposure."""

from __future__ import annotations

import numpy as np

from fusionseg.data.synthetic.materials import _TEXTURE_PX, NO_MATERIAL, _Look
from fusionseg.data.synthetic.raycast import _cast, _Hits
from fusionseg.data.synthetic.scene import _Scene


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
