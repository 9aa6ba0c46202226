"""ip_basic depth completion: fidelity to the published code on real KITTI frames, hand-checked cases,
input checks and properties (`reference/modalities.md` §1)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from scipy.ndimage import maximum_filter

from fusionseg.modalities.completion import (
    CROSS_KERNEL_3,
    CROSS_KERNEL_5,
    CROSS_KERNEL_7,
    DIAMOND_KERNEL_5,
    DIAMOND_KERNEL_7,
    FULL_KERNEL_3,
    FULL_KERNEL_5,
    FULL_KERNEL_7,
    FULL_KERNEL_9,
    FULL_KERNEL_31,
    KERNELS,
    depth_to_metres,
    fill_in_fast,
    fill_in_multiscale,
)

FRAMES = ("000000", "000001", "000002")
# The three configurations stored in ipbasic_ref/000000.npz (see the data README).
CONFIGS = {
    "fast_gauss_extrap": (fill_in_fast, {"extrapolate": True, "blur_type": "gaussian"}),
    "fast_bilateral": (fill_in_fast, {"extrapolate": False, "blur_type": "bilateral"}),
    "multiscale_bilateral": (fill_in_multiscale, {"extrapolate": False, "blur_type": "bilateral"}),
}
FILL_FUNCTIONS = (fill_in_fast, fill_in_multiscale)
# float32 rounding of max_depth - (max_depth - d) and of the blur filters, and the changes of OpenCV's
# bilateral filter between releases (5.0 -> 5.1: at most 3.8e-5 m on these frames), stay below this
# (metres): far below the 1/256 m = 3.9e-3 m step of KITTI depth PNGs.
ROUNDING_TOL_M = 1e-4
# ipbasic_ref/*.npz were made with opencv-python-headless 5.0.0 (the data README); the lock holds it
REFERENCE_OPENCV = "5.0.0"


def _kitti_depth(shared_data, frame: str, folder: str = "sparse_depth") -> np.ndarray:
    """The ip_basic demo's input: uint16 PNG / 256.0 as float32 metres."""
    raw = cv2.imread(str(shared_data / "kitti-object-lidar3" / folder / f"{frame}.png"), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16
    return np.float32(raw / 256.0)


# --------------------------------------------------------------------------------------------------
# Kernels (§1.3)
# --------------------------------------------------------------------------------------------------


def test_kernels_match_the_spec() -> None:
    cross_5 = [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]
    diamond_5 = [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]]
    diamond_7 = [
        [0, 0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],
    ]
    np.testing.assert_array_equal(CROSS_KERNEL_3, [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(CROSS_KERNEL_5, cross_5)
    np.testing.assert_array_equal(DIAMOND_KERNEL_5, diamond_5)
    np.testing.assert_array_equal(DIAMOND_KERNEL_7, diamond_7)
    assert CROSS_KERNEL_7.sum() == 13 and CROSS_KERNEL_7[3].all() and CROSS_KERNEL_7[:, 3].all()
    for size, kernel in ((3, FULL_KERNEL_3), (5, FULL_KERNEL_5), (7, FULL_KERNEL_7), (9, FULL_KERNEL_9)):
        np.testing.assert_array_equal(kernel, np.ones((size, size)))
    assert FULL_KERNEL_31.shape == (31, 31) and FULL_KERNEL_31.all()
    for name, kernel in KERNELS.items():
        assert kernel.dtype == np.uint8, name
        assert not kernel.flags.writeable, f"{name} is a shared constant and must be read-only"
    assert KERNELS["diamond_5"] is DIAMOND_KERNEL_5 and len(KERNELS) == 10


# --------------------------------------------------------------------------------------------------
# Fidelity on real KITTI frames (§1.4-1.6)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_ip_basic_reference_on_kitti(shared_data, config: str) -> None:
    depth_m = _kitti_depth(shared_data, "000000")
    reference = np.load(shared_data / "kitti-object-lidar3" / "ipbasic_ref" / "000000.npz")[config]
    function, kwargs = CONFIGS[config]
    completed = function(depth_m, **kwargs)
    assert completed.dtype == np.float32 and completed.shape == reference.shape
    # Same OpenCV calls with the same arguments: bit-exact under the reference's OpenCV (test below);
    # other OpenCV releases change the bilateral filter slightly (5.1: up to 3.8e-5 m).
    assert float(np.abs(completed - reference).max()) <= ROUNDING_TOL_M
    np.testing.assert_array_equal(completed > 0.1, reference > 0.1)


def test_bit_exact_under_the_reference_opencv(shared_data) -> None:
    """Under the OpenCV the references were made with, the port is the same computation, bit for bit."""
    if cv2.__version__.split(".")[:3] != REFERENCE_OPENCV.split("."):
        pytest.skip(
            f"ipbasic_ref was made with OpenCV {REFERENCE_OPENCV} (kitti-object-lidar3/README.md); this is "
            f"{cv2.__version__}, checked within {ROUNDING_TOL_M} m instead (requirements/holds.txt)"
        )
    depth_m = _kitti_depth(shared_data, "000000")
    references = np.load(shared_data / "kitti-object-lidar3" / "ipbasic_ref" / "000000.npz")
    for config, (function, kwargs) in CONFIGS.items():
        np.testing.assert_array_equal(function(depth_m, **kwargs), references[config], err_msg=config)


def test_holdout_accuracy_matches_summary(shared_data) -> None:
    """Complete with 10 % of the points held out; MAE/RMSE on them equal ip_basic's (summary.json)."""
    root = shared_data / "kitti-object-lidar3"
    summary = json.loads((root / "ipbasic_ref" / "summary.json").read_text())["000000"]
    depth_m = _kitti_depth(shared_data, "000000")
    held_out = cv2.imread(str(root / "holdout10_mask" / "000000.png"), cv2.IMREAD_UNCHANGED) == 255
    assert held_out.sum() == summary["n_holdout_px"]
    sparse = depth_m.copy()
    sparse[held_out] = 0.0
    for config, (function, kwargs) in CONFIGS.items():
        error = function(sparse, **kwargs)[held_out].astype(np.float64) - depth_m[held_out]
        expected = summary[config]
        assert np.mean(np.abs(error)) == pytest.approx(expected["holdout10_mae_m"], abs=1e-5), config
        assert np.sqrt(np.mean(error**2)) == pytest.approx(expected["holdout10_rmse_m"], abs=1e-5), config
        filled_full = float((function(depth_m, **kwargs) > 0.1).mean())
        assert filled_full == pytest.approx(expected["filled_frac_full_input"], abs=1e-9), config


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("function", FILL_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("blur_type", ["bilateral", "gaussian"])
def test_extrapolated_kitti_has_no_holes_and_stays_in_range(shared_data, frame, function, blur_type) -> None:
    depth_m = _kitti_depth(shared_data, frame)
    before = depth_m.copy()
    completed = function(depth_m, extrapolate=True, blur_type=blur_type)
    np.testing.assert_array_equal(depth_m, before)  # input untouched
    valid = depth_m[depth_m > 0.1]
    assert completed.shape == depth_m.shape and completed.dtype == np.float32
    assert (completed > 0.1).all(), "holes left after extrapolation"
    assert completed.min() >= valid.min() - ROUNDING_TOL_M
    assert completed.max() <= valid.max() + ROUNDING_TOL_M


@pytest.mark.parametrize("frame", FRAMES)
def test_without_extrapolation_the_sky_stays_empty(shared_data, frame) -> None:
    """KITTI's LiDAR sees nothing in the top rows: without extrapolation they stay 0 (§1.5 step 13)."""
    depth_m = _kitti_depth(shared_data, frame)
    first_row = int(np.argmax((depth_m > 0.1).any(axis=1)))
    assert first_row > 30
    # spreading radius without extrapolation: see test_property_no_output_without_support
    for function, radius_px in ((fill_in_fast, 11), (fill_in_multiscale, 21)):
        completed = function(depth_m)
        assert (completed[: first_row - radius_px] == 0).all(), function.__name__
        assert (completed > 0.1).mean() > 0.5, function.__name__


# --------------------------------------------------------------------------------------------------
# Hand-checked examples
# --------------------------------------------------------------------------------------------------


def test_fast_single_point_hand_computed() -> None:
    """One point of 10 m in the centre of an 11x11 grid, fill_in_fast with the Gaussian blur.

    Inverted value D = 100 - 10 = 90. Offsets (a, b) from the centre:
    1. dilation with DIAMOND_5: D where |a| + |b| <= 2, 0 elsewhere;
    2. closing with FULL_5 gives the diamond back (every 5x5 window of a pixel outside it holds a 0);
    3. FULL_7 dilation fills every pixel within Chebyshev distance 3 of the diamond, i.e. all but the
       three pixels at each corner: (0, 0), (0, 1), (1, 0) and their mirror images;
    4. median 5x5 with replicated borders: the corner pixel's window holds 15 zeros out of 25 and stays
       0; (0, 1) sees 11 zeros, (1, 1) 8, so they become D;
    5. Gaussian [1, 4, 6, 4, 1]/16 per axis, reflect-101 border, written where > 0.1: the corner zero
       lies at offset (-r, -c) from pixel (r, c) and enters only once, with weight g[r] * g[c] / 256,
       g = (6, 4, 1) for r = 0, 1, 2, so the value is D * (1 - w);
    6. re-inversion: depth = 100 - 90 * (1 - w) = 10 + 90 * w; the corner stays 0.
    All these values are exact in float32.
    """
    depth_m = np.zeros((11, 11), np.float32)
    depth_m[5, 5] = 10.0
    g = np.array([6.0, 4.0, 1.0])
    corner = 10.0 + 90.0 * np.outer(g, g) / 256.0  # 18.4375, 15.625, 12.109375, 11.40625, 10.3515625
    corner[0, 0] = 0.0
    expected = np.full((11, 11), 10.0)
    expected[:3, :3] = corner
    expected[:3, -3:] = corner[:, ::-1]
    expected[-3:, :3] = corner[::-1, :]
    expected[-3:, -3:] = corner[::-1, ::-1]
    completed = fill_in_fast(depth_m, blur_type="gaussian")
    np.testing.assert_array_equal(completed, expected.astype(np.float32))


def test_fast_closing_ignores_the_border() -> None:
    """7x7 grid, one 10 m point in the centre: the closing fills the whole image.

    The DIAMOND_5 dilation is within Chebyshev distance 2 of every pixel, so the FULL_5 dilation is D
    everywhere; the erosion ignores pixels outside the image (§1.6), so nothing is eroded. A zero-padded
    erosion would instead clear the outer two rings.
    """
    depth_m = np.zeros((7, 7), np.float32)
    depth_m[3, 3] = 10.0
    np.testing.assert_array_equal(fill_in_fast(depth_m, blur_type="gaussian"), np.full((7, 7), 10.0))


def test_multiscale_near_point_grows_into_a_cross_that_the_median_removes() -> None:
    """An isolated 10 m point (near bin) becomes a CROSS_7 after dilation; the closing keeps the
    cross; the masked 5x5 median sees at most 9 of 25 cross pixels and removes it (§1.5 steps 3-6),
    so nothing is left to fill: the output is empty."""
    depth_m = np.zeros((15, 15), np.float32)
    depth_m[7, 7] = 10.0
    np.testing.assert_array_equal(fill_in_multiscale(depth_m), np.zeros((15, 15), np.float32))


@pytest.mark.parametrize("max_depth", [100.0, 50.0])
def test_multiscale_bins_use_original_depth(max_depth) -> None:
    """Two 3x3 patches, rows 9-11: 10 m (near bin, CROSS_7) at columns 9-11, 40 m (far bin, CROSS_3) at
    columns 29-31. Hand-traced upward extent in the centre columns 10 and 30 (no extrapolation, so
    nothing is ever filled above a column's top-most value, §1.5 steps 7-10):

    * near: CROSS_7 reaches row 6; the closing keeps the shape; the first median clears row 6
      (its window holds 9 of 25 non-zero pixels) -> top row 7; the second median clears row 7
      (14 zeros: rows 5-6 and the empty corners of rows 7-8) -> top row 8;
    * far: CROSS_3 reaches row 8; the first median keeps (8, 30) (13 of 25 non-zero); the second median
      clears it (16 zeros) -> top row 9.

    With max_depth = 50 the 40 m patch inverts to 10, the same value the near patch has with
    max_depth = 100: the result must not change, because the bins use the original depths (§1.5 step 1).
    """
    depth_m = np.zeros((21, 41), np.float32)
    depth_m[9:12, 9:12] = 10.0
    depth_m[9:12, 29:32] = 40.0
    completed = fill_in_multiscale(depth_m, max_depth=max_depth)
    assert int(np.argmax(completed[:, 10] > 0.1)) == 8
    assert int(np.argmax(completed[:, 30] > 0.1)) == 9
    np.testing.assert_allclose(completed[10, 10], 10.0, atol=ROUNDING_TOL_M)
    np.testing.assert_allclose(completed[10, 30], 40.0, atol=ROUNDING_TOL_M)


def test_default_kernels_equal_explicit_kernels(shared_data) -> None:
    depth_m = _kitti_depth(shared_data, "000000")[150:250, 300:500]
    np.testing.assert_array_equal(
        fill_in_fast(depth_m), fill_in_fast(depth_m, custom_kernel=KERNELS["diamond_5"])
    )
    np.testing.assert_array_equal(
        fill_in_multiscale(depth_m),
        fill_in_multiscale(
            depth_m,
            dilation_kernel_far=KERNELS["cross_3"],
            dilation_kernel_med=KERNELS["cross_5"],
            dilation_kernel_near=KERNELS["cross_7"],
        ),
    )
    # a larger kernel spreads the top-most LiDAR rows further up: more pixels filled
    full_m = _kitti_depth(shared_data, "000000")
    filled_default = (fill_in_fast(full_m) > 0.1).sum()
    filled_big = (fill_in_fast(full_m, custom_kernel=KERNELS["full_9"]) > 0.1).sum()
    assert filled_big > filled_default


def test_max_depth_is_the_inversion_offset() -> None:
    """Depths at or beyond max_depth - 0.1 are treated as missing by the inversion (§1.4 step 1).

    As in the original, the inverted residue (here 50.05 - 50 = 0.05) is not re-inverted and stays in
    the output as a value <= 0.1, i.e. "missing".
    """
    depth_m = np.zeros((9, 9), np.float32)
    depth_m[2:7, 2:7] = 50.0
    assert (fill_in_fast(depth_m, max_depth=100.0) > 0.1).any()
    assert (fill_in_fast(depth_m, max_depth=50.05) <= 0.1).all()


# --------------------------------------------------------------------------------------------------
# Units and bad input
# --------------------------------------------------------------------------------------------------


def test_depth_to_metres_matches_the_demo_input(shared_data) -> None:
    raw = cv2.imread(
        str(shared_data / "kitti-object-lidar3" / "sparse_depth" / "000000.png"), cv2.IMREAD_UNCHANGED
    )
    before = raw.copy()
    np.testing.assert_array_equal(depth_to_metres(raw, depth_scale_m=1 / 256), np.float32(raw / 256.0))
    np.testing.assert_array_equal(raw, before)
    millimetres = np.array([[0, 1500], [65000, 250]], np.uint16)
    metres = depth_to_metres(millimetres, depth_scale_m=1e-3)
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, [[0, 1.5], [65.0, 0.25]], rtol=1e-6)


@pytest.mark.parametrize(
    ("depth", "scale", "match"),
    [
        (np.zeros((2, 2, 2), np.uint16), 1e-3, "2-D"),
        (np.array([[-1, 2]], np.int32), 1e-3, "non-negative"),
        (np.array([[np.nan, 2.0]]), 1.0, "NaN"),
        (np.zeros((2, 2), np.uint16), 0.0, "depth_scale_m"),
        (np.zeros((2, 2), np.uint16), float("inf"), "depth_scale_m"),
    ],
)
def test_depth_to_metres_rejects_bad_input(depth, scale, match) -> None:
    with pytest.raises(ValueError, match=match):
        depth_to_metres(depth, depth_scale_m=scale)


@pytest.mark.parametrize("function", FILL_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("depth", "match"),
    [
        (np.zeros((4, 4), np.float64), "depth_m must be float32.*float64"),
        (np.zeros((4, 4), np.uint16), "depth_m must be float32.*uint16.*depth_to_metres"),
        (np.zeros((4, 4, 1), np.float32), "depth_m must be a non-empty 2-D"),
        (np.zeros((0, 4), np.float32), "depth_m must be a non-empty 2-D"),
        (np.array([[np.nan, 1.0]], np.float32), "depth_m contains NaN"),
        (np.array([[np.inf, 1.0]], np.float32), "depth_m contains NaN or infinite"),
        (np.array([[-0.5, 1.0]], np.float32), "depth_m must be non-negative"),
        (np.array([[0.0, 5000.0]], np.float32), "millimetres"),
        ([[0.0, 1.0]], "numpy array"),
    ],
)
def test_fill_rejects_bad_depth(function, depth, match) -> None:
    with pytest.raises(ValueError, match=match):
        function(depth)


@pytest.mark.parametrize("function", FILL_FUNCTIONS, ids=lambda f: f.__name__)
def test_fill_rejects_bad_options(function) -> None:
    depth_m = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="blur_type"):
        function(depth_m, blur_type="median")
    with pytest.raises(ValueError, match="max_depth"):
        function(depth_m, max_depth=0.0)
    with pytest.raises(ValueError, match="max_depth"):
        function(depth_m, max_depth=float("nan"))
    # the millimetre guard scales with max_depth: 150 m is fine for max_depth=100, not for max_depth=10
    function(np.full((4, 4), 150.0, np.float32), max_depth=100.0)
    with pytest.raises(ValueError, match="millimetres"):
        function(np.full((4, 4), 150.0, np.float32), max_depth=10.0)


def test_fill_rejects_bad_kernels() -> None:
    depth_m = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="custom_kernel"):
        fill_in_fast(depth_m, custom_kernel=np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="custom_kernel"):
        fill_in_fast(depth_m, custom_kernel=np.full((3, 3), 2, np.uint8))
    with pytest.raises(ValueError, match="dilation_kernel_med"):
        fill_in_multiscale(depth_m, dilation_kernel_med=np.ones(3, np.uint8))
    with pytest.raises(ValueError, match="dilation_kernel_near"):
        fill_in_multiscale(depth_m, dilation_kernel_near=np.zeros((3, 3), np.uint8))
    # bool and wider integer 0/1 kernels are accepted and mean the same as uint8
    np.testing.assert_array_equal(
        fill_in_fast(depth_m, custom_kernel=DIAMOND_KERNEL_5.astype(bool)), fill_in_fast(depth_m)
    )


# --------------------------------------------------------------------------------------------------
# Properties (hypothesis, arrays <= 32x32)
# --------------------------------------------------------------------------------------------------

# Realistic sparse maps: 0 (missing) or a depth between 0.25 m and 99.5 m (inside ip_basic's 0.1..99.9 m
# working range for max_depth = 100).
depth_maps = arrays(
    np.float32,
    array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=32),
    elements=st.one_of(st.just(0.0), st.floats(0.25, 99.5, width=32)),
)
options = st.fixed_dictionaries(
    {"extrapolate": st.booleans(), "blur_type": st.sampled_from(["bilateral", "gaussian"])}
)
functions = st.sampled_from(FILL_FUNCTIONS)
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


@PROPERTY_SETTINGS
@given(depth_m=depth_maps, function=functions, kwargs=options)
def test_property_shape_dtype_range_and_input_untouched(depth_m, function, kwargs) -> None:
    before = depth_m.copy()
    completed = function(depth_m, **kwargs)
    np.testing.assert_array_equal(depth_m, before)
    assert completed.shape == depth_m.shape and completed.dtype == np.float32
    assert np.isfinite(completed).all()
    assert completed.min() >= 0.0
    assert completed.max() < 100.0 - 0.1
    depths = completed[completed > 0.1]  # values <= 0.1 mean "still missing"
    if depths.size:
        # blurs average inverted depths with empty (0) pixels, which can only push depth up; so every
        # filled depth is at least the smallest measured depth
        assert depths.min() >= depth_m[depth_m > 0.1].min() - ROUNDING_TOL_M


@PROPERTY_SETTINGS
@given(depth_m=depth_maps, function=functions, blur_type=st.sampled_from(["bilateral", "gaussian"]))
def test_property_no_output_without_support(depth_m, function, blur_type) -> None:
    """Without extrapolation each step spreads depth by a bounded radius: fast 2 (diamond) + 2 (close)
    + 3 (FULL_7) + 2 (median) + 2 (bilateral) = 11 px; multiscale 3 (CROSS_7) + 2 (close) + 4 (FULL_9)
    + 6 x 2 (FULL_5) = 21 px (its medians and blurs are masked). Farther pixels stay exactly 0."""
    radius = 11 if function is fill_in_fast else 21
    support = maximum_filter(depth_m > 0, size=2 * radius + 1, mode="constant", cval=False)
    completed = function(depth_m, blur_type=blur_type)
    assert (completed[~support] == 0).all()


@PROPERTY_SETTINGS
@given(depth_m=depth_maps, blur_type=st.sampled_from(["bilateral", "gaussian"]))
def test_property_fast_extrapolation_leaves_no_holes(depth_m, blur_type) -> None:
    """If every pixel lies within 15 px of a measurement, the FULL_31 fill reaches it (§1.4 step 5b):
    no holes, and every output is an average of measured depths, hence inside their range."""
    measured = depth_m > 0.1
    assume(maximum_filter(measured, size=31, mode="constant", cval=False).all())
    completed = fill_in_fast(depth_m, extrapolate=True, blur_type=blur_type)
    assert (completed > 0.1).all()
    assert completed.min() >= depth_m[measured].min() - ROUNDING_TOL_M
    assert completed.max() <= depth_m[measured].max() + ROUNDING_TOL_M


@pytest.mark.parametrize("function", FILL_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize("blur_type", ["bilateral", "gaussian"])
def test_empty_map_stays_empty(function, extrapolate, blur_type) -> None:
    empty = np.zeros((12, 20), np.float32)
    np.testing.assert_array_equal(function(empty, extrapolate=extrapolate, blur_type=blur_type), empty)


@pytest.mark.parametrize(("value", "scale"), [(1e39, 1.0), (3.4e38, 10.0), (2.0e38, 2.0)])
def test_depth_to_metres_refuses_overflow(value: float, scale: float) -> None:
    """float32 metres that overflow are an error, never inf passed on as depth."""
    with pytest.raises(ValueError, match="overflows float32"):
        depth_to_metres(np.array([[value, 1.0]]), depth_scale_m=scale)
    assert np.isfinite(depth_to_metres(np.array([[3.4e38]]), depth_scale_m=1.0)).all()  # just fits
