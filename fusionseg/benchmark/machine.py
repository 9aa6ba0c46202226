"""The machine a benchmark ran on, and its measured limits (issue 18: figures that mean the same anywhere).

Every benchmark report records the CPU model and ISA flags (`fusionseg.engine.cpu`), thread counts
and library versions, and measures in the same run what this machine can do at most:

* `gemm_peak_gflops`: fp32 matrix-multiply throughput with the run's thread count, the best of
  `torch.mm` on square matrices large enough to saturate the cores and of two convolutions through
  oneDNN (`fp32_peaks_gflops`; on an AMD CPU MKL's sgemm reached half of what oneDNN's convolutions
  did): model throughput is reported as a fraction of it;
* `memory_bandwidth_gbs`: the rate of a large array copy (read + write bytes per second, one thread):
  per-pixel preprocessing is reported in units of one pass over the frame at this rate.

Both are the best of a few repetitions (a peak, not a typical value), so a busy neighbour lowers
them less than it lowers the timed work; the report says how loaded the machine was.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np

from fusionseg import __version__
from fusionseg.engine.cpu import cpu_info

GEMM_SIZE = 1536  # n of the n x n fp32 product: 7 GFLOP, ~0.2 s on one modern core
MEMORY_COPY_MB = 64  # bytes copied per repetition: far above any cache


def machine_info(*, cuda: bool = False) -> dict[str, Any]:
    """CPU model and ISA flags, cores, thread settings, load, library versions and GPU name."""
    import cv2
    import torch

    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu": cpu.model,
        "isa": cpu.isa(),
        "native_autocast": {amp: cpu.native_autocast(amp) for amp in ("bf16", "fp16")},
        "cores": cpu.logical_cores,
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_1min_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "numba": _version("numba"),
        "fusionseg": __version__,
    }
    if cuda:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def isa_text(machine: dict[str, Any]) -> str:
    """The ISA flags present, space-separated, from a `machine_info` dict."""
    return " ".join(flag for flag, on in machine.get("isa", {}).items() if on) or "no listed ISA flags"


def peak_text(machine: dict[str, Any]) -> str:
    """ "227.3 GFLOP/s", or why there is no figure."""
    peak = machine.get("gemm_peak_gflops")
    return f"{peak:.1f} GFLOP/s" if peak else "not measured (GPU run)"


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def fp32_peaks_gflops(*, threads: int | None = None, repeat: int = 3) -> dict[str, float]:
    """Best fp32 throughput of three matrix-multiply kernels torch runs, GFLOP/s (2 per multiply-add).

    `mm`: `torch.mm` of two (1536, 1536) matrices (the BLAS torch was built with); `conv1x1`: a 1x1
    convolution 1024 -> 1024 channels on 64x64 (a GEMM through oneDNN); `conv3x3`: a 3x3 convolution
    256 -> 256 channels on 96x96, the layer type of the ResNet backbones. They differ by machine: a
    BLAS may take a slow code path on some CPUs (MKL on AMD), so the peak is the best of the three.

    Args:
        threads: torch CPU threads during the measurement (None: the current setting); restored after.
        repeat: Timed runs per kernel after one warm-up.
    """
    import torch
    from torch.nn import functional

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    n = GEMM_SIZE
    a, b, out = torch.rand(n, n, generator=gen), torch.rand(n, n, generator=gen), torch.empty(n, n)
    x1, w1 = torch.rand(1, 1024, 64, 64, generator=gen), torch.rand(1024, 1024, 1, 1, generator=gen)
    x3, w3 = torch.rand(1, 256, 96, 96, generator=gen), torch.rand(256, 256, 3, 3, generator=gen)
    kernels = {
        "mm": (lambda: torch.mm(a, b, out=out), 2.0 * n**3),
        "conv1x1": (lambda: functional.conv2d(x1, w1), 2.0 * 1024 * 1024 * 64 * 64),
        "conv3x3": (lambda: functional.conv2d(x3, w3, padding=1), 2.0 * 256 * 256 * 9 * 96 * 96),
    }
    peaks = {}
    try:
        with torch.inference_mode():
            for name, (fn, flops) in kernels.items():
                fn()  # warm-up: threads, packing buffers, kernel selection
                peaks[name] = flops / min(_seconds(fn) for _ in range(repeat)) / 1e9
    finally:
        torch.set_num_threads(previous)
    return peaks


def gemm_peak_gflops(*, threads: int | None = None, repeat: int = 3) -> float:
    """The machine's fp32 matrix-multiply peak as torch reaches it: the best of `fp32_peaks_gflops`."""
    return max(fp32_peaks_gflops(threads=threads, repeat=repeat).values())


def memory_bandwidth_gbs(*, megabytes: int = MEMORY_COPY_MB, repeat: int = 5) -> float:
    """Best single-thread copy rate of a `megabytes` array, GB/s of bytes read plus bytes written."""
    src = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm-up: page faults
    best = min(_seconds(lambda: np.copyto(dst, src)) for _ in range(repeat))
    return 2.0 * src.nbytes / best / 1e9


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
