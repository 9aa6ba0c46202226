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
