"""`fusionseg summary`: table, JSON, and one-line errors."""

from __future__ import annotations

import json

import pytest

from fusionseg.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["summary", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for option in ("--model", "--num-classes", "--in-channels", "--size", "--json"):
        assert option in out


def test_json_counts_and_taps(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--model", "adapnetpp", "--num-classes", "12", "--size", "64x128", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_params"] == 30_151_558  # adapnetpp.md §10.1
    assert data["trainable_params"] == 30_151_558 and data["frozen_params"] == 0
    assert data["buffers"] == 52_934
    modules = {row["name"]: row["params"] for row in data["modules"]}
    assert modules["easpp"] == 2_044_032 and modules["decoder"] == 4_582_448
    assert sum(modules.values()) == data["total_params"]
    assert data["taps"] == {"skip1": [1, 24, 16, 32], "skip2": [1, 24, 8, 16], "easpp": [1, 256, 4, 8]}
    assert data["logits_shape"] == [1, 12, 64, 128]
    assert data["gflops"] > 0


def test_config_and_in_channels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--in-channels",
        "1",
        "--size",
        "32x32",
        "--set",
        "model.aux=false",
        "--set",
        "model.num_classes=6",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    # §10.2 without aux for C = 6, minus what a 1-channel stem saves (input BN 2x2, conv 64x2x7x7)
    assert data["total_params"] == 30_133_030 + 64 * 6 * 6 + 260 * 6 - 2 * 2 - 64 * 2 * 49
    stem = {row["name"]: row["params"] for row in data["modules"]}["stem"]
    assert stem == 2 + 64 * 1 * 49 + 128  # 1-channel input BN + 7x7 conv + BN
    assert "aux" not in {row["name"] for row in data["modules"]}
    assert data["input_shape"] == [1, 1, 32, 32]


def test_explicit_num_classes_wins_over_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--num-classes", "20", "--set", "model.num_classes=6", "--size", "32x32", "--json"
    )
    assert code == 0
    assert json.loads(out)["total_params"] == 30_174_150  # §10.2, C = 20


def test_rich_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--size", "32x64")
    assert code == 0
    for text in ("block4", "easpp", "30,151,558", "52,934", "skip1", "(1, 256, 2, 4)", "GFLOPs"):
        assert text in out


@pytest.mark.parametrize("size", ["100x128", "64x100", "0x0", "abc", "64", "64x128x3", "-16x32"])
def test_bad_size_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], size: str) -> None:
    code, out, err = run(capsys, "--size", size)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "--size" in err


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--model", "nope")
    assert code == 2 and "nope" in err
