"""benchmarks/gpu_check.sh: its CPU self-test runs every step (so the CUDA run is known to work)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = [
    "CUDA-only tests",
    "AMP training steps + memory",
    "torch.compile",
    "batched ip_basic + HHA vs numpy",
    "model latency",
    "2-process DDP",
]


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_self_test_runs_every_step_and_writes_a_results_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--self-test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("## GPU check, CPU self-test (`benchmarks/gpu_check.sh`)")
    raw = json.loads(out.with_suffix(".json").read_text())
    assert [c["name"] for c in raw["checks"]] == STEPS
    assert all(c["status"] == "pass" for c in raw["checks"]), raw["checks"]
    assert {row["model"] for row in raw["latency"]} == {"adapnetpp", "ssma", "cmode"}
    for step in STEPS:
        assert f"| {step} | pass |" in text


def test_a_failing_step_is_one_line_and_the_others_still_run(tmp_path: Path) -> None:
    gpu_check = _driver()
    results = gpu_check.Results()

    def broken() -> str:
        raise RuntimeError("no kernel image\nsecond line")

    results.run("first", broken, deadline=float("inf"))
    results.run("second", lambda: "skipped: 1 GPU(s), NCCL needs 2", deadline=float("inf"))
    results.run("late", lambda: "never", deadline=0.0)
    assert [(c.name, c.status) for c in results.checks] == [
        ("first", "fail"),
        ("second", "skip"),
        ("late", "skip"),
    ]
    assert results.checks[0].detail == "RuntimeError: no kernel image"
    text = gpu_check.to_markdown(gpu_check.SELF_TEST, results, seconds=1.0, command="x")
    assert "| first | fail |" in text and "| late | skip | 0.0 | time budget spent |" in text


def test_usage_without_an_output_file() -> None:
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.parametrize("plan", ["FULL", "SELF_TEST"])
def test_plans_match_the_issue(plan: str) -> None:
    chosen = getattr(_driver(), plan)
    if plan == "FULL":  # 384x768, fp32 + fp16 latency, fp16 + bf16 training at batch 8, NCCL
        assert chosen.size_hw == (384, 768) and chosen.precisions == ("off", "fp16")
        assert (
            chosen.train_amps == ("fp16", "bf16") and chosen.train_batch == 8 and chosen.ddp_backend == "nccl"
        )
    else:
        assert chosen.device == "cpu" and "fp16" not in chosen.precisions + chosen.train_amps
