"""Cityscapes stereo disparity to metric depth (`reference/modalities.md` §5)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["DISPARITY_SCALE", "disparity_to_depth"]

# §5.1: Cityscapes disparity PNGs store p = d * 256 + 1 for valid pixels.
DISPARITY_SCALE = 256.0


def disparity_to_depth(
    disparity_png: NDArray[np.uint16], *, baseline_m: float, fx_px: float
) -> NDArray[np.float32]:
    """Convert a Cityscapes 16-bit disparity image to depth in metres.

    §5.1: d = (p - 1) / 256 pixels for p > 1; p = 0 (invalid) and p = 1 (d = 0, infinite depth) both
    give missing depth. §5.3: depth = baseline * fx / d, computed in float64 and stored as float32.
    Read the PNG unchanged (16 bits); an 8-bit read destroys the values.

    Args:
        disparity_png: (H, W) uint16 raw disparity values as stored in the PNG.
        baseline_m: Stereo baseline in metres (camera JSON `extrinsic.baseline`, about 0.21-0.22).
        fx_px: Focal length in pixels at the disparity image's resolution (`intrinsic.fx`).

    Returns:
        (H, W) float32 depth in metres, 0 = missing.

    Raises:
        ValueError: `disparity_png` is not a 2-D uint16 array, or `baseline_m`/`fx_px` is not a
            positive finite number.
    """
    if not isinstance(disparity_png, np.ndarray) or disparity_png.dtype != np.uint16:
        got = disparity_png.dtype if isinstance(disparity_png, np.ndarray) else type(disparity_png).__name__
        raise ValueError(
            f"disparity_png must be the raw uint16 disparity image (read it unchanged), got {got}"
        )
    if disparity_png.ndim != 2:
        raise ValueError(f"disparity_png must be a 2-D (H, W) array, got shape {disparity_png.shape}")
    for name, value in (("baseline_m", baseline_m), ("fx_px", fx_px)):
        if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")

    raw = disparity_png.astype(np.float64)
    valid = disparity_png > 1  # p = 0 invalid, p = 1 is zero disparity (§5.1)
    disparity_px = (raw - 1.0) / DISPARITY_SCALE
    depth_m = np.divide(float(baseline_m) * float(fx_px), disparity_px, out=np.zeros_like(raw), where=valid)
    return depth_m.astype(np.float32)
