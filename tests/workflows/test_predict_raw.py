"""Raw sensors in, classes out: the checkpoint's recipe makes its inputs on the fly, equal to
prepare-depth's files (issue 17, item 1), through `Segmenter.predict_raw` and `fusionseg predict --raw`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusionseg import Segmenter
from fusionseg.cli import main
from fusionseg.data.prepare import PrepareOptions, prepare_depth
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

NYU_ONE_BASED = "518.85790117450188,519.46961112127485,325.58244941119034,253.73616633400465"


def _expert(path: Path, modality: str, *, root: Path, size_hw: tuple[int, int]) -> Path:
    """A seeded random AdapNet++ expert whose training data is `root` (its recipe comes from there)."""
    from fusionseg.config import config_from_dict, config_to_dict
    from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
    from fusionseg.models.adapnet import build_adapnet
    from fusionseg.workflows.train_expert import expert_checkpoint_meta

    data = {"root": str(root), "height_px": size_hw[0], "width_px": size_hw[1], "depth_sensor": "any"}
    cfg = config_from_dict({"data": data, "model": {"num_classes": 9}})
    torch.manual_seed(0)
    model = build_adapnet(cfg.model, in_channels=3, modality=modality).eval()
    meta = expert_checkpoint_meta(cfg, modality, in_channels=3)
    header = checkpoint_header(**meta, step=0, model=model.state_dict(), config=config_to_dict(cfg))
    return save_checkpoint(path, header)


def _prepare(src: Path, out: Path, options: PrepareOptions, **kwargs: object) -> None:
    summary = prepare_depth(src, out, dataclasses.replace(options, workers=1), **kwargs)
    assert summary.ok, summary.failures


@pytest.fixture(scope="module")
def nyu(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An HHA expert trained on prepare-depth's NYU output, the raw depth and the prepared HHA file."""
    tmp = tmp_path_factory.mktemp("nyu")
    frame = shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001"
    options = PrepareOptions(complete="fast", hha=True, pattern="depth_raw*.png", depth_sensor="indoor")
    _prepare(
        frame,
        tmp / "prepared",
        options,
        depth_scale="1e-4m",
        intrinsics=NYU_ONE_BASED,
        intrinsics_one_based=True,
    )
    return {
        "ckpt": _expert(tmp / "hha.pt", "hha", root=tmp / "prepared", size_hw=(96, 128)),
        "raw": frame / "depth_raw_1e-4m.png",
        "rgb": frame / "rgb.png",
        "prepared": tmp / "prepared" / "hha" / "depth_raw_1e-4m.png",
    }


def _nyu_intrinsics() -> Intrinsics:
    fx, fy, cx, cy = (float(v) for v in NYU_ONE_BASED.split(","))
    return Intrinsics.from_one_based(fx, fy, cx, cy)


def test_a_trained_checkpoint_records_how_its_input_was_made(nyu: dict[str, Path]) -> None:
    seg = Segmenter.from_checkpoint(nyu["ckpt"], device="cpu", depth_scale="1e-4m")
    recipe = seg.recipes["hha"]
    assert (recipe.product, recipe.complete, recipe.blur) == ("hha", "fast", "bilateral")
    assert "prepare-depth" in recipe.source and seg.raw_needs() == {"depth", "intrinsics"}
    assert seg.describe_inputs() == ["hha: hha of depth with ip_basic fast completion"]


def test_nyu_raw_depth_gives_the_prepared_hha_and_its_classes(nyu: dict[str, Path]) -> None:
    seg = Segmenter.from_checkpoint(nyu["ckpt"], device="cpu", depth_scale="1e-4m", mode="resize")
    raw = cv2.imread(str(nyu["raw"]), cv2.IMREAD_UNCHANGED)  # uint16, 1e-4 m, Kinect holes
    made = seg.raw_inputs(depth=raw, intrinsics=_nyu_intrinsics())
    prepared = cv2.imread(str(nyu["prepared"]), cv2.IMREAD_UNCHANGED)
    assert made["hha"].dtype == np.uint8 and np.array_equal(made["hha"], prepared)
    labels = seg.predict_raw(depth=raw, intrinsics=_nyu_intrinsics())
    assert np.array_equal(labels, seg.predict({"hha": prepared}))
    with pytest.raises(DataError, match="intrinsics"):
        seg.predict_raw(depth=raw)
    with pytest.raises(DataError, match="raw depth"):
        seg.predict_raw(rgb=cv2.imread(str(nyu["rgb"])))


def test_predict_raw_from_the_cli_equals_prepare_then_predict(nyu: dict[str, Path], tmp_path: Path) -> None:
    ckpt = str(nyu["ckpt"])
    raw_args = ["predict", "--checkpoint", ckpt, "--raw", str(nyu["raw"]), "--depth-scale", "1e-4m"]
    raw_args += ["--intrinsics", NYU_ONE_BASED, "--intrinsics-one-based", "--out", str(tmp_path / "raw")]
    assert main([*raw_args, "--json"]) == 0
    assert main(["predict", "--checkpoint", ckpt, str(nyu["prepared"]), "--out", str(tmp_path / "prep")]) == 0
    a = cv2.imread(str(tmp_path / "raw" / "labels" / "depth_raw_1e-4m.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(tmp_path / "prep" / "labels" / "depth_raw_1e-4m.png"), cv2.IMREAD_UNCHANGED)
    assert a.shape == (480, 640) and np.array_equal(a, b)


def test_raw_without_intrinsics_is_one_line(nyu: dict[str, Path], tmp_path: Path, capsys) -> None:
    args = ["predict", "--checkpoint", str(nyu["ckpt"]), "--raw", str(nyu["raw"])]
    assert main([*args, "--depth-scale", "1e-4m", "--out", str(tmp_path)]) in (2, 3)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any("--intrinsics" in line for line in err), err


def test_kitti_sparse_lidar_gives_the_prepared_jet(shared_data: Path, tmp_path: Path) -> None:
    kitti = shared_data / "kitti-object-lidar3"
    options = PrepareOptions(complete="fast", jet=True, jet_max_depth_m=80, pattern="000001.png")
    _prepare(kitti / "sparse_depth", tmp_path / "prepared", options, depth_scale="kitti")
    ckpt = _expert(tmp_path / "jet.pt", "jet", root=tmp_path / "prepared", size_hw=(128, 416))
    seg = Segmenter.from_checkpoint(ckpt, device="cpu", depth_scale="kitti", mode="resize")
    sparse = cv2.imread(str(kitti / "sparse_depth" / "000001.png"), cv2.IMREAD_UNCHANGED)
    made = seg.raw_inputs(depth=sparse)
    prepared = cv2.imread(str(tmp_path / "prepared" / "jet" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(made["jet"], prepared)
    assert np.array_equal(seg.predict_raw(depth=sparse), seg.predict({"jet": prepared}))


def test_kinect_v2_completed_depth_is_quantised_like_its_file(shared_data: Path, tmp_path: Path) -> None:
    sample = shared_data / "kinectv2-samples" / "esanet"
    options = PrepareOptions(complete="multiscale", pattern="sample_depth.png", depth_sensor="indoor")
    _prepare(sample, tmp_path / "prepared", options, depth_scale="0.1mm")
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text())
    from fusionseg.data.recipe import make_model_inputs, recipes_for_data

    recipes = recipes_for_data(tmp_path / "prepared", ["depth_filled"])
    assert recipes["depth_filled"].filled_scale_m == meta["parameters"]["depth_filled_scale_m"]
    raw_m = cv2.imread(str(sample / "sample_depth.png"), cv2.IMREAD_UNCHANGED).astype(
        np.float32
    ) * np.float32(1e-4)
    made = make_model_inputs(recipes, depth_m=raw_m)["depth_filled"]
    from fusionseg.data.io import read_depth

    written = read_depth(
        tmp_path / "prepared" / "depth_filled" / "sample_depth.png",
        depth_scale_m=recipes["depth_filled"].filled_scale_m,
        check_range=False,
    )
    assert made.dtype == np.float32 and np.array_equal(made, written)


def test_prepare_dataset_modalities_record_their_recipe(tmp_path: Path) -> None:
    from dataset_layouts import make_cityscapes

    from fusionseg.data.datasets.runner import prepare_dataset
    from fusionseg.data.io import read_depth
    from fusionseg.data.listfile import read_list
    from fusionseg.data.recipe import make_model_inputs, recipes_for_data

    out = tmp_path / "prepared"
    summary = prepare_dataset(
        "cityscapes", make_cityscapes(tmp_path / "cs"), out, modalities=("jet",), workers=1
    )
    recipes = recipes_for_data(out, ["rgb", "jet"])
    assert recipes["rgb"].product == "rgb"
    jet = recipes["jet"]
    assert (jet.product, jet.complete, jet.jet_max_depth_m) == ("jet", "fast", 80.0)
    sample = read_list(summary.lists[0]).samples[0]
    meta = json.loads((out / "meta.json").read_text())
    depth_m = read_depth(sample.files["depth"], depth_scale_m=meta["depth_scale"], check_range=False)
    made = make_model_inputs({"jet": jet}, depth_m=depth_m)["jet"]
    assert np.array_equal(made, cv2.imread(str(sample.files["jet"]), cv2.IMREAD_UNCHANGED))


def test_a_fused_rgb_hha_model_takes_the_raw_colour_and_depth(nyu: dict[str, Path], tmp_path: Path) -> None:
    """SSMA over rgb + HHA, trained (here: built) on the prepared NYU folder: the raw colour image and
    raw Kinect depth give the classes of the colour image and the prepared HHA file."""
    from fusionseg import registry
    from fusionseg.config import config_from_dict, config_to_dict
    from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
    from fusionseg.workflows.run_meta import checkpoint_meta

    root = nyu["prepared"].parents[1]
    data = {"root": str(root), "height_px": 96, "width_px": 128, "depth_sensor": "any"}
    cfg = config_from_dict({"data": data, "model": {"num_classes": 9}, "fusion": {"cmode_pool_hw": [6, 8]}})
    channels = {"rgb": 3, "hha": 3}
    torch.manual_seed(0)
    model = registry.build_model("ssma", cfg, channels).eval()
    meta = {**checkpoint_meta(cfg, kind="ssma", in_channels=channels), "experts": [], "stage": "fusion"}
    header = checkpoint_header(**meta, step=0, model=model.state_dict(), config=config_to_dict(cfg))
    ckpt = save_checkpoint(tmp_path / "ssma.pt", header)
    seg = Segmenter.from_checkpoint(ckpt, device="cpu", depth_scale="1e-4m", mode="resize")
    assert seg.raw_needs() == {"rgb", "depth", "intrinsics"}
    bgr = cv2.imread(str(nyu["rgb"]))
    raw = cv2.imread(str(nyu["raw"]), cv2.IMREAD_UNCHANGED)
    labels = seg.predict_raw(rgb=bgr, depth=raw, intrinsics=_nyu_intrinsics())
    prepared = cv2.imread(str(nyu["prepared"]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, seg.predict({"rgb": bgr, "hha": prepared}))
    with pytest.raises(DataError, match="raw rgb"):
        seg.predict_raw(depth=raw, intrinsics=_nyu_intrinsics())
