"""What this CPU can do: its model, the instruction-set flags that decide speed, native low precision.

Read from /proc/cpuinfo (Linux; x86 `flags`, ARM `Features`), so that benchmarks can say on which
machine a figure was taken and autocast is only used where the CPU computes in that dtype natively
(issue 18: bf16 autocast on a CPU without AVX512_BF16/AMX was 17x slower than fp32, through
emulation).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# the flags recorded by every benchmark (x86 names as in /proc/cpuinfo; ARM's bf16/fphp beside them)
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_fp16",
    "amx_int8",
    "bf16",
    "fphp",
)
# autocast dtype -> any of these flags makes the CPU compute in it natively (x86 AVX-512 / AMX, ARM)
NATIVE_AUTOCAST_FLAGS: dict[str, tuple[str, ...]] = {
    "bf16": ("avx512_bf16", "amx_bf16", "bf16"),
    "fp16": ("avx512_fp16", "amx_fp16", "fphp"),
}


@dataclass(frozen=True)
class CPUInfo:
    """The CPU as the benchmarks record it.

    Attributes:
        model: Model name, e.g. "AMD EPYC 9654 96-Core Processor".
        flags: Every ISA flag the kernel reports (lower case).
        logical_cores: Logical cores the OS reports (os.cpu_count()).
    """

    model: str
    flags: frozenset[str]
    logical_cores: int

    def isa(self) -> dict[str, bool]:
        """`ISA_FLAGS` -> present."""
        return {flag: flag in self.flags for flag in ISA_FLAGS}

    def native_autocast(self, amp: str) -> bool:
        """Whether autocast to `amp` ("bf16" or "fp16") runs natively here."""
        return any(flag in self.flags for flag in NATIVE_AUTOCAST_FLAGS.get(amp, ()))


def parse_cpuinfo(text: str) -> CPUInfo:
    """A `CPUInfo` from the text of /proc/cpuinfo (first processor's model and flags)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.lower().split())
    return CPUInfo(model or platform.processor() or platform.machine(), flags, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """This machine's CPU (read once per process; empty flags where /proc/cpuinfo is missing)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return parse_cpuinfo("")
