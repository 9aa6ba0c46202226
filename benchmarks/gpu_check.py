"""The prepared GPU check (issue 17, item 5): run by `benchmarks/gpu_check.sh OUT.md`.

On a CUDA machine, in under 8 minutes: the test suite's CUDA-only tests, fp16/bf16 AMP training steps
(AdapNet++ at 384x768, batch 8, with the training memory), torch.compile, the batched torch ip_basic
and HHA back-ends on the GPU against the numpy results on real frames, model latency (AdapNet++, SSMA,
CMoDE at 384x768, fp32 and fp16, batch 1) and, with two GPUs or more, a 2-process NCCL DDP step. It
writes one Markdown section for benchmarks/RESULTS.md to OUT.md (and the raw figures to OUT.json).

Without CUDA (or with --self-test) it runs the same code paths on the CPU at tiny sizes in well under
a minute: CUDA tests only collected, bf16 instead of fp16, torch.compile with the "eager" backend, a
2-process gloo DDP step; tests/benchmark/test_gpu_check.py runs it in the default suite.

Model timings and memory come from `fusionseg.benchmark.model.run_model_benchmark` (the code behind
`fusionseg benchmark model`); nothing here re-implements them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("adapnetpp", "ssma", "cmode")
# The suite's CUDA-only tests: parametrised over DEVICES (ids "cuda") or named for CUDA and skipped
# without it (`skipif(not torch.cuda.is_available())`).
CUDA_TEST_FILES = (
    "tests/modalities/test_hha_torch.py",
    "tests/modalities/test_completion_torch.py",
    "tests/faults/test_numerical.py",
)
CUDA_TEST_SELECTION = "cuda"
BUDGET_S = 480.0  # the whole check must fit in 8 minutes
NYU_INTRINSICS = (518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465)  # 1-based
COMPLETION_TOL_M = 1e-4


@dataclass(frozen=True)
class Plan:
    """What one run measures: the full CUDA check or the CPU self-test."""

    device: str
    size_hw: tuple[int, int]
    train_batch: int
    warmup: int
    repeat: int
    precisions: tuple[str, ...]  # amp modes of the latency runs ("off" = fp32)
    train_amps: tuple[str, ...]
    compile_backend: str  # torch.compile backend ("inductor" on CUDA, "eager" in the self-test)
    run_tests: bool  # run the CUDA tests (else only collect them)
    ddp_backend: str
    real_frames: bool


FULL = Plan("cuda", (384, 768), 8, 3, 10, ("off", "fp16"), ("fp16", "bf16"), "inductor", True, "nccl", True)
# tiny and quick: bf16 only (fp16 needs CUDA; fp32 is the same call without autocast), one timed run
SELF_TEST = Plan("cpu", (32, 64), 2, 1, 1, ("bf16",), ("bf16",), "eager", False, "gloo", False)


@dataclass
class Check:
    """One line of the results table."""

    name: str
    status: str  # "pass", "fail" or "skip"
    seconds: float
    detail: str


@dataclass
class Results:
    checks: list[Check] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)

    def run(self, name: str, step: Callable[[], str], *, deadline: float) -> None:
        """Run one step; an exception fails it with a one-line reason, the next steps still run."""
        if time.monotonic() > deadline:
            self.checks.append(Check(name, "skip", 0.0, "time budget spent"))
            return
        start = time.monotonic()
        try:
            detail = step()
            status = "skip" if detail.startswith("skipped:") else "pass"
        except Exception as exc:  # noqa: BLE001 - a failed step is reported, the others still run
            status, detail = "fail", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.checks.append(Check(name, status, time.monotonic() - start, detail))
        print(f"[gpu-check] {name}: {status} ({time.monotonic() - start:.1f} s) {detail}", flush=True)


# ---------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------


def check_cuda_tests(plan: Plan) -> str:
    """The CUDA-only tests: run them on CUDA; in the self-test, check that the selection collects."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TEST_FILES]
    args += ["-k", CUDA_TEST_SELECTION] + ([] if plan.run_tests else ["--collect-only"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exit {proc.returncode}: {last}")
    return last if plan.run_tests else f"collected only (no CUDA): {last}"


def _bench(plan: Plan, *, model: str, amp: str, batch: int, mode: str = "inference") -> Any:
    """`run_model_benchmark` of one model at the plan's size and device -> its `ModelTiming`."""
    from fusionseg.benchmark.model import run_model_benchmark

    report = run_model_benchmark(
        model=model,
        size_hw=plan.size_hw,
        batch=batch,
        device=plan.device,
        mode=mode,
        amp=amp,
        warmup=plan.warmup,
        repeat=plan.repeat,
    )
    return report.results[0]


def check_amp_training(plan: Plan) -> str:
    """AMP training steps of AdapNet++ at the plan's batch: step time and peak training memory."""
    parts = []
    for amp in plan.train_amps:
        timing = _bench(plan, model="adapnetpp", mode="train", amp=amp, batch=plan.train_batch)
        if timing.skipped:
            raise RuntimeError(f"{amp}: {timing.skipped}")
        memory = "n/a" if timing.peak_mem_mb is None else f"{timing.peak_mem_mb / 1024:.2f} GiB"
        parts.append(f"{amp} batch {plan.train_batch}: {timing.median_ms:.1f} ms/step, peak {memory}")
    return "; ".join(parts)


def check_compile(plan: Plan) -> str:
    """torch.compile: compiled AdapNet++ agrees with eager; both timed the same way (one compile)."""
    from fusionseg.benchmark.model import build_fusionseg_model

    bench = build_fusionseg_model("adapnetpp", 12)
    model = bench.module.to(plan.device).eval()
    height, width = plan.size_hw
    inputs = {k: v.to(plan.device) for k, v in bench.make_inputs(1, height, width).items()}
    with torch.inference_mode():
        eager = bench.logits(model(inputs)).float()
        compiled = torch.compile(model, backend=plan.compile_backend)
        fast = bench.logits(compiled(inputs)).float()
    diff = float((eager - fast).abs().max())
    agree = float((eager.argmax(1) == fast.argmax(1)).float().mean())
    if agree < 0.999:
        raise RuntimeError(f"compiled argmax agrees on {agree:.4%} of pixels (max |dlogit| {diff:.2e})")
    eager_ms, compiled_ms = _median_ms(model, inputs, plan), _median_ms(compiled, inputs, plan)
    return (
        f"backend {plan.compile_backend}: max |dlogit| {diff:.2e}, argmax {agree:.4%}; fp32 batch 1 "
        f"median {eager_ms:.2f} ms eager, {compiled_ms:.2f} ms compiled"
    )


def _median_ms(model: Callable[[Any], Any], inputs: Any, plan: Plan) -> float:
    """Median wall time of `plan.repeat` forward passes (after one more warm-up), synchronised."""
    times = []
    with torch.inference_mode():
        for index in range(plan.repeat + 1):
            if plan.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(inputs)
            if plan.device == "cuda":
                torch.cuda.synchronize()
            if index:
                times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _frames(plan: Plan) -> tuple[list[np.ndarray], list[np.ndarray], Any, str]:
    """(NYU-like raw depth frames, KITTI-like sparse frames, NYU intrinsics, description)."""
    import cv2

    from fusionseg.modalities.intrinsics import Intrinsics

    data = Path(os.environ.get("FUSIONSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if plan.real_frames and data.is_dir():
        nyu = [
            cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(np.float32) * np.float32(1e-4)
            for p in sorted(data.glob("nyuv2-hha-ref/full480x640/nyu000*/depth_raw_1e-4m.png"))
        ]
        kitti = [
            np.float32(cv2.imread(str(data / f"kitti-object-lidar3/sparse_depth/{n}.png"), -1) / 256.0)
            for n in ("000001", "000002")
        ]
        return nyu, kitti, Intrinsics.from_one_based(*NYU_INTRINSICS), "NYU raw x4 (480x640), KITTI x2"
    rng = np.random.default_rng(0)
    height, width = 48, 64
    rows = np.arange(height, dtype=np.float32)[:, None] + np.zeros((1, width), np.float32)
    nyu = []
    for i in range(2):
        depth = (1.0 + 3.0 * rows / height + 0.1 * i).astype(np.float32)
        depth[rng.random(depth.shape) < 0.25] = 0.0
        nyu.append(depth)
    kitti = [
        np.where(rng.random((height, width)) < 0.05, rng.uniform(2, 60, (height, width)), 0).astype(
            np.float32
        )
    ]
    intrinsics = Intrinsics(60.0, 60.0, (width - 1) / 2, (height - 1) / 2)
    return nyu, kitti, intrinsics, "synthetic 48x64 (self-test)"


def check_preprocess(plan: Plan) -> str:
    """Batched torch ip_basic and HHA on the plan's device against the numpy back-ends."""
    from fusionseg.modalities import completion
    from fusionseg.modalities.completion_torch import complete_depth_torch
    from fusionseg.modalities.hha import hha
    from fusionseg.modalities.hha_torch import hha_torch

    nyu, kitti, intrinsics, what = _frames(plan)
    worst = 0.0
    for frames, method in ((nyu, "fast"), (kitti, "multiscale")):
        fill = completion.fill_in_fast if method == "fast" else completion.fill_in_multiscale
        got = complete_depth_torch(torch.from_numpy(np.stack(frames)), method=method, device=plan.device)
        for item, frame in enumerate(frames):
            ref = fill(frame)
            ref = np.where(ref > completion.VALID_THRESHOLD_M, ref, 0)
            worst = max(worst, float(np.abs(got[item].cpu().numpy() - ref).max()))
    if worst > COMPLETION_TOL_M:
        raise RuntimeError(f"ip_basic on {plan.device} differs from numpy by {worst:.2e} m")
    filled = [np.where(f > 0.1, f, 0).astype(np.float64) for f in map(completion.fill_in_fast, nyu)]
    raw = np.stack(nyu).astype(np.float64)
    ours = hha_torch(
        torch.from_numpy(np.stack(filled)), intrinsics, raw_depth_m=torch.from_numpy(raw), device=plan.device
    )
    within_one = min(
        float(
            (
                np.abs(ours[i].cpu().numpy().astype(int) - hha(f, intrinsics, raw_depth_m=raw[i]).astype(int))
                <= 1
            ).mean()
        )
        for i, f in enumerate(filled)
    )
    if within_one < 0.99:
        raise RuntimeError(f"HHA on {plan.device}: only {within_one:.2%} of values within one grey level")
    return f"{what}: ip_basic max |torch - numpy| {worst:.1e} m; HHA within 1 level {within_one:.3%}"


def check_latency(plan: Plan, results: Results) -> str:
    """Inference latency of every model at the plan's size, batch 1, in each precision."""
    parts = []
    for model in MODELS:
        for amp in plan.precisions:
            timing = _bench(plan, model=model, amp=amp, batch=1)
            if timing.skipped:
                raise RuntimeError(f"{model} {amp}: {timing.skipped}")
            precision = "fp32" if amp == "off" else amp
            results.latency.append({"model": model, "precision": precision, **asdict(timing)})
            parts.append(f"{model} {precision} {timing.median_ms:.1f} ms")
    return "; ".join(parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_worker(rank: int, world: int, backend: str, port: int) -> None:
    """One rank: join the group with fusionseg's own helpers, one DDP step, equal weights after it."""
    from fusionseg.engine import distributed

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    device = torch.device(f"cuda:{rank}" if backend == "nccl" else "cpu")
    distributed.init_distributed(backend, device=device, timeout_s=120)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = distributed.wrap_ddp(
            torch.nn.Conv2d(3, 4, 3).to(device), device=device, find_unused_parameters=False
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.rand(2, 3, 8, 8, device=device) * (rank + 1)).square().mean().backward()
        optimizer.step()
        total = distributed.all_reduce_sum(torch.ones(1, device=device) * (rank + 1))
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        spread = distributed.all_reduce_sum(weights) / world - weights
        if int(total.item()) != world * (world + 1) // 2 or float(spread.abs().max()) > 1e-6:
            raise RuntimeError(f"rank {rank}: all-reduce {total.item()} or replicas differ")
    finally:
        distributed.shutdown()


def check_ddp(plan: Plan) -> str:
    """A 2-process DDP step: NCCL with two GPUs or more, gloo in the self-test."""
    if plan.ddp_backend == "nccl" and torch.cuda.device_count() < 2:
        return f"skipped: {torch.cuda.device_count()} GPU(s), NCCL needs 2"
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, plan.ddp_backend, _free_port()), nprocs=2, join=True)
    return f"2 processes, {plan.ddp_backend}: all-reduce and one DDP step agree"


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


def _machine(plan: Plan) -> str:
    import cv2

    if plan.device == "cuda":
        name = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        device = f"{torch.cuda.device_count()} x {name} ({memory:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        device = "no CUDA: CPU self-test at tiny sizes (figures are not GPU results)"
    return (
        f"{device}; {os.cpu_count()} CPU cores; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}, OpenCV {cv2.__version__}"
    )


def to_markdown(plan: Plan, results: Results, *, seconds: float, command: str) -> str:
    """One RESULTS.md section: machine, command, a pass/fail table and the latency table."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "GPU check" if plan.device == "cuda" else "GPU check, CPU self-test"
    lines = [
        f"## {title} (`benchmarks/gpu_check.sh`)",
        "",
        f"### {date}",
        "",
        f"* **Machine:** {_machine(plan)}.",
        f"* **Command:** `{command}` ({seconds:.0f} s in all; budget {BUDGET_S:.0f} s).",
        f"* **Sizes:** models at {plan.size_hw[0]}x{plan.size_hw[1]}, latency batch 1, AMP training batch "
        f"{plan.train_batch}; {plan.warmup} warm-up and {plan.repeat} timed runs (`run_model_benchmark`).",
        "",
        "| check | result | seconds | details |",
        "|---|---|---:|---|",
    ]
    lines += [
        f"| {c.name} | {c.status} | {c.seconds:.1f} | {c.detail.replace('|', '/')} |" for c in results.checks
    ]
    if results.latency:
        lines += [
            "",
            "| model | precision | median ms | p90 ms | images/s | peak memory MiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in results.latency:
            peak = "n/a" if row["peak_mem_mb"] is None else f"{row['peak_mem_mb']:.0f}"
            lines.append(
                f"| {row['model']} | {row['precision']} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | "
                f"{row['fps']:.1f} | {peak} |"
            )
    return "\n".join(lines) + "\n"


def run_check(plan: Plan, out: Path, *, command: str) -> Results:
    """Every step in turn (each within the remaining budget); writes OUT.md and OUT.json."""
    start = time.monotonic()
    deadline = start + BUDGET_S - 30  # leave time for the report
    results = Results()
    torch.manual_seed(0)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("CUDA-only tests", lambda: check_cuda_tests(plan)),
        ("AMP training steps + memory", lambda: check_amp_training(plan)),
        ("torch.compile", lambda: check_compile(plan)),
        ("batched ip_basic + HHA vs numpy", lambda: check_preprocess(plan)),
        ("model latency", lambda: check_latency(plan, results)),
        ("2-process DDP", lambda: check_ddp(plan)),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, step in steps:
        results.run(name, step, deadline=deadline)
        # rewritten after every step: a run stopped by the hard time limit still leaves its figures
        seconds = time.monotonic() - start
        out.write_text(to_markdown(plan, results, seconds=seconds, command=command), encoding="utf-8")
        raw = {
            "plan": asdict(plan),
            "checks": [asdict(c) for c in results.checks],
            "latency": results.latency,
        }
        out.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="Markdown file for the RESULTS.md section (and OUT.json)")
    parser.add_argument("--self-test", action="store_true", help="CPU self-test at tiny sizes even with CUDA")
    args = parser.parse_args(argv)
    plan = FULL if torch.cuda.is_available() and not args.self_test else SELF_TEST
    if plan is SELF_TEST:
        torch.set_num_threads(1)
    command = "benchmarks/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_check(plan, args.out, command=command)
    failed = [c.name for c in results.checks if c.status == "fail"]
    print(
        f"[gpu-check] wrote {args.out}; {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
