"""Per-frame draws before any geometry (split, layout, condition, camera pose) and the settings check."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fusionseg.config import SyntheticConfig
from fusionseg.data.synthetic.camera import camera_rotation, default_intrinsics, gravity_in_camera
from fusionseg.errors import ConfigError
from fusionseg.modalities.intrinsics import Intrinsics

LAYOUTS: tuple[str, ...] = ("indoor", "outdoor")
CONDITIONS: tuple[str, ...] = ("clear", "dark", "fog")


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
