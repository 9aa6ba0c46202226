"""Peak memory growth of a block of work on one device (used by `fusionseg benchmark model`).

CUDA: `torch.cuda.max_memory_allocated` minus what was allocated before. CPU: growth of the process's
resident set: Linux's peak-RSS counter (VmHWM) reset through /proc/self/clear_refs, else RSS sampled
every millisecond with psutil.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from pathlib import Path

import torch


class PeakMemory:
    """Peak memory growth of a block of work on one device (see the module docstring).

    On the CPU this is growth of the resident set: memory that earlier work in the same process freed
    but the allocator kept resident can be reused without counting, so measure in a fresh process (as
    `fusionseg benchmark model` does) for honest figures.

    Usage: `meter.start()`, run the work, `meter.stop()` -> bytes of growth (or None).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self._base = 0
        self._peak = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def _status_kib(key: str) -> int | None:
        try:
            text = Path("/proc/self/status").read_text()
        except OSError:
            return None
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _reset_hwm(self) -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak-RSS counter
        except OSError:
            return False
        return self._status_kib("VmHWM") is not None

    def start(self) -> None:
        """Record the baseline and start tracking the peak."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "CUDA max_memory_allocated"
            return
        rss = self._status_kib("VmRSS")
        if rss is not None and self._reset_hwm():
            self._base = rss * 1024
            self.method = "CPU peak RSS (VmHWM reset via clear_refs)"
            return
        try:
            import psutil
        except ImportError:
            self.method = ""
            return
        process = psutil.Process()
        self._base = self._peak = process.memory_info().rss
        self._stop.clear()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, process.memory_info().rss)
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        self.method = "CPU peak RSS (psutil, sampled every 1 ms)"

    def stop(self) -> int | None:
        """Bytes of peak growth since `start` (None when no method is available)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return max(0, torch.cuda.max_memory_allocated(self.device) - self._base)
        if self.method.startswith("CPU peak RSS (VmHWM"):
            hwm = self._status_kib("VmHWM")
            return None if hwm is None else max(0, hwm * 1024 - self._base)
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            return max(0, self._peak - self._base)
        return None
