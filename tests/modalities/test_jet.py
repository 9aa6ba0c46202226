"""JET colour-coding of depth (`reference/modalities.md` §2)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fusionseg.modalities.jet import depth_to_jet, scale_to_uint8

# §2.2 table of OpenCV's JET look-up values, BGR.
JET_TABLE_BGR = {
    0: (128, 0, 0),
    1: (132, 0, 0),
    32: (255, 0, 0),
    64: (255, 128, 0),
    96: (254, 255, 2),
    127: (130, 255, 126),
    128: (126, 255, 130),
    160: (0, 252, 255),
    192: (0, 124, 255),
    224: (0, 0, 252),
    255: (0, 0, 128),
}


def _depth_for_level(level: int, max_depth_m: float = 7.0) -> float:
    """A depth that lands inside level `level` after v = depth / max * 255 and truncation."""
    return (level + 0.5) / 255.0 * max_depth_m


def test_levels_follow_the_spec_table() -> None:
    levels = sorted(JET_TABLE_BGR)
    depth_m = np.array([[_depth_for_level(v) for v in levels]], np.float32)
    colour = depth_to_jet(depth_m, missing="jet0")
    assert colour.shape == (1, len(levels), 3) and colour.dtype == np.uint8
    np.testing.assert_array_equal(colour[0], [JET_TABLE_BGR[v] for v in levels])


def test_ends_of_the_colour_map() -> None:
    """The smallest depth maps to dark blue, max_depth (and beyond) to dark red, BGR."""
    depth_m = np.array([[0.0, 1e-6, 7.0, 10.0, 1000.0]], np.float32)
    colour = depth_to_jet(depth_m, max_depth_m=7.0, missing="jet0")
    np.testing.assert_array_equal(colour[0], [(128, 0, 0), (128, 0, 0)] + [(0, 0, 128)] * 3)


def test_scaling_is_truncation_of_depth_over_max_times_255() -> None:
    # 3.5 m / 7 m * 255 = 127.5 -> 127 (truncated, not rounded); just below 7 m -> 254
    depth_m = np.array([[3.5, 7.0 * 254.99 / 255.0, 0.0274]], np.float32)
    np.testing.assert_array_equal(scale_to_uint8(depth_m, max_depth_m=7.0), [[127, 254, 0]])
    # ScanNet's stated rule, depth_mm / 7000 * 255, for 1750 mm
    assert scale_to_uint8(np.array([[1.75]], np.float32), max_depth_m=7.0)[0, 0] == int(1750 / 7000 * 255)


def test_missing_pixels() -> None:
    depth_m = np.array([[0.0, 3.5]], np.float32)
    black = depth_to_jet(depth_m)
    original = depth_to_jet(depth_m, missing="jet0")
    np.testing.assert_array_equal(black[0, 0], (0, 0, 0))
    np.testing.assert_array_equal(original[0, 0], (128, 0, 0))
    np.testing.assert_array_equal(black[0, 1], original[0, 1])
    # inverted: missing keeps level 0 (dark blue, like a zero disparity) while depth 0+ is dark red
    inverted = depth_to_jet(np.array([[0.0, 1e-6]], np.float32), inverted=True, missing="jet0")
    np.testing.assert_array_equal(inverted[0], [(128, 0, 0), (0, 0, 128)])
    np.testing.assert_array_equal(depth_to_jet(depth_m, inverted=True)[0, 0], (0, 0, 0))


def test_inverted_makes_near_red() -> None:
    depth_m = np.array([[0.1, 6.9]], np.float32)
    colour = depth_to_jet(depth_m, inverted=True)
    assert colour[0, 0, 2] > colour[0, 0, 0]  # near: red dominates
    assert colour[0, 1, 0] > colour[0, 1, 2]  # far: blue dominates
    levels = scale_to_uint8(depth_m, max_depth_m=7.0)
    np.testing.assert_array_equal(colour[0], cv2.applyColorMap(255 - levels, cv2.COLORMAP_JET)[0])


def test_bgr_round_trips_through_png_as_the_network_sees_it(tmp_path) -> None:
    depth_m = np.linspace(0.2, 7.0, 64, dtype=np.float32).reshape(8, 8)
    colour = depth_to_jet(depth_m)
    path = tmp_path / "jet.png"
    assert cv2.imwrite(str(path), colour)
    np.testing.assert_array_equal(cv2.imread(str(path)), colour)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="depth_m must be a float array"):
        depth_to_jet(np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match="depth_m must be a 2-D"):
        depth_to_jet(np.zeros((2, 2, 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        depth_to_jet(np.array([[np.nan]], np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        depth_to_jet(np.array([[-1.0]], np.float32))
    with pytest.raises(ValueError, match="max_depth_m"):
        depth_to_jet(np.zeros((2, 2), np.float32), max_depth_m=0.0)
    with pytest.raises(ValueError, match="order"):
        depth_to_jet(np.zeros((2, 2), np.float32), order="RGB ")
    with pytest.raises(ValueError, match="missing"):
        depth_to_jet(np.zeros((2, 2), np.float32), missing="white")


depth_maps = arrays(
    np.float32,
    array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=32),
    # depths of real sensors: 0 (missing) or at least a micrometre; subnormal floats would underflow to
    # "missing" when scaled, which is not a property of the encoding
    elements=st.one_of(st.just(0.0), st.floats(2.0**-20, 20.0, width=32)),
)
jet_options = st.fixed_dictionaries(
    {"inverted": st.booleans(), "missing": st.sampled_from(["black", "jet0"])}
)


@settings(max_examples=60, deadline=None)
@given(depth_m=depth_maps, options=jet_options, max_depth_m=st.sampled_from([1.0, 7.0, 10.0, 80.0]))
def test_property_shape_order_and_input(depth_m, options, max_depth_m) -> None:
    before = depth_m.copy()
    bgr = depth_to_jet(depth_m, max_depth_m=max_depth_m, **options)
    rgb = depth_to_jet(depth_m, max_depth_m=max_depth_m, order="rgb", **options)
    np.testing.assert_array_equal(depth_m, before)
    assert bgr.shape == (*depth_m.shape, 3) and bgr.dtype == np.uint8
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])  # rgb is the channel-reversed bgr
    assert rgb.flags.c_contiguous
    missing_colour = (0, 0, 0) if options["missing"] == "black" else (128, 0, 0)
    assert (bgr[depth_m == 0] == missing_colour).all()
    # every valid pixel is a JET colour: JET never has B = G = R = 0
    assert (bgr[depth_m > 0].max(axis=-1) > 0).all()


@settings(max_examples=60, deadline=None)
@given(depth_m=depth_maps, exponent=st.integers(-3, 3), inverted=st.booleans())
def test_property_invariant_to_scaling_depth_and_max_together(depth_m, exponent, inverted) -> None:
    """Only depth / max_depth matters (§2.2 step 2); powers of two keep the float arithmetic exact."""
    scale = 2.0**exponent
    reference = depth_to_jet(depth_m, max_depth_m=7.0, inverted=inverted)
    scaled = depth_to_jet(depth_m * np.float32(scale), max_depth_m=7.0 * scale, inverted=inverted)
    np.testing.assert_array_equal(scaled, reference)


@settings(max_examples=60, deadline=None)
@given(depth_m=depth_maps)
def test_property_levels_monotonic_in_depth(depth_m) -> None:
    """Deeper never gives a lower level (clipping and truncation are monotonic)."""
    flat = depth_m.ravel()
    order = np.argsort(flat, kind="stable")
    levels = scale_to_uint8(flat[order][None, :], max_depth_m=7.0)[0]
    assert (np.diff(levels.astype(int)) >= 0).all()
