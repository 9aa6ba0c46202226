"""NYU Depth v2 reader: the genuine split and class-mapping files, and a tiny labelled .mat built here."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io as scipy_io
from indoor_layouts import RAW_AT, H, W, make_nyuv2_root

from fusionseg.data.catalog import NYUV2_13, NYUV2_40
from fusionseg.data.datasets import nyuv2
from fusionseg.errors import DataError


def _names(root: Path) -> Path:
    return root / "nyuv2-labels13-test"


@pytest.fixture(scope="module")
def genuine(shared_data: Path) -> Path:
    folder = _names(shared_data)
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder


# --- the genuine files of ../shared/data/nyuv2-labels13-test -------------------------------------------


def test_genuine_40_class_table_names_agree_with_the_catalog(genuine: Path) -> None:
    names = [str(n) for n in scipy_io.loadmat(genuine / "classMapping40.mat", squeeze_me=True)["className"]]
    aliases = {"refridgerator": "fridge", "television": "tv", "otherstructure": "other structure"}
    aliases |= {"otherfurniture": "other furniture", "otherprop": "other prop"}
    assert [aliases.get(n, n) for n in names] == [c.lower() for c in NYUV2_40.classes[1:]]
    table = nyuv2.read_raw_to_40(genuine / "classMapping40.mat")
    assert table.shape == (895,) and table[0] == 0 and set(table[1:]) == set(range(1, 41))


def test_genuine_13_class_table_keeps_every_shared_name(genuine: Path) -> None:
    table = nyuv2.read_40_to_13(genuine / "class13Mapping.mat")
    assert table.shape == (41,) and table[0] == 0 and set(table[1:]) == set(range(1, 14))
    names40 = [c.lower() for c in NYUV2_40.classes]
    names13 = list(NYUV2_13.classes)
    # a 40-class name that is also a 13-class name must land on it (tv is "TV" in the 40-class names)
    for id13, name in enumerate(names13[1:], 1):
        if name in names40:
            assert table[names40.index(name)] == id13, name
    assert table[names40.index("cabinet")] == names13.index("furniture")
    assert table[names40.index("lamp")] == names13.index("objects")


def test_docs_tables_are_the_genuine_files(genuine: Path) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "datasets.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| [a-z ]+ \| (\d+) \| [a-z]+ \|$", docs, flags=re.MULTILINE)
    assert [int(t) for _, t in rows] == list(nyuv2.read_40_to_13(genuine / "class13Mapping.mat")[1:])
    raw_to_40 = nyuv2.read_raw_to_40(genuine / "classMapping40.mat")
    listed = {}
    for id40, ids in re.findall(r"^\* (\d+) [a-z ]+: ([\d, ]+)$", docs, flags=re.MULTILINE):
        listed |= {int(raw): int(id40) for raw in ids.split(", ")}
    assert listed == {raw: int(raw_to_40[raw]) for raw in range(1, 895)}


def test_genuine_splits_match_the_654_published_13_class_test_labels(genuine: Path) -> None:
    splits = nyuv2.read_splits(genuine / "splits.mat", 1449)
    assert len(splits["train"]) == 795 and len(splits["test"]) == 654
    assert sorted(splits["train"] + splits["test"]) == list(range(1449))
    with tarfile.open(genuine / "nyuv2_test_class13.tgz") as tar:
        published = {int(m[1]) for n in tar.getnames() if (m := re.search(r"_(\d{4})\.png$", n))}
    assert {nyuv2.frame_id(i) for i in splits["test"]} == {f"NYU{i:04d}" for i in published}
    assert nyuv2.frame_id(0) == "NYU0001" and 0 in splits["test"] and 2 in splits["train"]


def test_splits_naming_a_frame_beyond_the_file_fail(genuine: Path) -> None:
    with pytest.raises(DataError, match=r"splits\.mat: `trainNdxs` holds index \d+, outside 1\.\.5"):
        nyuv2.read_splits(genuine / "splits.mat", 5)


# --- a labelled .mat in the official v7.3 layout -----------------------------------------------------------


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("nyu")
    return root, make_nyuv2_root(root)


def test_frames_follow_splits_mat(nyu_root: tuple[Path, dict]) -> None:
    root, _ = nyu_root
    reader = nyuv2.NYUv2Reader()
    reader.check_layout(root)
    refs = reader.list_frames(root, 13)
    assert [(r.frame_id, r.split) for r in refs] == [
        ("NYU0003", "train"),
        ("NYU0004", "train"),
        ("NYU0001", "test"),
        ("NYU0002", "test"),
    ]


@pytest.mark.parametrize("num_classes", [13, 40])
def test_read_frame_known_pixels(nyu_root: tuple[Path, dict], num_classes: int) -> None:
    root, arrays = nyu_root
    reader = nyuv2.NYUv2Reader()
    ref = next(r for r in reader.list_frames(root, num_classes) if r.frame_id == "NYU0001")
    frame = reader.read_frame(root, ref, num_classes)
    assert frame.rgb.shape == (H, W, 3) and frame.rgb.dtype == np.uint8
    np.testing.assert_array_equal(frame.rgb, arrays["images"][..., 0])
    assert tuple(frame.rgb[0, 0]) == (255, 0, 10)
    np.testing.assert_array_equal(frame.depth_m, arrays["depths"][..., 0])
    assert frame.depth_m[5, 5] == np.float32(9.75) and frame.depth_m[6, 6] == 0
    for (r, c), raw in RAW_AT.items():
        id40 = 0 if raw == 0 else (raw - 1) % 40 + 1
        expected = id40 if num_classes == 40 else (0 if id40 == 0 else (id40 - 1) % 13 + 1)
        assert frame.label[r, c] == expected, (r, c, raw)
    assert frame.label.max() <= num_classes
    assert frame.intrinsics == nyuv2.NYU_INTRINSICS
    assert frame.intrinsics.cx == pytest.approx(324.58244941119034)
    assert reader.label_space(num_classes).num_classes == num_classes + 1


def test_millimetres_hold_nyu_range() -> None:
    from fusionseg.data.io import DEPTH_UNITS

    scale = DEPTH_UNITS[nyuv2.NYUv2Reader().depth_unit()]
    assert 10.0 / scale < 65535  # 10 m fits; 1e-4 m would wrap at 6.55 m
    assert 10.0 / DEPTH_UNITS["1e-4m"] > 65535


def test_missing_file_and_bad_mat_are_named(tmp_path: Path) -> None:
    reader = nyuv2.NYUv2Reader()
    with pytest.raises(DataError, match="nyu_depth_v2_labeled.mat: file not found"):
        reader.check_layout(tmp_path)
    (tmp_path / nyuv2.LABELED_MAT).write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"nyu_depth_v2_labeled\.mat: not a MATLAB v7\.3"):
        nyuv2.read_labeled_frame(tmp_path / nyuv2.LABELED_MAT, 0)


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.mat", "w") as f:
        f["images"] = np.zeros((1, 3, 480, 640), np.uint8)  # not transposed as MATLAB stores it
        f["depths"] = np.zeros((1, 640, 480), np.float32)
        f["labels"] = np.zeros((1, 640, 480), np.uint16)
    with pytest.raises(DataError, match=r"x\.mat: `images` has HDF5 shape \(1, 3, 480, 640\)"):
        nyuv2.read_labeled_frame(tmp_path / "x.mat", 0)
