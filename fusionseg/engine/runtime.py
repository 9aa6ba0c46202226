"""Device and mixed-precision runtime: which device a run uses, autocast, moving inputs there."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from fusionseg.engine.cpu import NATIVE_AUTOCAST_FLAGS, cpu_info
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
    """Autocast for `amp` in {"off", "bf16", "fp16"} on `device`.

    On the CPU a reduced precision is used only where the CPU computes in it natively
    (`fusionseg.engine.cpu`: AVX512_BF16 / AMX-BF16 for bf16, AVX512_FP16 / AMX-FP16 for fp16);
    elsewhere autocast would emulate it, many times slower than fp32 (issue 18), so the run stays in
    fp32 after a one-line `RuntimeWarning`. CUDA autocast is used as asked.

    Raises:
        ConfigError: an unknown mode, or fp16 on a device that is neither CUDA nor a CPU.
    """
    if amp == "off":
        return nullcontext()
    if amp not in ("bf16", "fp16"):
        raise ConfigError(f"train.amp: {amp!r} is not one of 'off', 'bf16', 'fp16'")
    if device.type == "cpu":
        info = cpu_info()
        if not info.native_autocast(amp):
            flags = " or ".join(NATIVE_AUTOCAST_FLAGS[amp])
            warnings.warn(
                f"train.amp: {amp} is not native on this CPU ({info.model}: no {flags}); running in fp32",
                RuntimeWarning,
                stacklevel=2,
            )
            return nullcontext()
    elif amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.amp: fp16 needs a CUDA device or a CPU with native fp16 (running on {device.type})"
        )
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def effective_amp(device: torch.device, amp: str) -> str:
    """The autocast mode `autocast_context` really applies: "off" for a reduced precision that this
    CPU lacks natively (where autocast_context warns and runs fp32), else `amp`."""
    if amp != "off" and device.type == "cpu" and not cpu_info().native_autocast(amp):
        return "off"
    return amp


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Loss scaling where fp16 autocast really runs (CUDA, or a CPU with native fp16), else disabled."""
    native = device.type == "cuda" or (device.type == "cpu" and cpu_info().native_autocast("fp16"))
    kind = "cpu" if device.type == "cpu" else "cuda"
    return torch.amp.GradScaler(kind, enabled=amp == "fp16" and native)


def inputs_to_device(
    inputs: Mapping[str, Tensor], device: torch.device, *, channels_last: bool = False
) -> dict[str, Tensor]:
    """Move every modality tensor to `device` (float32, optionally channels-last)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {
        name: t.to(device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=fmt)
        for name, t in inputs.items()
    }
