"""The scripts in benchmarks/ run and print the tables RESULTS.md quotes (tiny sizes; no timing checks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_options_compares_every_option_with_fp32(capsys) -> None:
    assert _script("speed_options").main(["--size", "32x64", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "Machine: " in out and "avx2" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"fp32", "channels_last", "bf16", "bf16+channels_last"}
    fp32 = [cell.strip() for cell in rows["fp32"].split("|")]
    assert fp32[3] == "1.000" and fp32[4] == "0" and fp32[5] == "100.00%"  # fp32 against itself


def test_scaling_reports_frames_per_second_per_worker_count(capsys) -> None:
    assert _script("scaling").main(["--frames", "2", "--workers", "1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = [
        line for line in out.splitlines() if line.startswith("| make-synthetic") or line.startswith("| prep")
    ]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert cells[2] == "1" and float(cells[3]) > 0 and cells[4] == "1.00" and cells[5] == "100%"


def test_profile_hha_lists_both_encoders(shared_data, capsys) -> None:
    assert _script("profile_hha").main(["--calls", "1", "--raw", "--data", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "== before (benchmarks/hha_before.py)" in out and "== after (fusionseg.modalities.hha.hha)" in out
