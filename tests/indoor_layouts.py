"""Tiny copies of the NYU Depth v2, SUN RGB-D and ScanNet v2 downloads, in their official layouts.

Built from each distributor's documentation and devkit (NYU toolbox and ankurhanda/nyuv2-meta-data,
the SUN RGB-D toolbox, ScanNet's SensorData.py and BenchmarkScripts), with known values at known pixels
and the frames a reader must leave out (frames in no split, unlabelled test scenes).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io as scipy_io

from fusionseg.data.datasets import nyuv2, scannet, sunrgbd

# --- NYU Depth v2 ------------------------------------------------------------------------------------------

H, W = nyuv2.FRAME_SIZE_HW
NUM_FRAMES = 5
# Known pixels (row, col) -> raw NYU id, in frame index 0 of the fixture
RAW_AT = {(0, 0): 0, (10, 20): 7, (479, 639): 894, (200, 300): 41}


def write_mat73(path: Path, images: np.ndarray, depths: np.ndarray, labels: np.ndarray) -> None:
    """MATLAB v7.3 layout: 512-byte user block with the MATLAB header, arrays with reversed axes."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = images.transpose(3, 2, 1, 0)  # (H, W, 3, N) -> (N, 3, W, H)
        f["depths"] = depths.transpose(2, 1, 0)  # (H, W, N) -> (N, W, H)
        f["labels"] = labels.transpose(2, 1, 0)
    with open(path, "r+b") as fh:
        fh.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 06:00:00 2026 HDF5 schema 1.00 ."
        )


def make_nyuv2_root(root: Path) -> dict[str, np.ndarray]:
    """A 5-frame NYU download: frames 1, 2 test, 3, 4 train, 5 in no split. Returns the arrays."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (H, W, 3, NUM_FRAMES), dtype=np.uint8)
    images[0, 0, :, 0] = (255, 0, 10)  # RGB order at a known pixel
    depths = rng.uniform(0.5, 9.8, (H, W, NUM_FRAMES)).astype(np.float32)
    depths[5, 5, 0] = 9.75  # beyond 6.55 m, where 1e-4 m units would wrap
    depths[6, 6, 0] = 0.0  # missing
    labels = rng.integers(0, 895, (H, W, NUM_FRAMES)).astype(np.uint16)
    for (r, c), raw in RAW_AT.items():
        labels[r, c, 0] = raw
    write_mat73(root / nyuv2.LABELED_MAT, images, depths, labels)
    map_class = (np.arange(894) % 40 + 1).astype(np.uint8)  # raw k -> (k - 1) % 40 + 1
    labels13 = (np.arange(40) % 13 + 1).astype(np.uint8)  # 40-id j -> (j - 1) % 13 + 1
    scipy_io.savemat(root / nyuv2.MAPPING40_MAT, {"mapClass": map_class[None]})
    scipy_io.savemat(root / nyuv2.MAPPING13_MAT, {"classMapping13": {"labels13": labels13[None]}})
    splits = {"trainNdxs": np.array([[3], [4]], np.uint16), "testNdxs": np.array([[1], [2]], np.uint16)}
    scipy_io.savemat(root / nyuv2.SPLITS_MAT, splits)
    return {"images": images, "depths": depths, "labels": labels}


# --- SUN RGB-D ---------------------------------------------------------------------------------------------

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


def write_seg_mat(path: Path, labels: list[np.ndarray]) -> None:
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
    write_seg_mat(root / sunrgbd.SEG_MAT, [a["label"] for a in arrays.values()])
    scipy_io.savemat(root / sunrgbd.META_MAT, {"SUNRGBDMeta": meta})
    split = {"alltrain": [], "alltest": []}
    for rel, (which, _) in FRAMES.items():
        if which:
            split[f"all{which}"].append(f"{AUTHORS}/{rel}" + ("/" if which == "test" else ""))
    (root / sunrgbd.SPLIT_MAT).parent.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(root / sunrgbd.SPLIT_MAT, {k: np.array(v, dtype=object)[None] for k, v in split.items()})
    return arrays


# --- ScanNet v2 --------------------------------------------------------------------------------------------

COLOUR_HW = (24, 32)  # stands in for 968x1296: twice the depth size
DEPTH_HW = (12, 16)  # stands in for 480x640
K_COLOUR = np.array([[36.0, 0, 15.7, 0], [0, 36.0, 11.9, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
K_DEPTH = np.array([[18.0, 0, 7.6, 0], [0, 18.1, 5.7, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
# Raw ScanNet id -> nyu40id rows of the fixture's tsv (real ids/categories of the combined table)
TSV_ROWS = [
    (1, "wall", 1),
    (2, "chair", 5),
    (3, "floor", 2),
    (5, "door", 8),
    (22, "book", 23),
    (40, "mirror", 19),
]
TSV_ROWS += [(56, "trash can", 39), (99, "shower curtain", 28), (300, "refrigerator", 24)]
# Scenes: split -> scenes; each has 5 frames, labels for frames 0, 2 and 4 but not 3
SCENES = {"train": ["scene0000_00", "scene0000_01"], "val": ["scene0011_00"]}
TEST_SCENE = "scene0707_00"  # unlabelled test scene: present in scans/, in no list


def write_sens(path: Path, frames: list[tuple[np.ndarray, np.ndarray]], *, shift: float = 1000.0) -> None:
    """A .sens file as SensorData.py reads it: header, then per frame pose, stamps, JPEG, zlib depth."""
    ch, cw = frames[0][0].shape[:2]
    dh, dw = frames[0][1].shape
    with open(path, "wb") as fh:
        name = b"StructureSensor"
        fh.write(struct.pack("<IQ", 4, len(name)) + name)
        for matrix in (K_COLOUR, np.eye(4), K_DEPTH, np.eye(4)):
            fh.write(np.asarray(matrix, "<f4").tobytes())
        fh.write(struct.pack("<2i4IfQ", 2, 1, cw, ch, dw, dh, shift, len(frames)))
        for i, (rgb, depth) in enumerate(frames):
            ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
            assert ok
            packed = zlib.compress(depth.astype("<u2").tobytes())
            fh.write(np.eye(4, dtype="<f4").tobytes() + struct.pack("<4Q", i, i, len(jpeg), len(packed)))
            fh.write(jpeg.tobytes() + packed)


def _frame(scene_no: int, index: int) -> dict[str, np.ndarray]:
    rgb = np.zeros((*COLOUR_HW, 3), np.uint8)
    rgb[:, : COLOUR_HW[1] // 2] = (240, 20, 20)  # red left, blue right (16-pixel halves, JPEG-safe)
    rgb[:, COLOUR_HW[1] // 2 :] = (20, 20, 240)
    depth = np.full(DEPTH_HW, 1000 + 10 * index + scene_no, np.uint16)
    depth[0, 0] = 0  # missing
    depth[1, 1] = 9500  # 9.5 m
    raw_ids = np.array([row[0] for row in TSV_ROWS] + [7777], np.uint16)  # 7777: not in the tsv
    small = raw_ids[np.arange(DEPTH_HW[0] * DEPTH_HW[1]).reshape(DEPTH_HW) % raw_ids.size]
    label = np.kron(small, np.ones((2, 2), np.uint16))  # 2x2 blocks at the colour size
    return {"rgb": rgb, "depth": depth, "label": label, "label_small": small}


def make_scannet_root(root: Path, num_frames: int = 5) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """scans/ with .sens and label zips, the tsv and the two scene lists. Returns arrays per frame."""
    arrays = {}
    all_scenes = [*SCENES["train"], *SCENES["val"], TEST_SCENE]
    for scene_no, scene in enumerate(all_scenes):
        folder = root / "scans" / scene
        folder.mkdir(parents=True)
        frames = [_frame(scene_no, i) for i in range(num_frames)]
        write_sens(folder / f"{scene}.sens", [(f["rgb"], f["depth"]) for f in frames])
        if scene == TEST_SCENE:
            continue  # test scenes ship without label zips
        with zipfile.ZipFile(folder / f"{scene}_2d-label-filt.zip", "w") as archive:
            for i, f in enumerate(frames):
                if i != 3:
                    archive.writestr(f"label-filt/{i}.png", cv2.imencode(".png", f["label"])[1].tobytes())
                arrays[(scene, i)] = f
    header = "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\n"
    body = "".join(f"{i}\t{name}\t{name}\t1\t{nyu40}\t1\tx\tx\n" for i, name, nyu40 in TSV_ROWS)
    (root / scannet.LABEL_TSV).write_text(header + body)
    for split, scenes in SCENES.items():
        (root / scannet.SPLIT_LISTS[split]).write_text("\n".join(scenes) + "\n")
    return arrays
