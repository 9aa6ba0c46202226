"""A user's own dataset: `fusionseg prepare-dataset path/to/classes.yaml --root DIR`.

The class file (`fusionseg.data.classfile`) names the classes and their label-file ids; the root holds

    <split>/rgb/<id>.<png|jpg|...>     8-bit colour, split = train | val | test
    <split>/label/<id>.png            8- or 16-bit label ids of the class file
    <split>/depth/<id>.png            optional, 16-bit in the class file's `depth_scale`

Labels are renumbered to fusionseg ids (void 0, classes 1..N in listed order); an id the class file
does not name is refused (naming the file and the ids), never silently made void.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionseg.data.catalog import DatasetInfo
from fusionseg.data.classfile import MAX_RAW_ID, ClassFile, load_class_file
from fusionseg.data.datasets.base import SPLITS, FrameRef, RawFrame
from fusionseg.data.datasets.common import apply_lut, lookup_table, require_same_size
from fusionseg.errors import DataError

__all__ = ["CustomReader"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class CustomReader:
    """Reader of a custom dataset described by a class file (see the module docstring)."""

    def __init__(self, class_file: str | Path) -> None:
        self.class_file: ClassFile = load_class_file(class_file)
        self.name = self.class_file.info.name
        self.class_choices = (len(self.class_file.raw_ids),)

    def label_space(self, num_classes: int) -> DatasetInfo:
        return self.class_file.info

    def depth_unit(self) -> str | None:
        return self.class_file.depth_scale

    def check_layout(self, root: Path) -> None:
        if not any((root / split / "rgb").is_dir() and (root / split / "label").is_dir() for split in SPLITS):
            raise DataError(
                f"{root}: missing folders <split>/rgb and <split>/label (split = train, val, test)"
            )
        for split in SPLITS:
            if self.depth_unit() is not None and (root / split / "rgb").is_dir():
                if not (root / split / "depth").is_dir():
                    raise DataError(
                        f"{root / split / 'depth'}: missing folder (the class file sets depth_scale)"
                    )

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        frames = []
        for split in SPLITS:
            folder = root / split / "rgb"
            if not folder.is_dir():
                continue
            for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                if not image.name.startswith("."):
                    frames.append(FrameRef(image.stem, split, (split, image.name)))
        return frames

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        from fusionseg.data.io import read_depth, read_image, read_label

        split, image_name = (str(s) for s in ref.source)
        rgb_path = root / split / "rgb" / image_name
        label_path = root / split / "label" / f"{ref.frame_id}.png"
        rgb = read_image(rgb_path, order="rgb")
        raw = read_label(label_path)
        known = set(self.class_file.raw_ids) | set(self.class_file.void_ids)
        unknown = sorted(int(v) for v in np.unique(raw) if int(v) not in known)
        if unknown:
            raise DataError(
                f"{label_path}: label ids {unknown[:10]} are not in the class file {self.class_file.path}"
            )
        table = lookup_table(
            {raw_id: i + 1 for i, raw_id in enumerate(self.class_file.raw_ids)}, size=MAX_RAW_ID + 1
        )
        shapes = {rgb_path: rgb.shape, label_path: raw.shape}
        depth_m = None
        if self.depth_unit() is not None:
            depth_path = root / split / "depth" / f"{ref.frame_id}.png"
            depth_m = read_depth(depth_path, depth_scale_m=self.depth_unit(), allow_empty=True)
            shapes[depth_path] = depth_m.shape
        require_same_size(shapes)
        return RawFrame(ref.frame_id, rgb, apply_lut(raw, table), depth_m, None)
