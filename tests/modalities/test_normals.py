"""Surface normals by square-support plane fits and their 8-bit encoding (`reference/modalities.md`
§3.3): equality with a direct full-image implementation of the spec, analytic planes, encoding,
input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.signal import convolve2d

from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.modalities.normals import (
    STRIP_ROWS,
    box_sum,
    compute_normals,
    compute_normals_square_support,
    normals_to_uint8,
    round_to_uint8,
)

K = Intrinsics(60.0, 62.0, 24.3, 40.8)


def _reference_normals(z: np.ndarray, missing: np.ndarray, k: Intrinsics, radius: int) -> np.ndarray:
    """Spec §3.3 written out on the whole image with NaN masking and convolve2d (MATLAB filter2)."""
    h, w = z.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x_full = (u - k.cx) * z / k.fx
    y_full = (v - k.cy) * z / k.fy
    x, y, zz = (np.where(missing, np.nan, p) for p in (x_full, y_full, z))
    one = np.where(missing, np.nan, 1.0)
    terms = [
        (x / zz) ** 2,
        (x / zz) * (y / zz),
        x / zz,
        (y / zz) ** 2,
        y / zz,
        one,
        x / (zz * zz),
        y / (zz * zz),
        1.0 / zz,
    ]
    box = np.ones((2 * radius + 1, 2 * radius + 1))
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = (convolve2d(np.nan_to_num(t), box, "same") for t in terms)
    c11, c12, c13 = a4 * a6 - a5**2, -(a2 * a6 - a3 * a5), a2 * a5 - a3 * a4
    c22, c23, c33 = a1 * a6 - a3**2, -(a1 * a5 - a2 * a3), a1 * a4 - a2**2
    n = np.stack(
        [c11 * b1 + c12 * b2 + c13 * b3, c12 * b1 + c22 * b2 + c23 * b3, c13 * b1 + c23 * b2 + c33 * b3], -1
    )
    with np.errstate(invalid="ignore"):
        n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    s = np.sign(n[..., 2:3])
    n = n * np.where(s == 0, 1.0, s)
    s = np.sign((n * np.stack([x_full, y_full, z], -1)).sum(-1, keepdims=True))
    return n * np.where(np.isnan(s) | (s == 0), 1.0, s)


def _smooth_depth(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    bumps = sum(
        rng.uniform(0.1, 0.4) * np.sin(u / rng.uniform(3, 9) + v / rng.uniform(3, 9)) for _ in range(3)
    )
    return 2.0 + 0.02 * v + bumps + rng.normal(0, 0.01, shape)


@pytest.mark.parametrize("radius", [0, 1, 3, 10, 40])
def test_box_sum_equals_convolve2d_same_with_zero_padding(radius: int) -> None:
    image = np.random.default_rng(radius).normal(size=(23, 37))
    expected = convolve2d(image, np.ones((2 * radius + 1, 2 * radius + 1)), "same")
    np.testing.assert_allclose(box_sum(image, radius), expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize("radius", [3, 10])
def test_strips_equal_the_direct_full_image_fit(radius: int, plane_fit_backend: str) -> None:
    """Several strips (with halos) and 30 % scattered missing pixels: same normals as the spec."""
    shape = (2 * STRIP_ROWS + 13, 49)
    z = _smooth_depth(shape, radius)
    missing = np.random.default_rng(7).random(shape) < 0.3
    ours = compute_normals_square_support(z, K, radius_px=radius, missing_mask=missing)
    expected = _reference_normals(z, missing, K, radius)
    assert np.isfinite(ours).all() and np.isfinite(expected).all()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-7)


def test_windows_without_enough_points_are_nan(plane_fit_backend: str) -> None:
    """No valid point, or a single one: NaN (MATLAB's exact sums give adj = 0 there)."""
    z = _smooth_depth((40, 40), 3)
    missing = np.zeros(z.shape, bool)
    missing[5:35, 5:35] = True
    missing[20, 20] = False  # a lone valid pixel inside the hole
    n = compute_normals_square_support(z, K, radius_px=3, missing_mask=missing)
    undefined = np.isnan(n[..., 0])
    assert undefined[9:31, 9:31].all()  # every 7x7 window there holds at most the lone pixel
    assert not undefined[:8].any() and not undefined[:, :8].any()
    assert (np.isnan(n).any(-1) == undefined).all()


def _plane_depth(normal: np.ndarray, offset_m: float, shape: tuple[int, int], k: Intrinsics) -> np.ndarray:
    """z-depth of the plane n.p = offset seen through pinhole k."""
    v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], -1)
    return offset_m / (rays @ normal)


@pytest.mark.parametrize("normal", [(0.0, 0.0, 1.0), (0.0, 1.0, 2.0), (0.3, -0.5, 1.0), (-0.6, 0.2, 0.7)])
def test_planes_give_their_normal_pointing_away_from_the_camera(normal) -> None:
    n = np.asarray(normal) / np.linalg.norm(normal)
    depth_m = _plane_depth(n, 1.5, (40, 50), K)
    assert (depth_m > 0).all()
    for radius in (1, 3, 10):
        estimate = compute_normals(depth_m, K, radius_px=radius)
        assert estimate.shape == (40, 50, 3) and estimate.dtype == np.float32
        np.testing.assert_allclose(estimate.reshape(-1, 3), np.tile(n, (2000, 1)), atol=1e-5)


def test_compute_normals_missing_depth_and_input_checks() -> None:
    depth_m = _plane_depth(np.array([0.0, 0.0, 1.0]), 2.0, (30, 30), K)
    depth_m[:, :12] = 0.0  # missing
    before = depth_m.copy()
    n = compute_normals(depth_m, K, radius_px=2)
    np.testing.assert_array_equal(depth_m, before)
    assert np.isnan(n[:, :10]).all() and np.isfinite(n[:, 10:]).all()
    # column 10's windows see one column of points (a line: the plane is undetermined and the
    # result is rounding noise, in MATLAB too); from column 11 on they see a plane
    np.testing.assert_allclose(n[:, 11:].reshape(-1, 3), np.tile([0.0, 0.0, 1.0], (570, 1)), atol=1e-5)
    for bad, match in [(0, "radius_px"), (2.5, "radius_px"), (True, "radius_px")]:
        with pytest.raises(ValueError, match=match):
            compute_normals(depth_m, K, radius_px=bad)
    with pytest.raises(ValueError, match="depth_m must be finite"):
        compute_normals(np.full((4, 4), np.nan), K)
    with pytest.raises(ValueError, match="depth_m has no valid"):
        compute_normals(np.zeros((4, 4)), K)
    with pytest.raises(ValueError, match="intrinsics"):
        compute_normals(depth_m, None)


def test_normals_to_uint8_mapping_and_order() -> None:
    normals = np.array([[[-1.0, 0.0, 1.0], [0.5, -0.5, np.nan], [1.0, 1e-9, -1.0]]])
    rgb = normals_to_uint8(normals, order="rgb")
    # (c + 1) * 127.5 rounded half away from zero: -1 -> 0, 0 -> 127.5 -> 128, 0.5 -> 191.25 -> 191
    np.testing.assert_array_equal(rgb, [[[0, 128, 255], [191, 64, 0], [255, 128, 0]]])
    np.testing.assert_array_equal(normals_to_uint8(normals), rgb[..., ::-1])  # default BGR for OpenCV
    assert normals_to_uint8(normals).flags.c_contiguous
    with pytest.raises(ValueError, match="order"):
        normals_to_uint8(normals, order="xyz")
    with pytest.raises(ValueError, match="normals"):
        normals_to_uint8(normals[..., :2])
    with pytest.raises(ValueError, match="normals"):
        normals_to_uint8(np.zeros((2, 2, 3), int))


def test_round_to_uint8_is_matlab_rounding() -> None:
    values = np.array([-3.0, -0.5, 0.49999999999999994, 0.5, 1.5, 2.5, 254.5, 255.4, 300.0, np.nan, np.inf])
    np.testing.assert_array_equal(round_to_uint8(values), [0, 0, 0, 1, 2, 3, 255, 255, 255, 0, 255])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_to_uint8_exact_at_every_tie_and_its_neighbours(dtype) -> None:
    """Every k + 0.5 and k in [0, 256], and the floats just below and above each: half away from
    zero, as floor(x) + (x - floor(x) >= 0.5) computes it exactly."""
    points = np.concatenate([np.arange(0, 257, dtype=dtype), np.arange(0, 257, dtype=dtype) + dtype(0.5)])
    values = np.concatenate([points, np.nextafter(points, dtype(-1)), np.nextafter(points, dtype(300))])
    floor = np.floor(values)
    expected = np.clip(floor + (values - floor >= 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(round_to_uint8(values), expected)
    out = np.zeros(values.shape, np.uint8)
    assert round_to_uint8(values, out=out) is out
    np.testing.assert_array_equal(out, expected)


@settings(max_examples=40, deadline=None)
@given(
    normals=arrays(np.float64, (5, 6, 3), elements=st.one_of(st.floats(-1.0, 1.0), st.just(np.nan))),
)
def test_normals_to_uint8_properties(normals: np.ndarray) -> None:
    before = normals.copy()
    out = normals_to_uint8(normals, order="rgb")
    np.testing.assert_array_equal(normals, before)
    assert out.dtype == np.uint8 and out.shape == normals.shape
    finite = np.isfinite(normals)
    assert (np.abs(out[finite] / 127.5 - 1.0 - normals[finite]) <= 0.5 / 127.5 + 1e-12).all()
    assert (out[~finite] == 0).all()
