"""Speed and memory of the segmentation models (`fusionseg benchmark model`).

Inference mode times one forward pass of a batch (eval mode, `torch.inference_mode`); train mode times
one optimiser step (forward, loss, backward, Adam step) on random labels. Each model is warmed up first;
the timed runs of all models in a comparison are interleaved round by round, so a change of machine
load (a shared CPU) affects every model alike. On CUDA each run is timed with CUDA events on the current
stream; on the CPU with `time.perf_counter`.

Memory:
- CUDA: `torch.cuda.max_memory_allocated` during the model's warm-up runs minus what was allocated
  before them (activations, workspaces and, in train mode, gradients and optimiser state), plus the
  model's own weights.
- CPU: the growth of the process's resident set during the warm-up runs: Linux's peak-RSS counter
  (VmHWM) reset through /proc/self/clear_refs before the runs, else RSS sampled every millisecond with
  psutil; plus the weights. Approximate: it includes allocator caching and any memory the runtime keeps.

Peers (`compare=True`): torchvision's deeplabv3_resnet50 and fcn_resnet50 (weights=None, no aux head,
the same number of classes), and segmentation_models_pytorch's DeepLabV3+ / U-Net with a ResNet-50
encoder when that package is installed. timm has no segmentation heads, so it provides no peer.

The issue-8 floor: AdapNet++ inference at 384x768, batch 1, must be faster than deeplabv3_resnet50 on the
same device in the same run (`ModelBenchmarkReport.floor`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from fusionseg.benchmark.machine import fp32_peaks_gflops, isa_text, peak_text
from fusionseg.benchmark.memory import PeakMemory
from fusionseg.config import config_from_dict
from fusionseg.errors import ConfigError

Mode = Literal["inference", "train"]
FLOOR_PEER = "deeplabv3_resnet50"
FLOOR_SIZE_HW = (384, 768)


# ---------------------------------------------------------------------------------------------------
# Models under test
# ---------------------------------------------------------------------------------------------------


@dataclass
class BenchModel:
    """A model ready to run: how to make its inputs, read its logits and compute its training loss.

    Attributes:
        name: Report name, e.g. "adapnetpp" or "deeplabv3_resnet50".
        source: "fusionseg", "torchvision" or "segmentation_models_pytorch".
        module: The network.
        make_inputs: (batch, height_px, width_px) -> the model's argument: the `{modality: tensor}`
            mapping of every fusionseg model (`fusionseg.registry.example_inputs`), a tensor for peers.
        loss: (model output, (B, H, W) int64 labels) -> scalar training loss.
        logits: model output -> (B, C, H, W) logits (for checks).
    """

    name: str
    source: str
    module: nn.Module
    make_inputs: Callable[[int, int, int], Any]
    loss: Callable[[Any, Tensor], Tensor]
    logits: Callable[[Any], Tensor]


def _images(channels: int) -> Callable[[int, int, int], Tensor]:
    def make(batch: int, height_px: int, width_px: int) -> Tensor:
        gen = torch.Generator().manual_seed(0)
        return torch.rand(batch, channels, height_px, width_px, generator=gen) * 255.0  # (B, C, H, W)

    return make


def _peer_loss(output: Any, label: Tensor) -> Tensor:
    logits = output["out"] if isinstance(output, Mapping) else output
    return nn.functional.cross_entropy(logits.float(), label)


def build_fusionseg_model(name: str, num_classes: int) -> BenchModel:
    """A registered model kind (`fusionseg.registry`) over its example modalities, set up as it trains
    (fused kinds with frozen experts, §A.5; aux heads active in train mode)."""
    from fusionseg import registry
    from fusionseg.engine.losses import SegmentationLoss

    cfg = config_from_dict({"model": {"num_classes": num_classes}})
    channels = registry.example_channels(name, cfg)
    model = registry.prepare_for_training(registry.build_model(name, cfg, channels), cfg)
    criterion = SegmentationLoss(getattr(model, "aux_weights", cfg.fusion.aux_weights))
    return BenchModel(
        name,
        "fusionseg",
        model,
        lambda b, h, w: registry.example_inputs(channels, b, h, w),
        lambda output, label: criterion(output, label).total,
        lambda out: out.logits,
    )


def _torchvision(name: str) -> Callable[[int], BenchModel]:
    def build(num_classes: int) -> BenchModel:
        from torchvision.models import segmentation

        net = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=num_classes)
        return BenchModel(name, "torchvision", net, _images(3), _peer_loss, lambda out: out["out"])

    return build


def _smp(arch: str, name: str) -> Callable[[int], BenchModel]:
    def build(num_classes: int) -> BenchModel:
        import segmentation_models_pytorch as smp

        net = getattr(smp, arch)(encoder_name="resnet50", encoder_weights=None, classes=num_classes)
        return BenchModel(name, "segmentation_models_pytorch", net, _images(3), _peer_loss, lambda out: out)

    return build


def peer_builders() -> dict[str, Callable[[int], BenchModel]]:
    """The comparison models available in this environment (torchvision always; smp if installed)."""
    peers = {name: _torchvision(name) for name in ("deeplabv3_resnet50", "fcn_resnet50")}
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError:
        return peers
    peers["smp_deeplabv3plus_resnet50"] = _smp("DeepLabV3Plus", "smp_deeplabv3plus_resnet50")
    peers["smp_unet_resnet50"] = _smp("Unet", "smp_unet_resnet50")
    return peers


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


@dataclass
class ModelTiming:
    """Measurements of one model.

    Attributes:
        name / source: The model and where it comes from.
        params: Parameter elements; trainable: of those, elements that train (train mode).
        gflops: Forward FLOPs / 1e9 of one batch in eval mode (`FlopCounterMode`: convs and matmuls,
            1 multiply-add = 2 FLOPs).
        step_gflops: FLOPs / 1e9 of one timed run: the forward pass (inference) or the whole
            optimiser step, forward and backward (train mode, counted the same way).
        gflops_per_s: step_gflops / median seconds: the throughput reached.
        of_peak: gflops_per_s / the fp32 GEMM peak measured in the same run with the same threads
            (`machine.gemm_peak_gflops`; CPU runs only): how close to what this machine can do.
        runs: Timed runs.
        median_ms / p90_ms / mean_ms / min_ms: Milliseconds per batch (per optimiser step in train mode).
        fps: Images per second at the median (batch * 1000 / median_ms).
        weights_mb: Parameter and buffer bytes / 2^20.
        peak_delta_mb: Memory growth during the runs (see module docstring), None where unmeasured.
        peak_mem_mb: weights_mb + peak_delta_mb.
        mem_method: How memory was measured.
        skipped: Why the model could not run ("" when it ran).
    """

    name: str
    source: str
    params: int = 0
    trainable: int = 0
    gflops: float | None = None
    step_gflops: float | None = None
    gflops_per_s: float | None = None
    of_peak: float | None = None
    runs: int = 0
    median_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    fps: float | None = None
    weights_mb: float | None = None
    peak_delta_mb: float | None = None
    peak_mem_mb: float | None = None
    mem_method: str = ""
    skipped: str = ""


@dataclass
class ModelBenchmarkReport:
    """Machine, settings and per-model measurements; the first result is the model under test."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    command: str
    results: list[ModelTiming] = field(default_factory=list)

    def ratios(self) -> dict[str, float]:
        """Peer name -> peer median / our median (> 1: ours is faster)."""
        ours = self.results[0].median_ms if self.results else None
        if not ours:
            return {}
        return {r.name: r.median_ms / ours for r in self.results[1:] if r.median_ms}

    def floor(self) -> dict[str, Any] | None:
        """The issue-8 floor (AdapNet++ inference faster than deeplabv3_resnet50 at 384x768, batch 1),
        evaluated when this run measured that case; None otherwise."""
        s = self.settings
        applies = (
            s["model"] == "adapnetpp"
            and s["mode"] == "inference"
            and tuple(s["size_hw"]) == FLOOR_SIZE_HW
            and s["batch"] == 1
        )
        ratio = self.ratios().get(FLOOR_PEER)
        if not applies or ratio is None:
            return None
        return {
            "rule": f"adapnetpp faster than {FLOOR_PEER} at 384x768, batch 1, same device and run",
            "speedup": ratio,
            "passed": ratio > 1.0,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "machine": self.machine,
            "settings": self.settings,
            "command": self.command,
            "results": [asdict(r) for r in self.results],
            "ratios": self.ratios(),
            "floor": self.floor(),
        }

    def to_markdown(self) -> str:
        """A section for benchmarks/RESULTS.md: heading, command, machine, table, floor."""
        s, m = self.settings, self.machine
        device = s["device"] + (f" ({m['gpu']})" if m.get("gpu") else "")
        lines = [
            f"### Model benchmark: {s['model']}, {s['mode']}, {s['size_hw'][0]}x{s['size_hw'][1]}, "
            f"batch {s['batch']}, {s['device']} ({s['date']})",
            "",
            f"Command: `{self.command}`",
            "",
            f"Machine: {m.get('cpu')} ({isa_text(m)}), {m.get('cores')} cores, torch {m.get('torch')} with "
            f"{s['threads']} thread(s), device {device}, load average {m.get('loadavg_1min_start')} at "
            f"start; fp32 GEMM peak measured in the run: {peak_text(m)}. Settings: amp {s['amp']} "
            f"(in effect: {s.get('amp_effective', s['amp'])}), channels_last {s['channels_last']}, "
            f"compile {s['compile']}, {s['warmup']} warm-up + {s['repeat']} timed runs per model "
            f"(interleaved), {s['num_classes']} classes.",
            "",
            "| model | source | params (M) | GFLOP / run | median ms | p90 ms | fps | GFLOP/s | of peak | "
            "peak mem MB | time / first |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ours = self.results[0].median_ms if self.results else None
        for r in self.results:
            if r.skipped:
                lines.append(f"| {r.name} | {r.source} | | | | | | | | | skipped: {r.skipped} |")
                continue
            rel = f"{r.median_ms / ours:.2f}x" if ours and r.median_ms else ""
            work = f"{r.step_gflops:.1f}" if r.step_gflops is not None else ""
            rate = f"{r.gflops_per_s:.1f}" if r.gflops_per_s is not None else ""
            share = f"{100 * r.of_peak:.0f} %" if r.of_peak is not None else ""
            mem = f"{r.peak_mem_mb:.0f}" if r.peak_mem_mb is not None else ""
            lines.append(
                f"| {r.name} | {r.source} | {r.params / 1e6:.2f} | {work} | {r.median_ms:.1f} | "
                f"{r.p90_ms:.1f} | {r.fps:.2f} | {rate} | {share} | {mem} | {rel} |"
            )
        lines.append("")
        methods = sorted({r.mem_method for r in self.results if r.mem_method})
        if methods:
            lines.append(f"Peak memory = weights + growth during the runs ({'; '.join(methods)}).")
        floor = self.floor()
        if floor is not None:
            verdict = "passed" if floor["passed"] else "**failed**"
            lines.append(f"Floor ({floor['rule']}): {verdict}, speed-up x{floor['speedup']:.2f}.")
        return "\n".join(lines) + "\n"

    def append_markdown(self, path: str | Path) -> Path:
        """Append `to_markdown()` to a file (atomically; earlier sections are kept); returns the path."""
        from fusionseg.fsutil import atomic_write_text

        path = Path(path)
        old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
        sep = "" if old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        return atomic_write_text(path, old + sep + self.to_markdown())


# ---------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------


def _forward_gflops(module: nn.Module, inputs: Any) -> float | None:
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(inputs)
        return counter.get_total_flops() / 1e9
    except Exception:  # noqa: BLE001 - a model the counter cannot trace just gets no figure
        return None
    finally:
        module.train(was_training)


def _step_gflops(runner: _Runner) -> float | None:
    """GFLOPs of one run of `runner` (forward, loss, backward; not the optimiser's update), or None."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter:
            runner()
        return counter.get_total_flops() / 1e9
    except Exception:  # noqa: BLE001 - a model the counter cannot trace just gets no figure
        return None


def _to_device(inputs: Any, device: torch.device, channels_last: bool) -> Any:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if isinstance(inputs, Mapping):
        return {k: v.to(device).contiguous(memory_format=fmt) for k, v in inputs.items()}
    return inputs.to(device).contiguous(memory_format=fmt)


class _Runner:
    """One model prepared for timed runs in the benchmark's mode."""

    def __init__(
        self,
        bench: BenchModel,
        *,
        mode: Mode,
        device: torch.device,
        batch: int,
        size_hw: tuple[int, int],
        num_classes: int,
        amp: str,
        channels_last: bool,
        compile: bool,
    ) -> None:
        from fusionseg.engine.runtime import autocast_context

        self.bench = bench
        self.device = device
        self.mode = mode
        self.amp = amp
        self.autocast = lambda: autocast_context(device, amp)
        module = bench.module.to(device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module.train(mode == "train")
        self.inputs = _to_device(bench.make_inputs(batch, *size_hw), device, channels_last)
        gen = torch.Generator().manual_seed(1)
        self.label = torch.randint(0, num_classes, (batch, *size_hw), generator=gen).to(device)  # (B, H, W)
        self.fn: nn.Module = torch.compile(module) if compile else module  # type: ignore[assignment]
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if mode == "train":
            params = [p for p in module.parameters() if p.requires_grad]
            self.optimizer = torch.optim.Adam(params, lr=1e-4)
            self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.type == "cuda")

    def __call__(self) -> None:
        if self.mode == "inference":
            with torch.inference_mode(), self.autocast():
                self.fn(self.inputs)
            return
        assert self.optimizer is not None and self.scaler is not None
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            output = self.fn(self.inputs)
        loss = self.bench.loss(output, self.label)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def timed(self) -> float:
        """Milliseconds of one run (CUDA events on GPU)."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        self()
        return (time.perf_counter() - t0) * 1e3


def _machine(device: torch.device) -> dict[str, Any]:
    from fusionseg.benchmark.machine import machine_info

    return machine_info(cuda=device.type == "cuda")


def run_model_benchmark(
    *,
    model: str = "adapnetpp",
    size_hw: tuple[int, int] = (384, 768),
    batch: int = 1,
    device: str = "auto",
    mode: Mode = "inference",
    warmup: int = 3,
    repeat: int = 10,
    compare: bool = False,
    amp: str = "off",
    channels_last: bool = False,
    compile: bool = False,
    num_classes: int = 12,
    threads: int | None = None,
    command: str = "",
    on_result: Callable[[ModelTiming], None] | None = None,
) -> ModelBenchmarkReport:
    """Time a fusionseg model (and, with `compare`, its peers) and measure its peak memory.

    Args:
        model: A key of `fusionseg.registry.MODEL_KINDS` ("adapnetpp", "ssma", "cmode").
        size_hw: (H, W) of the input in pixels, multiples of 16.
        batch: Images per run.
        device: "auto", "cpu", "cuda" or "cuda:N".
        mode: "inference" (forward pass) or "train" (one optimiser step).
        warmup: Untimed runs per model first (>= 1 with `compile`, which compiles in the first run).
        repeat: Timed runs per model.
        compare: Also run the peers of `peer_builders()` in the same process.
        amp: "off", "bf16" or "fp16" (fp16 needs CUDA).
        channels_last: Run models and inputs in channels-last memory format.
        compile: Wrap each model in `torch.compile`.
        num_classes: C of every model.
        threads: CPU threads for torch (`torch.set_num_threads`); None keeps the current setting.
        command: The command line, recorded in the report.
        on_result: Called with each model's `ModelTiming` once all are measured.

    Returns:
        The `ModelBenchmarkReport` (first result = `model`).

    Raises:
        ConfigError: unknown model or mode, bad size, batch or counts, fp16 without CUDA, CUDA missing.
    """
    from fusionseg.engine.runtime import autocast_context, effective_amp, resolve_device

    _check_arguments(model, mode, size_hw, batch, repeat, warmup, compile, threads)
    dev = resolve_device(device)
    autocast_context(dev, amp)  # validates amp for the device
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    builders: dict[str, Callable[[int], BenchModel]] = {model: lambda c: build_fusionseg_model(model, c)}
    if compare:
        builders.update(peer_builders())
    settings = dict(
        model=model, mode=mode, size_hw=list(size_hw), batch=batch, device=str(dev), amp=amp,
        amp_effective=effective_amp(dev, amp), channels_last=channels_last, compile=compile,
        warmup=warmup, repeat=repeat, num_classes=num_classes, threads=torch.get_num_threads(),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )  # fmt: skip
    report = ModelBenchmarkReport(machine=_machine(dev), settings=settings, command=command)
    run = dict(mode=mode, device=dev, batch=batch, size_hw=tuple(size_hw), num_classes=num_classes, amp=amp)
    run.update(channels_last=channels_last, compile=compile)
    try:
        torch.manual_seed(0)
        runners: dict[str, _Runner] = {}
        for name, build in builders.items():
            timing = ModelTiming(name=name, source="")
            report.results.append(timing)
            runner = _prepare(build, timing, warmup=warmup, required=name == model, **run)
            if runner is not None:
                runners[name] = runner
        if dev.type == "cpu":  # the machine's fp32 peak, same threads, measured beside the models
            peaks = fp32_peaks_gflops(threads=torch.get_num_threads())
            report.machine.update(fp32_peaks_gflops=peaks, gemm_peak_gflops=max(peaks.values()))
        _time_interleaved(runners, report.results, repeat=repeat, batch=batch, on_result=on_result)
        _efficiency(report.results, report.machine.get("gemm_peak_gflops"))
        return report
    finally:
        torch.set_num_threads(previous_threads)  # leave the process as found


def _efficiency(results: Sequence[ModelTiming], peak_gflops: float | None) -> None:
    """Fill each timed result's GFLOP/s and its fraction of the measured fp32 GEMM peak."""
    for r in results:
        if r.median_ms and r.step_gflops:
            r.gflops_per_s = r.step_gflops / (r.median_ms / 1e3)
            r.of_peak = r.gflops_per_s / peak_gflops if peak_gflops else None


def _check_arguments(
    model: str,
    mode: str,
    size_hw: tuple[int, int],
    batch: int,
    repeat: int,
    warmup: int,
    compile: bool,
    threads: int | None,
) -> None:
    """ConfigError naming the parameter for a value `run_model_benchmark` cannot use."""
    from fusionseg.models.adapnet import check_size_multiple
    from fusionseg.registry import model_kind

    model_kind(model)
    if mode not in ("inference", "train"):
        raise ConfigError(f"mode: {mode!r} is not 'inference' or 'train'")
    check_size_multiple(*size_hw, what="size_hw")
    for key, value, low in (("batch", batch, 1), ("repeat", repeat, 1), ("warmup", warmup, 0)):
        if value < low:
            raise ConfigError(f"{key}: must be >= {low}, got {value}")
    if compile and warmup < 1:
        raise ConfigError("warmup: compiled models need at least one warm-up run (it compiles)")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads: must be >= 1, got {threads}")


def _prepare(
    build: Callable[[int], BenchModel],
    timing: ModelTiming,
    *,
    warmup: int,
    required: bool,
    **run: Any,
) -> _Runner | None:
    """Build one model, fill its static figures and run its warm-up (memory is measured there).

    A peer that cannot be built or run is recorded as skipped (None returned); the model under test
    (`required`) raises instead.
    """
    try:
        bench = build(run["num_classes"])
    except Exception as exc:  # noqa: BLE001 - a peer that cannot be built is reported, not fatal
        timing.skipped = _one_line(exc)
        if required:
            raise
        return None
    timing.source = bench.source
    net = bench.module
    timing.params = sum(p.numel() for p in net.parameters())
    timing.trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    weight_bytes = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    timing.weights_mb = weight_bytes / 2**20
    timing.gflops = _forward_gflops(net, bench.make_inputs(run["batch"], *run["size_hw"]))
    runner = _Runner(bench, **run)
    timing.step_gflops = timing.gflops if run["mode"] == "inference" else _step_gflops(runner)
    meter = PeakMemory(run["device"])
    meter.start()
    try:
        for _ in range(max(1, warmup)):  # at least one untimed run: memory is measured here
            runner()
    except Exception as exc:  # noqa: BLE001
        meter.stop()
        timing.skipped = _one_line(exc)
        if required:
            raise
        return None
    grown = meter.stop()
    timing.mem_method = meter.method
    if grown is not None:
        timing.peak_delta_mb = grown / 2**20
        timing.peak_mem_mb = timing.weights_mb + timing.peak_delta_mb
    return runner


def _time_interleaved(
    runners: Mapping[str, _Runner],
    results: Sequence[ModelTiming],
    *,
    repeat: int,
    batch: int,
    on_result: Callable[[ModelTiming], None] | None,
) -> None:
    """Timed runs in interleaved rounds (load changes hit every model alike), then the statistics."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, runner in runners.items():
            times[name].append(runner.timed())
    for timing in results:
        ms = times.get(timing.name)
        if not ms:
            continue
        arr = np.asarray(ms, dtype=np.float64)
        timing.runs = len(ms)
        timing.median_ms = float(np.median(arr))
        timing.p90_ms = float(np.percentile(arr, 90))
        timing.mean_ms = float(arr.mean())
        timing.min_ms = float(arr.min())
        timing.fps = batch * 1e3 / timing.median_ms if timing.median_ms > 0 else math.inf
        if on_result is not None:
            on_result(timing)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
