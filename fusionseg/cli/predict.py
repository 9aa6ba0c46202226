"""`fusionseg predict`: segment image files of any size with a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.cli.evaluate import parse_scales
from fusionseg.cli.options import checkpoint_option, depth_sensor_option, json_option
from fusionseg.cli.predict_stream import report_failures, run_stream, stream_options

PARAM_FLAGS = {"mode": "--resize/--pad"}  # library parameter -> flag (fusionseg.cli.flags)


def parse_modality_dirs(values: tuple[str, ...]) -> dict[str, Path]:
    """('depth=DIR', ...) -> {"depth": Path(DIR)}; raises click.BadParameter on a bad entry."""
    dirs: dict[str, Path] = {}
    for text in values:
        name, sep, folder = text.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise click.BadParameter(f"{text!r} is not of the form NAME=DIR", param_hint="--modality-dir")
        dirs[name.strip()] = Path(folder.strip())
    return dirs


@click.command(
    "predict",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg predict --checkpoint runs/synthetic-rgb/best.pt photos/ --out pred/\n"
    "  fusionseg predict --checkpoint depth.pt kinect/sample_depth.png --depth-scale 0.1mm --out pred/\n"
    "  fusionseg predict --checkpoint fused.pt rgb/ --modality-dir depth=depth/ --depth-scale mm \\\n"
    "      --out pred/ --pad\n"
    "  fusionseg predict --checkpoint hha.pt --raw nyu/depth_raw.png --depth-scale 1e-4m \\\n"
    "      --intrinsics 518.86,519.47,325.58,253.74 --intrinsics-one-based --out pred/",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@checkpoint_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: labels/, color/ and overlay/ PNGs per frame.",
)
@click.option(
    "--depth-scale",
    default=None,
    metavar="UNIT|NUMBER",
    help="Unit of 16-bit depth inputs: mm, 0.1mm, 1e-4m, kitti, 1/256, cm, m, or metres per stored unit. "
    "Required when the model reads depth from 16-bit files; never guessed.",
)
@depth_sensor_option(auto="the one the checkpoint was trained with")
@click.option(
    "--modality-dir",
    "modality_dirs",
    multiple=True,
    metavar="NAME=DIR",
    help="Folder of another modality's files, matched by file stem (repeatable); rgb=DIR adds overlays.",
)
@click.option(
    "--resize/--pad",
    "resize",
    default=True,
    show_default=True,
    help="Resize inputs to the checkpoint's training size, or keep the native size padded to "
    "multiples of 16. Outputs always have the input's size.",
)
@click.option("--slide", is_flag=True, help="Cover the native-size input with training-size windows.")
@click.option(
    "--max-native-megapixels",
    type=click.FloatRange(min=0.1),
    default=16.0,
    show_default=True,
    help="Largest frame predicted at native size (--pad, --slide keep full-size class maps in memory).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="INPUTS are raw sensor frames (colour, raw depth, NIR; --modality-dir depth=DIR ...): the model's "
    "inputs (HHA, JET, completed depth, EVI) are made on the fly with the checkpoint's recorded recipe, "
    "exactly as prepare-depth makes them.",
)
@click.option(
    "--intrinsics",
    default=None,
    metavar="FX,FY,CX,CY|FILE",
    help="With --raw: depth camera intrinsics for HHA/normals (pixels, 0-based), or a JSON, K-matrix or "
    "KITTI calib file. Default: a per-frame intrinsics/calib list column.",
)
@click.option(
    "--intrinsics-one-based",
    is_flag=True,
    help="The --intrinsics use MATLAB's 1-based pixel centres (NYU toolbox values): subtract 1 from cx, cy.",
)
@click.option("--scales", default="1", show_default=True, help="Comma-separated inference scales.")
@click.option("--flip", is_flag=True, help="Also average the horizontally flipped prediction.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@stream_options
@json_option
def command(
    inputs: tuple[Path, ...],
    checkpoint: Path,
    out_dir: Path,
    depth_scale: str | None,
    depth_sensor: str,
    modality_dirs: tuple[str, ...],
    resize: bool,
    slide: bool,
    max_native_megapixels: float,
    raw: bool,
    intrinsics: str | None,
    intrinsics_one_based: bool,
    scales: str,
    flip: bool,
    device: str,
    stream: bool,
    rgb_topic: str | None,
    depth_topic: str | None,
    camera_info_topic: str | None,
    video: bool,
    max_frames: int | None,
    as_json: bool,
) -> None:
    """Segment INPUTS (image files, folders or list files) and write colour-coded label maps.

    INPUTS hold the model's first modality (rgb for an RGB or fused model, depth for a depth expert);
    the other modalities come from --modality-dir folders or the columns of a list file. With --raw,
    INPUTS are raw frames (colour images, or raw depth for a depth-only model) and the model's inputs
    are made from them with the checkpoint's recipe. A video file or a ROS bag (or, with --stream, an
    image folder) is read as a stream: labels/ and overlays/ PNGs, overlay.mp4 and a per-stage timing
    summary; a model reading HHA/JET gets them made from the stream's raw depth by its recipe.
    """
    from fusionseg import api
    from fusionseg.cli.console import frame_progress, out, print_json, progress

    dirs = parse_modality_dirs(modality_dirs)
    mode = "slide" if slide else ("resize" if resize else "pad")
    if stream or any(api.is_stream(p) for p in inputs):
        if len(inputs) != 1:
            raise click.BadParameter("a stream is one video, bag or image folder", param_hint="INPUTS")
        seg_options = {"device": device, "depth_scale": depth_scale, "depth_sensor": depth_sensor,
                       "mode": mode, "scales": parse_scales(scales), "flip": flip}  # fmt: skip
        topics = {"rgb_topic": rgb_topic, "depth_topic": depth_topic, "camera_info_topic": camera_info_topic}
        return run_stream(inputs[0], checkpoint=checkpoint, out_dir=out_dir, seg_options=seg_options,
                          depth_dir=dirs.get("depth"), topics=topics, intrinsics=intrinsics,
                          intrinsics_one_based=intrinsics_one_based, video=video, max_frames=max_frames,
                          as_json=as_json)  # fmt: skip
    bar = progress()
    on_start, advance = frame_progress(bar, "predicting")
    try:
        summary = api.predict(
            checkpoint,
            inputs,
            out_dir,
            depth_scale=depth_scale,
            depth_sensor=depth_sensor,
            max_native_megapixels=max_native_megapixels,
            raw=raw,
            intrinsics=intrinsics,
            intrinsics_one_based=intrinsics_one_based,
            modality_dirs=dirs,
            mode=mode,
            scales=parse_scales(scales),
            flip=flip,
            device=device,
            on_start=on_start,
            on_frame=lambda frame: advance(True),
        )
    finally:
        bar.stop()
    if as_json:
        print_json(summary.to_dict())
    else:
        _render(summary, mode, out)
    if summary.failures:
        report_failures(summary.failures, len(summary.failures) + len(summary.frames))


def _render(summary, mode: str, out) -> None:  # noqa: ANN001 - PredictSummary, rich console
    from rich.table import Table

    table = Table(title=f"{len(summary.frames)} frames -> {summary.out_dir} ({mode})", title_justify="left")
    table.add_column("id")
    table.add_column("size (HxW)", justify="right")
    table.add_column("main classes")
    table.add_column("outputs")
    for frame in summary.frames:
        top = sorted(frame.class_fractions.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            frame.id,
            f"{frame.size_hw[0]}x{frame.size_hw[1]}",
            ", ".join(f"{name} {100 * share:.0f}%" for name, share in top),
            ", ".join(frame.outputs),
        )
    out.print(table)
    for line in summary.inputs:
        out.print(f"input {line}", highlight=False)
