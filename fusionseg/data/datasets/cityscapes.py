"""Cityscapes (gtFine) reader: `fusionseg prepare-dataset cityscapes --classes 19|11`.

Official layout (cityscapesScripts README; `--root` holds the unpacked zips):

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   8-bit RGB, 2048x1024
    gtFine/{train,val}/<city>/<id>_gtFine_labelIds.png                  8-bit official label ids
    disparity/{train,val}/<city>/<id>_disparity.png                     16-bit, p = 256 d + 1
    camera/{train,val}/<city>/<id>_camera.json                          baseline (m), fx, fy, u0, v0

Only train and val are listed: the test split's gtFine files hold no public labels, and
`train_extra` (gtCoarse) and `demoVideo` are never looked at. Labels come from `*_gtFine_labelIds.png`
through the official table below; `*_labelTrainIds.png` (made by cityscapesScripts' createTrainIdLabelImgs)
is never read, and a labelIds file holding ids outside 0..33 (a trainId file's 255, say) is refused.

Depth (`reference/modalities.md` §5): disparity to metres with the frame's own camera file
(`read_cityscapes_camera`, `disparity_to_depth`), stored in 1/256 m. Stereo depth beyond
`MAX_DEPTH_M` (disparity below 1.9 px, where one 1/256-px disparity step is already metres of depth)
is stored as missing, so nothing saturates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionseg.data.catalog import CITYSCAPES11, CITYSCAPES19, DatasetInfo
from fusionseg.data.cityscapes import read_cityscapes_camera
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.data.datasets.common import apply_lut, lookup_table, require_dir, require_same_size
from fusionseg.data.datasets.urban11 import urban11_id
from fusionseg.data.io import DEPTH_UNITS, read_image, read_label, read_unchanged
from fusionseg.errors import ConfigError, DataError
from fusionseg.modalities.disparity import disparity_to_depth

__all__ = ["CITYSCAPES_LABELS", "CityscapesReader"]

# cityscapesScripts helpers/labels.py: (name, id, trainId); trainId 255 = ignored in the benchmark.
# (`license plate`, id -1, appears only in instance files and is not listed.)
CITYSCAPES_LABELS: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255),
    ("ego vehicle", 1, 255),
    ("rectification border", 2, 255),
    ("out of roi", 3, 255),
    ("static", 4, 255),
    ("dynamic", 5, 255),
    ("ground", 6, 255),
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("parking", 9, 255),
    ("rail track", 10, 255),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("guard rail", 14, 255),
    ("bridge", 15, 255),
    ("tunnel", 16, 255),
    ("pole", 17, 5),
    ("polegroup", 18, 255),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("caravan", 29, 255),
    ("trailer", 30, 255),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
)
MAX_LABEL_ID = 33
SPLITS = ("train", "val")
DEPTH_UNIT = "1/256"
# Largest depth 16 bits hold in 1/256 m, less one unit; farther stereo depth is stored as missing.
MAX_DEPTH_M = 65534 * DEPTH_UNITS[DEPTH_UNIT]

_SUFFIX = {
    "rgb": ("leftImg8bit", "_leftImg8bit.png"),
    "label": ("gtFine", "_gtFine_labelIds.png"),
    "disparity": ("disparity", "_disparity.png"),
    "camera": ("camera", "_camera.json"),
}


def _id_table(num_classes: int) -> np.ndarray:
    """Official label id -> fusionseg id: 19 = trainId + 1 (255 -> 0), 11 = the `urban11` merge."""
    if num_classes == 19:
        return lookup_table({i: t + 1 for _, i, t in CITYSCAPES_LABELS if t != 255}, size=256)
    return lookup_table({i: urban11_id(n) for n, i, t in CITYSCAPES_LABELS if t != 255}, size=256)


class CityscapesReader:
    """Cityscapes gtFine train/val with stereo depth (see the module docstring)."""

    name = "cityscapes"
    class_choices = (19, 11)

    def label_space(self, num_classes: int) -> DatasetInfo:
        if num_classes not in self.class_choices:
            raise ConfigError(f"num_classes: cityscapes has 19 or 11 classes, got {num_classes}")
        return CITYSCAPES19 if num_classes == 19 else CITYSCAPES11

    def depth_unit(self) -> str | None:
        return DEPTH_UNIT

    def check_layout(self, root: Path) -> None:
        for folder, _ in _SUFFIX.values():
            for split in SPLITS:
                require_dir(root / folder / split, f"Cityscapes {folder}_trainvaltest {split} split")

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        self.label_space(num_classes)
        frames = []
        for split in SPLITS:
            folder = root / "leftImg8bit" / split
            for image in sorted(folder.glob("*/*_leftImg8bit.png")):
                frame_id = image.name[: -len(_SUFFIX["rgb"][1])]
                frames.append(FrameRef(frame_id, split, (split, image.parent.name)))
        return frames

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        split, city = (str(s) for s in ref.source)
        paths = {
            key: root / folder / split / city / f"{ref.frame_id}{suffix}"
            for key, (folder, suffix) in _SUFFIX.items()
        }
        rgb = read_image(paths["rgb"], order="rgb")
        raw = read_label(paths["label"])
        if raw.dtype != np.uint8 or int(raw.max()) > MAX_LABEL_ID:
            bad = sorted(int(v) for v in np.unique(raw) if v > MAX_LABEL_ID)[:5]
            raise DataError(
                f"{paths['label']}: values {bad} are not Cityscapes label ids (0..{MAX_LABEL_ID}); "
                "is it a *_labelTrainIds.png renamed? read the official *_gtFine_labelIds.png"
            )
        camera = read_cityscapes_camera(paths["camera"])
        disparity = read_unchanged(paths["disparity"])
        if disparity.dtype != np.uint16 or disparity.ndim != 2:
            raise DataError(
                f"{paths['disparity']}: disparity must be a one-channel 16-bit PNG, got {disparity.dtype} "
                f"with shape {disparity.shape}"
            )
        require_same_size(
            {paths["rgb"]: rgb.shape, paths["label"]: raw.shape, paths["disparity"]: disparity.shape}
        )
        depth_m = disparity_to_depth(disparity, baseline_m=camera.baseline_m, fx_px=camera.intrinsics.fx)
        depth_m[depth_m > MAX_DEPTH_M] = 0.0
        # the camera file describes the images as stored (2048x1024), with 0-based u0, v0
        label = apply_lut(raw, _id_table(num_classes))
        return RawFrame(ref.frame_id, rgb, label, depth_m, camera.intrinsics)
