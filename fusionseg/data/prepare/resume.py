"""Resuming: which existing outputs are whole (trusted and skipped) and which temp files a kill left."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fusionseg.errors import DataError

_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last 8 bytes of every whole PNG


def read_whole_png(path: Path) -> np.ndarray | None:
    """The decoded image of a whole PNG file, or None for anything a resume must not trust.

    A file cut short (a killed run, a full disk), emptied or overwritten by something else gives None:
    it must have the PNG signature, end with the IEND chunk and decode.
    """
    import cv2

    from fusionseg.data.io import read_image_header

    try:
        if read_image_header(path).format != "PNG":
            return None
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 8 + len(_PNG_END):  # the signature and IEND at least
                return None
            fh.seek(-len(_PNG_END), os.SEEK_END)
            if fh.read() != _PNG_END:
                return None
    except (OSError, DataError):  # unreadable, not an image, or a declared size above the limit
        return None
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def output_intact(path: Path, product: str) -> bool:
    """True when an existing output is a whole PNG of the product's format (resume trusts only these).

    See `read_whole_png`; the image must also be uint16 single-channel depth (`depth_filled`) or a
    uint8 3-channel image (the colour products). Other files are recomputed.
    """
    image = read_whole_png(path)
    if image is None:
        return False
    if product == "depth_filled":
        return image.dtype == np.uint16 and image.ndim == 2
    return image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
