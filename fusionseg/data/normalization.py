"""Per-channel input normalisation, `(x - mean) / std`, and its inverse, back to raw units.

Inputs are fed as float 0-255 grey levels (images) or metres (depth) unless `data.normalization` gives a
modality a per-channel (mean, std); checkpoints record it, so prediction, export, robustness tests and
reports undo or redo exactly what training did. No torch import: tensors are handled where passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from fusionseg.data.modality_specs import modality_channels
from fusionseg.errors import ConfigError

Normalization = dict[str, tuple[tuple[float, ...], tuple[float, ...]]]
ArrayT = TypeVar("ArrayT")  # np.ndarray or torch.Tensor


def check_normalization(
    normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None, modalities: Sequence[str]
) -> Normalization:
    """Validate per-modality (mean, std) and return it as a plain dict of float tuples.

    Raises:
        ConfigError: a modality not used, wrong number of values for its channels, or std <= 0.
    """
    out: Normalization = {}
    for name, pair in (normalization or {}).items():
        if name not in modalities:
            raise ConfigError(f"data.normalization.{name}: not one of the modalities {list(modalities)}")
        try:
            mean, std = pair
            mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        except (TypeError, ValueError):
            raise ConfigError(
                f"data.normalization.{name}: expected [[mean...], [std...]], got {pair!r}"
            ) from None
        channels = modality_channels(name)
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(
                f"data.normalization.{name}: needs {channels} means and stds, got {len(mean)} and {len(std)}"
            )
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in std):
            raise ConfigError(f"data.normalization.{name}: means must be finite and stds positive")
        out[name] = (mean, std)
    return out


def normalize_input(
    x: ArrayT, mean: Sequence[float], std: Sequence[float], *, channel_axis: int = -1
) -> ArrayT:
    """`(x - mean) / std` per channel.

    Args:
        x: Raw input: a float32 numpy array, e.g. (H, W, C), or a float torch tensor, e.g. (C, H, W) or
            (B, C, H, W) with `channel_axis=-3`.
        mean: One value per channel, raw units.
        std: One value per channel (> 0).
        channel_axis: Axis of `x` holding the channels.

    Returns:
        Same type and shape as `x`: float32 for numpy, `x`'s dtype and device for torch.
    """
    return (x - _per_channel(x, mean, channel_axis)) / _per_channel(x, std, channel_axis)


def denormalize_input(
    x: ArrayT, mean: Sequence[float], std: Sequence[float], *, channel_axis: int = -1
) -> ArrayT:
    """`x * std + mean` per channel, the inverse of `normalize_input` (same arguments)."""
    return x * _per_channel(x, std, channel_axis) + _per_channel(x, mean, channel_axis)


def _per_channel(x: Any, values: Sequence[float], channel_axis: int) -> Any:
    """`values` shaped to broadcast along `channel_axis` of `x`, in `x`'s array type."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    if isinstance(x, np.ndarray):
        return np.asarray(values, np.float32).reshape(shape)
    return x.new_tensor(values).reshape(shape)  # torch: x's dtype and device
