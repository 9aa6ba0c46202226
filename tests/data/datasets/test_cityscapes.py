"""Cityscapes reader: official splits, both label spaces at known pixels, stereo depth, the trainId trap."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_layouts import (
    CITYSCAPES_FRAMES,
    CS_BACKGROUND_DEPTH_M,
    CS_CENTRE,
    CS_DISPARITY_PIXELS,
    CS_FX,
    CS_LABEL_PIXELS,
    H,
    W,
    frame_rgb,
    make_cityscapes,
)

from fusionseg.data.catalog import CITYSCAPES11, CITYSCAPES19
from fusionseg.data.datasets import READERS
from fusionseg.data.datasets.cityscapes import CITYSCAPES_LABELS
from fusionseg.data.datasets.runner import prepare_dataset
from fusionseg.data.datasets.urban11 import URBAN11_MERGE
from fusionseg.data.io import read_depth
from fusionseg.data.listfile import read_list
from fusionseg.errors import DataError


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"))


def test_lists_follow_the_official_splits(download: Path) -> None:
    frames = READERS["cityscapes"].list_frames(download, 19)
    got = {split: [f.frame_id for f in frames if f.split == split] for split in ("train", "val", "test")}
    assert got == {"train": sorted(CITYSCAPES_FRAMES["train"]), "val": CITYSCAPES_FRAMES["val"], "test": []}


@pytest.mark.parametrize(("num_classes", "column"), [(19, 1), (11, 2)])
def test_labels_depth_and_rgb_at_known_pixels(
    download: Path, tmp_path: Path, num_classes: int, column: int
) -> None:
    summary = prepare_dataset("cityscapes", download, tmp_path, num_classes=num_classes, workers=1)
    assert summary.ok and summary.done == 4 and summary.splits == {"train": 3, "val": 1}
    listing = read_list(tmp_path / "train.txt")
    assert listing.columns == ("rgb", "depth", "intrinsics", "label")
    sample = next(s for s in listing.samples if s.id == "aachen_000000_000019")
    label = cv2.imread(str(sample.files["label"]), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.ndim == 2
    assert label[0, 5] == (1 if num_classes == 19 else 3)  # road
    for (r, c), ids in CS_LABEL_PIXELS.items():
        assert label[r, c] == ids[column], (r, c)
    depth = read_depth(sample.files["depth"], depth_scale_m="1/256", check_range=False)
    assert depth[5, 20] == pytest.approx(CS_BACKGROUND_DEPTH_M)
    for (r, c), (_, metres) in CS_DISPARITY_PIXELS.items():
        assert depth[r, c] == pytest.approx(metres), (r, c)
    bgr = cv2.imread(str(sample.files["rgb"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr[..., ::-1], frame_rgb(0))  # colours unchanged
    assert (H, W) == label.shape == depth.shape == bgr.shape[:2]


def test_meta_names_unit_classes_and_camera(download: Path, tmp_path: Path) -> None:
    import json

    prepare_dataset("cityscapes", download, tmp_path, num_classes=11, workers=1)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["depth_scale"] == "1/256" and meta["depth_scale_m"] == pytest.approx(1 / 256)
    assert meta["classes"] == list(CITYSCAPES11.classes) and len(meta["palette"]) == 12
    intr = meta["frame_intrinsics"]["frankfurt_000000_000294"]
    assert intr == {"fx": CS_FX, "fy": CS_FX, "cx": CS_CENTRE[0], "cy": CS_CENTRE[1]}


def test_a_train_id_file_in_place_of_label_ids_is_refused(download: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(download, root)
    label_file = root / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png"
    train_ids = np.full((H, W), 0, np.uint8)
    train_ids[3, 4] = 255  # what createTrainIdLabelImgs writes for ego vehicle
    cv2.imwrite(str(label_file), train_ids)
    summary = prepare_dataset("cityscapes", root, tmp_path / "out", num_classes=19, workers=1)
    assert summary.failed == 1 and summary.done == 3
    message = summary.failures[0].message
    assert str(label_file) in message and "labelTrainIds" in message
    listed = [s.id for s in read_list(tmp_path / "out/train.txt").samples]
    assert "aachen_000001_000019" not in listed


def test_missing_folder_is_named(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / "leftImg8bit" / split).mkdir(parents=True)
    with pytest.raises(DataError, match="gtFine/train"):
        READERS["cityscapes"].check_layout(tmp_path)


def test_tables_cover_the_benchmark_classes() -> None:
    names = {n for n, _, t in CITYSCAPES_LABELS if t != 255}
    assert len(names) == 19 and names <= set(URBAN11_MERGE)
    assert sorted({t for _, _, t in CITYSCAPES_LABELS if t != 255}) == list(range(19))
    assert CITYSCAPES19.classes[1:] == tuple(
        n.title() for n, _, t in sorted(CITYSCAPES_LABELS, key=lambda x: x[2]) if t != 255
    )
    assert set(URBAN11_MERGE.values()) == set(range(1, 12))
