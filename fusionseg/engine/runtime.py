"""Device and mixed-precision runtime: which device a run uses, autocast, moving inputs there."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from fusionseg.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`"auto"` -> CUDA when available else CPU; otherwise the named device, checked to exist.

    Raises:
        ConfigError: a CUDA/MPS device is asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: {name!r} is not a device name (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} asked for but MPS is not available here")
    return device


def autocast_context(device: torch.device, amp: str) -> Any:
    """Autocast for `amp` in {"off", "bf16", "fp16"} on `device` (fp16 needs CUDA).

    Raises:
        ConfigError: fp16 on a non-CUDA device, or an unknown mode.
    """
    if amp == "off":
        return nullcontext()
    if amp not in ("bf16", "fp16"):
        raise ConfigError(f"train.amp: {amp!r} is not one of 'off', 'bf16', 'fp16'")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp: fp16 needs a CUDA device (running on {device.type}; use off or bf16)")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def inputs_to_device(
    inputs: Mapping[str, Tensor], device: torch.device, *, channels_last: bool = False
) -> dict[str, Tensor]:
    """Move every modality tensor to `device` (float32, optionally channels-last)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {
        name: t.to(device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=fmt)
        for name, t in inputs.items()
    }
