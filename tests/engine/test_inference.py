"""Prediction at any size (resize/pad/slide), multi-scale + flip, and evaluation over a loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import NUM_CLASSES, ColourBlocks
from torch import nn

from fusionseg.engine.inference import evaluate_model, predict_probs, select_inputs
from fusionseg.errors import DataError
from fusionseg.models.output import ExpertOutput


class Multiple16(nn.Module):
    """Per-pixel 'oracle' for ColourBlocks that, like AdapNet++, refuses sizes not divisible by 16."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def forward(self, inputs: dict[str, torch.Tensor]) -> ExpertOutput:
        x = inputs["rgb"]
        h, w = x.shape[-2:]
        assert h % 16 == 0 and w % 16 == 0, (h, w)
        self.calls.append((h, w))
        bright = (x - 100.0) / 10.0  # (B, 3, H, W): channel k-1 bright -> class k
        void = torch.full_like(bright[:, :1], -50.0)
        return ExpertOutput(torch.cat([void, bright], dim=1))  # (B, 4, H, W)


def image(h: int, w: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(h * w)
    return {"rgb": torch.rand(2, 3, h, w, generator=g) * 255}


@pytest.mark.parametrize("mode", ["pad", "resize", "slide"])
def test_any_input_size_gives_probs_at_input_size(mode):
    model = Multiple16().eval()
    probs = predict_probs(model, image(37, 53), mode=mode, size=(16, 32))
    assert probs.shape == (2, 4, 37, 53)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 37, 53))
    if mode == "resize":
        assert model.calls == [(16, 32)]
    if mode == "pad":
        assert model.calls == [(48, 64)]
    if mode == "slide":
        assert len(model.calls) > 1 and set(model.calls) == {(16, 32)}


def test_pad_mode_keeps_pixels_where_they_are():
    """In pad mode a per-pixel model's prediction equals the direct per-pixel answer."""
    model = Multiple16().eval()
    x = image(20, 40)
    probs = predict_probs(model, x, mode="pad")
    direct = torch.cat([torch.full_like(x["rgb"][:, :1], -50.0), (x["rgb"] - 100) / 10], 1).softmax(1)
    torch.testing.assert_close(probs, direct)


@pytest.mark.parametrize(
    ("hw", "overlap"), [((37, 53), 1 / 3), ((48, 96), 0.5), ((16, 32), 0.0), ((70, 41), 0.75)]
)
def test_slide_mode_equals_the_whole_image_answer(hw, overlap):
    """Sliding windows of a per-pixel model: every pixel gets exactly its own answer, whatever window
    or how many overlapping windows cover it (a window predicted from the wrong crop, or overlapping
    windows summed instead of averaged, would not)."""
    model = Multiple16().eval()
    x = image(*hw)
    probs = predict_probs(model, x, mode="slide", size=(16, 32), overlap=overlap)
    direct = torch.cat([torch.full_like(x["rgb"][:, :1], -50.0), (x["rgb"] - 100) / 10], 1).softmax(1)
    torch.testing.assert_close(probs, direct)
    if hw[0] > 16 and overlap > 0:  # several windows overlap here: the averaging is exercised
        assert len(model.calls) > 2


def test_flip_and_scales_average():
    model = Multiple16().eval()
    x = image(32, 48)
    plain = predict_probs(model, x, mode="pad")
    flipped = predict_probs(model, x, mode="pad", flip=True)
    torch.testing.assert_close(plain, flipped)  # a per-pixel model is flip-equivariant
    model.calls.clear()
    multi = predict_probs(model, x, mode="pad", scales=(0.5, 1.0, 1.5), flip=True)
    assert multi.shape == plain.shape and len(model.calls) == 6
    assert {c for c in model.calls} == {(16, 32), (32, 48), (48, 80)}


def test_bad_arguments():
    model = Multiple16().eval()
    with pytest.raises(ValueError, match="training size"):
        predict_probs(model, image(16, 16), mode="resize")
    with pytest.raises(ValueError, match="scales"):
        predict_probs(model, image(16, 16), scales=(0.0,))
    with pytest.raises(DataError, match="'depth'"):
        select_inputs({"rgb": torch.zeros(1)}, ["rgb", "depth"])


def test_evaluate_model_oracle_scores_one():
    data = ColourBlocks(6, seed=3)
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    model = Multiple16()
    model.train()
    metrics = evaluate_model(model, loader, num_classes=NUM_CLASSES, modalities=["rgb"])
    assert metrics.miou == pytest.approx(1.0) and metrics.pixel_accuracy == pytest.approx(1.0)
    assert model.training  # mode restored

    def drop_rgb(inputs):
        return {"rgb": torch.zeros_like(inputs["rgb"])}

    degraded = evaluate_model(
        model,
        loader,
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        input_transform=drop_rgb,
    )
    assert degraded.miou < 0.5


@pytest.mark.parametrize(
    ("shape", "size_hw"), [((9, 24, 48), (375, 1242)), ((5, 64, 128), (480, 640)), ((3, 40, 40), (20, 20))]
)
def test_banded_upsampled_labels_equal_whole_interpolation(shape, size_hw):
    """The banded arg-max is F.interpolate(bilinear) + arg-max, band boundaries included."""
    import torch.nn.functional as F

    from fusionseg.engine.inference import upsampled_labels

    probs = torch.rand(*shape, generator=torch.Generator().manual_seed(1)).softmax(0)
    whole = F.interpolate(probs[None], size=size_hw, mode="bilinear", align_corners=False)[0].argmax(0)
    banded = upsampled_labels(probs, size_hw, band_bytes=4096)  # many bands of a few rows
    assert banded.shape == size_hw and banded.dtype == np.uint8
    assert (banded == whole.numpy()).mean() >= 0.99999  # float summation order: near-ties only
    one_band = upsampled_labels(probs, size_hw)  # small enough for the single-interpolation path
    assert np.array_equal(one_band, whole.numpy().astype(np.uint8))
