"""The stream branch of `fusionseg predict`: a video, a ROS bag or (with --stream) an image sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

STREAM_OPTIONS = (
    click.option(
        "--stream",
        is_flag=True,
        help="Read INPUT (a folder or glob of images) as one sequence: adds an overlay video and a "
        "timing summary. Videos and ROS bags are always read as streams.",
    ),
    click.option("--rgb-topic", default=None, metavar="TOPIC", help="ROS bag: the colour image topic."),
    click.option("--depth-topic", default=None, metavar="TOPIC", help="ROS bag: the raw depth topic."),
    click.option(
        "--camera-info-topic",
        default=None,
        metavar="TOPIC",
        help="ROS bag: CameraInfo topic giving each frame's intrinsics (HHA models).",
    ),
    click.option("--video/--no-video", default=True, show_default=True, help="Streams: write overlay.mp4."),
    click.option(
        "--max-frames", type=click.IntRange(min=1), default=None, help="Streams: stop after N frames."
    ),
)


def stream_options(fn: Any) -> Any:
    """Add the stream flags to the predict command."""
    for option in reversed(STREAM_OPTIONS):
        fn = option(fn)
    return fn


def run_stream(
    source_path: Path,
    *,
    checkpoint: Path,
    out_dir: Path,
    seg_options: dict[str, Any],
    depth_dir: Path | None,
    topics: dict[str, str | None],
    intrinsics: str | None,
    intrinsics_one_based: bool,
    video: bool,
    max_frames: int | None,
    as_json: bool,
) -> None:
    """Predict a stream with `api.predict_stream` and render its summary (one line per failed frame)."""
    from fusionseg import api
    from fusionseg.cli.console import frame_progress, out, print_json, progress

    source = api.open_source(source_path, depth=depth_dir, **topics)
    seg = api.Segmenter.from_checkpoint(checkpoint, **seg_options)
    fixed = api.resolve_intrinsics(intrinsics, one_based=intrinsics_one_based)
    bar = progress()
    start, advance = frame_progress(bar, "predicting")
    try:
        summary = api.predict_stream(
            seg,
            source,
            out_dir,
            predict_frame=api.raw_predict(fixed),
            video=video,
            max_frames=max_frames,
            on_start=start,
            on_frame=lambda result: advance(result.status == "done"),
        )
    finally:
        bar.stop()
    if as_json:
        print_json(summary.to_dict())
    else:
        _render(summary, out)
    if summary.failed:
        report_failures(summary.failures, summary.frames)


def report_failures(failures: list[tuple[str, str]], total: int) -> None:
    """Print one red line per failed frame, then raise `FramesFailed` (exit status 3)."""
    from rich.markup import escape

    from fusionseg.cli.console import err
    from fusionseg.errors import FramesFailed

    for frame_id, reason in failures:
        err.print(f"[red]failed[/] {escape(frame_id)}: {escape(reason)}", highlight=False, soft_wrap=True)
    raise FramesFailed(
        f"{len(failures)} of {total} frames failed (listed above); the others are written, fix the inputs "
        "and rerun them"
    )


def _render(summary: Any, out: Any) -> None:
    from rich.table import Table

    title = (
        f"{summary.frames} frames of {summary.source} -> {summary.out_dir}: {summary.done} done, "
        f"{summary.skipped} skipped, {summary.failed} failed"
    )
    table = Table(title=title, title_justify="left")
    for column in ("stage", "frames", "mean ms", "median ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, t in summary.timing.items():
        table.add_row(stage, str(t.frames), f"{t.mean_ms:.1f}", f"{t.median_ms:.1f}", f"{t.p95_ms:.1f}")
    out.print(table)
    if summary.video is not None:
        out.print(f"overlay video: {summary.video}", highlight=False)
