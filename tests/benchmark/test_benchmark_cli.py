"""`fusionseg benchmark preprocess`: runs end to end on small frames; the report parses (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fusionseg.benchmark.preprocess import Timing, load_baseline
from fusionseg.cli import main


def preprocess_markdown(timing: Timing) -> str:
    from fusionseg.benchmark.preprocess import BenchmarkReport

    return BenchmarkReport({}, {}, [], [timing]).to_markdown()


CPU_CASES = {
    "fill_in_fast[bilateral]",
    "fill_in_fast[gaussian]",
    "fill_in_multiscale[bilateral]",
    "fill_in_multiscale[gaussian]",
    "jet",
    "hha[numpy]",
    "hha[torch]",
    "normals",
    "evi",
    "ndvi",
}


def test_help(capsys) -> None:
    assert main(["benchmark", "--help"]) == 0
    assert "preprocess" in capsys.readouterr().out
    assert main(["benchmark", "preprocess", "--help"]) == 0
    assert "--repeat" in capsys.readouterr().out


def test_preprocess_json_on_small_frames(tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "report.json"
    args = ["benchmark", "preprocess", "--repeat", "1", "--warmup", "0", "--size", "48x32", "--device", "cpu"]
    assert main([*args, "--json", "--out", str(out_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out_file.read_text()) == report
    assert report["settings"]["repeat"] == 1 and report["machine"]["cores"] >= 1
    assert [f["size"] for f in report["frames"]] == ["48x32", "48x32"]
    timings = report["timings"]
    assert {t["case"] for t in timings} == CPU_CASES
    assert len(timings) == 2 * len(CPU_CASES)
    for t in timings:
        if t["skipped"]:  # only a back-end that is not there yet may be skipped
            assert t["skipped"].startswith("not available"), t
        else:
            assert t["median_ms"] >= 0 and t["p90_ms"] >= t["median_ms"] and t["runs"] == 1
            assert t["memory_passes"] > 0  # time over one frame copy at the measured bandwidth
            assert (t["vs_baseline"] is not None) == (t["case"] == "hha[numpy]")


def test_only_filter_and_markdown(tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "report.md"
    args = ["benchmark", "preprocess", "--repeat", "2", "--warmup", "0", "--size", "40x24", "--only", "jet"]
    assert main([*args, "--device", "cpu", "--out", str(out_file)]) == 0
    table = out_file.read_text().splitlines()
    assert table[0].startswith("| case |")
    assert len(table) == 2 + 2 and all(line.startswith("| jet |") for line in table[2:])
    assert "jet" in capsys.readouterr().out


def test_bad_size_is_a_usage_error(capsys) -> None:
    assert main(["benchmark", "preprocess", "--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_machine_limits_and_same_run_ratios(capsys) -> None:
    """The report carries the bandwidth and GEMM peak measured in the run, and HHA is paired with the
    pre-issue-18 encoder in benchmarks/ (the same output on the frame: a like-for-like baseline)."""
    args = [
        "benchmark",
        "preprocess",
        "--repeat",
        "2",
        "--warmup",
        "0",
        "--size",
        "64x48",
        "--only",
        "hha[numpy]",
    ]
    assert main([*args, "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    machine = report["machine"]
    assert machine["memory_bandwidth_gbs"] > 0 and machine["gemm_peak_gflops_1thread"] > 0
    assert "avx2" in machine["isa"] and machine["torch"] and machine["opencv"]
    (kinect, kitti) = report["timings"]
    for t in (kinect, kitti):
        assert t["baseline"] == "hha[before]" and t["baseline_median_ms"] > 0 and t["vs_baseline"] > 0
    hha_before = load_baseline("hha_before.py", "hha_before")
    from fusionseg.benchmark.preprocess import synthetic_frames
    from fusionseg.modalities.hha import hha

    frame = synthetic_frames(64, 48)[0]
    np.testing.assert_array_equal(
        hha_before(frame.dense_m, frame.intrinsics, raw_depth_m=frame.raw_m),
        hha(frame.dense_m, frame.intrinsics, raw_depth_m=frame.raw_m),
    )
    row = Timing("hha[numpy]", "f", "1x1", "cpu", 1, median_ms=1.0, p90_ms=1.0, baseline="hha[before]")
    row.vs_baseline = 0.25
    assert "0.25 of hha[before] (4.00x faster)" in preprocess_markdown(row)
