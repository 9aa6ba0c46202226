"""Built-in datasets: class lists per adapnetpp.md §12, palettes, colour ground truth, real NYU labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusionseg.data import io
from fusionseg.data.catalog import (
    DATASETS,
    FREIBURG_FOREST,
    FREIBURG_FOREST_COLOUR_TO_ID,
    colour_label_to_ids,
    get_dataset_info,
    indexed_palette,
)
from fusionseg.errors import ConfigError

EXPECTED_COUNTS = {
    "cityscapes11": 12,
    "cityscapes19": 20,
    "synthia": 12,
    "sunrgbd": 38,
    "scannet": 21,
    "freiburg_forest": 6,
    "synthetic": 9,
    "nyuv2_13": 14,
    "nyuv2_40": 41,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_class_counts_and_palettes(name: str) -> None:
    info = get_dataset_info(name)
    assert info.num_classes == EXPECTED_COUNTS[name]
    assert len(info.palette) == info.num_classes
    assert info.classes[0] == "void"
    assert len(set(info.classes)) == info.num_classes
    assert len(set(info.palette)) == info.num_classes  # every class drawn distinguishably
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in info.palette)


def test_registry_is_complete_and_errors_list_names() -> None:
    assert set(DATASETS) == set(EXPECTED_COUNTS)
    with pytest.raises(ConfigError, match="unknown dataset 'kitti'.*cityscapes11"):
        get_dataset_info("kitti")


def test_class_names_follow_the_spec() -> None:
    cs11 = get_dataset_info("cityscapes11").classes
    assert cs11[1] == "Sky" and cs11[8] == "Car/Truck/Bus" and cs11[11] == "Rider/Bicycle/Motorcycle"
    assert get_dataset_info("synthia").classes == cs11
    cs19 = get_dataset_info("cityscapes19")
    assert cs19.classes[1] == "Road" and cs19.classes[7] == "Traffic Light" and cs19.classes[19] == "Bicycle"
    assert cs19.palette[1] == (128, 64, 128) and cs19.palette[11] == (70, 130, 180)  # official colours
    sun = get_dataset_info("sunrgbd").classes
    assert sun[20] == "Floor Mat" and sun[32] == "Night Stand" and sun[37] == "Bag"
    scannet = get_dataset_info("scannet").classes
    assert scannet[15] == "Refrigerator" and scannet[20] == "Other Furniture"
    assert FREIBURG_FOREST.classes == ("void", "Trail", "Grass", "Vegetation", "Sky", "Obstacles")
    assert get_dataset_info("nyuv2_13").classes[1:] == (
        "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
        "picture", "sofa", "table", "tv", "wall", "window",
    )  # fmt: skip


def test_indexed_palette_is_the_voc_bit_scheme() -> None:
    palette = indexed_palette(256)
    assert palette[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert palette[8] == (64, 0, 0)
    assert len(set(palette)) == 256


def test_freiburg_colour_ground_truth() -> None:
    rgb = np.array(
        [
            [[170, 170, 170], [0, 255, 0], [102, 102, 51], [0, 60, 0]],
            [[0, 120, 255], [0, 0, 0], [1, 2, 3], [255, 255, 255]],
        ],
        np.uint8,
    )
    before = rgb.copy()
    ids = colour_label_to_ids(rgb, FREIBURG_FOREST_COLOUR_TO_ID)
    assert ids.dtype == np.uint8 and ids.tolist() == [[1, 2, 3, 3], [4, 5, 0, 0]]
    np.testing.assert_array_equal(rgb, before)
    # the palette renders predictions like the ground truth, so it converts back (void -> white -> 0)
    rendered = np.array(FREIBURG_FOREST.palette, np.uint8)[None]
    assert colour_label_to_ids(rendered, FREIBURG_FOREST_COLOUR_TO_ID).tolist() == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="rgb"):
        colour_label_to_ids(rgb[..., 0], FREIBURG_FOREST_COLOUR_TO_ID)


def test_real_nyu_label13_within_dataset(shared_data: Path) -> None:
    path = shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001" / "label13.png"
    label = io.read_label(path)
    info = get_dataset_info("nyuv2_13")
    assert label.shape == (480, 640)
    ids = np.unique(label)
    assert ids.min() >= 0 and ids.max() < info.num_classes
    assert len(ids) >= 4  # a real indoor scene, not a constant map
