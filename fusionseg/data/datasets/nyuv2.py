"""NYU Depth v2 (labelled set, 1449 frames) for `fusionseg prepare-dataset nyuv2` (torch-free).

Official layout under `--root` (docs/datasets.md#nyu-depth-v2):

* `nyu_depth_v2_labeled.mat`: MATLAB v7.3. `images` (480, 640, 3, 1449) uint8 RGB, `depths`
  (480, 640, 1449) float32 metres (the toolbox's in-painted depth), `labels` (480, 640, 1449) uint16
  raw class ids 1..894, 0 = unlabelled. HDF5 stores them with the axes reversed.
* `splits.mat`: `trainNdxs` (795) and `testNdxs` (654), 1-based frame indices.
* `classMapping40.mat`: `mapClass` (894) raw id -> NYU-40 id (Gupta et al. CVPR 2013).
* `class13Mapping.mat`: `classMapping13.labels13` (40) NYU-40 id -> 13-class id (Couprie et al.
  2013), as shipped by ankurhanda/nyuv2-meta-data.

The two mapping files are the label tables: they are read from the download, never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fusionseg.data.catalog import NYUV2_13, NYUV2_40, DatasetInfo
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.data.datasets.matfiles import load_mat5, mat73_dataset, mat_indices, open_mat73
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
MAPPING40_MAT = "classMapping40.mat"
MAPPING13_MAT = "class13Mapping.mat"

FRAME_SIZE_HW = (480, 640)
NUM_RAW_CLASSES = 894
# Kinect v1 colour camera of the NYU toolbox (camera_params.m), MATLAB 1-based principal point
# (reference/modalities.md §3.1); every labelled frame is registered to it.
NYU_INTRINSICS = Intrinsics.from_one_based(
    518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465
)


def read_raw_to_40(path: Path) -> NDArray[np.uint8]:
    """classMapping40.mat as a look-up table: raw NYU id (0..894) -> NYU-40 id, 0 -> 0 (void).

    Raises:
        DataError: `mapClass` missing, not 894 entries, or an id outside 1..40.
    """
    map_class = np.atleast_1d(np.asarray(load_mat5(path, ["mapClass"])["mapClass"])).ravel()
    if map_class.size != NUM_RAW_CLASSES:
        raise DataError(f"{path}: `mapClass` has {map_class.size} entries, expected {NUM_RAW_CLASSES}")
    if map_class.min() < 1 or map_class.max() > 40:
        raise DataError(f"{path}: `mapClass` holds ids outside 1..40")
    return np.concatenate([[0], map_class]).astype(np.uint8)


def read_40_to_13(path: Path) -> NDArray[np.uint8]:
    """class13Mapping.mat as a look-up table: NYU-40 id (0..40) -> 13-class id, 0 -> 0 (void).

    Raises:
        DataError: `classMapping13.labels13` missing, not 40 entries, or an id outside 1..13.
    """
    struct = load_mat5(path, ["classMapping13"])["classMapping13"]
    labels13 = getattr(struct, "labels13", None)
    if labels13 is None:
        raise DataError(f"{path}: `classMapping13` has no field `labels13`")
    table = np.atleast_1d(np.asarray(labels13)).ravel()
    if table.size != 40 or table.min() < 1 or table.max() > 13:
        raise DataError(f"{path}: `classMapping13.labels13` must map 40 classes to ids 1..13")
    return np.concatenate([[0], table]).astype(np.uint8)


def label_table(root: Path, num_classes: int) -> NDArray[np.uint8]:
    """Raw NYU id (0..894) -> fusionseg id of the 13- or 40-class space (0 = void), from the download."""
    raw_to_40 = read_raw_to_40(root / MAPPING40_MAT)
    if num_classes == 40:
        return raw_to_40
    return read_40_to_13(root / MAPPING13_MAT)[raw_to_40]


def map_labels(raw: NDArray[np.integer], table: NDArray[np.uint8], path: Path) -> NDArray[np.uint8]:
    """Apply a look-up table to raw class ids.

    Args:
        raw: (H, W) integer raw ids.
        table: (K,) uint8, id k -> class.
        path: The file `raw` came from (named in errors).

    Raises:
        DataError: an id outside 0..K-1.
    """
    if raw.size and (int(raw.min()) < 0 or int(raw.max()) >= table.size):
        raise DataError(f"{path}: label id {int(raw.max())} outside 0..{table.size - 1}")
    return table[raw.astype(np.int64)]


def read_splits(path: Path, num_frames: int) -> dict[str, list[int]]:
    """splits.mat as {"train": [...], "test": [...]} of 0-based frame indices.

    Raises:
        DataError: a variable missing, an index outside 1..num_frames, or a frame in both splits.
    """
    content = load_mat5(path, ["trainNdxs", "testNdxs"])
    splits = {
        "train": mat_indices(content["trainNdxs"], path, "trainNdxs", count=num_frames),
        "test": mat_indices(content["testNdxs"], path, "testNdxs", count=num_frames),
    }
    both = set(splits["train"]) & set(splits["test"])
    if both:
        raise DataError(f"{path}: frame {min(both) + 1} is in both `trainNdxs` and `testNdxs`")
    return splits


def frame_id(index: int) -> str:
    """The NYU identifier of 0-based frame `index`: "NYU0001" for the first (1-based, as the toolbox)."""
    return f"NYU{index + 1:04d}"


def _frame_count(mat: Any, path: Path) -> int:
    counts = {key: mat73_dataset(mat, key, path).shape for key in ("images", "depths", "labels")}
    h, w = FRAME_SIZE_HW
    expected = {"images": (3, w, h), "depths": (w, h), "labels": (w, h)}
    for key, shape in counts.items():
        if len(shape) != len(expected[key]) + 1 or tuple(shape[1:]) != expected[key]:
            want = ", ".join(map(str, expected[key]))
            raise DataError(f"{path}: `{key}` has HDF5 shape {tuple(shape)}, expected (N, {want})")
    if len({shape[0] for shape in counts.values()}) != 1:
        raise DataError(f"{path}: `images`, `depths` and `labels` hold different frame counts")
    return int(counts["images"][0])


def read_labeled_frame(path: Path, index: int) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray]:
    """One frame of nyu_depth_v2_labeled.mat.

    Args:
        path: The v7.3 file.
        index: 0-based frame index.

    Returns:
        rgb (480, 640, 3) uint8 RGB, depth_m (480, 640) float32 metres (0 = missing), raw labels
        (480, 640) uint16 (0..894).

    Raises:
        DataError: missing variables, wrong shapes, or non-finite/negative depth.
    """
    with open_mat73(path) as mat:
        count = _frame_count(mat, path)
        if not 0 <= index < count:
            raise DataError(f"{path}: frame {index + 1} requested, the file holds {count}")
        rgb = np.ascontiguousarray(mat["images"][index].transpose(2, 1, 0)).astype(np.uint8)  # (H, W, 3)
        depth_m = np.ascontiguousarray(mat["depths"][index].T).astype(np.float32)  # (H, W)
        raw = np.ascontiguousarray(mat["labels"][index].T)  # (H, W)
    if not np.all(np.isfinite(depth_m)) or depth_m.min() < 0:
        raise DataError(f"{path}: frame {index + 1}: `depths` holds negative or non-finite values")
    return rgb, depth_m, raw


@dataclass(frozen=True)
class NYUv2Reader:
    """`DatasetReader` of the NYU Depth v2 labelled set: train (795) and test (654) per splits.mat.

    Depth is the toolbox's in-painted `depths` (metres), written in millimetres ("mm" holds NYU's
    ~10 m range; 1e-4 m would wrap above 6.55 m).
    """

    name: str = "nyuv2"
    class_choices: tuple[int, ...] = (13, 40)

    def label_space(self, num_classes: int) -> DatasetInfo:
        """NYUV2_13 or NYUV2_40 of `data.catalog`."""
        return NYUV2_13 if num_classes == 13 else NYUV2_40

    def depth_unit(self) -> str | None:
        """Millimetres."""
        return "mm"

    def check_layout(self, root: Path) -> None:
        """The labelled .mat, splits.mat and both class-mapping files at the top of `root`."""
        for name in (LABELED_MAT, SPLITS_MAT, MAPPING40_MAT, MAPPING13_MAT):
            if not (root / name).is_file():
                raise DataError(
                    f"{root / name}: file not found (the NYU Depth v2 download and its split files)"
                )

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        """Train then test frames in splits.mat order; frames in neither split are left out."""
        label_table(root, num_classes)  # fail early on a bad mapping file
        with open_mat73(root / LABELED_MAT) as mat:
            count = _frame_count(mat, root / LABELED_MAT)
        splits = read_splits(root / SPLITS_MAT, count)
        return [
            FrameRef(frame_id=frame_id(index), split=split, source=(index,))
            for split in ("train", "test")
            for index in splits[split]
        ]

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        """RGB, mapped labels, depth and the NYU colour intrinsics of one frame."""
        path = root / LABELED_MAT
        rgb, depth_m, raw = read_labeled_frame(path, int(ref.source[0]))
        label = map_labels(raw, label_table(root, num_classes), path)
        return RawFrame(ref.frame_id, rgb=rgb, label=label, depth_m=depth_m, intrinsics=NYU_INTRINSICS)
