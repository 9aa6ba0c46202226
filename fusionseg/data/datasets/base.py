"""The interface every dataset reader of `fusionseg prepare-dataset` implements (torch-free).

A reader turns one official download (Cityscapes, SUN RGB-D, ...) into labelled frames in memory; the
writer (`fusionseg.data.datasets.writer`) turns those into the fusionseg output contract. Readers know
nothing about output files, workers or resuming:

* `list_frames` runs once in the main process and returns picklable `FrameRef`s, one per labelled
  frame of the official splits (never test-without-labels or extra/coarse sets);
* `read_frame` runs in a pool worker and returns a `RawFrame` (RGB, fusionseg class ids, depth in
  metres, intrinsics at the frame's size), or raises `DataError` naming the bad file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fusionseg.data.catalog import DatasetInfo
from fusionseg.modalities.intrinsics import Intrinsics

__all__ = ["SPLITS", "DatasetReader", "FrameRef", "RawFrame"]

# The splits a prepared dataset can have, in list-file order (only splits with public labels).
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FrameRef:
    """One labelled frame of an official split, as found by `DatasetReader.list_frames`.

    Picklable: sent to the pool workers that call `DatasetReader.read_frame`.

    Attributes:
        frame_id: The official identifier, used as the output file stem ("aachen_000000_000019",
            "NYU0001", "scene0000_00_000120"); unique within the dataset.
        split: "train", "val" or "test" (only splits with public labels).
        source: Reader-specific locator: paths relative to the root, indices into a file, ...
    """

    frame_id: str
    split: str
    source: tuple[str | int, ...]


@dataclass(frozen=True)
class RawFrame:
    """One labelled frame in memory, ready to write.

    Attributes:
        frame_id: As in its `FrameRef`.
        rgb: (H, W, 3) uint8 in R, G, B order, colours as in the download.
        label: (H, W) uint8 fusionseg class ids of the dataset's label space, 0 = void.
        depth_m: (H, W) float32 depth in metres, 0 = missing; same H, W as `rgb`. None when the
            dataset has no depth.
        intrinsics: `Intrinsics` (0-based pixel centres) at this frame's (H, W); None when unknown.
        extra: Further per-pixel modalities by column name, e.g. {"nir": (H, W) uint8}.
    """

    frame_id: str
    rgb: NDArray[np.uint8]
    label: NDArray[np.uint8]
    depth_m: NDArray[np.float32] | None
    intrinsics: Intrinsics | None
    extra: Mapping[str, NDArray] = field(default_factory=dict)


class DatasetReader(Protocol):
    """What `fusionseg prepare-dataset NAME` needs from the reader of one official download.

    Attributes:
        name: The CLI name ("cityscapes", "nyuv2", "sunrgbd", ...).
        class_choices: The label spaces offered (`--classes`), e.g. (13, 40); the first is the
            default.
    """

    name: str
    class_choices: tuple[int, ...]

    def label_space(self, num_classes: int) -> DatasetInfo:
        """Class names and palette of the `num_classes` label space (a `data.catalog` entry)."""
        ...

    def depth_unit(self) -> str | None:
        """The `--depth-scale` value (`data.io.DEPTH_UNITS` name) the writer stores depth in.

        A unit that holds the dataset's whole range in 16 bits without saturating or wrapping
        ("mm" indoors, "1/256" for stereo/LiDAR outdoors); None when the dataset has no depth.
        """
        ...

    def check_layout(self, root: Path) -> None:
        """Raise `DataError` naming the first missing file or folder of the official layout."""
        ...

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        """The labelled frames of the official splits, in a stable order."""
        ...

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        """Read one frame (in a worker). Raises `DataError` naming the file on bad data."""
        ...
