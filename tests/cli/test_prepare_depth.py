"""`fusionseg prepare-depth`: help, --json, exit statuses, and real KITTI / NYU frames."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionseg.cli import main
from fusionseg.data.io import write_png
from fusionseg.modalities.intrinsics import Intrinsics

# the documented tolerance of the float completion against the ip_basic reference, metres
# (tests/modalities/test_completion.py)
ROUNDING_TOL_M = 1e-4
NYU_ONE_BASED = "518.85790117450188,519.46961112127485,325.58244941119034,253.73616633400465"


def _dataset(root: Path, n: int = 2, *, bad: bool = False) -> None:
    """Depth PNGs in millimetres with a meta.json; `bad` adds an all-zero frame."""
    rng = np.random.default_rng(0)
    for i in range(n):
        depth = np.rint(1000 * (2.0 + rng.random((32, 48)))).astype(np.uint16)
        write_png(root / "depth" / f"{i:03d}.png", depth)
    if bad:
        write_png(root / "depth" / "zero.png", np.zeros((32, 48), np.uint16))
    meta = {"intrinsics": Intrinsics(40.0, 40.0, 23.5, 15.5).as_dict(), "depth_scale_m": 0.001}
    (root / "meta.json").write_text(json.dumps(meta))


def _decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_help(capsys) -> None:
    assert main(["prepare-depth", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--complete", "--hha", "--jet", "--intrinsics-one-based", "--depth-scale", "--workers"):
        assert option in text


def test_json_summary_parses(tmp_path: Path, capsys) -> None:
    _dataset(tmp_path / "ds")
    args = ["prepare-depth", str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--hha", "--jet"]
    assert main([*args, "--workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["total"], summary["done"], summary["failed"]) == (2, 2, 0)
    assert summary["products"] == ["hha", "jet"]
    assert Path(summary["lists"][0]).is_file()
    assert main([*args, "--workers", "1", "--json"]) == 0  # second run: everything skipped
    assert json.loads(capsys.readouterr().out)["skipped"] == 2


def test_failed_frames_give_exit_3_and_name_the_file(tmp_path: Path, capsys) -> None:
    _dataset(tmp_path / "ds", bad=True)
    code = main(
        ["prepare-depth", str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--jet", "--workers", "1"]
    )
    assert code == 3
    captured = capsys.readouterr()
    assert "zero.png" in captured.err and "no valid pixels" in captured.err
    assert sorted(p.name for p in (tmp_path / "out" / "jet").glob("*.png")) == ["000.png", "001.png"]


def test_missing_intrinsics_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    _dataset(tmp_path / "ds")
    (tmp_path / "ds" / "meta.json").unlink()
    args = ["prepare-depth", str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--hha"]
    assert main([*args, "--depth-scale", "mm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--intrinsics" in err[0]
    assert main([*args, "--intrinsics", "40,40,23.5,15.5"]) == 2
    assert "--depth-scale" in capsys.readouterr().err


def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _dataset(tmp_path / "ds")
    args = [
        "prepare-depth",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "out"),
        "--hha",
        "--device",
        "cuda",
    ]
    assert main(args) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_kitti_complete_fast_and_jet(shared_data: Path, tmp_path: Path, capsys) -> None:
    kitti = shared_data / "kitti-object-lidar3"
    args = ["prepare-depth", str(kitti / "sparse_depth"), "--pattern", "000000.png", "--out", str(tmp_path)]
    args += ["--depth-scale", "kitti", "--complete", "fast", "--jet", "--jet-max-depth", "80", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 1
    filled = _decode(tmp_path / "depth_filled" / "000000.png")
    # the job's completed depth is ip_basic's, in the input's unit (1/256 m)
    ref = np.load(kitti / "ipbasic_ref" / "000000.npz")["fast_bilateral"]
    expected = np.rint(np.where(ref > 0.1, ref, 0) * 256).astype(np.uint16)
    assert filled.dtype == np.uint16 and filled.shape == expected.shape
    # Equal except where the float result may round the other way: the float completion is within
    # ROUNDING_TOL_M of the reference (OpenCV's bilateral filter differs by up to 3.8e-5 m between
    # 5.0 and 5.1), so a pixel whose reference lies within that of a 1/256 m rounding boundary, or of
    # the 0.1 m validity threshold, may be one step off or empty (bit-exact under OpenCV 5.0:
    # tests/modalities/test_completion.py::test_bit_exact_under_the_reference_opencv).
    units = ref.astype(np.float64) * 256
    near_rounding = np.abs(units - np.floor(units) - 0.5) < ROUNDING_TOL_M * 256
    near_threshold = np.abs(ref.astype(np.float64) - 0.1) < ROUNDING_TOL_M
    diff = np.abs(filled.astype(np.int32) - expected.astype(np.int32))
    free = near_rounding | near_threshold
    assert not diff[~free].any(), f"{int((diff[~free] > 0).sum())} pixels differ away from a boundary"
    assert (diff[near_rounding & ~near_threshold] <= 1).all()
    flipped = near_threshold & (diff > 0)  # kept on one side of 0.1 m, dropped on the other
    assert ((filled == 0) | (expected == 0))[flipped].all()
    # the exempt band covers 2 * 1e-4 * 256 = 5.1 % of a rounding step: at most that share of pixels
    assert free.mean() < 2 * ROUNDING_TOL_M * 256 + 0.005
    jet = _decode(tmp_path / "jet" / "000000.png")
    assert jet.shape == (*filled.shape, 3) and jet.dtype == np.uint8
    np.testing.assert_array_equal(jet.max(axis=2) == 0, filled == 0)  # black exactly where still missing


def test_nyu_hha_matches_matlab_reference(shared_data: Path, tmp_path: Path, capsys) -> None:
    full = shared_data / "nyuv2-hha-ref" / "full480x640"
    common = ["--depth-scale", "1e-4m", "--hha", "--intrinsics", NYU_ONE_BASED, "--intrinsics-one-based"]
    args = [
        "prepare-depth",
        str(full),
        "--pattern",
        "nyu0001/depth_filled*.png",
        "--out",
        str(tmp_path / "a"),
    ]
    assert main([*args, *common, "--json"]) == 0
    hha = _decode(tmp_path / "a" / "hha" / "nyu0001" / "depth_filled_1e-4m.png").astype(int)
    ref = _decode(full / "nyu0001" / "hha_matlab_rd_eq_d.png").astype(int)
    diff = np.abs(hha - ref)
    assert diff.max() <= 1 and (diff == 0).all(axis=2).mean() >= 0.999

    # raw Kinect depth, completed first; the raw zeros give HHA's missing mask
    args = ["prepare-depth", str(full), "--pattern", "nyu0001/depth_raw*.png", "--out", str(tmp_path / "b")]
    assert main([*args, *common, "--complete", "fast", "--max-depth", "10", "--json"]) == 0
    capsys.readouterr()
    hha_raw = _decode(tmp_path / "b" / "hha" / "nyu0001" / "depth_raw_1e-4m.png")
    assert hha_raw.shape == (480, 640, 3)
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["intrinsics"]["cx"] == pytest.approx(325.58244941119034 - 1)


def test_kitti_read_as_millimetres_fails_for_an_outdoor_sensor(
    shared_data: Path, tmp_path: Path, capsys
) -> None:
    """KITTI's 1/256 m read as mm is only 3.9x off: "any" passes it, the outdoor range does not."""
    kitti = shared_data / "kitti-object-lidar3" / "sparse_depth"
    args = ["prepare-depth", str(kitti), "--pattern", "000000.png", "--jet", "--workers", "1"]
    args += ["--depth-scale", "mm", "--jet-max-depth", "80"]
    assert main([*args, "--out", str(tmp_path / "any")]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "outdoor"), "--depth-sensor", "outdoor"]) == 3
    err = capsys.readouterr().err
    assert "000000" in err and "units that would fit: kitti (median 11.7 m)" in err


def test_relative_input_folder_with_dotdot(shared_data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """`prepare-depth ../data/sparse_depth` as a user types it: was an internal error (relative_to)."""
    kitti = shared_data / "kitti-object-lidar3" / "sparse_depth"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here").mkdir()
    relative = Path("here") / ".." / Path(os.path.relpath(kitti, tmp_path))
    args = ["prepare-depth", str(relative), "--pattern", "000001.png", "--depth-scale", "kitti", "--jet"]
    assert main([*args, "--out", str(tmp_path / "out"), "--workers", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 1
    assert (tmp_path / "out" / "jet" / "000001.png").is_file()
