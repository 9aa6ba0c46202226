"""Vegetation indices (EVI, NDVI) and NRG false colour for Freiburg Forest (`reference/modalities.md` §4).

The spec leaves the scaling open [unverified]; the choices made here (documented in
docs/modalities-completion.md) are the ones §4 proposes:

* 8-bit channels divided by 255 serve as reflectance proxies;
* indices are computed in float64; a denominator with |den| < 1e-6 gives index 0;
* indices are clipped to [-1, 1] and mapped to 8 bits with v = floor((index + 1) * 127.5 + 0.5), i.e.
  rounded half up, so index 0 gives 128 and 1 gives 255;
* the 8-bit level is colour-coded with OpenCV's JET map in BGR order, like depth (§2.2).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DENOMINATOR_EPS",
    "EVI_BLUE_COEFF",
    "EVI_GAIN",
    "EVI_OFFSET",
    "EVI_RED_COEFF",
    "compute_evi",
    "compute_ndvi",
    "encode_evi",
    "encode_ndvi",
    "index_to_uint8",
    "nrg_false_colour",
]

# §4: MODIS EVI coefficients, EVI = G * (NIR - Red) / (NIR + C1 * Red - C2 * Blue + L).
EVI_GAIN = 2.5  # G
EVI_RED_COEFF = 6.0  # C1
EVI_BLUE_COEFF = 7.5  # C2
EVI_OFFSET = 1.0  # L
# §4 [unverified] choice: denominators smaller than this in magnitude give index 0.
DENOMINATOR_EPS = 1e-6


def _check_reflectance(name: str, band: NDArray) -> NDArray[np.float64]:
    """A float band in [0, 1] as float64, or ValueError naming the argument."""
    if not isinstance(band, np.ndarray) or not np.issubdtype(band.dtype, np.floating):
        got = band.dtype if isinstance(band, np.ndarray) else type(band).__name__
        raise ValueError(f"{name} must be a float array of reflectances in [0, 1], got {got}")
    if not np.isfinite(band).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if band.size and (band.min() < 0 or band.max() > 1):
        raise ValueError(
            f"{name} must hold reflectances in [0, 1], got range [{band.min():g}, {band.max():g}] "
            "(divide 8-bit images by 255)"
        )
    return band.astype(np.float64)


def _check_same_shape(**bands: NDArray) -> None:
    shapes = {name: band.shape for name, band in bands.items()}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"bands must have the same shape, got {listed}")


def _guarded_ratio(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    """numerator / denominator clipped to [-1, 1]; 0 where |denominator| < DENOMINATOR_EPS (§4)."""
    safe = np.abs(denominator) >= DENOMINATOR_EPS
    ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=safe)
    return np.clip(ratio, -1.0, 1.0)


def compute_ndvi(nir: NDArray[np.floating], red: NDArray[np.floating]) -> NDArray[np.float64]:
    """Normalised difference vegetation index, (NIR - Red) / (NIR + Red) (§4).

    Args:
        nir: (H, W) near-infrared reflectance in [0, 1].
        red: (H, W) red reflectance in [0, 1].

    Returns:
        (H, W) float64 NDVI in [-1, 1]; 0 where NIR + Red < 1e-6 (both bands black).

    Raises:
        ValueError: a band is not a float array in [0, 1], or the shapes differ.
    """
    nir64 = _check_reflectance("nir", nir)
    red64 = _check_reflectance("red", red)
    _check_same_shape(nir=nir, red=red)
    return _guarded_ratio(nir64 - red64, nir64 + red64)


def compute_evi(
    nir: NDArray[np.floating], red: NDArray[np.floating], blue: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Enhanced vegetation index with the MODIS coefficients (§4).

    EVI = 2.5 * (NIR - Red) / (NIR + 6 * Red - 7.5 * Blue + 1). The denominator can vanish or turn
    negative for bright blue pixels (sky), so it is guarded (|den| < 1e-6 gives 0) and the result is
    clipped to [-1, 1].

    Args:
        nir: (H, W) near-infrared reflectance in [0, 1].
        red: (H, W) red reflectance in [0, 1].
        blue: (H, W) blue reflectance in [0, 1].

    Returns:
        (H, W) float64 EVI in [-1, 1].

    Raises:
        ValueError: a band is not a float array in [0, 1], or the shapes differ.
    """
    nir64 = _check_reflectance("nir", nir)
    red64 = _check_reflectance("red", red)
    blue64 = _check_reflectance("blue", blue)
    _check_same_shape(nir=nir, red=red, blue=blue)
    numerator = EVI_GAIN * (nir64 - red64)
    denominator = nir64 + EVI_RED_COEFF * red64 - EVI_BLUE_COEFF * blue64 + EVI_OFFSET
    return _guarded_ratio(numerator, denominator)


def index_to_uint8(index: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map an index in [-1, 1] to 8 bits: v = round((clip(index, -1, 1) + 1) * 127.5), half up (§4).

    Rounding is half up (floor(x + 0.5)), so an index of exactly 0 (127.5) gives 128.

    Args:
        index: Float array of any shape (NDVI, EVI); values outside [-1, 1] are clipped.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: `index` is not a float array or holds NaN.
    """
    if not isinstance(index, np.ndarray) or not np.issubdtype(index.dtype, np.floating):
        got = index.dtype if isinstance(index, np.ndarray) else type(index).__name__
        raise ValueError(f"index must be a float array, got {got}")
    if np.isnan(index).any():
        raise ValueError("index contains NaN values")
    scaled = (np.clip(index.astype(np.float64), -1.0, 1.0) + 1.0) * 127.5
    return np.floor(scaled + 0.5).astype(np.uint8)


def _check_nir_bgr(nir_u8: NDArray, bgr_u8: NDArray) -> None:
    if not isinstance(nir_u8, np.ndarray) or nir_u8.dtype != np.uint8 or nir_u8.ndim != 2:
        got = (nir_u8.dtype, nir_u8.shape) if isinstance(nir_u8, np.ndarray) else type(nir_u8).__name__
        raise ValueError(f"nir_u8 must be an (H, W) uint8 image, got {got}")
    if (
        not isinstance(bgr_u8, np.ndarray)
        or bgr_u8.dtype != np.uint8
        or bgr_u8.ndim != 3
        or bgr_u8.shape[2] != 3
    ):
        got = (bgr_u8.dtype, bgr_u8.shape) if isinstance(bgr_u8, np.ndarray) else type(bgr_u8).__name__
        raise ValueError(f"bgr_u8 must be an (H, W, 3) uint8 BGR image, got {got}")
    if bgr_u8.shape[:2] != nir_u8.shape:
        raise ValueError(
            f"nir_u8 and bgr_u8 must have the same height and width, got {nir_u8.shape} and "
            f"{bgr_u8.shape[:2]}"
        )


def _colour_levels(levels: NDArray[np.uint8], colormap: bool) -> NDArray[np.uint8]:
    """(H, W) levels -> (H, W, 3): JET in BGR (as §2.2) or the grey level replicated."""
    if colormap and levels.size:
        return cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    return np.repeat(levels[:, :, None], 3, axis=2)


def encode_evi(
    nir_u8: NDArray[np.uint8], bgr_u8: NDArray[np.uint8], *, colormap: bool = True
) -> NDArray[np.uint8]:
    """EVI image for the network from an 8-bit NIR image and the matching 8-bit BGR image (§4).

    Channels divided by 255 are the reflectance proxies (NIR, Red = bgr[..., 2], Blue = bgr[..., 0]).

    Args:
        nir_u8: (H, W) uint8 near-infrared image.
        bgr_u8: (H, W, 3) uint8 colour image in OpenCV's BGR order, registered to `nir_u8`.
        colormap: JET colour-code the 8-bit EVI (BGR, high EVI = red); False replicates the grey
            level into 3 channels.

    Returns:
        (H, W, 3) uint8 image (BGR when colour-coded).

    Raises:
        ValueError: wrong dtypes or shapes.
    """
    _check_nir_bgr(nir_u8, bgr_u8)
    nir, red, blue = nir_u8 / 255.0, bgr_u8[:, :, 2] / 255.0, bgr_u8[:, :, 0] / 255.0
    return _colour_levels(index_to_uint8(compute_evi(nir, red, blue)), colormap)


def encode_ndvi(
    nir_u8: NDArray[np.uint8], bgr_u8: NDArray[np.uint8], *, colormap: bool = True
) -> NDArray[np.uint8]:
    """NDVI image for the network from an 8-bit NIR image and the matching 8-bit BGR image (§4).

    Args:
        nir_u8: (H, W) uint8 near-infrared image.
        bgr_u8: (H, W, 3) uint8 colour image in BGR order; its red channel (index 2) is used.
        colormap: JET colour-code (BGR) or replicate the grey level into 3 channels.

    Returns:
        (H, W, 3) uint8 image (BGR when colour-coded).

    Raises:
        ValueError: wrong dtypes or shapes.
    """
    _check_nir_bgr(nir_u8, bgr_u8)
    nir, red = nir_u8 / 255.0, bgr_u8[:, :, 2] / 255.0
    return _colour_levels(index_to_uint8(compute_ndvi(nir, red)), colormap)


def nrg_false_colour(nir_u8: NDArray[np.uint8], bgr_u8: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """NRG false-colour image: red shows NIR, green shows red, blue shows green.

    Args:
        nir_u8: (H, W) uint8 near-infrared image.
        bgr_u8: (H, W, 3) uint8 colour image in BGR order.

    Returns:
        (H, W, 3) uint8 image in BGR order: [..., 0] = green, [..., 1] = red, [..., 2] = NIR.

    Raises:
        ValueError: wrong dtypes or shapes.
    """
    _check_nir_bgr(nir_u8, bgr_u8)
    return np.stack([bgr_u8[:, :, 1], bgr_u8[:, :, 2], nir_u8], axis=2)
