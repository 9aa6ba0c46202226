"""Prediction on a stream of frames (image sequence, video, ROS bag) with per-frame timing (issue 17).

    from fusionseg.data.sources import open_source
    summary = predict_stream("model.pt", open_source("drive.mp4"), "out/")

For each frame: ``labels/<id>.png`` (uint8 class ids), ``overlays/<id>.png`` (classes coloured over the
colour image) and, for the whole stream, ``overlay.mp4`` (or ``.avi``, whichever codec this OpenCV
build writes). A frame that cannot be read or predicted is reported and skipped; the run goes on.
Outputs are written atomically; a rerun skips frames whose two PNGs are already there (their overlay
still goes into the video), so an interrupted run resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fusionseg.data.sources import Frame, FrameSource, OverlayVideoWriter, open_source
from fusionseg.errors import DataError, FusionsegError
from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.workflows.segmenter import Segmenter

STAGES = ("read", "model", "write")  # the timed stages of each frame
LABEL_DIR = "labels"
OVERLAY_DIR = "overlays"
VIDEO_NAME = "overlay.mp4"
DEFAULT_FPS = 10.0  # video frame rate when the source gives no timestamps

# (segmenter, frame) -> (H, W) uint8 class ids at the frame's size
Predict = Callable[[Segmenter, Frame], NDArray[np.uint8]]


@dataclass(frozen=True)
class StreamFrameResult:
    """What happened to one frame (passed to the `on_frame` progress callback).

    Attributes:
        index: Position in the source; id: the frame's output name.
        status: "done", "skipped" (outputs already there) or "failed".
        message: One line naming the frame and the problem when failed.
        seconds: Time per stage ("read", "model", "write") for this frame, in seconds.
    """

    index: int
    id: str
    status: Literal["done", "skipped", "failed"]
    message: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StageTiming:
    """Per-frame time of one stage over the frames that ran it, in milliseconds."""

    frames: int
    mean_ms: float
    median_ms: float
    p95_ms: float


@dataclass(frozen=True)
class StreamSummary:
    """Counts, failures, per-stage timing and outputs of a `predict_stream` run."""

    source: str
    out_dir: Path
    frames: int
    done: int
    skipped: int
    failed: int
    failures: list[tuple[str, str]]  # (frame id, one-line message)
    timing: dict[str, StageTiming]  # STAGES -> timing
    video: Path | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings)."""
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["video"] = None if self.video is None else str(self.video)
        data["failures"] = [list(item) for item in self.failures]
        return data


def frame_inputs(seg: Segmenter, frame: Frame) -> dict[str, np.ndarray]:
    """The model inputs a frame provides directly: "rgb" from its colour image, raw depth modalities
    (kind "depth") from its depth image; a modality made from depth (HHA, JET) needs `predict_frame`.

    Raises:
        DataError: the model reads a modality the frame does not carry (one line naming the frame).
    """
    inputs: dict[str, np.ndarray] = {}
    for name in seg.modalities:
        if seg.kinds[name] == "depth":
            if frame.depth is None:
                raise DataError(f"frame {frame.id}: the model reads {name!r} but the source gives no depth")
            inputs[name] = frame.depth
        elif name == "rgb" and frame.rgb is not None:
            inputs[name] = frame.rgb
        else:
            raise DataError(
                f"frame {frame.id}: the model reads {name!r}, which a stream frame does not carry and its "
                "checkpoint records no recipe for; pass `predict_frame` (a function making it)"
            )
    return inputs


def default_predict(seg: Segmenter, frame: Frame) -> NDArray[np.uint8]:
    """`predict_stream`'s default model stage: the frame's own arrays through `Segmenter.predict`, or,
    for a model reading a prepared modality (HHA, JET, completed depth, ...), `Segmenter.predict_raw`
    with the checkpoint's input recipe and the frame's intrinsics."""
    direct = all(m == "rgb" or seg.kinds[m] == "depth" for m in seg.modalities)
    if direct or not all(m in seg.recipes for m in seg.modalities):
        return seg.predict(frame_inputs(seg, frame))  # names what the frame cannot give
    return seg.predict_raw(rgb=frame.rgb, depth=frame.depth, intrinsics=frame.intrinsics)


def raw_predict(intrinsics: Intrinsics | None) -> Predict:
    """`default_predict` with fixed intrinsics for frames whose source gives none (videos, image
    sequences, bags without a camera_info topic)."""

    def predict(seg: Segmenter, frame: Frame) -> NDArray[np.uint8]:
        if frame.intrinsics is None and intrinsics is not None:
            frame = replace(frame, intrinsics=intrinsics)
        return default_predict(seg, frame)

    return predict


def _timing(values: list[float]) -> StageTiming:
    if not values:
        return StageTiming(0, 0.0, 0.0, 0.0)
    ms = np.asarray(values, dtype=np.float64) * 1000.0
    return StageTiming(len(ms), float(ms.mean()), float(np.median(ms)), float(np.percentile(ms, 95)))


def _timed(frames: Iterator[Frame]) -> Iterator[tuple[Frame, float]]:
    """Each frame with the seconds its source took to produce it (decode, conversions, pairing)."""
    while True:
        start = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        yield frame, time.perf_counter() - start


class _Outputs:
    """Writes the frame PNGs and the overlay video of one run."""

    def __init__(self, seg: Segmenter, out_dir: Path, *, alpha: float) -> None:
        self.seg, self.out_dir, self.alpha = seg, out_dir, alpha

    def paths(self, frame: Frame) -> tuple[Path, Path]:
        return self.out_dir / LABEL_DIR / f"{frame.id}.png", self.out_dir / OVERLAY_DIR / f"{frame.id}.png"

    def existing_overlay(self, frame: Frame) -> NDArray[np.uint8] | None:
        """The overlay of a frame a previous run finished, or None (then it is predicted again)."""
        from fusionseg.data.io import read_image, read_unchanged

        label_path, overlay_path = self.paths(frame)
        if not (label_path.is_file() and overlay_path.is_file()):
            return None
        try:
            read_unchanged(label_path)
            return read_image(overlay_path)
        except DataError:
            return None  # a damaged output is recomputed

    def write(self, frame: Frame, labels: NDArray[np.uint8]) -> NDArray[np.uint8]:
        from fusionseg.data.io import write_png
        from fusionseg.engine.visualize import colorize_labels, overlay_labels

        label_path, overlay_path = self.paths(frame)
        if labels.shape != frame.rgb.shape[:2] or labels.dtype != np.uint8:
            raise DataError(
                f"frame {frame.id}: the model gave {labels.dtype} labels of shape {labels.shape}, "
                f"expected uint8 {frame.rgb.shape[:2]} (the colour image's size)"
            )
        overlay = overlay_labels(frame.rgb, colorize_labels(labels, self.seg.palette), alpha=self.alpha)
        write_png(label_path, labels)
        write_png(overlay_path, overlay)
        return overlay


def _run_frame(
    outputs: _Outputs, frame: Frame, predict: Predict, *, overwrite: bool
) -> tuple[StreamFrameResult, NDArray[np.uint8] | None]:
    """Predict and write one frame; failures come back as a result, never raised."""
    if frame.error is not None:
        return StreamFrameResult(frame.index, frame.id, "failed", frame.error), None
    if frame.rgb is None:
        message = f"frame {frame.id}: no colour image (needed for the overlay)"
        return StreamFrameResult(frame.index, frame.id, "failed", message), None
    if not overwrite:
        overlay = outputs.existing_overlay(frame)
        if overlay is not None:
            return StreamFrameResult(frame.index, frame.id, "skipped"), overlay
    seconds: dict[str, float] = {}
    try:
        start = time.perf_counter()
        labels = predict(outputs.seg, frame)
        seconds["model"] = time.perf_counter() - start
        start = time.perf_counter()
        overlay = outputs.write(frame, labels)
        seconds["write"] = time.perf_counter() - start
    except FusionsegError as exc:
        message = str(exc) if frame.id in str(exc) else f"frame {frame.id}: {exc}"
        return StreamFrameResult(frame.index, frame.id, "failed", message, seconds), None
    except Exception as exc:  # noqa: BLE001 - one bad frame (or an out-of-memory) must not stop the stream
        first_line = (str(exc).splitlines() or [""])[0]
        message = f"frame {frame.id}: {type(exc).__name__}: {first_line}"
        return StreamFrameResult(frame.index, frame.id, "failed", message, seconds), None
    return StreamFrameResult(frame.index, frame.id, "done", "", seconds), overlay


def _run_frames(
    source: FrameSource,
    outputs: _Outputs,
    predict: Predict,
    writer: OverlayVideoWriter | None,
    overwrite: bool,
    max_frames: int | None,
    on_frame: Callable[[StreamFrameResult], None] | None,
) -> list[StreamFrameResult]:
    """Every frame of `source` (up to `max_frames`) through `_run_frame`, overlays into the video."""
    results: list[StreamFrameResult] = []
    for frame, read_s in _timed(iter(source)):
        result, overlay = _run_frame(outputs, frame, predict, overwrite=overwrite)
        result = replace(result, seconds={"read": read_s, **result.seconds})
        if overlay is not None and writer is not None:
            writer.write(overlay)
        results.append(result)
        if on_frame is not None:
            on_frame(result)
        if max_frames is not None and len(results) >= max_frames:
            break
    return results


def _video_fps(source: FrameSource) -> float:
    fps = getattr(source, "fps", 0.0)
    return float(fps) if fps and fps > 0 else DEFAULT_FPS


def predict_stream(
    checkpoint_or_segmenter: str | Path | Segmenter,
    source: FrameSource | str | Path,
    out_dir: str | Path,
    *,
    device: str = "auto",
    depth_scale: str | float | None = None,
    predict_frame: Predict | None = None,
    video: bool = True,
    alpha: float = 0.5,
    overwrite: bool = False,
    max_frames: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[StreamFrameResult], None] | None = None,
) -> StreamSummary:
    """Segment every frame of a stream and write labels, overlays and an overlay video.

    Args:
        checkpoint_or_segmenter: A checkpoint path (loaded with `device`, `depth_scale`) or a Segmenter.
        source: A `fusionseg.data.sources` source, or a path for `open_source` (video, image folder or
            glob; bags need topics, so pass `open_source(bag, rgb_topic=...)`).
        out_dir: Output folder (created).
        device: Torch device for a checkpoint path ("auto", "cpu", "cuda").
        depth_scale: Metres per unit of uint16 depth frames, for a checkpoint path.
        predict_frame: (segmenter, frame) -> (H, W) uint8 classes, timed as the "model" stage; default
            `default_predict`: `seg.predict(frame_inputs(seg, frame))` (rgb and raw depth as they come).
        video: Also write the overlay video.
        alpha: Weight of the class colours in the overlays, 0..1.
        overwrite: Recompute frames whose outputs exist (default: skip them, reusing their overlay).
        max_frames: Stop after this many frames of the source.
        on_start: Called once with the expected frame count (0 = unknown), e.g. to size a progress bar.
        on_frame: Called after each frame with its `StreamFrameResult`.

    Returns:
        The run's summary; per-stage timing covers the frames that ran the stage (read: all frames).

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
        DataError: the source cannot be opened, or the video cannot be written.
    """
    from fusionseg.fsutil import OutputLock, ensure_writable_dir

    begin = time.perf_counter()
    seg = checkpoint_or_segmenter
    if not isinstance(seg, Segmenter):
        seg = Segmenter.from_checkpoint(seg, device=device, depth_scale=depth_scale)
    source = open_source(source) if isinstance(source, (str, Path)) else source
    out = ensure_writable_dir(out_dir)
    predict = predict_frame or default_predict
    total = len(source)
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    if on_start is not None:
        on_start(total)
    writer = OverlayVideoWriter(out / VIDEO_NAME, fps=_video_fps(source)) if video else None
    outputs = _Outputs(seg, out, alpha=alpha)
    with OutputLock(out, purpose="predict-stream"):  # a second run into the same folder refuses
        try:
            results = _run_frames(source, outputs, predict, writer, overwrite, max_frames, on_frame)
        except BaseException:
            if writer is not None:
                writer.abort()  # no half-written video under the final name
            raise
        video_path = writer.close() if writer is not None else None
    timing = {stage: _timing([r.seconds[stage] for r in results if stage in r.seconds]) for stage in STAGES}
    return StreamSummary(
        source=getattr(source, "name", str(source)),
        out_dir=out,
        frames=len(results),
        done=sum(r.status == "done" for r in results),
        skipped=sum(r.status == "skipped" for r in results),
        failed=sum(r.status == "failed" for r in results),
        failures=[(r.id, r.message) for r in results if r.status == "failed"],
        timing=timing,
        video=video_path,
        seconds=time.perf_counter() - begin,
    )
