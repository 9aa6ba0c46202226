"""SUN RGB-D reader on a tiny download built here in the official layout (toolbox .mat files included)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fusionseg.data.datasets import sunrgbd
from fusionseg.errors import DataError

h5py = pytest.importorskip("h5py")
scipy_io = pytest.importorskip("scipy.io")

AUTHORS = "/n/fs/sun3d/data/SUNRGBD"
# frame folder -> (split or None, (H, W)); listed in SUNRGBDMeta order
FRAMES = {
    "kv1/NYUdata/NYU0001": ("test", (12, 16)),
    "kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize": ("train", (10, 14)),
    "realsense/lg/2014_10_24-13_57_41-1311000073": ("train", (12, 16)),
    "xtion/xtion_align_data/2014_unlisted": (None, (12, 16)),  # in no split: never listed
}
K_ONE_BASED = (520.0, 521.0, 8.5, 6.5)  # fx fy cx cy as intrinsics.txt stores them


def encode_rotated(depth_mm: np.ndarray) -> np.ndarray:
    """How the toolbox stores depth: v = rotl(d, 3) (inverse of bitor(v >> 3, v << 13))."""
    d = depth_mm.astype(np.uint32)
    return (((d << 3) | (d >> 13)) & 0xFFFF).astype(np.uint16)


def _frame_arrays(index: int, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    h, w = hw
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (250, 10, 10)  # red left half, blue right half: channel order survives JPEG
    rgb[:, w // 2 :] = (10, 10, 250)
    depth_mm = np.full((h, w), 1000 + 100 * index, np.uint16)
    depth_mm[0, 0] = 2500  # 2.5 m, which read as plain mm would be 20 m
    depth_mm[1, 1] = 0  # missing
    depth_mm[2, 2] = 7999
    label = (np.arange(h * w).reshape(h, w) % 38).astype(np.uint16)
    label[0, 1] = 37
    label[1, 0] = 0
    return {"rgb": rgb, "depth_mm": depth_mm, "label": label}


def _write_seg_mat(path: Path, labels: list[np.ndarray]) -> None:
    """SUNRGBD2Dseg.mat v7.3: struct field `seglabel` = (N, 1) object references, maps stored (W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        refs_group = f.create_group("#refs#")
        refs = []
        for i, label in enumerate(labels):
            refs.append(refs_group.create_dataset(f"l{i}", data=label.T).ref)
        group = f.create_group("SUNRGBD2Dseg")
        group.create_dataset("seglabel", data=np.array(refs, dtype=h5py.ref_dtype).reshape(-1, 1))


def make_sunrgbd_root(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """The download: frame folders, SUNRGBD2Dseg.mat, SUNRGBDMeta.mat, allsplit.mat. Returns arrays."""
    arrays = {}
    meta = np.zeros((1, len(FRAMES)), dtype=[("rgbpath", object), ("depthpath", object)])
    for i, (rel, (_, hw)) in enumerate(FRAMES.items()):
        arrays[rel] = a = _frame_arrays(i, hw)
        folder = root / "SUNRGBD" / rel
        name = rel.rsplit("/", 1)[-1]
        for sub in ("image", "depth", "depth_bfx"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(folder / "image" / f"{name}.jpg"), a["rgb"][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100]
        )
        cv2.imwrite(str(folder / "depth_bfx" / f"{name}.png"), encode_rotated(a["depth_mm"]))
        raw = a["depth_mm"].copy()
        raw[3, 3] = 0  # the raw depth has holes the filled one does not
        cv2.imwrite(str(folder / "depth" / f"{name}.png"), encode_rotated(raw))
        fx, fy, cx, cy = K_ONE_BASED
        (folder / "intrinsics.txt").write_text(f"{fx} 0 {cx}\n0 {fy} {cy}\n0 0 1\n")
        meta[0, i] = (f"{AUTHORS}/{rel}/image/{name}.jpg", f"{AUTHORS}/{rel}/depth/{name}.png")
    _write_seg_mat(root / sunrgbd.SEG_MAT, [a["label"] for a in arrays.values()])
    scipy_io.savemat(root / sunrgbd.META_MAT, {"SUNRGBDMeta": meta})
    split = {"alltrain": [], "alltest": []}
    for rel, (which, _) in FRAMES.items():
        if which:
            split[f"all{which}"].append(f"{AUTHORS}/{rel}" + ("/" if which == "test" else ""))
    (root / sunrgbd.SPLIT_MAT).parent.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(root / sunrgbd.SPLIT_MAT, {k: np.array(v, dtype=object)[None] for k, v in split.items()})
    return arrays


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
    _write_seg_mat(tmp_path / "seg.mat", [np.full((3, 4), 38, np.uint16)])
    with pytest.raises(DataError, match=r"seg\.mat: `seglabel` 1 holds values outside the ids 0\.\.37"):
        sunrgbd.read_seglabel(tmp_path / "seg.mat", 0)
    with pytest.raises(DataError, match=r"SUNRGBD: folder not found"):
        sunrgbd.SUNRGBDReader().check_layout(tmp_path)
