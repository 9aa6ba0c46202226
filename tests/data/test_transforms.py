"""Paired, seeded augmentation: analytic cases for each function, alignment of modalities and label."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionseg.data.transforms import (
    LINEAR,
    NEAREST,
    AugmentParams,
    PairedTransform,
    adjust_brightness_contrast,
    crop_or_pad,
    hflip,
    resize,
    rotate,
)

H, W = 32, 48


def scene() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Asymmetric blocks: label ids 1..6 in a 2x3 grid, left-right and top-bottom distinct.

    rgb = 30 * id in every channel, depth = 0.5 m * id, so each modality encodes the label.
    """
    label = np.zeros((H, W), np.uint8)
    for row in range(2):
        for col in range(3):
            label[row * H // 2 : (row + 1) * H // 2, col * W // 3 : (col + 1) * W // 3] = 1 + row * 3 + col
    rgb = np.repeat((30.0 * label)[:, :, None], 3, axis=2).astype(np.float32)
    depth = (0.5 * label).astype(np.float32)[:, :, None]
    return {"rgb": rgb, "depth": depth}, label


def interior(label: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood has one label (bilinear values there are exact).

    The border is excluded: the crop may cut just inside an edge that this window cannot see.
    """
    pad = np.pad(label, radius, mode="edge")
    same = np.zeros_like(label, dtype=bool)
    same[radius:-radius, radius:-radius] = True
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= pad[dy : dy + label.shape[0], dx : dx + label.shape[1]] == label
    return same


def make_transform(**kwargs) -> PairedTransform:
    base = dict(size_hw=(H, W), nearest=frozenset({"depth"}), photometric=frozenset({"rgb"}))
    return PairedTransform(**{**base, **kwargs})


def test_hflip_and_rotate_analytic() -> None:
    image = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert hflip(image).tolist() == [[2, 1, 0], [5, 4, 3]]
    square = np.zeros((5, 5), np.uint8)
    square[0, 2] = 7  # top centre
    turned = rotate(square, 90, interpolation=NEAREST)  # counter-clockwise: top centre -> left centre
    assert turned[2, 0] == 7 and turned.sum() == 7
    assert rotate(square, 0, interpolation=NEAREST) is not square


def test_rotation_fills_corners_with_zero() -> None:
    ones = np.ones((20, 20, 3), np.float32)
    out = rotate(ones, 45, interpolation=LINEAR, fill=0)
    assert out.shape == (20, 20, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[10, 10].tolist() == [1, 1, 1]


def test_resize_keeps_channel_axis() -> None:
    depth = np.ones((4, 6, 1), np.float32)
    assert resize(depth, (8, 12), interpolation=NEAREST).shape == (8, 12, 1)
    assert resize(depth[:, :, 0], (2, 3), interpolation=NEAREST).shape == (2, 3)
    with pytest.raises(ValueError, match="size_hw"):
        resize(depth, (0, 3), interpolation=NEAREST)


def test_crop_or_pad_window() -> None:
    image = np.arange(1, 13, dtype=np.int32).reshape(3, 4)
    assert crop_or_pad(image, 1, 1, (2, 2)).tolist() == [[6, 7], [10, 11]]
    padded = crop_or_pad(image, -1, -2, (5, 8), fill=-1)
    assert padded.shape == (5, 8)
    assert padded[1:4, 2:6].tolist() == image.tolist()
    assert (padded == -1).sum() == 5 * 8 - 12


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 32),
    w=st.integers(1, 32),
    top=st.integers(-40, 40),
    left=st.integers(-40, 40),
    out_h=st.integers(1, 32),
    out_w=st.integers(1, 32),
)
def test_crop_or_pad_properties(h: int, w: int, top: int, left: int, out_h: int, out_w: int) -> None:
    image = np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w)
    before = image.copy()
    out = crop_or_pad(image, top, left, (out_h, out_w), fill=0)
    assert out.shape == (out_h, out_w) and out.dtype == image.dtype
    np.testing.assert_array_equal(image, before)
    # every non-fill value sits where the window says it should
    ys, xs = np.nonzero(out)
    np.testing.assert_array_equal(out[ys, xs], image[ys + top, xs + left])
    inside_h = max(0, min(top + out_h, h) - max(top, 0))
    inside_w = max(0, min(left + out_w, w) - max(left, 0))
    assert len(ys) == inside_h * inside_w


def test_brightness_contrast_analytic() -> None:
    image = np.array([[[100.0], [200.0]]], np.float32)  # mean 150
    np.testing.assert_allclose(
        adjust_brightness_contrast(image, brightness=10, contrast=1.0), [[[110], [210]]]
    )
    np.testing.assert_allclose(
        adjust_brightness_contrast(image, brightness=0, contrast=0.5), [[[125], [175]]]
    )
    np.testing.assert_allclose(
        adjust_brightness_contrast(image, brightness=80, contrast=2.0), [[[130], [255]]]
    )
    assert image.tolist() == [[[100.0], [200.0]]]


def test_same_seed_same_result_and_different_seeds_differ() -> None:
    transform = make_transform(max_rotation_deg=10.0)
    inputs, label = scene()
    a = transform(inputs, label, np.random.default_rng(7))
    b = transform(inputs, label, np.random.default_rng(7))
    for name in inputs:
        np.testing.assert_array_equal(a[0][name], b[0][name])
    np.testing.assert_array_equal(a[1], b[1])
    draws = {transform.sample_params(np.random.default_rng(s)) for s in range(20)}
    assert len(draws) == 20


def test_flip_flips_every_modality_and_label() -> None:
    transform = make_transform()
    inputs, label = scene()
    out, out_label = transform.apply(inputs, label, AugmentParams(flip=True))
    np.testing.assert_array_equal(out_label, label[:, ::-1])
    np.testing.assert_array_equal(out["depth"][:, :, 0], inputs["depth"][:, ::-1, 0])
    np.testing.assert_array_equal(out["rgb"], inputs["rgb"][:, ::-1])
    assert out_label[0, 0] == 3 and out_label[-1, -1] == 4  # the grid is really mirrored


@pytest.mark.parametrize("seed", range(12))
def test_random_geometry_keeps_modalities_aligned(seed: int) -> None:
    transform = make_transform(max_rotation_deg=15.0, brightness=0.0, contrast_range=(1.0, 1.0))
    inputs, label = scene()
    before = {k: v.copy() for k, v in inputs.items()}, label.copy()
    out, out_label = transform(inputs, label, np.random.default_rng(seed))
    assert out["rgb"].shape == (H, W, 3) and out["depth"].shape == (H, W, 1) and out_label.shape == (H, W)
    assert out["rgb"].dtype == np.float32 and out_label.dtype == np.uint8
    # nearest-neighbour depth and label sample the same source pixels
    np.testing.assert_array_equal(out["depth"][:, :, 0], 0.5 * out_label)
    # bilinear rgb agrees with the label away from block edges
    core = interior(out_label)
    assert core.mean() > 0.3
    np.testing.assert_allclose(out["rgb"][core], np.repeat(30.0 * out_label[core][:, None], 3, 1), atol=1e-3)
    # nearest labels only ever hold ids from the input (or void padding)
    assert set(np.unique(out_label)) <= set(range(7))
    for name in inputs:
        np.testing.assert_array_equal(inputs[name], before[0][name])
    np.testing.assert_array_equal(label, before[1])


def test_small_scale_pads_with_void_and_missing_depth() -> None:
    transform = make_transform()
    inputs, label = scene()
    params = AugmentParams(scale=0.5, top_px=-4, left_px=-6)
    out, out_label = transform.apply(inputs, label, params)
    assert (out_label[:4] == 0).all() and (out_label[:, :6] == 0).all() and (out_label[4:20, 6:30] > 0).all()
    assert (out["depth"][out_label == 0] == 0).all() and (out["rgb"][out_label == 0] == 0).all()


def test_photometric_changes_rgb_only() -> None:
    transform = make_transform(brightness=40.0, contrast_range=(0.5, 1.5))
    plain = make_transform(brightness=0.0, contrast_range=(1.0, 1.0))
    inputs, label = scene()
    inputs["nir"] = inputs["rgb"][:, :, :1].copy()
    for seed in range(5):
        params = transform.sample_params(np.random.default_rng(seed))
        assert params.brightness != 0 and params.contrast != 1
        out, _ = transform.apply(inputs, label, params)
        ref, _ = plain.apply(
            inputs, label, AugmentParams(**{**params.__dict__, "brightness": 0.0, "contrast": 1.0})
        )
        np.testing.assert_array_equal(out["depth"], ref["depth"])
        np.testing.assert_array_equal(out["nir"], ref["nir"])
        assert not np.allclose(out["rgb"], ref["rgb"])
        assert out["rgb"].min() >= 0 and out["rgb"].max() <= 255


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="scale_range"):
        make_transform(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="contrast_range"):
        make_transform(contrast_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match="image"):
        hflip(np.zeros((0, 3)))
