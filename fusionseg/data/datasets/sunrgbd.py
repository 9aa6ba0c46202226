"""SUN RGB-D (10335 frames, void + 37) for `fusionseg prepare-dataset sunrgbd` (torch-free).

Official layout under `--root` (docs/datasets.md#sun-rgb-d), as SUNRGBD.zip and SUNRGBDtoolbox.zip unpack:

* `SUNRGBD/<sensor>/<source>/<frame>/`: `image/*.jpg` (RGB), `depth_bfx/*.png` (the toolbox's filled
  depth), `depth/*.png` (raw), `intrinsics.txt` (3x3 K, MATLAB 1-based pixel centres).
* `SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat`: MATLAB v7.3, `SUNRGBD2Dseg.seglabel` holds one reference
  per frame to its (H, W) label map, ids 0..37 (0 = unlabelled), in `SUNRGBDMeta` order.
* `SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat`: `SUNRGBDMeta(i).rgbpath` names frame i's image with the
  authors' absolute path (`/n/fs/sun3d/data/SUNRGBD/...`); it relates label i to a frame folder.
* `SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat`: `alltrain` (5285) and `alltest` (5050) frame folders,
  absolute paths of the authors' machine; everything after `SUNRGBD/` is mapped onto `--root`.

Depth PNGs are bit-rotated: the toolbox (`read3dPoints.m`) decodes `bitor(v >> 3, v << 13) / 1000` m.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.data.catalog import SUNRGBD, DatasetInfo
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.data.datasets.matfiles import load_mat5, mat73_dataset, mat_strings, open_mat73
from fusionseg.data.io import read_image
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

DATA_DIR = "SUNRGBD"
SEG_MAT = "SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat"
META_MAT = "SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat"
SPLIT_MAT = "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat"
# depth_bfx: the toolbox's filled depth. DeepScene completed every dataset's depth with ip_basic except
# SUN RGB-D (reference/modalities.md §1.1): SUN RGB-D ships its own filled depth, so that is what the
# paper's JET/HHA saw. The raw `depth/` keeps holes and is not used.
DEPTH_DIR = "depth_bfx"
NUM_CLASSES = 37
# A bit-rotated PNG has its 3 low bits zero except where depth >= 8.192 m (rare indoors); plain
# millimetre PNGs have them set at ~7/8 of pixels. Above this fraction the file is not rotated.
MAX_LOW_BITS_FRACTION = 0.5


def decode_sunrgbd_depth(raw: NDArray[np.uint16], *, source: str = "raw") -> NDArray[np.float32]:
    """Undo the SUN RGB-D toolbox's bit rotation: `bitor(v >> 3, v << 13) / 1000` metres.

    Args:
        raw: (H, W) uint16 as stored in a SUN RGB-D depth PNG; 0 = missing.
        source: Name of the file (for the error message).

    Returns:
        (H, W) float32 depth in metres, 0 = missing.

    Raises:
        DataError: not uint16, or the PNG does not look bit-rotated (most valid pixels have their
            3 low bits set, as plain millimetre PNGs do).
    """
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(
            f"{source}: SUN RGB-D depth must be a one-channel 16-bit PNG, got {raw.dtype} {raw.shape}"
        )
    valid = raw > 0
    if valid.any() and float(np.mean((raw[valid] & 7) != 0)) > MAX_LOW_BITS_FRACTION:
        raise DataError(f"{source}: not the SUN RGB-D toolbox's bit-rotated depth encoding")
    wide = raw.astype(np.uint32)
    rotated = ((wide >> 3) | (wide << 13)) & 0xFFFF  # 16-bit rotate right by 3
    return (rotated.astype(np.float32) / np.float32(1000.0)).astype(np.float32)


def read_one_based_k(path: Path) -> Intrinsics:
    """intrinsics.txt (3x3 K, MATLAB 1-based centres) as 0-based `Intrinsics`.

    Raises:
        DataError: not a 3x3 pinhole matrix (third row 0 0 1, zero skew, positive focal lengths).
    """
    try:
        k = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a 3x3 intrinsics matrix ({err})") from None
    if k.shape == (1, 9):
        k = k.reshape(3, 3)
    if k.shape != (3, 3) or not np.allclose(k[2], (0, 0, 1)) or k[0, 1] != 0 or k[1, 0] != 0:
        raise DataError(f"{path}: not a 3x3 pinhole intrinsics matrix [fx 0 cx; 0 fy cy; 0 0 1]")
    try:
        return Intrinsics.from_one_based(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
    except ValueError as err:
        raise DataError(f"{path}: {err}") from None


def relative_frame_dir(authors_path: str, source: Path) -> str:
    """An absolute path of the authors' machine -> the frame folder relative to `root/SUNRGBD`.

    "/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001" -> "kv1/NYUdata/NYU0001".

    Raises:
        DataError: no `SUNRGBD` component in the path.
    """
    parts = PurePosixPath(authors_path.strip().rstrip("/")).parts
    if DATA_DIR not in parts:
        raise DataError(f"{source}: path {authors_path!r} has no {DATA_DIR}/ component")
    tail = parts[len(parts) - parts[::-1].index(DATA_DIR) :]
    if not tail:
        raise DataError(f"{source}: path {authors_path!r} names no frame folder")
    return "/".join(tail)


def frame_id(rel_dir: str) -> str:
    """Output stem of a frame folder: its path under SUNRGBD/ with "/" as "__" (reversible)."""
    return rel_dir.replace("/", "__")


def read_meta_dirs(path: Path) -> list[str]:
    """SUNRGBDMeta.mat: frame folder (relative to root/SUNRGBD) of each label index, in order."""
    meta = np.atleast_1d(load_mat5(path, ["SUNRGBDMeta"])["SUNRGBDMeta"]).ravel()
    dirs = []
    for entry in meta:
        rgbpath = getattr(entry, "rgbpath", None)
        if not isinstance(rgbpath, str):
            raise DataError(f"{path}: `SUNRGBDMeta` entries need an `rgbpath` string")
        dirs.append(relative_frame_dir(str(PurePosixPath(rgbpath).parent.parent), path))
    return dirs


def read_allsplit(path: Path) -> dict[str, list[str]]:
    """allsplit.mat as {"train": alltrain, "test": alltest}, frame folders relative to root/SUNRGBD."""
    content = load_mat5(path, ["alltrain", "alltest"])
    return {
        split: [relative_frame_dir(p, path) for p in mat_strings(content[key], path, key)]
        for split, key in (("train", "alltrain"), ("test", "alltest"))
    }


def _seglabel_refs(mat: Any, path: Path) -> NDArray:
    refs = np.asarray(mat73_dataset(mat, "SUNRGBD2Dseg/seglabel", path)[()]).ravel()
    return refs


def read_seglabel(path: Path, index: int) -> NDArray[np.uint8]:
    """Label map `index` (0-based, SUNRGBDMeta order) of SUNRGBD2Dseg.mat as (H, W) uint8 ids 0..37.

    Raises:
        DataError: index out of range, not a 2-D map, or ids above 37.
    """
    with open_mat73(path) as mat:
        refs = _seglabel_refs(mat, path)
        if not 0 <= index < refs.size:
            raise DataError(f"{path}: label {index + 1} requested, `seglabel` holds {refs.size}")
        stored = np.asarray(mat[refs[index]][()])
    if stored.ndim != 2:
        raise DataError(f"{path}: `seglabel` {index + 1} is not a 2-D label map: shape {stored.shape}")
    label = np.ascontiguousarray(stored.T)  # HDF5 (W, H) -> (H, W)
    if label.size and (label.min() < 0 or label.max() > NUM_CLASSES or np.any(label != np.round(label))):
        raise DataError(f"{path}: `seglabel` {index + 1} holds values outside the ids 0..{NUM_CLASSES}")
    return label.astype(np.uint8)


def _single_file(folder: Path, suffixes: tuple[str, ...]) -> Path:
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in suffixes) if folder.is_dir() else []
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise DataError(f"{folder}: {what} {'/'.join(suffixes)} files, expected exactly one")
    return found[0]


def read_depth_png(path: Path) -> NDArray[np.float32]:
    """A SUN RGB-D depth PNG in metres (bit rotation undone). Raises DataError naming the file."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"{path}: unreadable depth PNG")
    return decode_sunrgbd_depth(raw, source=str(path))


@dataclass(frozen=True)
class SUNRGBDReader:
    """`DatasetReader` of SUN RGB-D: allsplit.mat's alltrain (train) and alltest (test), 37 classes."""

    name: str = "sunrgbd"
    class_choices: tuple[int, ...] = (NUM_CLASSES,)

    def label_space(self, num_classes: int) -> DatasetInfo:
        """`data.catalog.SUNRGBD` (void + 37, the NYU-40 ids 1..37)."""
        return SUNRGBD

    def depth_unit(self) -> str | None:
        """Millimetres (the decoded values are millimetres; 16 bits hold 65 m)."""
        return "mm"

    def check_layout(self, root: Path) -> None:
        """SUNRGBD/ and the three toolbox .mat files."""
        if not (root / DATA_DIR).is_dir():
            raise DataError(f"{root / DATA_DIR}: folder not found (unpack SUNRGBD.zip into --root)")
        for name in (SEG_MAT, META_MAT, SPLIT_MAT):
            if not (root / name).is_file():
                raise DataError(f"{root / name}: file not found (unpack SUNRGBDtoolbox.zip into --root)")

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        """alltrain then alltest in allsplit.mat order, each with its SUNRGBD2Dseg index."""
        index_of = {rel: i for i, rel in enumerate(read_meta_dirs(root / META_MAT))}
        with open_mat73(root / SEG_MAT) as mat:
            num_labels = _seglabel_refs(mat, root / SEG_MAT).size
        if num_labels != len(index_of):
            raise DataError(
                f"{root / SEG_MAT}: {num_labels} label maps but SUNRGBDMeta.mat lists {len(index_of)}"
            )
        refs = []
        for split, dirs in read_allsplit(root / SPLIT_MAT).items():
            for rel in dirs:
                if rel not in index_of:
                    raise DataError(f"{root / SPLIT_MAT}: frame {rel} is not in {META_MAT}")
                refs.append(FrameRef(frame_id=frame_id(rel), split=split, source=(rel, index_of[rel])))
        return refs

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        """image/*.jpg, depth_bfx/*.png (decoded), the label map and the 0-based K of one frame."""
        rel, index = str(ref.source[0]), int(ref.source[1])
        folder = root / DATA_DIR / rel
        rgb = read_image(_single_file(folder / "image", (".jpg", ".jpeg", ".png")), order="rgb")
        depth_path = _single_file(folder / DEPTH_DIR, (".png",))
        depth_m = read_depth_png(depth_path)
        label = read_seglabel(root / SEG_MAT, index)
        for what, shape, path in (
            ("depth", depth_m.shape, depth_path),
            ("label", label.shape, root / SEG_MAT),
        ):
            if shape != rgb.shape[:2]:
                raise DataError(f"{path}: {what} of {rel} is {shape}, the image is {rgb.shape[:2]}")
        intrinsics = read_one_based_k(folder / "intrinsics.txt")
        return RawFrame(ref.frame_id, rgb=rgb, label=label, depth_m=depth_m, intrinsics=intrinsics)
