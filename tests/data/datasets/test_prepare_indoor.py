"""`prepare-dataset nyuv2 | sunrgbd | scannet` end to end on tiny downloads in the official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as scipy_io
from click.testing import CliRunner
from indoor_layouts import RAW_AT, make_nyuv2_root, make_scannet_root, make_sunrgbd_root, write_mat73

from fusionseg.cli import cli, main
from fusionseg.data.catalog import NYUV2_13, SCANNET, SUNRGBD
from fusionseg.data.datasets import scannet
from fusionseg.data.datasets.nyuv2 import NYU_INTRINSICS
from fusionseg.data.datasets.runner import prepare_dataset
from fusionseg.data.io import read_depth
from fusionseg.data.listfile import read_list
from fusionseg.modalities.hha import hha, hha_to_bgr

COLUMNS = ("rgb", "depth", "intrinsics", "label")


def _png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def _samples(out: Path, split: str) -> dict:
    listing = read_list(out / f"{split}.txt")
    assert listing.columns == COLUMNS
    return {s.id: s.files for s in listing.samples}


def test_nyuv2_13_classes(tmp_path: Path) -> None:
    arrays = make_nyuv2_root(tmp_path / "nyu")
    out = tmp_path / "out"
    summary = prepare_dataset("nyuv2", tmp_path / "nyu", out, num_classes=13, workers=1)
    assert summary.ok and summary.done == 4 and summary.splits == {"train": 2, "test": 2}
    assert not (out / "val.txt").exists()
    test = _samples(out, "test")
    assert set(test) == {"NYU0001", "NYU0002"} and set(_samples(out, "train")) == {"NYU0003", "NYU0004"}
    files = test["NYU0001"]
    label = _png(files["label"])
    assert label.dtype == np.uint8 and label.shape == (480, 640)
    for (r, c), raw in RAW_AT.items():  # fixture tables: raw -> (raw-1) % 40 + 1 -> (id40-1) % 13 + 1
        assert label[r, c] == (0 if raw == 0 else ((raw - 1) % 40) % 13 + 1), (r, c)
    depth = read_depth(files["depth"], depth_scale_m="mm", check_range=False)
    assert depth[5, 5] == pytest.approx(9.75) and depth[6, 6] == 0  # beyond 6.55 m: no wrap
    np.testing.assert_allclose(depth, arrays["depths"][..., 0], atol=5e-4)
    np.testing.assert_array_equal(_png(files["rgb"])[..., ::-1], arrays["images"][..., 0])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["depth_scale"] == "mm" and meta["classes"] == list(NYUV2_13.classes)
    assert meta["frame_intrinsics"]["NYU0002"] == NYU_INTRINSICS.as_dict()


def test_sunrgbd_37_classes(tmp_path: Path) -> None:
    arrays = make_sunrgbd_root(tmp_path / "sun")
    out = tmp_path / "out"
    summary = prepare_dataset("sunrgbd", tmp_path / "sun", out, workers=1)
    assert summary.ok and summary.splits == {"train": 2, "test": 1}
    test = _samples(out, "test")
    assert list(test) == ["kv1__NYUdata__NYU0001"]
    train = _samples(out, "train")
    assert not any("unlisted" in frame for frame in (*train, *test))
    a = arrays["kv1/NYUdata/NYU0001"]
    np.testing.assert_array_equal(_png(test["kv1__NYUdata__NYU0001"]["label"]), a["label"])
    depth = read_depth(test["kv1__NYUdata__NYU0001"]["depth"], depth_scale_m="mm")
    assert depth[0, 0] == pytest.approx(2.5) and depth[2, 2] == pytest.approx(7.999)  # not 20 m: decoded
    np.testing.assert_allclose(depth, a["depth_mm"] / 1000.0, atol=1e-6)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["depth_scale"] == "mm" and len(meta["classes"]) == SUNRGBD.num_classes == 38
    intrinsics = meta["frame_intrinsics"]["kv1__NYUdata__NYU0001"]
    assert intrinsics == {"fx": 520.0, "fy": 521.0, "cx": 7.5, "cy": 5.5}  # 1-based K made 0-based


def test_scannet_through_the_cli_with_two_workers(tmp_path: Path) -> None:
    arrays = make_scannet_root(tmp_path / "scannet", num_frames=101)
    out = tmp_path / "out"
    args = ["prepare-dataset", "scannet", "--root", str(tmp_path / "scannet"), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["done"] == 6 and report["splits"] == {"train": 4, "val": 2}
    train, val = _samples(out, "train"), _samples(out, "val")
    assert set(val) == {"scene0011_00_000000", "scene0011_00_000100"}  # every 100th frame
    assert "scene0000_00_000100" in train and not any("scene0707" in f for f in (*train, *val))
    table = scannet.read_label_table(tmp_path / "scannet" / scannet.LABEL_TSV)
    a = arrays[("scene0011_00", 100)]
    files = val["scene0011_00_000100"]
    label = _png(files["label"])
    np.testing.assert_array_equal(label, table[a["label_small"]])
    assert label.max() <= 20 and label.shape == a["depth"].shape == _png(files["rgb"]).shape[:2]
    depth = read_depth(files["depth"], depth_scale_m="mm", check_range=False)
    np.testing.assert_allclose(depth, a["depth"] / 1000.0, atol=1e-6)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == list(SCANNET.classes) and meta["depth_scale"] == "mm"
    assert meta["frame_intrinsics"]["scene0011_00_000100"]["cx"] == pytest.approx(7.6)


def test_frame_step_subsamples_scannet_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_scannet_root(tmp_path / "scannet", num_frames=5)
    summary = prepare_dataset("scannet", tmp_path / "scannet", tmp_path / "out", frame_step=2, workers=1)
    assert summary.ok and summary.splits == {"train": 6, "val": 3}  # frames 0, 2, 4 of each scene
    assert "scene0011_00_000004" in _samples(tmp_path / "out", "val")
    args = ["prepare-dataset", "nyuv2", "--root", str(tmp_path), "--out", str(tmp_path / "o2")]
    assert main([*args, "--frame-step", "2"]) == 2
    expected = "error: --frame-step: nyuv2 has no frame subsampling (scannet has)"
    assert capsys.readouterr().err.strip() == expected


def test_nyuv2_real_frame_hha_through_prepare_dataset(shared_data: Path, tmp_path: Path) -> None:
    """NYU frame 1 (real RGB and toolbox-filled depth) in a labelled .mat -> --modalities hha.

    The HHA must be what `hha` gives for the prepared millimetre depth with the NYU intrinsics (so
    orientation, units and the 1-based -> 0-based intrinsics went through), and within +-1 of the
    MATLAB reference at >= 99.8 % of pixels (the rest is the 1e-4 m -> mm rounding: measured 99.84 %).
    """
    ref = shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001"
    rgb = _png(ref / "rgb.png")[..., ::-1]
    depth_m = _png(ref / "depth_filled_1e-4m.png").astype(np.float32) / np.float32(10000)
    root = tmp_path / "nyu"
    make_nyuv2_root(root)  # mapping files and splits; the .mat is replaced by the real frame
    write_mat73(
        root / "nyu_depth_v2_labeled.mat", rgb[..., None], depth_m[..., None], np.zeros((480, 640, 1))
    )
    scipy_io.savemat(root / "splits.mat", {"trainNdxs": np.zeros((0, 1)), "testNdxs": np.array([[1]])})
    summary = prepare_dataset("nyuv2", root, tmp_path / "out", workers=1, modalities=("hha",))
    assert summary.ok and summary.modalities.failed == 0
    ours = _png(tmp_path / "out" / "modalities" / "hha" / "NYU0001.png").astype(int)
    prepared_m = read_depth(tmp_path / "out" / "test" / "depth" / "NYU0001.png", depth_scale_m="mm")
    np.testing.assert_array_equal(ours, hha_to_bgr(hha(prepared_m.astype(np.float64), NYU_INTRINSICS)))
    matlab = _png(ref / "hha_matlab_rd_eq_d.png").astype(int)
    assert (np.abs(ours - matlab) <= 1).all(axis=2).mean() >= 0.998


@pytest.mark.slow  # ~20 s on one core: trains 2 steps and evaluates
def test_train_unimodal_hha_and_evaluate_on_prepared_sunrgbd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SUN RGB-D has train and test splits only: the test list serves as validation list."""
    make_sunrgbd_root(tmp_path / "sun")
    out = tmp_path / "prepared"
    assert prepare_dataset("sunrgbd", tmp_path / "sun", out, workers=1, modalities=("hha",)).ok
    settings = [f"data.root={out}", "data.dataset=sunrgbd", "model.num_classes=38", "data.modalities=[hha]"]
    settings += ["data.val_list=test.txt", "data.height_px=64", "data.width_px=64"]
    settings += ["train.batch_size=2", "train.iterations=2"]
    args = ["train-unimodal", "--config", "configs/synthetic-rgb.yaml", "--modality", "hha"]
    args += ["--out", str(tmp_path / "run")]
    for item in settings:
        args += ["--set", item]
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    evaluate = ["evaluate", "--checkpoint", str(tmp_path / "run/best.pt"), "--data", str(out / "test.txt")]
    assert main([*evaluate, "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 1 and "Bag" in report["per_class_iou"]
