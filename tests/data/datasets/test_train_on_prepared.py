"""End to end: a prepared Cityscapes fixture trains a depth expert (2 steps) and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataset_layouts import make_cityscapes

from fusionseg.cli import main
from fusionseg.data.datasets.runner import prepare_dataset


def test_train_unimodal_and_evaluate_on_prepared_cityscapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_cityscapes(tmp_path / "cityscapes")
    out = tmp_path / "prepared"
    assert prepare_dataset("cityscapes", root, out, num_classes=11, workers=1).ok
    settings = [
        f"data.root={out}",
        "data.dataset=cityscapes11",
        "model.num_classes=12",
        "data.modalities=[depth]",
        "data.depth_scale_m=0.00390625",  # meta.json: depth_scale 1/256
        "data.height_px=64",
        "data.width_px=128",
        "train.batch_size=2",
        "train.iterations=2",
    ]
    args = [
        "train-unimodal",
        "--config",
        "configs/synthetic-depth.yaml",
        "--modality",
        "depth",
        "--out",
        str(tmp_path / "run"),
    ]
    for item in settings:
        args += ["--set", item]
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert json.loads((out / "meta.json").read_text())["depth_scale_m"] == 0.00390625
    evaluate = [
        "evaluate",
        "--checkpoint",
        str(tmp_path / "run/best.pt"),
        "--data",
        str(out / "val.txt"),
        "--json",
    ]
    assert main(evaluate) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 1 and set(report["per_class_iou"]) >= {"Road", "Car/Truck/Bus"}


@pytest.mark.slow
def test_train_pipeline_on_prepared_cityscapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rgb and depth experts and SSMA, one step each, then the evaluation table (about a minute on 2 CPUs)."""
    root = make_cityscapes(tmp_path / "cityscapes")
    out = tmp_path / "prepared"
    assert prepare_dataset("cityscapes", root, out, num_classes=11, workers=1).ok
    settings = [
        f"data.root={out}",
        "data.dataset=cityscapes11",
        "model.num_classes=12",
        "data.depth_scale_m=0.00390625",
        "fusion.pipeline_schemes=[ssma]",
        "fusion.pipeline_robustness=[depth=zero]",
        "fusion.pipeline_report_frames=0",
        "fusion.time_budget_s=0",
        "fusion.iterations=1",
        "train.time_budget_s=0",
        "train.iterations=1",
        "train.batch_size=2",
        f"train.out_dir={tmp_path / 'run'}",
    ]
    args = ["train-pipeline", "configs/synthetic-pipeline.yaml", "--json"]
    for item in settings:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "run/eval/results.json").is_file()


def test_train_with_the_class_file_of_a_prepared_custom_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's dataset with label ids 7 and 3: prepare-dataset renumbers, its OUT/classes.yaml trains."""
    import cv2
    import numpy as np

    class_file = tmp_path / "mine.yaml"
    class_file.write_text("void: 0\nclasses:\n  - {id: 7, name: trunk}\n  - {id: 3, name: leaf}\n")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(2):
            label = np.where(rng.random((32, 64)) < 0.5, 7, 3).astype(np.uint8)
            for column, image in (
                ("rgb", rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)),
                ("label", label),
            ):
                (tmp_path / "mine" / split / column).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / "mine" / split / column / f"{split}{index}.png"), image)
    out = tmp_path / "prepared"
    assert prepare_dataset(str(class_file), tmp_path / "mine", out, workers=1).ok
    args = [
        "train-unimodal",
        "--config",
        "configs/synthetic-rgb.yaml",
        "--modality",
        "rgb",
        "--out",
        str(tmp_path / "run"),
    ]
    settings = [f"data.root={out}", f"data.dataset={out / 'classes.yaml'}", "model.num_classes=3"]
    settings += ["data.height_px=32", "data.width_px=64", "train.batch_size=2", "train.iterations=2"]
    for item in settings:
        args += ["--set", item]
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["steps"] == 2
