"""The prepare-depth batch job: outputs, list and meta, resuming, per-frame failures, input layouts."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionseg import __version__
from fusionseg.data.io import depth_to_png_units, read_depth, write_png
from fusionseg.data.listfile import read_list
from fusionseg.data.prepare import (
    PrepareOptions,
    prepare_depth,
    read_intrinsics_file,
    resolve_intrinsics,
)
from fusionseg.errors import ConfigError, DataError
from fusionseg.modalities.completion import fill_in_fast
from fusionseg.modalities.hha import hha, hha_to_bgr
from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.modalities.jet import depth_to_jet

H, W = 48, 64
INTR = Intrinsics(60.0, 60.0, 31.5, 23.5)
ROOT = Path(__file__).resolve().parents[2]


def _scene_mm(rng: np.random.Generator, h: int = H, w: int = W, holes: float = 0.2) -> np.ndarray:
    """uint16 mm: a floor 1.2 m below the camera in front of a wall at 4 m, with random holes."""
    intr = Intrinsics(INTR.fx * w / W, INTR.fy * h / H, (w - 1) / 2, (h - 1) / 2)
    v = np.arange(h, dtype=np.float64)[:, None] - intr.cy
    floor = np.where(v > 0, 1.2 * intr.fy / np.maximum(v, 1e-6), np.inf)
    depth_m = np.minimum(floor, np.full((h, w), 4.0)) + 0.01 * rng.random((h, w))
    depth_m[rng.random((h, w)) < holes] = 0.0
    return np.rint(depth_m * 1000).astype(np.uint16)


def _write_dataset(
    root: Path, n: int = 3, *, meta: bool = True, nir: bool = False, h: int = H, w: int = W, seed: int = 0
) -> list[str]:
    """A tiny synthetic-format dataset: rgb/, depth/ (16-bit mm), label/, train.txt, meta.json."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:03d}" for i in range(n)]
    columns = ["rgb", "depth"] + (["nir"] if nir else []) + ["label"]
    lines = [f"# columns: {' '.join(columns)}"]
    for i in ids:
        write_png(root / "rgb" / f"{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        write_png(root / "depth" / f"{i}.png", _scene_mm(rng, h, w))
        write_png(root / "label" / f"{i}.png", rng.integers(0, 5, (h, w), dtype=np.uint8))
        if nir:
            write_png(root / "nir" / f"{i}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
        lines.append(" ".join(f"{c}/{i}.png" for c in columns))
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    if meta:
        (root / "meta.json").write_text(json.dumps({"intrinsics": INTR.as_dict(), "depth_scale_m": 0.001}))
    return ids


def _decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} does not decode"
    return image


def _all_outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.png"))


def _filled(raw_m: np.ndarray) -> np.ndarray:
    filled = fill_in_fast(raw_m)
    return np.where(filled > 0.1, filled, np.float32(0.0)).astype(np.float32)


FULL = PrepareOptions(complete="fast", hha=True, jet=True, normals=True, workers=1)


def test_run_writes_outputs_list_and_meta(tmp_path: Path) -> None:
    ids = _write_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    summary = prepare_depth(tmp_path / "ds", out, FULL)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 0)

    for i in ids:
        raw = read_depth(tmp_path / "ds" / "depth" / f"{i}.png", depth_scale_m="mm")
        filled = _filled(raw)
        # §3.1: the completed depth feeds HHA, the raw input gives the missing mask; file is BGR
        np.testing.assert_array_equal(
            _decode(out / "hha" / f"{i}.png"), hha_to_bgr(hha(filled, INTR, raw_depth_m=raw))
        )
        np.testing.assert_array_equal(
            _decode(out / "jet" / f"{i}.png"), depth_to_jet(filled, max_depth_m=7.0)
        )
        depth16 = _decode(out / "depth_filled" / f"{i}.png")
        assert depth16.dtype == np.uint16
        np.testing.assert_array_equal(depth16, depth_to_png_units(filled, depth_scale_m=1e-3))
        normals = _decode(out / "normals" / f"{i}.png")
        assert normals.shape == (H, W, 3) and normals.dtype == np.uint8

    listing = read_list(out / "train.txt", allow_absolute=True)
    assert listing.columns == ("rgb", "depth", "label", "depth_filled", "hha", "jet", "normals")
    assert [s.id for s in listing.samples] == ids
    assert all(f.is_file() for s in listing.samples for f in s.files.values())
    rows = [line.split() for line in (out / "train.txt").read_text().splitlines()[1:]]
    assert all(not token.startswith("/") for row in rows for token in row[3:])  # outputs relative

    meta = json.loads((out / "meta.json").read_text())
    assert meta["fusionseg_version"] == __version__
    assert meta["parameters"]["complete"] == "fast" and meta["parameters"]["depth_scale_m"] == 0.001
    assert meta["intrinsics"] == INTR.as_dict()
    assert meta["frames"] == {i: {"status": "done"} for i in ids}


def test_second_run_skips_everything(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    prepare_depth(tmp_path / "ds", out, FULL)
    stamps = {p: p.stat().st_mtime_ns for p in _all_outputs(out)}
    summary = prepare_depth(tmp_path / "ds", out, FULL)
    assert (summary.done, summary.skipped, summary.failed) == (0, 3, 0)
    assert {p: p.stat().st_mtime_ns for p in _all_outputs(out)} == stamps
    assert len(read_list(out / "train.txt", allow_absolute=True)) == 3


def test_rerun_with_fewer_products_keeps_the_columns_whose_files_remain(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    prepare_depth(tmp_path / "ds", out, FULL)
    columns = ("rgb", "depth", "label", "depth_filled", "hha", "jet", "normals")
    only_jet = dataclasses.replace(FULL, hha=False, normals=False)
    summary = prepare_depth(tmp_path / "ds", out, only_jet)
    assert summary.failed == 0
    listing = read_list(out / "train.txt", allow_absolute=True)
    assert listing.columns == columns  # hha and normals files are still there: still listed
    assert all(f.is_file() for s in listing.samples for f in s.files.values())
    (out / "normals" / "001.png").unlink()  # one frame lacks its normals: the column is dropped
    prepare_depth(tmp_path / "ds", out, only_jet)
    assert read_list(out / "train.txt", allow_absolute=True).columns == tuple(
        c for c in columns if c != "normals"
    )


def test_interrupted_run_resumes_to_identical_outputs(tmp_path: Path) -> None:
    """A killed run leaves some outputs and temp files; the rerun completes and cleans up."""
    ids = _write_dataset(tmp_path / "ds")
    reference = tmp_path / "reference"
    prepare_depth(tmp_path / "ds", reference, FULL)

    out = tmp_path / "out"
    (out / "hha").mkdir(parents=True)
    (out / "jet").mkdir()
    shutil.copy2(reference / "hha" / f"{ids[0]}.png", out / "hha" / f"{ids[0]}.png")  # frame 0 partly done
    for product in ("depth_filled", "hha", "jet", "normals"):  # frame 2 complete
        (out / product).mkdir(exist_ok=True)
        shutil.copy2(reference / product / f"{ids[2]}.png", out / product / f"{ids[2]}.png")
    (out / "jet" / f".{ids[1]}.png.tmp-x1y2").write_bytes(b"\x89PNG\r\n\x1a\n half")  # killed write
    kept = (out / "hha" / f"{ids[0]}.png").stat().st_mtime_ns

    summary = prepare_depth(tmp_path / "ds", out, FULL)
    assert (summary.done, summary.skipped, summary.failed) == (2, 1, 0)
    assert not list(out.rglob("*.tmp-*"))
    assert (out / "hha" / f"{ids[0]}.png").stat().st_mtime_ns == kept  # existing output left alone
    produced = [p.relative_to(out) for p in _all_outputs(out)]
    assert produced == [p.relative_to(reference) for p in _all_outputs(reference)]
    for rel in produced:
        assert (out / rel).read_bytes() == (reference / rel).read_bytes()


def test_sigkilled_run_resumes_without_corrupt_files(tmp_path: Path) -> None:
    n = 40
    _write_dataset(tmp_path / "ds", n, h=96, w=128)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "fusionseg", "prepare-depth", str(tmp_path / "ds"), "--out", str(out)]
    args += ["--complete", "fast", "--hha", "--jet", "--normals", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "normals").glob("*.png"))) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "prepare-depth produced no output in time"
            time.sleep(0.01)
        if proc.poll() is not None:
            pytest.skip("the run finished before it could be killed")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = _all_outputs(out)
    assert 0 < len(before) < 4 * n
    for path in before:  # whatever a kill leaves behind decodes
        _decode(path)

    summary = prepare_depth(tmp_path / "ds", out, FULL)
    assert summary.failed == 0 and summary.done + summary.skipped == n and summary.skipped >= 1
    after = _all_outputs(out)
    assert len(after) == 4 * n
    for path in after:
        _decode(path)
    assert not list(out.rglob("*.tmp-*"))


def test_changed_parameters_are_refused_unless_overwrite(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    opts = PrepareOptions(jet=True, workers=1)
    prepare_depth(tmp_path / "ds", out, opts)
    before = (out / "jet" / "000.png").read_bytes()
    with pytest.raises(ConfigError, match="jet_max_depth_m"):
        prepare_depth(tmp_path / "ds", out, PrepareOptions(jet=True, jet_max_depth_m=3.0, workers=1))
    summary = prepare_depth(
        tmp_path / "ds", out, PrepareOptions(jet=True, jet_max_depth_m=3.0, workers=1, overwrite=True)
    )
    assert summary.done == 3
    assert (out / "jet" / "000.png").read_bytes() != before
    # adding a product to the same folder is fine: only the new outputs are computed
    summary = prepare_depth(
        tmp_path / "ds", out, PrepareOptions(jet=True, jet_max_depth_m=3.0, hha=True, workers=1)
    )
    assert summary.done == 3 and all((out / "hha" / f"{i:03d}.png").is_file() for i in range(3))


def _bad_dataset(root: Path) -> dict[str, tuple[str, str]]:
    """Two good frames and one per kind of bad input; returns id -> (file named, words expected)."""
    rng = np.random.default_rng(1)
    lines = ["# columns: rgb depth intrinsics"]
    expected: dict[str, tuple[str, str]] = {}

    def add(frame_id: str, depth: np.ndarray | bytes | None, *, rgb_hw=(H, W), intr: bool = True) -> None:
        depth_path = root / "depth" / f"{frame_id}.png"
        depth_path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(depth, bytes):
            depth_path.write_bytes(depth)
        else:
            write_png(depth_path, depth)
        write_png(root / "rgb" / f"{frame_id}.png", rng.integers(0, 256, (*rgb_hw, 3), dtype=np.uint8))
        if intr:
            (root / "intr").mkdir(exist_ok=True)
            (root / "intr" / f"{frame_id}.json").write_text(json.dumps(INTR.as_dict()))
        lines.append(f"rgb/{frame_id}.png depth/{frame_id}.png intr/{frame_id}.json")

    add("good0", _scene_mm(rng))
    add("good1", _scene_mm(rng))
    add("empty", b"")
    expected["empty"] = ("depth/empty.png", "0 bytes")
    add("eightbit", (_scene_mm(rng) // 20).astype(np.uint8))
    expected["eightbit"] = ("depth/eightbit.png", "8-bit")
    add("corrupt", b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
    expected["corrupt"] = ("depth/corrupt.png", "corrupt")
    scene = _scene_mm(rng)
    add("metres", np.where(scene > 0, np.maximum(1, np.rint(scene / 1000.0)), 0).astype(np.uint16))
    expected["metres"] = ("depth/metres.png", "metres declared as millimetres")
    add("zeros", np.zeros((H, W), np.uint16))
    expected["zeros"] = ("depth/zeros.png", "no valid pixels")
    add("mismatch", _scene_mm(rng), rgb_hw=(H // 2, W))
    expected["mismatch"] = ("rgb/mismatch.png", "does not match")
    add("nointr", _scene_mm(rng), intr=False)
    expected["nointr"] = ("intr/nointr.json", "intrinsics")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return expected


def test_bad_frames_fail_one_by_one_and_the_rest_completes(tmp_path: Path) -> None:
    expected = _bad_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    opts = PrepareOptions(complete="fast", hha=True, jet=True, workers=1)
    summary = prepare_depth(tmp_path / "ds", out, opts, depth_scale="mm")
    assert (summary.done, summary.failed) == (2, len(expected))
    failures = {f.id: f.message for f in summary.failures}
    assert set(failures) == set(expected)
    for frame_id, (file_part, words) in expected.items():
        assert file_part in failures[frame_id], failures[frame_id]
        assert words in failures[frame_id], failures[frame_id]
    for product in ("depth_filled", "hha", "jet"):
        assert sorted(p.stem for p in (out / product).glob("*.png")) == ["good0", "good1"]
    assert [s.id for s in read_list(out / "train.txt", allow_absolute=True).samples] == ["good0", "good1"]
    meta = json.loads((out / "meta.json").read_text())
    assert (
        meta["frames"]["zeros"]["status"] == "failed"
        and "no valid pixels" in meta["frames"]["zeros"]["message"]
    )
    assert meta["summary"]["failed"] == len(expected)


def test_missing_intrinsics_or_depth_unit_is_an_upfront_error(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "ds", meta=False)
    with pytest.raises(ConfigError, match="pass `intrinsics`"):
        prepare_depth(tmp_path / "ds", tmp_path / "out", PrepareOptions(hha=True), depth_scale="mm")
    with pytest.raises(ConfigError, match="pass `depth_scale`"):
        prepare_depth(tmp_path / "ds", tmp_path / "out", PrepareOptions(jet=True))
    with pytest.raises(ConfigError, match="at least one output"):
        PrepareOptions()
    with pytest.raises(ConfigError, match="replace the input list"):
        prepare_depth(
            tmp_path / "ds" / "train.txt", tmp_path / "ds", PrepareOptions(jet=True), depth_scale="mm"
        )


def test_process_pool_gives_the_same_outputs(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "ds", 4)
    opts = PrepareOptions(complete="multiscale", blur="gaussian", hha=True, jet=True)
    one = prepare_depth(tmp_path / "ds", tmp_path / "one", replace(opts, workers=1))
    two = prepare_depth(tmp_path / "ds", tmp_path / "two", replace(opts, workers=2))
    assert one.done == two.done == 4
    for path in _all_outputs(tmp_path / "one"):
        assert path.read_bytes() == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes()


def test_folder_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    # nested depth files picked by a pattern; ids mirror the relative paths
    for scene in ("a", "b"):
        write_png(tmp_path / "nested" / scene / "depth_raw.png", _scene_mm(rng))
        write_png(tmp_path / "nested" / scene / "other.png", _scene_mm(rng))
    summary = prepare_depth(
        tmp_path / "nested",
        tmp_path / "out1",
        PrepareOptions(jet=True, pattern="*/depth_raw*.png", workers=1),
        depth_scale="mm",
    )
    assert summary.done == 2
    assert sorted(p.relative_to(tmp_path / "out1").as_posix() for p in _all_outputs(tmp_path / "out1")) == [
        "jet/a/depth_raw.png",
        "jet/b/depth_raw.png",
    ]
    assert read_list(tmp_path / "out1" / "list.txt", allow_absolute=True).columns == ("depth", "jet")

    # one folder per modality, no list file: columns found by matching stems
    _write_dataset(tmp_path / "layout")
    (tmp_path / "layout" / "train.txt").unlink()
    summary = prepare_depth(tmp_path / "layout", tmp_path / "out2", PrepareOptions(hha=True, workers=1))
    assert summary.done == 3
    listing = read_list(tmp_path / "out2" / "list.txt", allow_absolute=True)
    assert set(listing.columns) == {"depth", "rgb", "label", "hha"}

    # the same id in two lists for different files gets the list's name as prefix
    _write_dataset(tmp_path / "split", 2)
    lines = (tmp_path / "split" / "train.txt").read_text().splitlines()
    (tmp_path / "split" / "val.txt").write_text(
        lines[0] + "\n" + lines[1].replace("depth/000", "depth/001") + "\n"
    )
    (tmp_path / "split" / "train.txt").write_text(lines[0] + "\n" + lines[1] + "\n")
    summary = prepare_depth(tmp_path / "split", tmp_path / "out3", PrepareOptions(jet=True, workers=1))
    assert summary.done == 2 and (tmp_path / "out3" / "jet" / "val" / "000.png").is_file()


def test_evi_and_ndvi_from_nir_and_rgb(tmp_path: Path) -> None:
    from fusionseg.data.io import read_gray, read_image
    from fusionseg.modalities.evi import encode_evi, encode_ndvi

    _write_dataset(tmp_path / "ds", 2, nir=True)
    summary = prepare_depth(tmp_path / "ds", tmp_path / "out", PrepareOptions(evi=True, ndvi=True, workers=1))
    assert summary.done == 2
    nir, bgr = read_gray(tmp_path / "ds" / "nir" / "001.png"), read_image(tmp_path / "ds" / "rgb" / "001.png")
    np.testing.assert_array_equal(_decode(tmp_path / "out" / "evi" / "001.png"), encode_evi(nir, bgr))
    np.testing.assert_array_equal(_decode(tmp_path / "out" / "ndvi" / "001.png"), encode_ndvi(nir, bgr))


def test_torch_hha_backend_matches_numpy(tmp_path: Path) -> None:
    pytest.importorskip("fusionseg.modalities.hha_torch")
    _write_dataset(tmp_path / "ds", 3)
    base = {"complete": "fast", "hha": True, "workers": 1}
    prepare_depth(tmp_path / "ds", tmp_path / "np", PrepareOptions(**base))
    summary = prepare_depth(
        tmp_path / "ds", tmp_path / "pt", PrepareOptions(**base, hha_backend="torch", device="cpu")
    )
    assert summary.done == 3
    for path in _all_outputs(tmp_path / "np" / "hha"):
        a = _decode(path).astype(int)
        b = _decode(tmp_path / "pt" / "hha" / path.name).astype(int)
        assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.99


def test_torch_completion_backend_matches_numpy_on_kitti(shared_data: Path, tmp_path: Path) -> None:
    """KITTI LiDAR, multiscale: the torch back-end's depth_filled PNGs equal numpy's to one 1/256 m unit."""
    source = shared_data / "kitti-object-lidar3" / "sparse_depth"
    base = {"complete": "multiscale", "pattern": "00000[01].png", "workers": 2}
    outputs = {}
    for backend in ("numpy", "torch"):
        options = PrepareOptions(**base, completion_backend=backend, device="cpu")
        summary = prepare_depth(source, tmp_path / backend, options, depth_scale="kitti")
        assert summary.done == 2, summary
        outputs[backend] = sorted((tmp_path / backend / "depth_filled").glob("*.png"))
    assert (
        [p.name for p in outputs["numpy"]]
        == [p.name for p in outputs["torch"]]
        == ["000000.png", "000001.png"]
    )
    for a_path, b_path in zip(outputs["numpy"], outputs["torch"]):
        a, b = _decode(a_path).astype(int), _decode(b_path).astype(int)
        assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.999
    meta = json.loads((tmp_path / "torch" / "meta.json").read_text())
    assert "torch" in json.dumps(meta)  # the back-end is recorded with the run


def test_read_intrinsics_file_forms(tmp_path: Path) -> None:
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"fx": 500, "fy": 501, "cx": 320, "cy": 240}))
    nested = tmp_path / "meta.json"
    nested.write_text(json.dumps({"intrinsics": {"fx": 500, "fy": 501, "cx": 320, "cy": 240}, "x": 1}))
    matrix = tmp_path / "K.txt"
    matrix.write_text("500 0 320\n0 501 240\n0 0 1\n")
    kitti = tmp_path / "calib.txt"
    kitti.write_text("P0: 1 0 2 0 0 1 3 0 0 0 1 0\nP2: 500 0 320 45 0 501 240 -0.3 0 0 1 0.005\n")
    for path in (flat, nested, matrix, kitti):
        assert read_intrinsics_file(path) == Intrinsics(500.0, 501.0, 320.0, 240.0), path
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n")
    with pytest.raises(DataError, match="bad.txt"):
        read_intrinsics_file(bad)
    assert resolve_intrinsics("500,501,320,240", one_based=True) == Intrinsics(500.0, 501.0, 319.0, 239.0)
    assert resolve_intrinsics(str(matrix)) == Intrinsics(500.0, 501.0, 320.0, 240.0)
    with pytest.raises(ConfigError, match="neither"):
        resolve_intrinsics("no-such-file")


def test_resume_recomputes_outputs_that_are_not_whole(tmp_path: Path) -> None:
    """A truncated HHA, an empty JET and a file of another format are not trusted on resume."""
    _write_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    prepare_depth(tmp_path / "ds", out, FULL)
    good = {p: p.read_bytes() for p in _all_outputs(out)}
    truncated, empty, grey = out / "hha" / "000.png", out / "jet" / "001.png", out / "normals" / "002.png"
    truncated.write_bytes(good[truncated][: len(good[truncated]) // 2])
    empty.write_bytes(b"")
    write_png(grey, np.zeros((H, W), np.uint8))  # a whole PNG, but not a colour product
    summary = prepare_depth(tmp_path / "ds", out, FULL)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 0)
    assert {p: p.read_bytes() for p in _all_outputs(out)} == good  # recomputed bit-identically
    assert prepare_depth(tmp_path / "ds", out, FULL).skipped == 3  # and then trusted


def test_one_worker_runs_opencv_on_one_thread_and_restores_it(tmp_path: Path, monkeypatch) -> None:
    """--workers 1 is the single thread it says (benchmarks rely on it): OpenCV and torch in the
    parent process itself; the caller's settings return."""
    import torch

    import fusionseg.data.prepare.runner as prepare_module

    _write_dataset(tmp_path / "ds", n=2)
    seen = []
    real = prepare_module.process_frame

    def spy(task, ctx):
        seen.append((cv2.getNumThreads(), torch.get_num_threads()))
        return real(task, ctx)

    monkeypatch.setattr(prepare_module, "process_frame", spy)
    before = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(2)
    torch.set_num_threads(2)
    try:
        prepare_depth(tmp_path / "ds", tmp_path / "out", dataclasses.replace(FULL, workers=1))
        assert seen == [(1, 1), (1, 1)]
        assert cv2.getNumThreads() == 2 and torch.get_num_threads() == 2
    finally:
        cv2.setNumThreads(before[0])
        torch.set_num_threads(before[1])
