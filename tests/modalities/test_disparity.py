"""Cityscapes disparity to depth and the camera JSON reader (`reference/modalities.md` §5)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fusionseg.data.cityscapes import CityscapesCamera, read_cityscapes_camera
from fusionseg.errors import DataError
from fusionseg.modalities.disparity import disparity_to_depth
from fusionseg.modalities.intrinsics import Intrinsics

BASELINE_M = 0.209313
FX_PX = 2262.52


def test_hand_computed_depths() -> None:
    # p = 0 and p = 1 invalid; p = 257 -> d = 1 px; p = 2561 -> d = 10 px; p = 65535 -> d = 255.99 px
    disparity = np.array([[0, 1, 257, 2561, 65535]], np.uint16)
    depth_m = disparity_to_depth(disparity, baseline_m=BASELINE_M, fx_px=FX_PX)
    assert depth_m.dtype == np.float32 and depth_m.shape == (1, 5)
    focal_baseline = BASELINE_M * FX_PX  # about 473.6 m px
    expected = [0.0, 0.0, focal_baseline, focal_baseline / 10.0, focal_baseline / (65534 / 256)]
    np.testing.assert_allclose(depth_m[0], expected, rtol=1e-6)
    assert depth_m[0, 0] == 0 and depth_m[0, 1] == 0


def test_png_round_trip_keeps_16_bits(tmp_path) -> None:
    disparity = np.array([[0, 300, 5000], [20000, 1, 65535]], np.uint16)
    path = tmp_path / "disparity.png"
    assert cv2.imwrite(str(path), disparity)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(
        disparity_to_depth(raw, baseline_m=0.22, fx_px=2262.0),
        disparity_to_depth(disparity, baseline_m=0.22, fx_px=2262.0),
    )
    with pytest.raises(ValueError, match="uint16"):
        disparity_to_depth(cv2.imread(str(path)), baseline_m=0.22, fx_px=2262.0)  # 8-bit colour read


@pytest.mark.parametrize(
    ("disparity", "kwargs", "match"),
    [
        (np.zeros((2, 2), np.uint8), {}, "disparity_png must be the raw uint16"),
        (np.zeros((2, 2), np.float32), {}, "disparity_png must be the raw uint16"),
        (np.zeros((2, 2, 3), np.uint16), {}, "2-D"),
        (np.zeros((2, 2), np.uint16), {"baseline_m": 0.0}, "baseline_m"),
        (np.zeros((2, 2), np.uint16), {"fx_px": float("nan")}, "fx_px"),
        (np.zeros((2, 2), np.uint16), {"fx_px": -1.0}, "fx_px"),
    ],
)
def test_disparity_rejects_bad_input(disparity, kwargs, match) -> None:
    arguments = {"baseline_m": BASELINE_M, "fx_px": FX_PX, **kwargs}
    with pytest.raises(ValueError, match=match):
        disparity_to_depth(disparity, **arguments)


@settings(max_examples=60, deadline=None)
@given(
    disparity=arrays(np.uint16, st.tuples(st.integers(1, 32), st.integers(1, 32))),
    baseline_m=st.floats(0.05, 1.0),
    fx_px=st.floats(100.0, 5000.0),
)
def test_property_depth_times_disparity_is_constant(disparity, baseline_m, fx_px) -> None:
    before = disparity.copy()
    depth_m = disparity_to_depth(disparity, baseline_m=baseline_m, fx_px=fx_px)
    np.testing.assert_array_equal(disparity, before)
    assert depth_m.shape == disparity.shape and depth_m.dtype == np.float32
    assert np.isfinite(depth_m).all()
    valid = disparity > 1
    np.testing.assert_array_equal(depth_m > 0, valid)
    disparity_px = (disparity[valid].astype(np.float64) - 1.0) / 256.0
    np.testing.assert_allclose(depth_m[valid] * disparity_px, baseline_m * fx_px, rtol=1e-6)
    # larger disparity means nearer
    order = np.argsort(disparity[valid], kind="stable")
    assert (np.diff(depth_m[valid][order].astype(np.float64)) <= 0).all()


# --------------------------------------------------------------------------------------------------
# Camera JSON (§5.2)
# --------------------------------------------------------------------------------------------------

CAMERA = {
    "extrinsic": {
        "baseline": BASELINE_M,
        "pitch": 0.038,
        "roll": 0.0,
        "x": 1.7,
        "y": 0.1,
        "yaw": -0.0195,
        "z": 1.22,
    },
    "intrinsic": {"fx": FX_PX, "fy": 2265.30, "u0": 1096.98, "v0": 513.137},
}


def _write(tmp_path, content) -> object:
    path = tmp_path / "aachen_000000_000019_camera.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_read_camera(tmp_path) -> None:
    camera = read_cityscapes_camera(_write(tmp_path, CAMERA))
    assert camera == CityscapesCamera(
        baseline_m=BASELINE_M, intrinsics=Intrinsics(FX_PX, 2265.30, 1096.98, 513.137)
    )
    disparity = np.array([[257]], np.uint16)  # 1 px
    depth_m = disparity_to_depth(disparity, baseline_m=camera.baseline_m, fx_px=camera.intrinsics.fx)
    assert depth_m[0, 0] == pytest.approx(BASELINE_M * FX_PX, rel=1e-6)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ({"intrinsic": CAMERA["intrinsic"]}, "missing 'extrinsic'"),
        ({**CAMERA, "intrinsic": {"fx": 1.0, "fy": 1.0, "u0": 1.0}}, "intrinsic.v0"),
        ({**CAMERA, "extrinsic": {"baseline": "0.2"}}, "extrinsic.baseline' must be a finite number"),
        ({**CAMERA, "extrinsic": {"baseline": -0.2}}, "baseline' must be positive"),
        ({**CAMERA, "intrinsic": {**CAMERA["intrinsic"], "fx": 0}}, "focal lengths must be positive"),
    ],
)
def test_read_camera_errors_name_the_file(tmp_path, content, match) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(DataError, match=match) as info:
        read_cityscapes_camera(path)
    assert str(path) in str(info.value)


def test_read_camera_missing_file(tmp_path) -> None:
    path = tmp_path / "nope_camera.json"
    with pytest.raises(DataError, match="cannot read camera file") as info:
        read_cityscapes_camera(path)
    assert str(path) in str(info.value)
