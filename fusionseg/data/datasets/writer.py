"""Writing one prepared frame (runs in pool workers): read it with its reader, check it, write its files.

Per frame, under ``OUT/<split>/``: ``rgb/<id>.png`` (8-bit colour, colours as in the download),
``label/<id>.png`` (8-bit class ids, 0 = void), ``depth/<id>.png`` (16-bit in the reader's unit) and
one ``<column>/<id>.png`` per extra modality (e.g. ``nir``), then, last, ``frames/<id>.json``: the
frame's record (its files, its intrinsics at the frame's size, 0-based pixel centres). Every file is
written atomically; the record is written after the images, so a frame whose record and images are
whole is finished and a rerun skips it (`frame_finished`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fusionseg.data.datasets.base import DatasetReader, FrameRef, RawFrame
from fusionseg.errors import DataError, FusionsegError

__all__ = ["FrameOutcome", "WriteContext", "frame_finished", "write_frame"]

RECORD_FOLDER = "frames"
# column -> (dtype, channels) of its PNG; extra modalities are 8-bit with 1 or 3 channels
_FORMATS: dict[str, tuple[type, int]] = {
    "rgb": (np.uint8, 3),
    "label": (np.uint8, 1),
    "depth": (np.uint16, 1),
}

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class WriteContext:
    """Per-run settings sent to every worker with its frame.

    Attributes:
        reader: The dataset's reader (picklable).
        root: The official download.
        out_dir: Output folder (absolute).
        num_classes: Label space (`--classes`), without void.
        class_count: Class ids allowed in labels, void included (`DatasetInfo.num_classes`).
        depth_scale_m: Metres per stored depth unit; None when the dataset has no depth.
        overwrite: Rewrite frames that are already finished.
    """

    reader: DatasetReader
    root: Path
    out_dir: Path
    num_classes: int
    class_count: int
    depth_scale_m: float | None
    overwrite: bool = False


@dataclass(frozen=True)
class FrameOutcome:
    """What happened to one frame.

    Attributes:
        frame_id, split: As in its `FrameRef`.
        status: "done" (written now), "skipped" (finished by an earlier run) or "failed".
        message: Why it failed (names the file).
        files: Column -> path relative to the output folder (rgb, label, depth, extras, intrinsics).
        intrinsics: {"fx", "fy", "cx", "cy"} at the frame's size, or None.
        seconds: Time spent on it.
    """

    frame_id: str
    split: str
    status: Status
    message: str = ""
    files: dict[str, str] = field(default_factory=dict)
    intrinsics: dict[str, float] | None = None
    seconds: float = 0.0


def record_path(out_dir: Path, ref: FrameRef) -> Path:
    """The frame's record file, ``OUT/<split>/frames/<id>.json``."""
    return out_dir / ref.split / RECORD_FOLDER / f"{ref.frame_id}.json"


def frame_finished(out_dir: Path, ref: FrameRef) -> FrameOutcome | None:
    """The outcome of an earlier run's finished frame ("skipped"), or None when it must be (re)written.

    Finished means: the record exists and parses, and every image it names is a whole PNG of its
    column's format (a file a kill cut short, or replaced by something else, is rewritten).
    """
    from fusionseg.data.prepare.resume import read_whole_png

    try:
        record = json.loads(record_path(out_dir, ref).read_text(encoding="utf-8"))
        files = {str(k): str(v) for k, v in record["files"].items()}
        intrinsics = record["intrinsics"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for column, rel in files.items():
        if column == "intrinsics":
            continue
        image = read_whole_png(out_dir / rel)
        if image is None or not _format_ok(column, image):
            return None
    return FrameOutcome(ref.frame_id, ref.split, "skipped", files=files, intrinsics=intrinsics)


def _format_ok(column: str, image: np.ndarray) -> bool:
    channels = 1 if image.ndim == 2 else image.shape[2]
    if column in _FORMATS:
        dtype, want = _FORMATS[column]
        return image.dtype == dtype and channels == want
    return image.dtype == np.uint8 and channels in (1, 3)


def write_frame(ref: FrameRef, ctx: WriteContext) -> FrameOutcome:
    """Read, check and write one frame (the pool's task function); bad data becomes a "failed" outcome."""
    start = time.perf_counter()
    if not ctx.overwrite and (finished := frame_finished(ctx.out_dir, ref)) is not None:
        return finished
    try:
        frame = ctx.reader.read_frame(ctx.root, ref, ctx.num_classes)
        check_frame(frame, ref, ctx)
        files, intrinsics = _write(frame, ref, ctx)
    except FusionsegError as exc:
        return FrameOutcome(ref.frame_id, ref.split, "failed", str(exc), seconds=time.perf_counter() - start)
    return FrameOutcome(ref.frame_id, ref.split, "done", "", files, intrinsics, time.perf_counter() - start)


def check_frame(frame: RawFrame, ref: FrameRef, ctx: WriteContext) -> None:
    """Refuse a frame that breaks the `RawFrame` contract (shapes, dtypes, class ids, depth)."""
    where = f"{ref.frame_id} ({ref.split})"
    rgb, label = np.asarray(frame.rgb), np.asarray(frame.label)
    if frame.frame_id != ref.frame_id:
        raise DataError(f"{where}: the reader returned frame {frame.frame_id!r}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{where}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    size = rgb.shape[:2]
    if label.dtype != np.uint8 or label.shape != size:
        raise DataError(f"{where}: label must be {size} uint8 like rgb, got {label.shape} {label.dtype}")
    if label.size and int(label.max()) >= ctx.class_count:
        bad = sorted(int(v) for v in np.unique(label) if v >= ctx.class_count)
        raise DataError(f"{where}: class ids {bad} are outside 0..{ctx.class_count - 1}")
    if (frame.depth_m is None) != (ctx.depth_scale_m is None):
        raise DataError(f"{where}: depth given for a dataset without a depth unit, or missing")
    if frame.depth_m is not None and (frame.depth_m.shape != size or frame.depth_m.dtype != np.float32):
        raise DataError(f"{where}: depth must be {size} float32 metres, got {frame.depth_m.shape}")
    for name, array in frame.extra.items():
        if name in (*_FORMATS, "intrinsics", RECORD_FOLDER):
            raise DataError(f"{where}: extra modality {name!r} clashes with a built-in column")
        if array.dtype != np.uint8 or array.shape[:2] != size or array.ndim not in (2, 3):
            raise DataError(f"{where}: {name} must be {size} uint8, got {array.shape} {array.dtype}")


def _write(frame: RawFrame, ref: FrameRef, ctx: WriteContext) -> tuple[dict[str, str], dict[str, Any] | None]:
    """Write the images, then the record; returns (column -> relative path, intrinsics)."""
    import cv2

    from fusionseg.data.io import depth_to_png_units_exact, write_png
    from fusionseg.fsutil import atomic_write_text

    images: dict[str, np.ndarray] = {"rgb": cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)}
    for name in sorted(frame.extra):
        extra = np.asarray(frame.extra[name])
        images[name] = cv2.cvtColor(extra, cv2.COLOR_RGB2BGR) if extra.ndim == 3 else extra
    if frame.depth_m is not None and ctx.depth_scale_m is not None:
        source = f"{ref.frame_id} ({ref.split})"
        images["depth"] = depth_to_png_units_exact(
            frame.depth_m, depth_scale_m=ctx.depth_scale_m, source=source
        )
    images["label"] = frame.label
    files = {}
    for column, image in images.items():
        rel = f"{ref.split}/{column}/{ref.frame_id}.png"
        write_png(ctx.out_dir / rel, image)
        files[column] = rel
    intrinsics = frame.intrinsics.as_dict() if frame.intrinsics is not None else None
    record_rel = f"{ref.split}/{RECORD_FOLDER}/{ref.frame_id}.json"
    if intrinsics is not None:
        files["intrinsics"] = record_rel  # prepare-depth reads the record's "intrinsics" entry
    record = {"frame_id": ref.frame_id, "split": ref.split, "source": list(ref.source)}
    record |= {"files": files, "intrinsics": intrinsics, "convention": "0-based pixel centres (OpenCV)"}
    atomic_write_text(ctx.out_dir / record_rel, json.dumps(record, indent=1) + "\n")
    return files, intrinsics
