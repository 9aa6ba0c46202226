"""`normalize_input` / `denormalize_input`: one pair for numpy (H, W, C) and torch (B, C, H, W) inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionseg.data.normalization import check_normalization, denormalize_input, normalize_input
from fusionseg.errors import ConfigError

MEAN, STD = (104.0, 117.0, 123.0), (57.4, 57.1, 58.4)


def test_numpy_matches_the_formula_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((5, 7, 3)) * 255).astype(np.float32)  # (H, W, C)
    y = normalize_input(x, MEAN, STD)
    expected = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    assert y.dtype == np.float32 and np.array_equal(y, expected)
    back = denormalize_input(y, MEAN, STD)
    assert np.array_equal(back, y * np.asarray(STD, np.float32) + np.asarray(MEAN, np.float32))
    np.testing.assert_allclose(back, x, atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 3, 4, 6)])
def test_torch_channels_first_matches_the_formula_and_round_trips(shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 255.0
    stats = [torch.tensor(v, dtype=torch.float32).reshape(3, 1, 1) for v in (MEAN, STD)]
    y = normalize_input(x, MEAN, STD, channel_axis=-3)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.equal(y, (x - stats[0]) / stats[1])
    back = denormalize_input(y, MEAN, STD, channel_axis=-3)
    assert torch.equal(back, y * stats[1] + stats[0])
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)


def test_numpy_and_torch_agree() -> None:
    x = (np.random.default_rng(1).random((4, 5, 3)) * 255).astype(np.float32)
    as_torch = normalize_input(torch.from_numpy(x.transpose(2, 0, 1).copy()), MEAN, STD, channel_axis=-3)
    assert np.array_equal(as_torch.numpy().transpose(1, 2, 0), normalize_input(x, MEAN, STD))


def test_check_normalization_names_the_key() -> None:
    assert check_normalization({"rgb": (MEAN, STD)}, ["rgb"]) == {"rgb": (MEAN, STD)}
    with pytest.raises(ConfigError, match="data.normalization.depth: needs 1"):
        check_normalization({"depth": (MEAN, STD)}, ["depth"])
