"""Freiburg Forest reader: `fusionseg prepare-dataset freiburg-forest` (void + 5 classes, RGB + NIR).

Layout of ``freiburg_forest_annotated/`` (the download's README; `--root` is that folder):

    train/ and test/, each with
      rgb/<key>_*.jpg        8-bit colour
      GT_color/<key>_*.png   colour-coded classes (README table; `FREIBURG_FOREST_COLOUR_TO_ID`)
      nir/<key>_*.*          3-channel images taken through a Wratten 25A filter: "Near-Infrared
                             wavelength was captured in the Blue channel and mostly red light in the
                             red channel" (README) -- so NIR is the blue channel, read alone
    (also depth_gray/, evi_gray/, nrg/, ... which are not read)

Files of one view share the key before the first underscore (``b1-09517``), which is the frame id.
Both official splits are labelled: `train` (230) and `test` (136). The download has no metric depth
(its depth images are 8-bit visualisations), so no depth column: `--modalities evi` computes EVI from
the NIR and RGB columns (reference/modalities.md §4).
"""

from __future__ import annotations

from pathlib import Path

from fusionseg.data.catalog import (
    FREIBURG_FOREST,
    FREIBURG_FOREST_COLOUR_TO_ID,
    DatasetInfo,
    colour_label_to_ids,
)
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.data.datasets.common import require_dir, require_same_size
from fusionseg.data.io import read_image
from fusionseg.errors import ConfigError, DataError

__all__ = ["FreiburgForestReader"]

SPLITS = ("train", "test")
FOLDERS = {"rgb": "rgb", "label": "GT_color", "nir": "nir"}
NIR_CHANNEL_BGR = 0  # blue, as OpenCV reads B, G, R
_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def frame_key(path: Path) -> str:
    """The view's key: the file stem up to the first underscore (``b1-09517_Clipped`` -> ``b1-09517``)."""
    return path.stem.split("_", 1)[0]


def _by_key(folder: Path) -> dict[str, Path]:
    """Key -> file of one folder; DataError when two files share a key."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in _SUFFIXES:
            continue
        key = frame_key(path)
        if key in found:
            raise DataError(f"{path}: shares the frame key {key!r} with {found[key].name}")
        found[key] = path
    return found


class FreiburgForestReader:
    """Freiburg Forest (see the module docstring)."""

    name = "freiburg-forest"
    class_choices = (5,)

    def label_space(self, num_classes: int) -> DatasetInfo:
        if num_classes != 5:
            raise ConfigError(f"num_classes: freiburg-forest has 5 classes, got {num_classes}")
        return FREIBURG_FOREST

    def depth_unit(self) -> str | None:
        return None

    def check_layout(self, root: Path) -> None:
        for split in SPLITS:
            for folder in FOLDERS.values():
                require_dir(root / split / folder, f"Freiburg Forest {split} {folder}")

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        frames = []
        for split in SPLITS:
            files = {column: _by_key(root / split / folder) for column, folder in FOLDERS.items()}
            for key, rgb in files["rgb"].items():
                if key not in files["label"]:
                    continue  # a view without ground truth is not a labelled frame
                nir = files["nir"].get(key)
                if nir is None:
                    raise DataError(f"{rgb}: no NIR image with key {key!r} in {root / split / 'nir'}")
                frames.append(FrameRef(key, split, (split, rgb.name, files["label"][key].name, nir.name)))
        return frames

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        split, rgb_name, label_name, nir_name = (str(s) for s in ref.source)
        rgb_path = root / split / FOLDERS["rgb"] / rgb_name
        label_path = root / split / FOLDERS["label"] / label_name
        nir_path = root / split / FOLDERS["nir"] / nir_name
        rgb = read_image(rgb_path, order="rgb")
        label = colour_label_to_ids(read_image(label_path, order="rgb"), FREIBURG_FOREST_COLOUR_TO_ID)
        nir_bgr = read_image(nir_path)
        require_same_size({rgb_path: rgb.shape, label_path: label.shape, nir_path: nir_bgr.shape})
        nir = nir_bgr[..., NIR_CHANNEL_BGR].copy()
        return RawFrame(ref.frame_id, rgb, label, None, None, {"nir": nir})
