"""SYNTHIA-RAND-CITYSCAPES reader: `fusionseg prepare-dataset synthia` (void + 11 classes).

Layout of the download (`--root` is the unpacked ``RAND_CITYSCAPES/`` folder or the folder holding it):

    RGB/<7-digit id>.png          8-bit colour, 1280x760
    GT/LABELS/<id>.png            16-bit PNG: class id in the first (R) channel, instance id in the second
    Depth/Depth/<id>.png          16-bit PNG, depth in centimetres in the first (R) channel
                                  (some copies have ``Depth/<id>.png`` or one channel: both are read)

Classes (the download's README table, id: name) are mapped by name through the one 11-class merge
table (`urban11.URBAN11_MERGE`); parking-slot and road-work have no 11-class counterpart and are void.

Splits: SYNTHIA publishes none. Ours, fixed and documented: frames whose number ends in 9
(``0000009``, ``0000019``, ...; 10 %) are `val`, the rest `train`. Depth is kept in centimetres (the
download's own unit, exact, up to 655 m). There are no per-frame intrinsics, so no HHA; JET works.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionseg.data.catalog import SYNTHIA, DatasetInfo
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.data.datasets.common import apply_lut, lookup_table, require_dir, require_same_size
from fusionseg.data.datasets.urban11 import urban11_id
from fusionseg.data.io import DEPTH_UNITS, read_image, read_unchanged
from fusionseg.errors import ConfigError, DataError

__all__ = ["SYNTHIA_CLASSES", "SynthiaReader"]

# SYNTHIA-RAND-CITYSCAPES README, id -> class, named in Cityscapes' vocabulary for `urban11`
SYNTHIA_CLASSES: dict[int, str] = {
    0: "void",
    1: "sky",
    2: "building",
    3: "road",
    4: "sidewalk",
    5: "fence",
    6: "vegetation",
    7: "pole",
    8: "car",
    9: "traffic sign",
    10: "person",  # "pedestrian"
    11: "bicycle",
    12: "motorcycle",
    13: "parking-slot",
    14: "road-work",
    15: "traffic light",
    16: "terrain",
    17: "rider",
    18: "truck",
    19: "bus",
    20: "train",
    21: "wall",
    22: "lane marking",
}
DEPTH_UNIT = "cm"
VAL_LAST_DIGIT = "9"
_TABLE = lookup_table({i: urban11_id(n) for i, n in SYNTHIA_CLASSES.items()})


def _folder(root: Path) -> Path:
    """The RAND_CITYSCAPES folder: `root` itself or its child of that name."""
    return root / "RAND_CITYSCAPES" if (root / "RAND_CITYSCAPES").is_dir() else root


def _depth_folder(base: Path) -> Path:
    nested = base / "Depth" / "Depth"
    return nested if nested.is_dir() else base / "Depth"


def _first_channel(raw: np.ndarray, path: Path, what: str) -> np.ndarray:
    """The R channel of a 16-bit PNG as OpenCV reads it (B, G, R), or the only channel."""
    if raw.dtype != np.uint16:
        raise DataError(f"{path}: {what} must be a 16-bit PNG, got {raw.dtype}")
    if raw.ndim == 2:
        return raw
    return raw[..., 2]


class SynthiaReader:
    """SYNTHIA-RAND-CITYSCAPES (see the module docstring)."""

    name = "synthia"
    class_choices = (11,)

    def label_space(self, num_classes: int) -> DatasetInfo:
        if num_classes != 11:
            raise ConfigError(f"num_classes: synthia has 11 classes, got {num_classes}")
        return SYNTHIA

    def depth_unit(self) -> str | None:
        return DEPTH_UNIT

    def check_layout(self, root: Path) -> None:
        base = _folder(root)
        require_dir(base / "RGB", "SYNTHIA-RAND-CITYSCAPES RGB images")
        require_dir(base / "GT" / "LABELS", "SYNTHIA-RAND-CITYSCAPES 16-bit class labels")
        require_dir(_depth_folder(base), "SYNTHIA-RAND-CITYSCAPES depth")

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        images = sorted((_folder(root) / "RGB").glob("*.png"))
        return [
            FrameRef(p.stem, "val" if p.stem.endswith(VAL_LAST_DIGIT) else "train", (p.name,))
            for p in images
            if not p.name.startswith(".")
        ]

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        base = _folder(root)
        name = str(ref.source[0])
        rgb_path, label_path, depth_path = (
            base / "RGB" / name,
            base / "GT" / "LABELS" / name,
            _depth_folder(base) / name,
        )
        rgb = read_image(rgb_path, order="rgb")
        classes = _first_channel(read_unchanged(label_path), label_path, "labels")
        if int(classes.max()) > max(SYNTHIA_CLASSES):
            bad = sorted(int(v) for v in np.unique(classes) if v > max(SYNTHIA_CLASSES))[:5]
            raise DataError(
                f"{label_path}: class ids {bad} are not SYNTHIA classes (0..{max(SYNTHIA_CLASSES)})"
            )
        depth_raw = _first_channel(read_unchanged(depth_path), depth_path, "depth")
        require_same_size({rgb_path: rgb.shape, label_path: classes.shape, depth_path: depth_raw.shape})
        depth_m = depth_raw.astype(np.float32) * np.float32(DEPTH_UNITS[DEPTH_UNIT])
        return RawFrame(ref.frame_id, rgb, apply_lut(classes, _TABLE), depth_m, None)
