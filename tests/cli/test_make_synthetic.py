"""`fusionseg make-synthetic`: files written, one-line errors, --help and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusionseg.cli import cli, main
from fusionseg.data.listfile import read_list

COLUMNS = ("rgb", "depth", "depth_raw", "depth_sparse", "nir", "label")
SMALL = ["--size", "96x128", "--workers", "1"]


def test_help() -> None:
    result = CliRunner().invoke(cli, ["make-synthetic", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--num", "--seed", "--size", "--workers", "--config", "--set", "--json"):
        assert option in result.output


def test_writes_modalities_lists_and_meta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    assert main(["make-synthetic", "--out", str(out), "--num", "8", "--seed", "3", *SMALL]) == 0
    assert "train.txt" in capsys.readouterr().out
    for split in ("train", "val"):
        for column in COLUMNS:
            assert any((out / split / column).glob("*.png")), (split, column)
    samples = 0
    for split in ("train", "val"):
        text = (out / f"{split}.txt").read_text()
        assert text.splitlines()[0] == "# columns: " + " ".join(COLUMNS)
        listed = read_list(out / f"{split}.txt")  # raises if a listed path does not resolve
        assert listed.columns == COLUMNS
        assert all(path.is_file() for sample in listed.samples for path in sample.files.values())
        samples += len(listed)
    assert samples == 8
    meta = json.loads((out / "meta.json").read_text())
    for key in ("classes", "palette", "intrinsics", "depth_unit", "depth_scale_m", "image_size", "columns"):
        assert key in meta
    assert meta["seed"] == 3 and meta["generator"]["version"] >= 1
    assert len(meta["frames"]) == 8 and meta["image_size"] == {"height_px": 96, "width_px": 128}


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path), "--num", "2", *SMALL, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_frames"] == 2 and summary["num_rendered"] == 2
    # a second run finds everything on disk
    assert main(["make-synthetic", "--out", str(tmp_path), "--num", "2", *SMALL, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_skipped"] == 2


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_num_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path), "--num", "0"]) == 2
    assert "synthetic.num_frames" in one_line_error(capsys)
    assert not any(tmp_path.iterdir())


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # root can write anywhere, but not beneath a file
    assert main(["make-synthetic", "--out", str(blocker / "out"), "--num", "1", *SMALL]) == 2
    assert str(blocker / "out") in one_line_error(capsys)


def test_unknown_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path), "--set", "synthetic.nope=1"]) == 2
    assert "synthetic.nope" in one_line_error(capsys)


@pytest.mark.parametrize("size", ["384", "axb", "384x"])
def test_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path), "--size", size]) == 2
    assert "--size" in one_line_error(capsys)


def test_set_overrides_reach_the_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "make-synthetic",
        "--out",
        str(tmp_path),
        "--num",
        "5",
        *SMALL,
        "--set",
        "synthetic.val_fraction=0.0",
    ]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["num_train"], summary["num_val"]) == (5, 0)
    assert set(summary["list_paths"]) == {"train"} and not (tmp_path / "val.txt").exists()
