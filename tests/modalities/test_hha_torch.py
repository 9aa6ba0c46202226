"""HHA encoding, batched torch back-end: agreement with the numpy back-end (`reference/modalities.md`
§3), batching, devices and input checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from analytic_scenes import render_analytic_frame

from fusionseg.modalities.hha import hha
from fusionseg.modalities.hha_torch import hha_torch
from fusionseg.modalities.intrinsics import Intrinsics

NYU_INTRINSICS = Intrinsics.from_one_based(
    518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465
)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: fraction identical, fraction within one grey level."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(-1, 3)
    return (diff == 0).mean(0), (diff <= 1).mean(0)


@pytest.mark.parametrize("device", DEVICES)
def test_agrees_with_numpy_on_nyu_frame_1(shared_data, device: str) -> None:
    path = shared_data / "nyuv2-hha-ref/full480x640/nyu0001/depth_filled_1e-4m.png"
    depth_m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64) / 10000.0
    ours = hha_torch(torch.from_numpy(depth_m), NYU_INTRINSICS, device=device)
    assert ours.shape == (1, 480, 640, 3) and ours.dtype == torch.uint8
    assert ours.device.type == device
    identical, within_one = _agreement(ours[0].cpu().numpy(), hha(depth_m, NYU_INTRINSICS))
    assert (within_one >= 0.99).all(), within_one
    assert (identical >= 0.99).all(), identical  # measured: 100 % on all channels


def test_batch_with_one_intrinsics_per_item_and_raw_mask() -> None:
    """Two analytic frames, different cameras, scattered raw holes: each item equals numpy."""
    frames = [
        render_analytic_frame("floor_and_wall", height_px=48, width_px=64, pitch_deg=20.0, roll_deg=5.0),
        render_analytic_frame(
            "floor_and_wall",
            height_px=48,
            width_px=64,
            intrinsics=Intrinsics(50.0, 52.0, 30.0, 25.0),
            pitch_deg=10.0,
            distance_m=2.5,
        ),
    ]
    depth = np.stack([f.depth_m for f in frames])  # (2, 48, 64) float32
    raw = depth * (np.random.default_rng(0).random(depth.shape) > 0.2)
    before = depth.copy()
    depth_t, raw_t = torch.from_numpy(depth), torch.from_numpy(raw)
    ours = hha_torch(depth_t, [f.intrinsics for f in frames], raw_depth_m=raw_t, device="cpu")
    np.testing.assert_array_equal(depth_t.numpy(), before)  # input unchanged
    for i, frame in enumerate(frames):
        expected = hha(depth[i], frame.intrinsics, raw_depth_m=raw[i])
        _, within_one = _agreement(ours[i].numpy(), expected)
        assert (within_one >= 0.99).all(), within_one
    # a numpy (H, W) array gives a batch of one
    single = hha_torch(depth[0], frames[0].intrinsics, device="cpu")
    assert single.shape == (1, 48, 64, 3)
    _, within_one = _agreement(single[0].numpy(), hha(depth[0], frames[0].intrinsics))
    assert (within_one >= 0.99).all()


def test_all_missing_raw_depth_keeps_level_gravity() -> None:
    depth = torch.full((2, 12, 16), 2.5, dtype=torch.float64)
    out = hha_torch(
        depth, Intrinsics(20.0, 20.0, 7.5, 5.5), raw_depth_m=torch.zeros_like(depth), device="cpu"
    )
    assert (out[..., 0] == 124).all() and (out[..., 2] == 218).all()
    np.testing.assert_array_equal(
        out[0].numpy(),
        hha(depth[0].numpy(), Intrinsics(20.0, 20.0, 7.5, 5.5), raw_depth_m=np.zeros((12, 16))),
    )


K_SMALL = Intrinsics(20.0, 20.0, 7.5, 5.5)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        ([[1.0, 2.0]], "depth_m must be a torch.Tensor"),
        (torch.ones(12), "depth_m must be \\(H, W\\) or \\(B, H, W\\)"),
        (torch.ones(1, 1, 12, 16), "depth_m must be \\(H, W\\) or \\(B, H, W\\)"),
        (torch.ones(12, 16, dtype=torch.bool), "depth_m must have a real numeric dtype"),
        (torch.full((12, 16), -1.0), "depth_m must be >= 0"),
        (torch.full((12, 16), float("nan")), "depth_m must be finite"),
        (torch.zeros(12, 16), "depth_m has no valid"),
        (torch.stack([torch.ones(12, 16), torch.zeros(12, 16)]), "batch item 1"),
        (torch.zeros(0, 16), "depth_m must not be empty"),
    ],
)
def test_bad_depth_is_refused(depth, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hha_torch(depth, K_SMALL, device="cpu")


def test_bad_intrinsics_and_raw_depth_are_refused() -> None:
    depth = torch.ones(2, 12, 16)
    with pytest.raises(ValueError, match="intrinsics must have one entry per batch item"):
        hha_torch(depth, [K_SMALL], device="cpu")
    with pytest.raises(ValueError, match="intrinsics must be an Intrinsics"):
        hha_torch(depth, (20.0, 20.0, 7.5, 5.5), device="cpu")
    with pytest.raises(ValueError, match="raw_depth_m must have the shape"):
        hha_torch(depth, K_SMALL, raw_depth_m=torch.ones(2, 12, 15), device="cpu")
    with pytest.raises(ValueError, match="raw_depth_m must be finite"):
        hha_torch(depth, K_SMALL, raw_depth_m=torch.full((2, 12, 16), float("inf")), device="cpu")
