"""SYNTHIA-RAND-CITYSCAPES and Freiburg Forest readers on fixtures in their official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_layouts import (
    FOREST_FRAMES,
    FOREST_LABEL_PIXELS,
    SYNTHIA_DEPTH_PIXELS,
    SYNTHIA_IDS,
    SYNTHIA_LABEL_PIXELS,
    forest_nir,
    forest_seed,
    frame_rgb,
    make_forest,
    make_synthia,
)

from fusionseg.data.datasets.runner import prepare_dataset
from fusionseg.data.io import read_depth
from fusionseg.data.listfile import read_list


def test_synthia_labels_from_the_class_channel_and_depth_in_cm(tmp_path: Path) -> None:
    root = make_synthia(tmp_path / "synthia")
    summary = prepare_dataset("synthia", root, tmp_path / "out", workers=1)
    assert summary.ok and summary.splits == {"train": 2, "val": 1}
    assert [s.id for s in read_list(tmp_path / "out/val.txt").samples] == [SYNTHIA_IDS[2]]
    sample = read_list(tmp_path / "out/train.txt").samples[1]
    assert sample.id == SYNTHIA_IDS[1]
    label = cv2.imread(str(sample.files["label"]), cv2.IMREAD_UNCHANGED)
    assert label[10, 20] == 3  # road
    for (r, c), (_, ours) in SYNTHIA_LABEL_PIXELS.items():
        assert label[r, c] == ours, (r, c)
    depth = read_depth(sample.files["depth"], depth_scale_m="cm", check_range=False)
    assert depth[10, 20] == pytest.approx(12.34)
    for (r, c), cm in SYNTHIA_DEPTH_PIXELS.items():
        assert depth[r, c] == pytest.approx(cm / 100), (r, c)
    np.testing.assert_array_equal(cv2.imread(str(sample.files["rgb"]))[..., ::-1], frame_rgb(11))
    meta = json.loads((tmp_path / "out/meta.json").read_text())
    assert meta["depth_scale"] == "cm" and meta["frame_intrinsics"] == {}


def test_synthia_accepts_the_folder_itself_as_root(tmp_path: Path) -> None:
    root = make_synthia(tmp_path / "synthia") / "RAND_CITYSCAPES"
    assert prepare_dataset("synthia", root, tmp_path / "out", workers=1).total == 3


def test_forest_labels_nir_channel_and_splits(tmp_path: Path) -> None:
    root = make_forest(tmp_path / "freiburg_forest_annotated")
    summary = prepare_dataset("freiburg-forest", root, tmp_path / "out", workers=1)
    assert summary.ok and summary.splits == {"train": 2, "test": 1}  # the view without GT is left out
    listing = read_list(tmp_path / "out/train.txt")
    assert listing.columns == ("rgb", "nir", "label")
    assert [s.id for s in listing.samples] == FOREST_FRAMES["train"]
    sample = listing.samples[1]
    label = cv2.imread(str(sample.files["label"]), cv2.IMREAD_UNCHANGED)
    for (r, c), (_, ours) in FOREST_LABEL_PIXELS.items():
        assert label[r, c] == ours, (r, c)
    nir = cv2.imread(str(sample.files["nir"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(nir, forest_nir(forest_seed("train", 1)))  # blue alone, no red mixed in
    test = read_list(tmp_path / "out/test.txt").samples[0]
    np.testing.assert_array_equal(
        cv2.imread(str(test.files["rgb"]))[..., ::-1], frame_rgb(forest_seed("test", 0))
    )


def test_forest_evi_through_modalities(tmp_path: Path) -> None:
    root = make_forest(tmp_path / "freiburg_forest_annotated")
    summary = prepare_dataset("freiburg-forest", root, tmp_path / "out", modalities=("evi",), workers=1)
    assert summary.ok and summary.modalities.done == 3
    listing = read_list(tmp_path / "out/test.txt")
    assert listing.columns == ("rgb", "nir", "evi", "label")
    evi = cv2.imread(str(listing.samples[0].files["evi"]), cv2.IMREAD_UNCHANGED)
    assert evi.shape == (16, 32, 3) and evi.dtype == np.uint8
