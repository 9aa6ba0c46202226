"""Per-frame cost of every preprocessor (`fusionseg benchmark preprocess`), judged by same-run ratios.

Each preprocessor runs on two standard frames: a 640x480 Kinect frame (NYU Depth v2 frame 1, raw and
toolbox-filled depth) and a 1242x375 KITTI LiDAR frame (sparse projected depth), both read from the
shared real-data folder when it is given, else synthetic stand-ins of the same size and sparsity.
CPU timings are single-process and single-thread (`cv2.setNumThreads(1)`, `torch.set_num_threads(1)`);
GPU timings synchronise the device and include the host<->device copies. Every case is warmed up first.

Milliseconds depend on the machine, so the report judges each case by ratios measured in the same run
(issue 18), never by absolute floors:

* `memory_passes`: the median time in units of one pass over the frame at the machine's measured
  copy bandwidth (reading and writing one float32 (H, W) plane, `machine.memory_bandwidth_gbs`): what
  a per-pixel operation costs relative to the least it could cost;
* `vs_baseline`: for a case with a reference implementation of the same algorithm kept in
  `benchmarks/` (HHA: `benchmarks/hha_before.py`, the encoder before issue 18), the median of the
  paired time ratios case / baseline, the two run alternately (ABBA) so that load changes hit both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.benchmark.machine import gemm_peak_gflops, machine_info, memory_bandwidth_gbs
from fusionseg.errors import ConfigError
from fusionseg.modalities.intrinsics import Intrinsics

# the reference implementations kept beside the package in a checkout (not installed with it)
BASELINE_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
KINECT_SIZE = (640, 480)  # (W, H)
KITTI_SIZE = (1242, 375)
# NYU colour camera, MATLAB 1-based (nyuv2-hha-ref/README.md)
NYU_INTRINSICS_ONE_BASED = (518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465)
# KITTI object 000000 P2 (a typical left colour camera), used for synthetic KITTI-size frames
KITTI_INTRINSICS = (707.0493, 707.0493, 604.0814, 180.5066)


@dataclass(frozen=True)
class BenchFrame:
    """One benchmark input.

    Attributes:
        name: Short label, e.g. "kinect" or "kitti".
        source: Where the data came from (file paths or "synthetic").
        raw_m: (H, W) float32 metres, 0 = missing: input of the completion functions.
        dense_m: (H, W) float32 metres: input of HHA, JET and normals (completed depth).
        intrinsics: Camera intrinsics, 0-based.
        bgr: (H, W, 3) uint8 colour image.
        nir: (H, W) uint8 NIR stand-in (the colour image's grey level: no NIR camera in these sets).
        jet_max_depth_m: JET range for this kind of scene.
    """

    name: str
    source: str
    raw_m: np.ndarray
    dense_m: np.ndarray
    intrinsics: Intrinsics
    bgr: np.ndarray
    nir: np.ndarray
    jet_max_depth_m: float

    @property
    def size(self) -> str:
        """ "WxH"."""
        return f"{self.raw_m.shape[1]}x{self.raw_m.shape[0]}"


@dataclass
class Timing:
    """Milliseconds per frame of one case on one frame."""

    case: str
    frame: str
    size: str
    device: str
    runs: int
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    memory_passes: float | None = None  # median time / one float32 (H, W) read+write at the bandwidth
    baseline: str = ""  # the reference implementation timed alternately with this case
    baseline_median_ms: float | None = None
    vs_baseline: float | None = None  # median of paired ratios case / baseline (< 1: faster)
    skipped: str = ""  # reason when the case could not run


@dataclass
class BenchmarkReport:
    """Machine description, settings and timings."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    frames: list[dict[str, str]]
    timings: list[Timing] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "machine": self.machine,
            "settings": self.settings,
            "frames": self.frames,
            "timings": [asdict(t) for t in self.timings],
        }

    def to_markdown(self) -> str:
        """A Markdown table of the timings and ratios (what goes into benchmarks/RESULTS.md)."""
        lines = [
            "| case | frame | device | median ms | p90 ms | memory passes | vs baseline |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for t in self.timings:
            if t.skipped:
                lines.append(
                    f"| {t.case} | {t.frame} {t.size} | {t.device} | - | - | - | skipped: {t.skipped} |"
                )
                continue
            passes = f"{t.memory_passes:.0f}" if t.memory_passes is not None else ""
            lines.append(
                f"| {t.case} | {t.frame} {t.size} | {t.device} | {t.median_ms:.2f} | {t.p90_ms:.2f} "
                f"| {passes} | {_vs_baseline_text(t)} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the report atomically: Markdown if `path` ends in .md, else JSON; returns the path."""
        import json

        from fusionseg.fsutil import atomic_write_text

        path = Path(path)
        text = self.to_markdown() if path.suffix == ".md" else json.dumps(self.to_dict(), indent=2) + "\n"
        return atomic_write_text(path, text)


def _vs_baseline_text(t: Timing) -> str:
    """ "0.37 of hha[before] (2.70x faster)" or ""."""
    if t.vs_baseline is None:
        return ""
    return f"{t.vs_baseline:.2f} of {t.baseline} ({1 / t.vs_baseline:.2f}x faster)"


# ----------------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------------


def _synthetic_scene(width: int, height: int, intr: Intrinsics, camera_height_m: float) -> np.ndarray:
    """(H, W) float32 metres: a floor plane `camera_height_m` below the camera and a wall at 6 m."""
    v = np.arange(height, dtype=np.float64)[:, None] - intr.cy  # rows below the principal point
    with np.errstate(divide="ignore"):
        floor = np.where(v > 0, camera_height_m * intr.fy / np.maximum(v, 1e-9), np.inf)
    u = np.arange(width, dtype=np.float64)[None, :]
    wall = 6.0 + 2.0 * (u / max(width - 1, 1))  # slanted back wall, 6-8 m
    return np.minimum(floor, wall).astype(np.float32)


def synthetic_frames(width: int, height: int, *, seed: int = 0) -> list[BenchFrame]:
    """A Kinect-like frame (25 % holes) and a LiDAR-like frame (~4 % of pixels) of one size.

    Args:
        width: Frame width in pixels.
        height: Frame height in pixels.
        seed: Seed of the hole pattern and the colour noise.
    """
    if width < 8 or height < 8:
        raise ConfigError(f"sizes: frames must be at least 8x8 pixels, got {width}x{height}")
    rng = np.random.default_rng(seed)
    bgr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    nir = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    frames = []
    for name, intr_vals, cam_h, keep, jet_max in (
        ("kinect", NYU_INTRINSICS_ONE_BASED, 1.3, 0.75, 7.0),
        ("kitti", KITTI_INTRINSICS, 1.65, 0.04, 80.0),
    ):
        fx, fy = intr_vals[0], intr_vals[1]
        # keep the principal point at the same relative place for any size
        ref_w, ref_h = KINECT_SIZE if name == "kinect" else KITTI_SIZE
        intr = Intrinsics(
            fx * width / ref_w,
            fy * height / ref_h,
            intr_vals[2] * width / ref_w,
            intr_vals[3] * height / ref_h,
        )
        dense = _synthetic_scene(width, height, intr, cam_h)
        raw = np.where(rng.random((height, width)) < keep, dense, np.float32(0.0)).astype(np.float32)
        frames.append(BenchFrame(f"{name}-synthetic", "synthetic", raw, dense, intr, bgr, nir, jet_max))
    return frames


def real_frames(data_dir: Path) -> list[BenchFrame]:
    """The NYU frame 1 (640x480) and the first 1242x375 KITTI frame from the shared data folder.

    Missing pieces fall back to synthetic frames of the same size.
    """
    import cv2

    from fusionseg.data.io import read_depth, read_image
    from fusionseg.data.prepare import read_intrinsics_file
    from fusionseg.modalities.completion import fill_in_fast

    fallback_kinect = synthetic_frames(*KINECT_SIZE)[0]
    fallback_kitti = synthetic_frames(*KITTI_SIZE)[1]
    frames = []
    nyu = data_dir / "nyuv2-hha-ref" / "full480x640" / "nyu0001"
    if (nyu / "depth_raw_1e-4m.png").is_file() and (nyu / "depth_filled_1e-4m.png").is_file():
        bgr = read_image(nyu / "rgb.png") if (nyu / "rgb.png").is_file() else fallback_kinect.bgr
        frames.append(
            BenchFrame(
                "kinect-nyu0001",
                str(nyu),
                read_depth(nyu / "depth_raw_1e-4m.png", depth_scale_m="1e-4m"),
                read_depth(nyu / "depth_filled_1e-4m.png", depth_scale_m="1e-4m"),
                Intrinsics.from_one_based(*NYU_INTRINSICS_ONE_BASED),
                bgr,
                cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
                7.0,
            )
        )
    else:
        frames.append(fallback_kinect)
    kitti = data_dir / "kitti-object-lidar3"
    chosen = None
    for depth_file in sorted((kitti / "sparse_depth").glob("*.png")):
        raw = read_depth(depth_file, depth_scale_m="kitti")
        if raw.shape == (KITTI_SIZE[1], KITTI_SIZE[0]):
            chosen = (depth_file, raw)
            break
    if chosen is not None:
        depth_file, raw = chosen
        image_file = kitti / "image_2" / depth_file.name
        calib_file = kitti / "calib" / f"{depth_file.stem}.txt"
        bgr = read_image(image_file) if image_file.is_file() else fallback_kitti.bgr
        intr = read_intrinsics_file(calib_file) if calib_file.is_file() else Intrinsics(*KITTI_INTRINSICS)
        dense = fill_in_fast(raw, extrapolate=True, blur_type="gaussian")
        dense = np.where(dense > 0.1, dense, np.float32(0.0)).astype(np.float32)
        frames.append(
            BenchFrame(
                f"kitti-{depth_file.stem}",
                str(depth_file),
                raw,
                dense,
                intr,
                bgr,
                cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
                80.0,
            )
        )
    else:
        frames.append(fallback_kitti)
    return frames


# ----------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    name: str
    device: str
    make: Callable[[BenchFrame], Callable[[], Any]]  # frame -> zero-argument timed call
    baseline: tuple[str, Callable[[BenchFrame], Callable[[], Any]]] | None = None  # timed alternately


def _completion_cases() -> list[_Case]:
    def make(fn_name: str, blur: str) -> Callable[[BenchFrame], Callable[[], Any]]:
        def build(frame: BenchFrame) -> Callable[[], Any]:
            from fusionseg.modalities import completion

            fn = getattr(completion, fn_name)
            return lambda: fn(frame.raw_m, max_depth=100.0, extrapolate=False, blur_type=blur)

        return build

    return [
        _Case(f"{fn}[{blur}]", "cpu", make(fn, blur))
        for fn in ("fill_in_fast", "fill_in_multiscale")
        for blur in ("bilateral", "gaussian")
    ]


def _jet(frame: BenchFrame) -> Callable[[], Any]:
    from fusionseg.modalities.jet import depth_to_jet

    return lambda: depth_to_jet(frame.dense_m, max_depth_m=frame.jet_max_depth_m)


def _hha_numpy(frame: BenchFrame) -> Callable[[], Any]:
    from fusionseg.modalities.hha import hha

    return lambda: hha(frame.dense_m, frame.intrinsics, raw_depth_m=frame.raw_m)


def load_baseline(file_name: str, function: str) -> Callable[..., Any]:
    """A function of a reference implementation in the checkout's benchmarks/ folder.

    Raises:
        ImportError: benchmarks/ is not there (an installed package has no checkout beside it).
    """
    import importlib.util

    path = BASELINE_DIR / file_name
    spec = importlib.util.spec_from_file_location(f"fusionseg_baseline_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"{path} is missing: the baselines live in a fusionseg checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def _hha_before(frame: BenchFrame) -> Callable[[], Any]:
    hha_before = load_baseline("hha_before.py", "hha_before")
    return lambda: hha_before(frame.dense_m, frame.intrinsics, raw_depth_m=frame.raw_m)


def _hha_torch(device: str, batch: int = 1) -> Callable[[BenchFrame], Callable[[], Any]]:
    def build(frame: BenchFrame) -> Callable[[], Any]:
        import torch

        from fusionseg.modalities.hha_torch import hha_torch

        dev = torch.device(device)
        dense = np.repeat(frame.dense_m[None], batch, axis=0)  # (B, H, W)
        raw = np.repeat(frame.raw_m[None], batch, axis=0)
        intr = [frame.intrinsics] * batch

        def call() -> Any:
            # host -> device -> host included: what a preparation job pays per frame
            out = hha_torch(
                torch.from_numpy(dense).to(dev), intr, raw_depth_m=torch.from_numpy(raw).to(dev), device=dev
            )
            result = out.cpu()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            return result

        return call

    return build


def _normals(frame: BenchFrame) -> Callable[[], Any]:
    from fusionseg.modalities.normals import compute_normals, normals_to_uint8

    return lambda: normals_to_uint8(compute_normals(frame.dense_m, frame.intrinsics, radius_px=3))


def _evi(index: str) -> Callable[[BenchFrame], Callable[[], Any]]:
    def build(frame: BenchFrame) -> Callable[[], Any]:
        from fusionseg.modalities import evi

        fn = evi.encode_evi if index == "evi" else evi.encode_ndvi
        return lambda: fn(frame.nir, frame.bgr)

    return build


def cases(*, cuda: bool) -> list[_Case]:
    """Every benchmark case; the cuda ones only when `cuda`."""
    out = _completion_cases()
    out += [
        _Case("jet", "cpu", _jet),
        _Case("hha[numpy]", "cpu", _hha_numpy, baseline=("hha[before]", _hha_before)),
        _Case("hha[torch]", "cpu", _hha_torch("cpu")),
        _Case("normals", "cpu", _normals),
        _Case("evi", "cpu", _evi("evi")),
        _Case("ndvi", "cpu", _evi("ndvi")),
    ]
    if cuda:
        out += [
            _Case("hha[torch]", "cuda", _hha_torch("cuda")),
            _Case("hha[torch,batch8]", "cuda", _hha_torch("cuda", batch=8)),
        ]
    return out


# ----------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def time_call(fn: Callable[[], Any], *, repeat: int, warmup: int) -> list[float]:
    """Milliseconds of `repeat` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run_preprocess_benchmark(
    *,
    repeat: int = 20,
    warmup: int = 2,
    device: str = "auto",
    data_dir: str | Path | None = None,
    sizes: Sequence[tuple[int, int]] = (),
    only: Sequence[str] = (),
    on_timing: Callable[[Timing], None] | None = None,
) -> BenchmarkReport:
    """Time every preprocessor per frame.

    Args:
        repeat: Timed runs per case (after warm-up).
        warmup: Untimed runs per case first.
        device: "cpu" (CPU cases only), "cuda" (also GPU cases; error without CUDA) or "auto" (GPU
            cases when CUDA is available).
        data_dir: The shared real-data folder (NYU and KITTI frames); None or absent: synthetic
            frames of the standard sizes.
        sizes: (W, H) sizes of synthetic frames to use instead of the standard frames.
        only: Run only cases whose name contains one of these strings.
        on_timing: Called after each case (progress display).

    Returns:
        The report; cases whose module is missing or that fail are listed as skipped with the reason.

    Raises:
        ConfigError: bad `repeat`/`warmup`/`device`, or "cuda" without CUDA.
    """
    import cv2
    import torch

    if repeat < 1 or warmup < 0:
        raise ConfigError(f"repeat must be >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device: {device!r} is not one of auto, cpu, cuda")
    cuda_available = torch.cuda.is_available()
    if device == "cuda" and not cuda_available:
        raise ConfigError(
            f"device: 'cuda' asked for, but CUDA is not available to torch {torch.__version__} on this "
            "machine; use `device` cpu"
        )
    use_cuda = cuda_available and device != "cpu"

    frames = _benchmark_frames(sizes, data_dir)
    report = BenchmarkReport(
        machine=machine_info(cuda=use_cuda),
        settings={
            "repeat": repeat,
            "warmup": warmup,
            "device": device,
            "cpu_threads": 1,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        frames=[{"name": f.name, "size": f.size, "source": f.source} for f in frames],
    )
    selected = [c for c in cases(cuda=use_cuda) if not only or any(s in c.name for s in only)]
    old_cv2, old_torch = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)  # single-thread CPU figures
    torch.set_num_threads(1)
    report.machine.update(opencv_threads=1, torch_threads=1)  # what the timed calls run with
    try:
        bandwidth = memory_bandwidth_gbs()
        report.machine["memory_bandwidth_gbs"] = bandwidth
        report.machine["gemm_peak_gflops_1thread"] = gemm_peak_gflops(threads=1)
        for case in selected:
            for frame in frames:
                timing = _run_case(case, frame, repeat=repeat, warmup=warmup, bandwidth_gbs=bandwidth)
                report.timings.append(timing)
                if on_timing is not None:
                    on_timing(timing)
    finally:
        cv2.setNumThreads(old_cv2)
        torch.set_num_threads(old_torch)
    if hasattr(os, "getloadavg"):
        report.machine["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    return report


def _benchmark_frames(sizes: Sequence[tuple[int, int]], data_dir: str | Path | None) -> list[BenchFrame]:
    """Synthetic frames of `sizes`, else the real standard frames of `data_dir`, else synthetic ones."""
    if sizes:
        return [f for w, h in sizes for f in synthetic_frames(w, h)]
    if data_dir is not None and Path(data_dir).is_dir():
        return real_frames(Path(data_dir))
    return synthetic_frames(*KINECT_SIZE)[:1] + synthetic_frames(*KITTI_SIZE)[1:]


def _run_case(case: _Case, frame: BenchFrame, *, repeat: int, warmup: int, bandwidth_gbs: float) -> Timing:
    timing = Timing(case.name, frame.name, frame.size, case.device, runs=repeat)
    try:
        call = case.make(frame)
        if case.baseline is None:
            times = time_call(call, repeat=repeat, warmup=warmup)
        else:
            timing.baseline = case.baseline[0]
            base_times, times = time_pair(case.baseline[1](frame), call, repeat=repeat, warmup=warmup)
            timing.baseline_median_ms = _percentile(base_times, 50)
            timing.vs_baseline = float(np.median(np.asarray(times) / np.asarray(base_times)))
    except ImportError as exc:
        timing.skipped = f"not available ({exc})"
        timing.runs = 0
        return timing
    except Exception as exc:  # noqa: BLE001 - one failing case must not hide the others
        timing.skipped = f"{type(exc).__name__}: {exc}"
        timing.runs = 0
        return timing
    timing.median_ms = _percentile(times, 50)
    timing.p90_ms = _percentile(times, 90)
    timing.min_ms = min(times)
    plane_bytes = 2 * 4 * frame.raw_m.size  # read + write of one float32 (H, W) plane
    timing.memory_passes = timing.median_ms / 1e3 * bandwidth_gbs * 1e9 / plane_bytes
    return timing


def time_pair(
    a: Callable[[], Any], b: Callable[[], Any], *, repeat: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of `repeat` calls of each of `a` and `b`, alternating ABBA (after warm-ups of both),
    so that a change of machine load between calls affects both alike."""
    for _ in range(warmup):
        a()
        b()
    times_a, times_b = [], []
    for i in range(repeat):
        order = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, sink in order:
            start = time.perf_counter()
            fn()
            sink.append((time.perf_counter() - start) * 1e3)
    return times_a, times_b
