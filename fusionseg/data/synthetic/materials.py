"""Classes and procedural surface materials of the synthetic scenes (colours, textures, NIR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.data.catalog import SYNTHETIC

# Class ids, looked up by name in the one class list (fusionseg.data.catalog.SYNTHETIC).
VOID = SYNTHETIC.classes.index("void")
GROUND = SYNTHETIC.classes.index("ground")
WALL = SYNTHETIC.classes.index("wall")
FURNITURE = SYNTHETIC.classes.index("furniture")
VEGETATION = SYNTHETIC.classes.index("vegetation")
TRAIL = SYNTHETIC.classes.index("trail")
SKY = SYNTHETIC.classes.index("sky")
MARKING = SYNTHETIC.classes.index("marking")
OBSTACLE = SYNTHETIC.classes.index("obstacle")

NO_MATERIAL = 255  # material id of pixels whose ray hits nothing
_TEXTURE_PX = 64  # side of one procedural texture tile


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
