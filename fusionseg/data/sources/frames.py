"""Frames from image sequences and video files, as `cv2.imread` returns them.

Every source is an iterable of `Frame`. A frame that cannot be read is yielded with `error` set (one
line naming the file and the frame) and no arrays, so a run reports it and goes on to the next one;
only a source that cannot be opened at all raises `DataError`.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"})
# consecutive undecodable frames after which a video is taken to be cut off, not damaged in one place
MAX_BAD_RUN = 25


@dataclass(frozen=True)
class Frame:
    """One frame of a stream.

    Attributes:
        index: 0-based position in the source (bad frames count).
        id: Name of the frame's outputs: file stem, zero-padded frame index, or timestamp in ns.
        timestamp_s: Capture time in seconds (video position, message stamp), None for files.
        rgb: (H, W, 3) uint8 BGR, as `cv2.imread(path)` returns it; None when unreadable.
        depth: (H, W) uint16 (sensor units) or float32 (metres) raw depth, or None.
        error: One line naming the file and the frame when it could not be read; None when good.
        intrinsics: Pinhole intrinsics of the frame when the source knows them (a bag's CameraInfo).
    """

    index: int
    id: str
    timestamp_s: float | None = None
    rgb: NDArray[np.uint8] | None = None
    depth: np.ndarray | None = None
    error: str | None = None
    intrinsics: Intrinsics | None = None


class FrameSource(Protocol):
    """What `predict_stream` reads: frames in order, a name for messages and an expected count."""

    name: str

    def __iter__(self) -> Iterator[Frame]: ...

    def __len__(self) -> int: ...


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: frame2 < frame10 (case-insensitive otherwise)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def _as_bgr(image: np.ndarray, where: str) -> NDArray[np.uint8]:
    """A decoded colour image as (H, W, 3) uint8 BGR (grey expanded, alpha dropped)."""
    if image.dtype != np.uint8:
        raise DataError(f"{where}: expected an 8-bit colour image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _check_depth_array(depth: np.ndarray, where: str) -> np.ndarray:
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.float32):
        raise DataError(f"{where}: depth must be (H, W) uint16 or float32, got {depth.dtype} {depth.shape}")
    return depth


def _list_images(spec: str | Path, what: str) -> list[Path]:
    """Image files of a folder, or matching a glob pattern, in natural order."""
    text = str(spec)
    if Path(text).is_file():
        return [Path(text)]  # one image: a sequence of one
    if Path(text).is_dir():
        paths = [p for p in Path(text).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    elif glob.has_magic(text):
        paths = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    else:
        raise DataError(f"{text}: {what} is neither a folder nor a glob pattern of images")
    if not paths:
        raise DataError(f"{text}: no {what} images found")
    return sorted(paths, key=lambda p: natural_key(p.name))


class ImageSequence:
    """A folder or glob of colour images, optionally with raw depth images paired by file stem.

    Args:
        rgb: Folder of images, a glob pattern ("run1/*.jpg") or one image; sorted naturally (2 before 10).
        depth: Folder or glob of depth images (uint16 PNG or float32 TIFF) named like the colour ones;
            a colour frame without its depth file is a bad frame.

    Raises:
        DataError: no images, or a folder/pattern that does not exist.
    """

    def __init__(self, rgb: str | Path, *, depth: str | Path | None = None) -> None:
        self.paths = _list_images(rgb, "rgb")
        self.name = str(rgb)
        self.depth_by_stem: dict[str, Path] | None = None
        if depth is not None:
            self.depth_by_stem = {p.stem: p for p in _list_images(depth, "depth")}

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        from fusionseg.data.io import read_unchanged

        for index, path in enumerate(self.paths):
            try:
                rgb = _as_bgr(read_unchanged(path), str(path))
                depth = None
                if self.depth_by_stem is not None:
                    depth_path = self.depth_by_stem.get(path.stem)
                    if depth_path is None:
                        raise DataError(f"{path}: frame {index}: no depth image named {path.stem}.*")
                    depth = _check_depth_array(read_unchanged(depth_path), str(depth_path))
                    if depth.shape != rgb.shape[:2]:
                        raise DataError(
                            f"{depth_path}: frame {index}: depth {depth.shape[1]}x{depth.shape[0]} does not "
                            f"match the colour image ({rgb.shape[1]}x{rgb.shape[0]}, width x height)"
                        )
            except DataError as exc:
                yield Frame(index, path.stem, error=str(exc))
                continue
            yield Frame(index, path.stem, rgb=rgb, depth=depth)


class _Capture(Protocol):
    """The part of `cv2.VideoCapture` a video source uses."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def set(self, prop: int, value: float) -> bool: ...


def _video_time_s(capture: _Capture, index: int, fps: float) -> float | None:
    """Position of the frame just read, in seconds (the container's, else index / fps)."""
    position_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
    if position_ms > 0 or index == 0:
        return position_ms / 1000.0
    return index / fps if fps > 0 else None


def read_video_frames(capture: _Capture, path: Path, count: int, fps: float) -> Iterator[Frame]:
    """Frames of an opened capture; an undecodable frame is yielded as an error and skipped over.

    Args:
        capture: An opened `cv2.VideoCapture` (or anything with its read/get/set).
        path: The video file, for messages.
        count: Frames the container declares (0 = unknown: read until the stream ends).
        fps: Frame rate for timestamps when the capture gives no position.

    Yields:
        Frames with id = zero-padded frame index; after `MAX_BAD_RUN` failures in a row (or a failure
        at or past the declared end) the stream is taken to have ended.
    """
    width = max(6, len(str(max(count - 1, 0))))
    index, bad_run = 0, 0
    while count <= 0 or index < count:
        ok, image = capture.read()
        frame_id = f"{index:0{width}d}"
        if ok and image is not None:
            bad_run = 0
            stamp = _video_time_s(capture, index, fps)
            try:
                yield Frame(index, frame_id, stamp, rgb=_as_bgr(image, f"{path}: frame {index}"))
            except DataError as exc:
                yield Frame(index, frame_id, error=str(exc))
        else:
            if count <= 0:
                return  # unknown length: a failed read is the end
            bad_run += 1
            if bad_run > MAX_BAD_RUN:
                return
            yield Frame(index, frame_id, error=f"{path}: frame {index}: cannot decode (corrupt or truncated)")
            capture.set(cv2.CAP_PROP_POS_FRAMES, index + 1)  # skip past the bad frame
        index += 1


class VideoSource:
    """Frames of a video file through `cv2.VideoCapture` (whatever codecs this OpenCV build reads).

    Args:
        path: Video file (mp4, avi, mkv, ...).

    Raises:
        DataError: the file is missing or OpenCV cannot open it as a video (one line naming it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such video file")
        capture = self._open()
        self.count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        capture.release()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise DataError(f"{self.path}: cannot open as a video (corrupt file or unsupported codec)")
        return capture

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Frame]:
        capture = self._open()
        try:
            yield from read_video_frames(capture, self.path, self.count, self.fps)
        finally:
            capture.release()
