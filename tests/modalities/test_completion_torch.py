"""Batched torch ip_basic against the numpy port and the OpenCV calls it re-creates (§1.4-§1.6)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fusionseg.modalities import completion
from fusionseg.modalities.completion_torch import (
    bilateral_filter5,
    complete_depth_torch,
    dilate,
    fill_in_fast_torch,
    fill_in_multiscale_torch,
    gaussian_blur5,
    median_blur5,
    pad_reflect101,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL_M = 1e-4  # the agreement asked of the torch back-end on real frames (metres)
# float32 ulps of the blurs' sums in another order, at depths of up to 100 m (inverted maps)
BLUR_TOL_M = 5e-5
OPTIONS = [
    {"extrapolate": False, "blur_type": "bilateral"},
    {"extrapolate": True, "blur_type": "gaussian"},
]
PAIRS = [
    (completion.fill_in_fast, fill_in_fast_torch),
    (completion.fill_in_multiscale, fill_in_multiscale_torch),
]


def _sparse(rng: np.random.Generator, shape: tuple[int, int], fill: float, far_m: float = 60.0) -> np.ndarray:
    depth = rng.uniform(0.5, far_m, size=shape).astype(np.float32)
    depth[rng.random(shape) > fill] = 0.0
    return depth


def _torch_on(depth: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(depth).to(device)


# --------------------------------------------------------------------------------------------------
# The OpenCV operations, one by one
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(completion.KERNELS))
def test_dilate_equals_opencv_for_every_named_kernel(name: str) -> None:
    rng = np.random.default_rng(1)
    image = _sparse(rng, (23, 37), 0.1)
    kernel = completion.KERNELS[name]
    got = dilate(torch.from_numpy(image)[None], kernel)[0].numpy()
    np.testing.assert_array_equal(got, cv2.dilate(image, kernel))


def test_dilate_and_close_with_asymmetric_and_even_kernels_equal_opencv() -> None:
    rng = np.random.default_rng(2)
    image = rng.uniform(-5, 5, size=(2, 19, 21)).astype(np.float32)  # negative values: border matters
    for kernel in (np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1]], np.uint8), np.ones((4, 2), np.uint8)):
        got = dilate(torch.from_numpy(image), kernel).numpy()
        closed = -dilate(-dilate(torch.from_numpy(image), kernel), kernel).numpy()
        for item in range(2):
            np.testing.assert_array_equal(got[item], cv2.dilate(image[item], kernel))
            expected = cv2.morphologyEx(image[item], cv2.MORPH_CLOSE, kernel)
            np.testing.assert_array_equal(closed[item], expected)


def test_median_is_exact_and_gaussian_matches_opencv() -> None:
    rng = np.random.default_rng(3)
    image = _sparse(rng, (17, 26), 0.6)
    batch = torch.from_numpy(image)[None]
    np.testing.assert_array_equal(median_blur5(batch)[0].numpy(), cv2.medianBlur(image, 5))
    np.testing.assert_allclose(
        gaussian_blur5(batch)[0].numpy(), cv2.GaussianBlur(image, (5, 5), 0), atol=1e-5
    )


@pytest.mark.parametrize("sigma_color", [0.5, 1.5])
def test_bilateral_matches_opencv_and_copies_a_flat_image(sigma_color: float) -> None:
    rng = np.random.default_rng(4)
    image = (np.float32(90.0) + rng.normal(0, 0.5, (30, 41))).astype(np.float32)
    image[:, :8] = 0.0  # an empty band, as the inverted maps have
    got = bilateral_filter5(torch.from_numpy(image)[None], sigma_color, 2.0)[0].numpy()
    np.testing.assert_allclose(got, cv2.bilateralFilter(image, 5, sigma_color, 2.0), rtol=0, atol=BLUR_TOL_M)
    flat = np.full((2, 6, 7), 3.25, np.float32)
    np.testing.assert_array_equal(bilateral_filter5(torch.from_numpy(flat), 0.5, 2.0).numpy(), flat)


# --------------------------------------------------------------------------------------------------
# Whole pipelines on small synthetic batches
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o['blur_type']}-extrap{o['extrapolate']}")
@pytest.mark.parametrize("pair", PAIRS, ids=["fast", "multiscale"])
def test_batch_equals_numpy_port_item_by_item(pair, options: dict, device: str) -> None:
    numpy_fill, torch_fill = pair
    rng = np.random.default_rng(5)
    batch = np.stack([_sparse(rng, (40, 64), 0.08), _sparse(rng, (40, 64), 0.3, far_m=12.0)])
    batch[1, :, :5] = 0.0  # an all-empty band of columns
    before = batch.copy()
    tensor = _torch_on(batch, device)
    got = torch_fill(tensor, **options)
    assert got.shape == tensor.shape and got.device == tensor.device and got.dtype == torch.float32
    for item in range(2):
        expected = numpy_fill(batch[item], **options)
        np.testing.assert_allclose(got[item].cpu().numpy(), expected, rtol=0, atol=BLUR_TOL_M)
    np.testing.assert_array_equal(tensor.cpu().numpy(), before)  # the input is not modified


def test_custom_kernels_and_two_dimensional_input() -> None:
    rng = np.random.default_rng(6)
    depth = _sparse(rng, (32, 48), 0.1, far_m=45.0)
    kernels = {
        "dilation_kernel_far": completion.FULL_KERNEL_3,
        "dilation_kernel_med": completion.DIAMOND_KERNEL_7,
        "dilation_kernel_near": completion.FULL_KERNEL_5,
    }
    got = fill_in_multiscale_torch(torch.from_numpy(depth), **kernels)
    assert got.shape == depth.shape
    np.testing.assert_allclose(got.numpy(), completion.fill_in_multiscale(depth, **kernels), atol=BLUR_TOL_M)
    fast = fill_in_fast_torch(
        torch.from_numpy(depth), custom_kernel=completion.CROSS_KERNEL_5, max_depth=80.0
    )
    expected = completion.fill_in_fast(depth, custom_kernel=completion.CROSS_KERNEL_5, max_depth=80.0)
    np.testing.assert_allclose(fast.numpy(), expected, atol=BLUR_TOL_M)


def test_complete_depth_torch_zeroes_residues_like_prepare_depth() -> None:
    rng = np.random.default_rng(7)
    depth = _sparse(rng, (24, 40), 0.15)
    got = complete_depth_torch(torch.from_numpy(depth)[None], method="fast", device="cpu")[0].numpy()
    filled = completion.fill_in_fast(depth)
    expected = np.where(filled > completion.VALID_THRESHOLD_M, filled, 0.0)
    assert ((got == 0) == (expected == 0)).all()
    np.testing.assert_allclose(got, expected, atol=BLUR_TOL_M)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.zeros((4, 4), np.float32), "torch.Tensor"),
        (torch.zeros(4, 4, dtype=torch.float64), "float32"),
        (torch.zeros(2, 2, 4, 4), "non-empty"),
        (torch.tensor([[1.0, float("nan")]]), "NaN"),
        (torch.tensor([[1.0, -2.0]]), "non-negative"),
        (torch.tensor([[1.0, 5000.0]]), "millimetres"),
    ],
)
def test_bad_input_is_refused(depth, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fill_in_fast_torch(depth)


def test_bad_options_are_refused() -> None:
    depth = torch.ones(8, 8)
    with pytest.raises(ValueError, match="blur_type"):
        fill_in_fast_torch(depth, blur_type="box")
    with pytest.raises(ValueError, match="custom_kernel"):
        fill_in_fast_torch(depth, custom_kernel=np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="dilation_kernel_near"):
        fill_in_multiscale_torch(depth, dilation_kernel_near=np.full((3, 3), 2, np.uint8))
    with pytest.raises(ValueError, match="method"):
        complete_depth_torch(depth, method="slow")


def test_reflect101_padding_matches_opencv_at_every_size() -> None:
    for height, width in ((1, 1), (1, 4), (2, 3), (3, 2), (5, 7)):
        image = np.arange(height * width, dtype=np.float32).reshape(height, width)
        got = pad_reflect101(torch.from_numpy(image)[None], 2)[0].numpy()
        np.testing.assert_array_equal(got, cv2.copyMakeBorder(image, 2, 2, 2, 2, cv2.BORDER_REFLECT_101))


# Sparse maps of any small size (1x1 included): 0 or a depth inside ip_basic's 0.1..99.9 m range.
depth_maps = arrays(
    np.float32,
    array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    elements=st.one_of(st.just(0.0), st.floats(0.25, 99.5, width=32)),
)


@settings(max_examples=40, deadline=None)
@given(
    depth_m=depth_maps,
    pair=st.sampled_from(PAIRS),
    extrapolate=st.booleans(),
    blur_type=st.sampled_from(["bilateral", "gaussian"]),
)
def test_property_equals_numpy_port_on_any_small_map(depth_m, pair, extrapolate, blur_type) -> None:
    numpy_fill, torch_fill = pair
    got = torch_fill(torch.from_numpy(depth_m), extrapolate=extrapolate, blur_type=blur_type).numpy()
    expected = numpy_fill(depth_m, extrapolate=extrapolate, blur_type=blur_type)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=BLUR_TOL_M)


# --------------------------------------------------------------------------------------------------
# Real frames: KITTI sparse LiDAR, NYU raw Kinect depth, Kinect v2 (../shared/data)
# --------------------------------------------------------------------------------------------------


def _read(path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16, path
    return raw


def _assert_equal_on(frames: list[np.ndarray], options: dict) -> None:
    """Each (numpy, torch) pair on a batch of equal-size frames agrees within 1e-4 m."""
    batch = torch.from_numpy(np.stack(frames))
    for numpy_fill, torch_fill in PAIRS:
        got = torch_fill(batch, **options).numpy()
        for item, frame in enumerate(frames):
            diff = np.abs(got[item] - numpy_fill(frame, **options))
            assert diff.max() <= TOL_M, (numpy_fill.__name__, item, float(diff.max()))


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: o["blur_type"])
def test_kitti_lidar_frames_equal_numpy_port(shared_data, options: dict) -> None:
    folder = shared_data / "kitti-object-lidar3" / "sparse_depth"
    frames = [np.float32(_read(folder / f"{name}.png") / 256.0) for name in ("000001", "000002")]  # 375x1242
    _assert_equal_on(frames, options)


def test_nyu_raw_depth_frames_equal_numpy_port(shared_data) -> None:
    folder = shared_data / "nyuv2-hha-ref" / "full480x640"
    frames = [
        completion.depth_to_metres(_read(folder / name / "depth_raw_1e-4m.png"), depth_scale_m=1e-4)
        for name in ("nyu0001", "nyu0003")
    ]
    _assert_equal_on(frames, OPTIONS[0])


def test_kinect_v2_frame_equals_numpy_port(shared_data) -> None:
    raw = _read(shared_data / "kinectv2-samples" / "esanet" / "sample_depth.png")  # 0.1 mm units
    _assert_equal_on([completion.depth_to_metres(raw, depth_scale_m=1e-4)], OPTIONS[1])
