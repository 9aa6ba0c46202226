"""`fusionseg benchmark pipeline`: raw frame to classes per stage, on the real frames (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusionseg.benchmark.pipeline import STAGES, run_pipeline_benchmark
from fusionseg.cli import main
from fusionseg.errors import ConfigError


def test_every_stage_is_timed_on_the_real_frames(shared_data: Path) -> None:
    report = run_pipeline_benchmark(
        model="adapnetpp",
        encodings=("jet",),
        model_size_hw=(64, 128),
        data_dir=shared_data,
        repeat=2,
        warmup=0,
    )
    frames = [(c.frame, c.size) for c in report.cases]
    assert frames == [("kinect-nyu0001", "640x480"), ("kitti-000001", "1242x375")]
    for case in report.cases:
        assert len(case.runs) == 2 and all(set(run) == set(STAGES) for run in case.runs)
        assert all(ms > 0 for run in case.runs for ms in run.values())
        summary = case.to_dict()
        assert summary["total_median_ms"] == pytest.approx(float(np.median(case.total_ms)), abs=0.01)
    markdown = report.to_markdown()
    assert "| adapnetpp jet | kinect-nyu0001 640x480 |" in markdown and "completion" in markdown


def test_cli_json_and_results_section(shared_data: Path, tmp_path: Path, capsys) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    args = ["benchmark", "pipeline", "--model", "ssma", "--encoding", "hha", "--model-size", "128x64"]
    args += ["--repeat", "1", "--warmup", "0", "--data", str(tmp_path / "none"), "--out", str(results)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["model"] == "ssma" and len(report["cases"]) == 2  # synthetic frames
    assert set(report["cases"][0]["median_ms"]) == set(STAGES)
    text = results.read_text()
    assert text.startswith("# Results\n") and "### Pipeline: raw frame to classes (ssma, cpu" in text


def test_bad_settings_are_refused(capsys) -> None:
    with pytest.raises(ConfigError, match="backend"):
        run_pipeline_benchmark(backend="jax")
    assert main(["benchmark", "pipeline", "--model-size", "100x50"]) == 2
    assert "multiples of 16" in capsys.readouterr().err


def test_torch_back_ends_run_a_batch(tmp_path: Path) -> None:
    report = run_pipeline_benchmark(
        model="adapnetpp",
        encodings=("hha",),
        model_size_hw=(64, 128),
        data_dir=tmp_path / "none",  # synthetic Kinect- and KITTI-size frames
        repeat=1,
        warmup=0,
        backend="torch",
        batch=2,
    )
    assert report.settings["batch"] == 2 and report.settings["backend"] == "torch"
    assert all(set(c.runs[0]) == set(STAGES) and c.runs[0]["completion"] > 0 for c in report.cases)
    assert "torch back-end, batch 2" in report.to_markdown()
