"""SUN RGB-D reader on a tiny download built here in the official layout (toolbox .mat files included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from indoor_layouts import AUTHORS, encode_rotated, make_sunrgbd_root, write_seg_mat

from fusionseg.data.datasets import sunrgbd
from fusionseg.errors import DataError


@pytest.fixture(scope="module")
def sun_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sun")
    return root, make_sunrgbd_root(root)


def test_bit_rotation_decode_and_the_plain_mm_trap() -> None:
    depth_mm = np.array([[0, 1, 2500, 7999, 8191, 65535]], np.uint16)
    stored = encode_rotated(depth_mm)
    assert stored[0, 2] == 20000  # read as mm this is 20 m: the silent trap
    decoded = sunrgbd.decode_sunrgbd_depth(stored)
    np.testing.assert_allclose(decoded, depth_mm / 1000.0, rtol=1e-7, atol=1e-6)
    assert decoded.dtype == np.float32
    plain_mm = np.arange(1001, 1001 + 64, dtype=np.uint16).reshape(8, 8)  # not rotated
    with pytest.raises(DataError, match="x.png: not the SUN RGB-D toolbox's bit-rotated depth encoding"):
        sunrgbd.decode_sunrgbd_depth(plain_mm, source="x.png")


def test_one_based_k_becomes_zero_based(tmp_path: Path) -> None:
    (tmp_path / "intrinsics.txt").write_text("529.5 0 365\n0 529.5 265\n0 0 1\n")
    k = sunrgbd.read_one_based_k(tmp_path / "intrinsics.txt")
    assert (k.fx, k.fy, k.cx, k.cy) == (529.5, 529.5, 364.0, 264.0)
    (tmp_path / "bad.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match=r"bad\.txt: not a 3x3"):
        sunrgbd.read_one_based_k(tmp_path / "bad.txt")


def test_authors_paths_map_onto_root() -> None:
    src = Path("allsplit.mat")
    assert sunrgbd.relative_frame_dir(f"{AUTHORS}/kv1/NYUdata/NYU0001/", src) == "kv1/NYUdata/NYU0001"
    with pytest.raises(DataError, match=r"allsplit\.mat: path '/elsewhere/x' has no SUNRGBD/ component"):
        sunrgbd.relative_frame_dir("/elsewhere/x", src)


def test_frames_follow_allsplit(sun_root: tuple[Path, dict]) -> None:
    root, _ = sun_root
    reader = sunrgbd.SUNRGBDReader()
    reader.check_layout(root)
    refs = reader.list_frames(root, 37)
    assert [(r.split, r.source[1]) for r in refs] == [("train", 1), ("train", 2), ("test", 0)]
    assert refs[2].frame_id == "kv1__NYUdata__NYU0001"
    assert not any("unlisted" in r.frame_id for r in refs)


def test_read_frame_known_pixels(sun_root: tuple[Path, dict]) -> None:
    root, arrays = sun_root
    reader = sunrgbd.SUNRGBDReader()
    for ref in reader.list_frames(root, 37):
        a = arrays[ref.source[0]]
        frame = reader.read_frame(root, ref, 37)
        h, w = a["label"].shape
        assert frame.rgb.shape == (h, w, 3) and frame.depth_m.shape == (h, w) and frame.label.shape == (h, w)
        edges = np.r_[0:2, w - 2 : w]  # away from the red/blue border that JPEG's chroma blurs
        assert np.abs(frame.rgb[:, edges].astype(int) - a["rgb"][:, edges]).max() <= 8  # red stays red
        np.testing.assert_array_equal(frame.label, a["label"])
        assert frame.label[0, 1] == 37 and frame.label[1, 0] == 0
        np.testing.assert_allclose(frame.depth_m, a["depth_mm"] / 1000.0, atol=1e-6)
        assert frame.depth_m[0, 0] == pytest.approx(2.5) and frame.depth_m[1, 1] == 0
        assert frame.depth_m[3, 3] > 0  # depth_bfx (filled), not the raw depth/
        assert (frame.intrinsics.cx, frame.intrinsics.cy) == (7.5, 5.5)
        assert (frame.intrinsics.fx, frame.intrinsics.fy) == (520.0, 521.0)


def test_bad_label_and_missing_folder_are_named(tmp_path: Path) -> None:
    write_seg_mat(tmp_path / "seg.mat", [np.full((3, 4), 38, np.uint16)])
    with pytest.raises(DataError, match=r"seg\.mat: `seglabel` 1 holds values outside the ids 0\.\.37"):
        sunrgbd.read_seglabel(tmp_path / "seg.mat", 0)
    with pytest.raises(DataError, match=r"SUNRGBD: folder not found"):
        sunrgbd.SUNRGBDReader().check_layout(tmp_path)


def test_a_split_frame_unknown_to_the_metadata_is_named(tmp_path: Path) -> None:
    import scipy.io as scipy_io

    root = tmp_path / "sun"
    make_sunrgbd_root(root)
    split = {"alltrain": np.array([f"{AUTHORS}/kv9/elsewhere/frame"], dtype=object)[None]}
    split["alltest"] = np.array([f"{AUTHORS}/kv1/NYUdata/NYU0001"], dtype=object)[None]
    scipy_io.savemat(root / sunrgbd.SPLIT_MAT, split)
    expected = r"allsplit\.mat: frame kv9/elsewhere/frame is not in .*SUNRGBDMeta\.mat"
    with pytest.raises(DataError, match=expected):
        sunrgbd.SUNRGBDReader().list_frames(root, 37)


def test_missing_h5py_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    expected = r"x\.mat: reading MATLAB v7\.3 files needs h5py; install the `datasets` extra"
    with pytest.raises(DataError, match=expected):
        sunrgbd.read_seglabel(tmp_path / "x.mat", 0)
