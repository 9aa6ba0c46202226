"""`fusionseg benchmark preprocess`: runs end to end on small frames; the report parses (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

from fusionseg.benchmark.preprocess import Timing, _floor_for
from fusionseg.cli import main

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
            assert t["passed"] is None  # no floor at 48x32


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


def test_floors_apply_to_the_named_cases_and_sizes() -> None:
    assert _floor_for("hha[numpy]", "640x480", "cpu") == 60.0
    assert _floor_for("hha[torch,batch8]", "640x480", "cuda") == 60.0
    assert _floor_for("hha[torch]", "640x480", "cpu") is None  # the CPU job uses numpy
    assert _floor_for("fill_in_fast[gaussian]", "1242x375", "cpu") == 10.0
    assert _floor_for("fill_in_multiscale[bilateral]", "1242x375", "cpu") == 45.0
    assert _floor_for("fill_in_fast[gaussian]", "640x480", "cpu") is None
    assert _floor_for("jet", "640x480", "cpu") is None
    assert Timing("x", "f", "1x1", "cpu", 1, median_ms=9.0, floor_ms=10.0).passed is True
    assert Timing("x", "f", "1x1", "cpu", 1, median_ms=11.0, floor_ms=10.0).passed is False
    assert Timing("x", "f", "1x1", "cpu", 1, median_ms=11.0).passed is None
