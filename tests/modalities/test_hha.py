"""HHA encoding, numpy back-end: fidelity to Gupta's MATLAB code on a real NYU frame, analytic
scenes, gravity, input checks and properties (`reference/modalities.md` §3)."""

from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest
from analytic_scenes import render_analytic_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fusionseg.modalities.hha import (
    HHAComponents,
    compute_normals_square_support,
    estimate_gravity,
    gravity_rotation,
    hha,
    hha_components,
    hha_to_bgr,
)
from fusionseg.modalities.intrinsics import Intrinsics

# NYU colour camera, MATLAB 1-based values (nyuv2-hha-ref/README.md, spec §3.1)
NYU_INTRINSICS = Intrinsics.from_one_based(
    518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465
)
CHANNELS = ("disparity", "height", "angle")


def _nyu_depth_m(shared_data, frame: int, kind: str = "filled") -> np.ndarray:
    path = shared_data / "nyuv2-hha-ref" / "full480x640" / f"nyu{frame:04d}" / f"depth_{kind}_1e-4m.png"
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16, path
    return raw.astype(np.float64) / 10000.0  # 1e-4 m units (README)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(min(1.0, cosine))))


# ---------------------------------------------------------------------------------------------------
# Real data: the MATLAB reference
# ---------------------------------------------------------------------------------------------------


def test_matches_matlab_reference_on_nyu_frame_1(shared_data, plane_fit_backend: str) -> None:
    """RD = D, uncropped NYU intrinsics: per channel >= 99 % identical, >= 99.9 % within 1, MAD <= 0.05."""
    depth_m = _nyu_depth_m(shared_data, 1)
    reference_bgr = cv2.imread(str(shared_data / "nyuv2-hha-ref/full480x640/nyu0001/hha_matlab_rd_eq_d.png"))
    reference = reference_bgr[..., ::-1].astype(np.int16)  # file order R, G, B = disparity, height, angle
    ours = hha(depth_m, NYU_INTRINSICS)
    assert ours.shape == (480, 640, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.int16) - reference)
    for channel, name in enumerate(CHANNELS):
        d = diff[..., channel]
        assert (d == 0).mean() >= 0.99, name
        assert (d <= 1).mean() >= 0.999, name
        assert d.mean() <= 0.05, name
    # writing through OpenCV gives back the reference file's byte layout
    np.testing.assert_array_equal(hha_to_bgr(ours)[..., ::-1], ours)
    assert (np.abs(hha_to_bgr(ours).astype(np.int16) - reference_bgr) <= 1).mean() >= 0.999


def test_gravity_is_close_to_nyu_alignment_rotation(shared_data) -> None:
    """NYU's gravity-alignment rotation for frame 1 (row 2 = gravity axis in camera coordinates)."""
    rows = np.loadtxt(shared_data / "nyuv2-hha-ref" / "camera_rotations_NYU.txt", max_rows=3)
    parts = hha_components(_nyu_depth_m(shared_data, 1), NYU_INTRINSICS)
    assert _angle_deg(parts.gravity, rows[1]) < 5.0  # measured 2.3 degrees (different estimator)
    assert parts.gravity[1] > 0.9  # points down: the camera was roughly level


@pytest.mark.parametrize("frame", [2, 3, 4])
def test_other_nyu_frames_give_plausible_output(shared_data, frame: int) -> None:
    filled = _nyu_depth_m(shared_data, frame)
    raw = _nyu_depth_m(shared_data, frame, "raw")
    for raw_depth_m in (None, raw):
        parts = hha_components(filled, NYU_INTRINSICS, raw_depth_m=raw_depth_m)
        assert parts.gravity[1] > 0.95 and abs(np.linalg.norm(parts.gravity) - 1.0) < 1e-9
        assert parts.height_cm.min() >= 0.0
    image = hha(filled, NYU_INTRINSICS, raw_depth_m=raw)
    angle = image[..., 2]
    assert angle.min() >= 38 and angle.max() <= 218
    assert np.isnan(parts.normals).any()  # the raw mask leaves windows without any valid point


def test_float64_is_exactly_matlab_and_float32_within_one_level(shared_data, plane_fit_backend: str) -> None:
    """Issue 18's exactness bar for every back-end: 100 % of the pixels equal to MATLAB's file from
    float64 depth; from float32 depth, no pixel more than one grey level off."""
    depth_m = _nyu_depth_m(shared_data, 1)
    reference_bgr = cv2.imread(str(shared_data / "nyuv2-hha-ref/full480x640/nyu0001/hha_matlab_rd_eq_d.png"))
    reference = reference_bgr[..., ::-1].astype(np.int16)
    np.testing.assert_array_equal(hha(depth_m, NYU_INTRINSICS), reference)
    diff = np.abs(hha(depth_m.astype(np.float32), NYU_INTRINSICS).astype(np.int16) - reference)
    assert diff.max() <= 1


def test_backends_agree_on_raw_masked_frames(shared_data, monkeypatch) -> None:
    """Compiled and numpy paths on a raw-masked NYU frame (measured on frames 1-4): the same
    disparity; heights within one level (the gravity moves by ~1e-4 rad through the 21x21 fits that
    are rounding noise); angles more than one level apart only where the 7x7 window holds at most 7
    valid pixels, i.e. one line of them: a fit that is rounding noise in any implementation
    (MATLAB's included, `square_support_normals`)."""
    normals_module = importlib.import_module("fusionseg.modalities.normals")
    if normals_module.hha_kernels is None:
        pytest.skip("numba is not installed (extra `fast`)")
    filled, raw = _nyu_depth_m(shared_data, 2), _nyu_depth_m(shared_data, 2, "raw")
    compiled = hha_components(filled, NYU_INTRINSICS, raw_depth_m=raw)
    compiled_image = hha(filled, NYU_INTRINSICS, raw_depth_m=raw).astype(np.int16)
    monkeypatch.setattr(normals_module, "hha_kernels", None)
    monkeypatch.setattr(importlib.import_module("fusionseg.modalities.hha"), "hha_kernels", None)
    reference = hha_components(filled, NYU_INTRINSICS, raw_depth_m=raw)
    assert _angle_deg(compiled.gravity, reference.gravity) < 0.05
    np.testing.assert_array_equal(np.isnan(compiled.normals), np.isnan(reference.normals))
    diff = np.abs(compiled_image - hha(filled, NYU_INTRINSICS, raw_depth_m=raw))
    assert diff[..., 0].max() == 0 and diff[..., 1].max() <= 1 and (diff[..., 1] == 0).mean() > 0.95
    far = diff[..., 2] > 1
    assert far.mean() < 0.02
    counts = cv2.boxFilter(
        (raw > 0).astype(np.float64), -1, (7, 7), normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    assert (counts[far] <= 7).all()


# ---------------------------------------------------------------------------------------------------
# Analytic scenes
# ---------------------------------------------------------------------------------------------------


def test_floor_and_wall_at_known_height() -> None:
    """Level camera 1.5 m above a floor, wall 6 m ahead: floor height 0, wall at 150 - Y cm."""
    frame = render_analytic_frame("floor_and_wall", camera_height_m=1.5, distance_m=6.0)
    image = hha(frame.depth_m, frame.intrinsics)
    floor, wall = frame.label == frame.label[-1, 0], frame.label == frame.label[0, 0]
    assert floor.sum() > 1000 and wall.sum() > 10000 and not (floor & wall).any()
    k = frame.intrinsics
    rows = np.arange(frame.depth_m.shape[0], dtype=np.float64)[:, None]
    y_cm = (rows - k.cy) / k.fy * frame.depth_m * 100.0  # camera y (down) of every pixel
    expected_height = np.broadcast_to(150.0 - y_cm, frame.depth_m.shape)
    height = image[..., 1].astype(np.float64)
    assert np.abs(height[floor]).max() <= 1  # lowest point > 90 cm below: it is the floor
    unsaturated = wall & (expected_height < 254)
    assert np.abs(height[unsaturated] - expected_height[unsaturated]).max() <= 1
    assert (height[wall & (expected_height > 256)] == 255).all()
    # angle: floor 0 deg -> 38, wall 90 deg -> 128, away from the crease (7x7 windows)
    interior = np.ones((7, 7), np.uint8)
    floor_in = cv2.erode(floor.astype(np.uint8), interior).astype(bool)
    wall_in = cv2.erode(wall.astype(np.uint8), interior).astype(bool)
    assert np.abs(image[..., 2][floor_in].astype(int) - 38).max() <= 1
    assert np.abs(image[..., 2][wall_in].astype(int) - 128).max() <= 1


def test_floor_rule_fallback_when_lowest_point_is_high() -> None:
    """Floor only 80 cm below the camera (< 90 cm): the floor is assumed 130 cm below instead."""
    frame = render_analytic_frame("floor_and_wall", camera_height_m=0.8, distance_m=3.0)
    parts = hha_components(frame.depth_m, frame.intrinsics)
    assert _angle_deg(parts.gravity, frame.gravity_cam) < 0.5
    k = frame.intrinsics
    rows = np.arange(frame.depth_m.shape[0], dtype=np.float64)[:, None]
    y_cm = (rows - k.cy) / k.fy * frame.depth_m.astype(np.float64) * 100.0
    floor = frame.label == frame.label[-1, 0]
    assert floor.sum() > 1000
    np.testing.assert_allclose(parts.height_cm[floor], 130.0 - 80.0, atol=0.5)
    np.testing.assert_allclose(parts.height_cm, 130.0 - y_cm, atol=0.5)


@pytest.mark.parametrize(("distance_m", "expected"), [(0.9, 255), (2.0, 155), (6.0, 52)])
def test_disparity_of_a_wall_at_known_distance(distance_m: float, expected: int) -> None:
    frame = render_analytic_frame("wall", distance_m=distance_m, height_px=48, width_px=64)
    image = hha(frame.depth_m, frame.intrinsics)
    z_cm = distance_m * 100.0
    assert expected == int(np.floor(31000.0 / max(z_cm, 100.0) + 0.5)) or expected == 255
    assert (image[..., 0] == expected).all()


@pytest.mark.parametrize(("pitch_deg", "roll_deg"), [(20.0, 10.0), (15.0, -20.0), (35.0, 0.0)])
def test_gravity_of_a_tilted_camera(pitch_deg: float, roll_deg: float) -> None:
    frame = render_analytic_frame("floor_and_wall", pitch_deg=pitch_deg, roll_deg=roll_deg, distance_m=4.0)
    gravity = hha_components(frame.depth_m, frame.intrinsics).gravity
    assert float(gravity @ frame.gravity_cam) > 0  # both point down
    assert _angle_deg(gravity, frame.gravity_cam) < 2.0


def test_gravity_rotation_takes_y_to_gravity() -> None:
    g = np.array([0.2, 0.9, -0.3])
    g /= np.linalg.norm(g)
    r = gravity_rotation(g)
    np.testing.assert_allclose(r @ [0.0, 1.0, 0.0], g, atol=1e-12)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    tiny = np.array([np.sin(np.radians(0.05)), np.cos(np.radians(0.05)), 0.0])
    np.testing.assert_array_equal(gravity_rotation(tiny), np.eye(3))  # <= 0.1 degrees: identity


def test_estimate_gravity_on_synthetic_normals() -> None:
    """Floor normals along g and wall normals perpendicular to it (plus clutter) recover g."""
    rng = np.random.default_rng(0)
    g = np.array([0.1, 0.95, 0.25])
    g /= np.linalg.norm(g)
    side = np.cross(g, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    front = np.cross(side, g)
    angles = rng.uniform(0, 2 * np.pi, 300)
    walls = np.cos(angles)[:, None] * side + np.sin(angles)[:, None] * front
    clutter = rng.normal(size=(100, 3))
    normals = np.concatenate(
        [np.tile(g, (200, 1)), walls, clutter / np.linalg.norm(clutter, axis=1)[:, None]]
    )
    normals = np.concatenate([normals, np.full((5, 3), np.nan)])  # undefined normals are ignored
    estimate = estimate_gravity(normals)
    assert _angle_deg(estimate, g) < 0.5 and estimate @ g > 0
    with pytest.raises(ValueError, match="normals"):
        estimate_gravity(np.zeros((4, 2)))


def test_normals_are_the_shared_implementation() -> None:
    frame = render_analytic_frame("floor", pitch_deg=30.0, height_px=32, width_px=40)
    parts = hha_components(frame.depth_m, frame.intrinsics)
    direct = compute_normals_square_support(frame.depth_m.astype(np.float64) * 100.0, frame.intrinsics)
    np.testing.assert_allclose(parts.normals, direct, atol=1e-12)
    # a floor's normal points down (away from the camera), i.e. along gravity
    np.testing.assert_allclose(parts.normals.reshape(-1, 3) @ frame.gravity_cam, 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------

K_SMALL = Intrinsics(20.0, 20.0, 7.5, 5.5)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.ones(12), "depth_m must be 2-D"),
        (np.ones((12, 16, 1)), "depth_m must be 2-D"),
        (np.ones((12, 16), bool), "depth_m must have a real numeric dtype"),
        (np.ones((12, 16), complex), "depth_m must have a real numeric dtype"),
        (np.full((12, 16), -1.0), "depth_m must be >= 0"),
        (np.full((12, 16), np.nan), "depth_m must be finite"),
        (np.full((12, 16), np.inf), "depth_m must be finite"),
        (np.zeros((12, 16)), "depth_m has no valid"),
        (np.zeros((0, 16)), "depth_m must not be empty"),
        ([[1.0, 2.0]], "depth_m must be a numpy array"),
    ],
)
def test_bad_depth_is_refused(depth, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hha(depth, K_SMALL)


def test_bad_raw_depth_and_intrinsics_are_refused() -> None:
    depth = np.ones((12, 16))
    with pytest.raises(ValueError, match="raw_depth_m must have the shape"):
        hha(depth, K_SMALL, raw_depth_m=np.ones((12, 15)))
    with pytest.raises(ValueError, match="raw_depth_m must be >= 0"):
        hha(depth, K_SMALL, raw_depth_m=-depth)
    with pytest.raises(ValueError, match="intrinsics"):
        hha(depth, (20.0, 20.0, 7.5, 5.5))
    with pytest.raises(ValueError, match="image"):
        hha_to_bgr(np.zeros((4, 4)))


# ---------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------

depth_arrays = arrays(
    np.float64,
    array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=32),
    elements=st.one_of(st.just(0.0), st.floats(0.2, 20.0)),
)


def _intrinsics_for(shape: tuple[int, ...]) -> Intrinsics:
    return Intrinsics(30.0, 31.0, (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)


@settings(max_examples=40, deadline=None)
@given(depth=depth_arrays)
def test_shape_dtype_range_and_input_unchanged(depth: np.ndarray) -> None:
    if not depth.any():
        depth[0, 0] = 1.0
    before = depth.copy()
    image = hha(depth, _intrinsics_for(depth.shape))
    np.testing.assert_array_equal(depth, before)
    assert image.shape == depth.shape + (3,) and image.dtype == np.uint8
    assert image[..., 2].min() >= 38 and image[..., 2].max() <= 218  # angle + 38, NaN -> 180 + 38
    z_cm = depth * 100.0
    expected_disparity = np.minimum(np.floor(31000.0 / np.maximum(z_cm, 100.0) + 0.5), 255)
    np.testing.assert_array_equal(image[..., 0], expected_disparity)


@settings(max_examples=40, deadline=None)
@given(depth=depth_arrays, scale_log2=st.integers(-3, 3))
def test_angle_and_normals_invariant_to_scaling_depth(depth: np.ndarray, scale_log2: int) -> None:
    """Normals are scale-free; with a power-of-two scale every rounding scales too: bit-identical."""
    if not depth.any():
        depth[-1, -1] = 2.0
    k = _intrinsics_for(depth.shape)
    a = hha_components(depth, k)
    b = hha_components(depth * 2.0**scale_log2, k)
    np.testing.assert_array_equal(a.normals, b.normals)
    np.testing.assert_array_equal(a.gravity, b.gravity)
    np.testing.assert_array_equal(hha(depth, k)[..., 2], hha(depth * 2.0**scale_log2, k)[..., 2])


@settings(max_examples=30, deadline=None)
@given(depth=depth_arrays, raw_scale=st.floats(0.01, 100.0))
def test_only_the_zeros_of_raw_depth_matter(depth: np.ndarray, raw_scale: float) -> None:
    if not depth.any():
        depth[0, -1] = 3.0
    k = _intrinsics_for(depth.shape)
    default = hha(depth, k)
    np.testing.assert_array_equal(default, hha(depth, k, raw_depth_m=depth))  # RD = D
    np.testing.assert_array_equal(default, hha(depth, k, raw_depth_m=depth * raw_scale))


def test_no_crash_on_degenerate_input() -> None:
    k = Intrinsics(30.0, 30.0, 15.5, 11.5)
    constant = np.full((24, 32), 2.5)
    image = hha(constant, k)
    assert (image[..., 0] == 124).all()  # 31000 / 250
    # all pixels missing in the raw depth: no normal anywhere, angle 180 -> 218, gravity kept level
    parts = hha_components(constant, k, raw_depth_m=np.zeros_like(constant))
    assert np.isnan(parts.normals).all()
    np.testing.assert_array_equal(parts.gravity, [0.0, 1.0, 0.0])
    assert (hha(constant, k, raw_depth_m=np.zeros_like(constant))[..., 2] == 218).all()
    single = np.zeros((24, 32))
    single[5, 7] = 1.0
    assert isinstance(hha_components(single, k), HHAComponents)
    assert hha(np.ones((1, 1)), k).shape == (1, 1, 3)
