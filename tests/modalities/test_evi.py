"""EVI / NDVI / NRG for Freiburg Forest (`reference/modalities.md` §4)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fusionseg.modalities.evi import (
    compute_evi,
    compute_ndvi,
    encode_evi,
    encode_ndvi,
    index_to_uint8,
    nrg_false_colour,
)


def _band(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Known reflectances (§4 test cases)
# --------------------------------------------------------------------------------------------------


def test_nir_equal_red_gives_zero_and_level_128() -> None:
    nir = _band([[0.3, 0.7]])
    evi = compute_evi(nir, nir.copy(), _band([[0.1, 0.9]]))
    ndvi = compute_ndvi(nir, nir.copy())
    np.testing.assert_array_equal(evi, 0.0)
    np.testing.assert_array_equal(ndvi, 0.0)
    # (0 + 1) * 127.5 = 127.5, rounded half up -> 128
    np.testing.assert_array_equal(index_to_uint8(evi), [[128, 128]])


def test_bright_nir_saturates_to_255() -> None:
    # EVI = 2.5 * (1 - 0) / (1 + 0 - 0 + 1) = 1.25 -> clipped to 1 -> 255
    evi = compute_evi(_band([[1.0]]), _band([[0.0]]), _band([[0.0]]))
    assert evi[0, 0] == 1.0
    assert index_to_uint8(evi)[0, 0] == 255
    assert compute_ndvi(_band([[1.0]]), _band([[0.0]]))[0, 0] == 1.0


def test_hand_computed_values() -> None:
    # vegetation: NIR 0.5, Red 0.1, Blue 0.05 -> EVI = 2.5 * 0.4 / (0.5 + 0.6 - 0.375 + 1) = 1 / 1.725
    evi = compute_evi(_band([[0.5]]), _band([[0.1]]), _band([[0.05]]))
    assert evi[0, 0] == pytest.approx(1.0 / 1.725, rel=1e-12)
    # NDVI = 0.4 / 0.6
    assert compute_ndvi(_band([[0.5]]), _band([[0.1]]))[0, 0] == pytest.approx(2.0 / 3.0, rel=1e-12)
    # bright blue sky: NIR 0.2, Red 0.1, Blue 0.3 -> den = 0.2 + 0.6 - 2.25 + 1 = -0.45, EVI = -0.5555...
    assert compute_evi(_band([[0.2]]), _band([[0.1]]), _band([[0.3]]))[0, 0] == pytest.approx(-0.25 / 0.45)
    # den exactly 0 (0.5 + 0 - 7.5 * 0.2 + 1 = 0): guarded to 0
    assert compute_evi(_band([[0.5]]), _band([[0.0]]), _band([[0.2]]))[0, 0] == 0.0
    # both bands black: NDVI guarded to 0
    assert compute_ndvi(_band([[0.0]]), _band([[0.0]]))[0, 0] == 0.0


def test_index_to_uint8_rounding_and_clipping() -> None:
    index = _band([-2.0, -1.0, -0.5, 0.0, 1 / 255, 0.5, 1.0, 3.0])
    # (x + 1) * 127.5: 0, 0, 63.75, 127.5, 128.0, 191.25, 255, 255 -> half up
    np.testing.assert_array_equal(index_to_uint8(index), [0, 0, 64, 128, 128, 191, 255, 255])


# --------------------------------------------------------------------------------------------------
# 8-bit encoders
# --------------------------------------------------------------------------------------------------


def _images() -> tuple[np.ndarray, np.ndarray]:
    nir_u8 = np.array([[255, 100, 0]], np.uint8)
    bgr_u8 = np.array([[[0, 10, 0], [30, 20, 100], [255, 0, 0]]], np.uint8)
    return nir_u8, bgr_u8


def test_encode_evi_and_ndvi() -> None:
    nir_u8, bgr_u8 = _images()
    evi = compute_evi(nir_u8 / 255.0, bgr_u8[:, :, 2] / 255.0, bgr_u8[:, :, 0] / 255.0)
    levels = index_to_uint8(evi)
    assert levels[0, 0] == 255 and levels[0, 1] == 128  # NIR 1, Red 0; NIR = Red
    np.testing.assert_array_equal(encode_evi(nir_u8, bgr_u8), cv2.applyColorMap(levels, cv2.COLORMAP_JET))
    grey = encode_evi(nir_u8, bgr_u8, colormap=False)
    assert grey.shape == (1, 3, 3)
    np.testing.assert_array_equal(grey, np.repeat(levels[:, :, None], 3, axis=2))
    # high EVI (vegetation) is red in the BGR colour image: JET level 255 = (0, 0, 128)
    np.testing.assert_array_equal(encode_evi(nir_u8, bgr_u8)[0, 0], (0, 0, 128))
    ndvi_levels = index_to_uint8(compute_ndvi(nir_u8 / 255.0, bgr_u8[:, :, 2] / 255.0))
    np.testing.assert_array_equal(encode_ndvi(nir_u8, bgr_u8, colormap=False)[:, :, 1], ndvi_levels)
    np.testing.assert_array_equal(
        encode_ndvi(nir_u8, bgr_u8), cv2.applyColorMap(ndvi_levels, cv2.COLORMAP_JET)
    )


def test_nrg_false_colour() -> None:
    nir_u8, bgr_u8 = _images()
    nrg = nrg_false_colour(nir_u8, bgr_u8)
    assert nrg.shape == (1, 3, 3) and nrg.dtype == np.uint8
    np.testing.assert_array_equal(nrg[:, :, 2], nir_u8)  # R shows NIR
    np.testing.assert_array_equal(nrg[:, :, 1], bgr_u8[:, :, 2])  # G shows red
    np.testing.assert_array_equal(nrg[:, :, 0], bgr_u8[:, :, 1])  # B shows green


def test_bad_input() -> None:
    nir_u8, bgr_u8 = _images()
    with pytest.raises(ValueError, match="nir must hold reflectances"):
        compute_ndvi(_band([[255.0]]), _band([[0.0]]))
    with pytest.raises(ValueError, match="red must be a float array"):
        compute_ndvi(_band([[0.5]]), np.array([[1]], np.uint8))
    with pytest.raises(ValueError, match="blue contains NaN"):
        compute_evi(_band([[0.5]]), _band([[0.5]]), _band([[np.nan]]))
    with pytest.raises(ValueError, match="same shape"):
        compute_evi(_band([[0.5]]), _band([[0.5, 0.5]]), _band([[0.5]]))
    with pytest.raises(ValueError, match="index contains NaN"):
        index_to_uint8(_band([np.nan]))
    with pytest.raises(ValueError, match="index must be a float array"):
        index_to_uint8(np.array([1]))
    with pytest.raises(ValueError, match="nir_u8"):
        encode_evi(nir_u8.astype(np.float32), bgr_u8)
    with pytest.raises(ValueError, match="bgr_u8"):
        encode_ndvi(nir_u8, bgr_u8[:, :, :2])
    with pytest.raises(ValueError, match="same height and width"):
        nrg_false_colour(nir_u8, np.zeros((2, 3, 3), np.uint8))


# --------------------------------------------------------------------------------------------------
# Properties (hypothesis, arrays <= 32x32)
# --------------------------------------------------------------------------------------------------

SHAPES = st.tuples(st.integers(1, 32), st.integers(1, 32))
reflectance = st.floats(0.0, 1.0)


@st.composite
def band_triples(draw):
    shape = draw(SHAPES)
    return tuple(draw(arrays(np.float64, shape, elements=reflectance)) for _ in range(3))


@settings(max_examples=60, deadline=None)
@given(bands=band_triples())
def test_property_indices_in_range_and_inputs_untouched(bands) -> None:
    nir, red, blue = bands
    copies = [band.copy() for band in bands]
    evi = compute_evi(nir, red, blue)
    ndvi = compute_ndvi(nir, red)
    for band, copy in zip(bands, copies):
        np.testing.assert_array_equal(band, copy)
    for index in (evi, ndvi):
        assert index.shape == nir.shape and index.dtype == np.float64
        assert np.isfinite(index).all() and (np.abs(index) <= 1.0).all()
    # NDVI (and EVI where its denominator is positive) has the sign of NIR - Red
    assert (np.sign(ndvi) == np.sign(nir - red))[nir + red >= 1e-6].all()
    positive = nir + 6 * red - 7.5 * blue + 1 >= 1e-6
    assert (np.sign(evi) == np.sign(nir - red))[positive].all()


@settings(max_examples=60, deadline=None)
@given(bands=band_triples(), scale=st.floats(0.05, 1.0))
def test_property_ndvi_scale_invariant_evi_not(bands, scale) -> None:
    """Scaling all bands by s (uniform illumination) leaves NDVI unchanged; EVI's offset L = 1 makes it
    depend on the brightness, so EVI only keeps its sign (where the denominator stays positive)."""
    nir, red, blue = bands
    ndvi = compute_ndvi(nir, red)
    ndvi_scaled = compute_ndvi(nir * scale, red * scale)
    keep = (nir + red) * scale >= 1e-6
    np.testing.assert_allclose(ndvi_scaled[keep], ndvi[keep], atol=1e-12)
    evi = compute_evi(nir, red, blue)
    evi_scaled = compute_evi(nir * scale, red * scale, blue * scale)
    positive = (nir + 6 * red - 7.5 * blue + 1 >= 1e-6) & (scale * (nir + 6 * red - 7.5 * blue) + 1 >= 1e-6)
    positive &= np.abs(nir - red) > 1e-9  # scaling may round a 1-ulp difference to 0
    assert (np.sign(evi_scaled) == np.sign(evi))[positive].all()


def test_evi_depends_on_brightness() -> None:
    """The counterpart of the property above: EVI is not scale invariant (L = 1)."""
    nir, red, blue = _band([[0.4]]), _band([[0.1]]), _band([[0.05]])
    assert compute_evi(nir, red, blue)[0, 0] != pytest.approx(compute_evi(nir / 2, red / 2, blue / 2)[0, 0])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shape=SHAPES, colormap=st.booleans())
def test_property_encoders(data, shape, colormap) -> None:
    nir_u8 = data.draw(arrays(np.uint8, shape))
    bgr_u8 = data.draw(arrays(np.uint8, (*shape, 3)))
    before = (nir_u8.copy(), bgr_u8.copy())
    for encode in (encode_evi, encode_ndvi):
        image = encode(nir_u8, bgr_u8, colormap=colormap)
        assert image.shape == (*shape, 3) and image.dtype == np.uint8
        if not colormap:
            assert (image == image[:, :, :1]).all()  # grey replicated
    # NIR = Red everywhere -> index 0 -> level 128 (or JET's level-128 colour)
    same = bgr_u8.copy()
    same[:, :, 2] = nir_u8
    expected = (126, 255, 130) if colormap else (128, 128, 128)
    assert (encode_ndvi(nir_u8, same, colormap=colormap) == expected).all()
    np.testing.assert_array_equal(nir_u8, before[0])
    np.testing.assert_array_equal(bgr_u8, before[1])


@settings(max_examples=60, deadline=None)
@given(index=arrays(np.float64, SHAPES, elements=st.floats(-3.0, 3.0)))
def test_property_index_to_uint8_monotonic_and_exact(index) -> None:
    levels = index_to_uint8(index)
    assert levels.shape == index.shape and levels.dtype == np.uint8
    exact = (np.clip(index, -1, 1) + 1) * 127.5
    assert (np.abs(levels - exact) <= 0.5).all()
    order = np.argsort(index.ravel(), kind="stable")
    assert (np.diff(levels.ravel()[order].astype(int)) >= 0).all()
