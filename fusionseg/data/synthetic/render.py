"""The frame renderer: scene -> rays -> labels, RGB and NIR images, dense, raw and sparse depth (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionseg.config import SyntheticConfig
from fusionseg.data.synthetic.camera import camera_rotation
from fusionseg.data.synthetic.layouts import _build_indoor, _build_outdoor
from fusionseg.data.synthetic.materials import NO_MATERIAL, _draw_looks, _Look
from fusionseg.data.synthetic.params import _frame_streams, check_config, frame_intrinsics, frame_params
from fusionseg.data.synthetic.raycast import _cast_image, _Hits, _labels_and_materials
from fusionseg.data.synthetic.scene import _Scene
from fusionseg.data.synthetic.sensors import (
    LIDAR_MAX_RANGE_M,
    LIDAR_RANGE_NOISE_M,
    lidar_scan_mask,
    simulate_kinect_depth,
)
from fusionseg.data.synthetic.shading import _camera_image, _shading, _sky_rgb, _texture_mix
from fusionseg.modalities.intrinsics import Intrinsics


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
    look = _FrameLook.draw(look_rng)
    rgb_lin, nir_lin = _radiance(scene, hits, look.materials, material, nir_material, nthreads)
    if params.condition == "fog":
        rgb_lin, nir_lin = _add_fog(rgb_lin, nir_lin, hits, look.fog_visibility_m)
    illumination = look.dark_illumination if params.condition == "dark" else 1.0
    rgb = _camera_image(
        rgb_lin, sensor_rng, illumination=illumination, target_mean=look.exposure_target, max_gain=2.0
    )
    # NIR: its own illuminator, so darkness does not reach it; the gain only ever darkens
    nir = _camera_image(nir_lin, sensor_rng, illumination=1.0, target_mean=0.35, max_gain=1.0)
    depth_raw, depth_sparse = _sensor_depths(hits, intrinsics, rotation, cfg, sensor_rng)
    return {
        "rgb": rgb,
        "depth": hits.depth_m,
        "depth_raw": depth_raw,
        "depth_sparse": depth_sparse,
        "nir": nir,
        "label": label,
        "material": material,
    }


@dataclass(frozen=True)
class _FrameLook:
    """What one frame's appearance stream draws, in the order it draws it."""

    materials: list[_Look]
    exposure_target: float  # mean linear brightness the auto gain aims for
    dark_illumination: float  # scene light in dark frames (clear = 1)
    fog_visibility_m: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _FrameLook:
        materials = _draw_looks(rng)
        exposure_target = rng.uniform(0.28, 0.42)
        dark_illumination = rng.uniform(0.02, 0.06)
        return cls(materials, exposure_target, dark_illumination, rng.uniform(8.0, 30.0))


def _radiance(
    scene: _Scene,
    hits: _Hits,
    looks: list[_Look],
    material: np.ndarray,
    nir_material: np.ndarray,
    nthreads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) linear RGB and (H, W) linear NIR radiance: textured albedo under ambient + direct light."""
    hit = hits.depth_m > 0
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
    return rgb_lin, nir_lin


def _add_fog(
    rgb_lin: np.ndarray, nir_lin: np.ndarray, hits: _Hits, visibility_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Attenuate towards a bright haze with distance (NIR scatters less than visible light)."""
    beta = 3.0 / visibility_m  # extinction per metre (visibility = 3 / beta)
    far = np.where(hits.depth_m > 0, hits.depth_m, np.float32(1e3))
    transmit = np.exp(-beta * far)[..., None].astype(np.float32)
    rgb_lin = rgb_lin * transmit + np.float32(0.7) * (1 - transmit)
    transmit_nir = np.exp(-0.5 * beta * far).astype(np.float32)
    nir_lin = nir_lin * transmit_nir + np.float32(0.45) * (1 - transmit_nir)
    return rgb_lin, nir_lin


def _sensor_depths(
    hits: _Hits,
    intrinsics: Intrinsics,
    rotation: np.ndarray,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(raw, sparse) depth: the dense depth as a Kinect-like sensor and a spinning LiDAR see it."""
    hit = hits.depth_m > 0
    shape = hits.depth_m.shape
    norm = np.linalg.norm(hits.direction, axis=-1)  # (H, W)
    incidence = (np.abs(np.sum(hits.normal * hits.direction, axis=-1)) / norm).astype(np.float32)
    depth_raw = simulate_kinect_depth(
        hits.depth_m,
        rng,
        max_range_m=cfg.raw_max_range_m,
        noise_per_m=cfg.raw_noise_per_m,
        incidence_cos=incidence,
        dropout_fraction=float(rng.uniform(0.02, 0.06)),
    )
    scan = lidar_scan_mask(intrinsics, shape, rotation, rng, rows=cfg.sparse_rows, density=cfg.sparse_density)
    range_noise_m = LIDAR_RANGE_NOISE_M * rng.standard_normal(shape, dtype=np.float32)
    z_noise_m = range_noise_m / norm  # noise along the ray, as z-depth
    sampled = scan & hit & (hits.depth_m * norm < LIDAR_MAX_RANGE_M)
    depth_sparse = np.where(sampled, np.maximum(hits.depth_m + z_noise_m, 1e-3), 0.0).astype(np.float32)
    return depth_raw, depth_sparse
