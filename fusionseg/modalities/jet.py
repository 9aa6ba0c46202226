"""JET colour-coding of depth, as DeepScene fed depth to AdapNet++/SSMA (`reference/modalities.md` §2)."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["COLOUR_ORDERS", "MISSING_MODES", "depth_to_jet", "scale_to_uint8"]

COLOUR_ORDERS = ("bgr", "rgb")
# "black": missing (0) pixels are painted (0, 0, 0), a deliberate deviation from the original;
# "jet0": missing pixels get what the original gives them, v = 0 -> dark blue (128, 0, 0) BGR (§2.2 step 5).
MISSING_MODES = ("black", "jet0")


def scale_to_uint8(depth_m: NDArray[np.float32], *, max_depth_m: float) -> NDArray[np.uint8]:
    """Map depth to 8-bit levels: v = depth / max_depth * 255, clipped to [0, 255], truncated (§2.2).

    The division and multiplication run in float64 (the spec does not fix the precision); truncation
    after clipping is the spec's `astype(np.uint8)` choice [unverified in the source], so other
    implementations may differ by 1 level.

    Args:
        depth_m: (H, W) float depth in metres, 0 = missing.
        max_depth_m: Depth mapped to 255; deeper pixels saturate.

    Returns:
        (H, W) uint8 levels.
    """
    levels = depth_m.astype(np.float64) / float(max_depth_m) * 255.0
    return np.clip(levels, 0.0, 255.0).astype(np.uint8)  # astype truncates toward zero


def depth_to_jet(
    depth_m: NDArray[np.float32],
    *,
    max_depth_m: float = 7.0,
    inverted: bool = False,
    order: str = "bgr",
    missing: str = "black",
) -> NDArray[np.uint8]:
    """Colour-code depth with OpenCV's JET colour map (`reference/modalities.md` §2.2).

    Near is blue and far is red by default (ScanNet's depth / 7 m); `inverted=True` flips the levels
    (v -> 255 - v) so that near is red, the disparity-like look of DeepScene's Cityscapes images (§2.1).

    Args:
        depth_m: (H, W) float32 depth in metres, 0 = missing.
        max_depth_m: Depth mapped to the top of the colour map (7 m as stated for ScanNet); deeper
            pixels are clipped to it.
        inverted: Reverse the colour map (near = red, far = dark blue).
        order: "bgr" (default: OpenCV's order, what the network sees when the image is written with
            cv2.imwrite and read back with cv2.imread) or "rgb".
        missing: "black" paints missing (0) pixels (0, 0, 0) (a documented deviation); "jet0" gives
            them the original's colour for level 0, dark blue (128, 0, 0) BGR, also when inverted
            (as a zero disparity would be).

    Returns:
        (H, W, 3) uint8 colour image in the requested channel order.

    Raises:
        ValueError: `depth_m` is not a 2-D float array of finite, non-negative values, `max_depth_m` is
            not positive and finite, or `order`/`missing` is not one of the allowed names.
    """
    if not isinstance(depth_m, np.ndarray) or not np.issubdtype(depth_m.dtype, np.floating):
        got = depth_m.dtype if isinstance(depth_m, np.ndarray) else type(depth_m).__name__
        raise ValueError(f"depth_m must be a float array of metres, got {got}")
    if depth_m.ndim != 2:
        raise ValueError(f"depth_m must be a 2-D (H, W) array, got shape {depth_m.shape}")
    if not np.isfinite(depth_m).all():
        raise ValueError("depth_m contains NaN or infinite values (use 0 for missing depth)")
    if depth_m.size and depth_m.min() < 0:
        raise ValueError(f"depth_m must be non-negative (0 = missing), got minimum {depth_m.min()}")
    if (
        not isinstance(max_depth_m, (int, float, np.number))
        or not np.isfinite(max_depth_m)
        or max_depth_m <= 0
    ):
        raise ValueError(f"max_depth_m must be a positive finite number of metres, got {max_depth_m!r}")
    if order not in COLOUR_ORDERS:
        raise ValueError(f"order must be one of {', '.join(COLOUR_ORDERS)}, got {order!r}")
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_MODES)}, got {missing!r}")

    levels = scale_to_uint8(depth_m, max_depth_m=max_depth_m)  # §2.2 steps 2-3
    missing_px = depth_m == 0
    if inverted:
        levels = 255 - levels
        levels[missing_px] = 0  # missing stays level 0, like a zero disparity
    if levels.size == 0:
        colour = np.zeros((*levels.shape, 3), dtype=np.uint8)
    else:
        colour = cv2.applyColorMap(levels, cv2.COLORMAP_JET)  # §2.2 step 4: BGR
    if missing == "black":
        colour[missing_px] = 0  # deviation from §2.2 step 5, documented in docs/modalities-completion.md
    if order == "rgb":
        colour = np.ascontiguousarray(colour[:, :, ::-1])
    return colour
