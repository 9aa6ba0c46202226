"""Helpers the dataset readers share: finding files, checking sizes, look-up tables for class ids."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fusionseg.errors import DataError

__all__ = ["apply_lut", "require_dir", "require_file", "require_same_size", "lookup_table"]


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder; else DataError naming it and what it should hold."""
    if not path.is_dir():
        raise DataError(f"{path}: missing folder ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file; else DataError naming it and what it should be."""
    if not path.is_file():
        raise DataError(f"{path}: missing file ({what})")
    return path


def lookup_table(mapping: Mapping[int, int], *, size: int = 65536) -> NDArray[np.uint8]:
    """A (size,) uint8 table: raw id -> fusionseg id, 0 (void) for raw ids not in `mapping`."""
    table = np.zeros(size, dtype=np.uint8)
    for raw, ours in mapping.items():
        table[raw] = ours
    return table


def apply_lut(raw: NDArray, table: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Map an (H, W) integer id image through `table` (raw ids beyond the table must be refused first)."""
    return table[np.asarray(raw, dtype=np.int64)]


def require_same_size(shapes: Mapping[Path, tuple[int, ...]]) -> None:
    """DataError naming every file with its (H, W) when the files of one frame differ in size."""
    sizes = {path: tuple(shape[:2]) for path, shape in shapes.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{p} {h}x{w}" for p, (h, w) in sizes.items())
        raise DataError(f"files of one frame differ in size (H x W): {listed}")
