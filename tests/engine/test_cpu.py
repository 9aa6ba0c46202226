"""CPU feature detection (`fusionseg.engine.cpu`) and what autocast does with it (`engine.runtime`)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from fusionseg.engine import runtime
from fusionseg.engine.cpu import ISA_FLAGS, CPUInfo, cpu_info, parse_cpuinfo
from fusionseg.errors import ConfigError

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R45 64-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9R45 64-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
"""
SAPPHIRE = (
    "model name\t: Intel(R) Xeon(R) Platinum 8481C\n"
    "flags\t: avx2 fma avx512f avx512_fp16 amx_tile amx_bf16 amx_int8\n"
)
AVX2_ONLY = "model name\t: AMD EPYC 7B12\nflags\t: sse4_2 avx avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimdhp fphp bf16 sve\nCPU implementer\t: 0x41\n"


def test_parse_x86_and_arm_cpuinfo() -> None:
    zen = parse_cpuinfo(X86)
    assert zen.model == "AMD EPYC 9R45 64-Core Processor"
    assert zen.isa()["avx512_bf16"] and zen.isa()["avx2"] and not zen.isa()["amx_bf16"]
    assert set(zen.isa()) == set(ISA_FLAGS)
    assert zen.native_autocast("bf16") and not zen.native_autocast("fp16")
    xeon = parse_cpuinfo(SAPPHIRE)
    assert xeon.native_autocast("bf16") and xeon.native_autocast("fp16")
    old = parse_cpuinfo(AVX2_ONLY)
    assert not old.native_autocast("bf16") and not old.native_autocast("fp16")
    arm = parse_cpuinfo(ARM)
    assert arm.native_autocast("bf16") and arm.native_autocast("fp16") and arm.model  # platform fallback
    assert not parse_cpuinfo("").flags and parse_cpuinfo("").logical_cores >= 1


def test_this_machine_is_described() -> None:
    info = cpu_info()
    assert info.model and info.logical_cores >= 1
    assert cpu_info() is info  # read once per process


@pytest.mark.parametrize(
    ("text", "amp", "native"),
    [(X86, "bf16", True), (X86, "fp16", False), (AVX2_ONLY, "bf16", False), (SAPPHIRE, "fp16", True)],
)
def test_cpu_autocast_only_where_native(monkeypatch, text: str, amp: str, native: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_info", lambda: parse_cpuinfo(text))
    cpu = torch.device("cpu")
    if native:
        assert isinstance(runtime.autocast_context(cpu, amp), torch.autocast)
        assert runtime.effective_amp(cpu, amp) == amp
    else:
        with pytest.warns(RuntimeWarning, match=f"{amp} is not native on this CPU"):
            assert isinstance(runtime.autocast_context(cpu, amp), contextlib.nullcontext)
        assert runtime.effective_amp(cpu, amp) == "off"
    assert runtime.grad_scaler(cpu, amp).is_enabled() == (amp == "fp16" and native)


def test_unknown_amp_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.amp"):
        runtime.autocast_context(torch.device("cpu"), "int8")
    assert isinstance(CPUInfo("x", frozenset(), 1).isa(), dict)
