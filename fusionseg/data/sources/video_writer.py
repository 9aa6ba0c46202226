"""An overlay video written with `cv2.VideoWriter`, atomically (a temporary file renamed at close)."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.errors import DataError

# (fourcc, suffix) in order of preference; this OpenCV build may lack an encoder for some of them
CODECS: tuple[tuple[str, str], ...] = (("mp4v", ".mp4"), ("MJPG", ".avi"))


class OverlayVideoWriter:
    """Write (H, W, 3) uint8 BGR frames to a video; frames of another size are resized to the first's.

    The first codec of `CODECS` that this OpenCV build can write is used, and the file gets that
    codec's suffix (`path` "overlay.mp4" may become "overlay.avi"); `self.path` is the final name.
    Frames go to a temporary ``.part`` file renamed at `close`, so a killed run leaves no half video
    under the final name.

    Args:
        path: Wanted output file; its suffix picks the preferred codec when it is one of `CODECS`.
        fps: Frames per second written into the container.

    Raises:
        DataError: no codec of `CODECS` can be written here, or `fps` is not positive.
    """

    def __init__(self, path: str | Path, *, fps: float = 10.0) -> None:
        if not fps > 0:
            raise DataError(f"{path}: video frame rate must be positive, got {fps!r}")
        self.requested = Path(path)
        self.fps = float(fps)
        self.path: Path | None = None
        self.size: tuple[int, int] | None = None  # (W, H)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._part: Path | None = None

    def _open(self, size: tuple[int, int]) -> None:
        preferred = sorted(CODECS, key=lambda codec: codec[1] != self.requested.suffix.lower())
        self.requested.parent.mkdir(parents=True, exist_ok=True)
        for fourcc, suffix in preferred:
            final = self.requested.with_suffix(suffix)
            part = final.with_name(final.stem + ".part" + suffix)  # OpenCV picks the container by suffix
            writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                self._writer, self._part, self.path, self.size = writer, part, final, size
                return
            writer.release()
            part.unlink(missing_ok=True)
        codecs = ", ".join(f"{fourcc} ({suffix})" for fourcc, suffix in CODECS)
        raise DataError(f"{self.requested}: this OpenCV build writes none of the video codecs {codecs}")

    def write(self, frame_bgr: NDArray[np.uint8]) -> None:
        """Append one (H, W, 3) uint8 BGR frame."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame_bgr must be (H, W, 3) uint8, got {frame_bgr.dtype} {frame_bgr.shape}")
        size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if self._writer is None:
            self._open(size)
        assert self._writer is not None and self.size is not None
        if size != self.size:
            frame_bgr = cv2.resize(frame_bgr, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it to its final name; None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        assert self._part is not None and self.path is not None
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._part is not None:
            self._part.unlink(missing_ok=True)

    def __enter__(self) -> OverlayVideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
