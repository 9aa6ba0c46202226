"""`fusionseg benchmark model`: runs end to end at a tiny size, JSON parses, Markdown appends (no timing
assertions: speed goes into benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusionseg.benchmark.model import ModelBenchmarkReport, ModelTiming
from fusionseg.cli import main

TINY = ["--size", "64x128", "--warmup", "1", "--repeat", "2", "--device", "cpu", "--threads", "1"]


def test_help_lists_model_subcommand(capsys) -> None:
    assert main(["benchmark", "--help"]) == 0
    assert "model" in capsys.readouterr().out
    assert main(["benchmark", "model", "--help"]) == 0
    assert "--compare" in capsys.readouterr().out


def test_inference_json_with_peers(tmp_path: Path, capsys) -> None:
    record = tmp_path / "RESULTS.md"
    record.write_text("# Benchmark results\n\n## Preprocessing\n\nearlier section\n")
    assert main(["benchmark", "model", *TINY, "--compare", "--json", "--record", str(record)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["size_hw"] == [64, 128] and report["settings"]["mode"] == "inference"
    names = [r["name"] for r in report["results"]]
    assert names[:3] == ["adapnetpp", "deeplabv3_resnet50", "fcn_resnet50"]
    for r in report["results"]:
        assert not r["skipped"], r
        assert r["runs"] == 2 and r["p90_ms"] >= r["median_ms"] > 0 and r["fps"] > 0
        assert r["params"] > 1e6 and r["gflops"] > 0
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= r["weights_mb"]
        # throughput from the FLOP count, and as a fraction of the GEMM peak measured in the run
        assert r["step_gflops"] == r["gflops"]
        assert abs(r["gflops_per_s"] - r["gflops"] / (r["median_ms"] / 1e3)) < 1e-6 * r["gflops_per_s"]
        assert r["of_peak"] == r["gflops_per_s"] / report["machine"]["gemm_peak_gflops"]
    machine = report["machine"]
    assert machine["gemm_peak_gflops"] == max(machine["fp32_peaks_gflops"].values()) > 0
    assert set(machine["fp32_peaks_gflops"]) == {"mm", "conv1x1", "conv3x3"}
    assert machine["cpu"] and set(machine["isa"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert {"numpy", "opencv", "torch", "torch_threads", "opencv_threads"} <= set(machine)
    assert set(report["ratios"]) == set(names[1:])
    assert report["floor"] is None  # the floor is defined at 384x768 only
    assert "benchmark model --model adapnetpp --size 64x128" in report["command"]
    text = record.read_text()
    assert text.startswith("# Benchmark results\n\n## Preprocessing\n\nearlier section\n")  # kept
    assert "### Model benchmark: adapnetpp, inference, 64x128, batch 1, cpu" in text
    assert "| deeplabv3_resnet50 | torchvision |" in text and report["command"] in text


def test_fused_model_training_step(capsys) -> None:
    assert main(["benchmark", "model", "--model", "cmode", *TINY, "--batch", "2", "--train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (result,) = report["results"]
    assert report["settings"]["mode"] == "train" and result["name"] == "cmode"
    assert 0 < result["trainable"] < result["params"]  # frozen experts, as in the fusion stage
    assert result["median_ms"] > 0 and result["fps"] > 0
    # a training step's FLOPs (forward + backward) exceed the forward pass's
    assert result["step_gflops"] > result["gflops"] and 0 < result["of_peak"]


def test_bad_options_fail_with_one_line(capsys) -> None:
    assert main(["benchmark", "model", "--size", "60x128"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert main(["benchmark", "model", "--size", "60x128", "--batch", "0"]) == 2


def test_autocast_not_native_on_this_cpu_runs_fp32(capsys, monkeypatch) -> None:
    """bf16 asked for on a CPU without native bf16: one warning, and the report says fp32 ran."""
    from fusionseg.engine import cpu, runtime

    plain = cpu.CPUInfo("plain test cpu", frozenset({"avx2", "fma"}), 2)
    monkeypatch.setattr(runtime, "cpu_info", lambda: plain)
    monkeypatch.setattr(cpu, "cpu_info", lambda: plain)
    with pytest.warns(RuntimeWarning, match="bf16 is not native on this CPU"):
        assert main(["benchmark", "model", *TINY, "--amp", "bf16", "--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["amp"] == "bf16" and settings["amp_effective"] == "off"


def _timing(name: str, median_ms: float) -> ModelTiming:
    return ModelTiming(
        name=name, source="x", params=1, runs=1, median_ms=median_ms, p90_ms=median_ms, fps=1.0
    )


def test_floor_and_ratios_follow_the_medians(tmp_path: Path) -> None:
    settings = {"model": "adapnetpp", "mode": "inference", "size_hw": [384, 768], "batch": 1}
    report = ModelBenchmarkReport(
        {}, settings, "cmd", [_timing("adapnetpp", 50.0), _timing("deeplabv3_resnet50", 80.0)]
    )
    assert report.ratios() == {"deeplabv3_resnet50": 1.6}
    assert report.floor()["passed"] is True
    slower = ModelBenchmarkReport(
        {}, settings, "cmd", [_timing("adapnetpp", 90.0), _timing("deeplabv3_resnet50", 80.0)]
    )
    assert slower.floor()["passed"] is False
    other_size = ModelBenchmarkReport({}, {**settings, "size_hw": [64, 128]}, "cmd", report.results)
    assert other_size.floor() is None


def test_cpu_peak_memory_sees_an_allocation() -> None:
    """Checked in a fresh process, as the benchmark runs: pages that earlier work in the same process
    freed but kept resident can be reused without raising RSS (see PeakMemory)."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from fusionseg.benchmark.memory import PeakMemory\n"
        "meter = PeakMemory(torch.device('cpu'))\n"
        "meter.start()\n"
        "block = torch.ones(64, 1024, 1024)  # 256 MiB, touched\n"
        "block += 1\n"
        "print(meter.method, '|', meter.stop())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    method, grown = (part.strip() for part in out.strip().rsplit("|", 1))
    if method:  # Linux VmHWM or psutil; no method elsewhere
        assert grown != "None" and int(grown) >= 200 * 2**20


def test_append_markdown_creates_the_file(tmp_path: Path) -> None:
    settings = {
        "model": "ssma",
        "mode": "inference",
        "size_hw": [64, 128],
        "batch": 1,
        "device": "cpu",
        "amp": "off",
        "channels_last": False,
        "compile": False,
        "warmup": 1,
        "repeat": 1,
        "num_classes": 12,
        "threads": 1,
        "date": "2026-01-01 00:00 UTC",
    }
    report = ModelBenchmarkReport(
        {"cpu": "cpu", "cores": 2}, settings, "fusionseg benchmark model", [_timing("ssma", 5.0)]
    )
    path = report.append_markdown(tmp_path / "new.md")
    text = path.read_text()
    assert text.startswith("# Benchmark results\n") and "| ssma | x |" in text
