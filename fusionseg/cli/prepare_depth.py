"""`fusionseg prepare-depth`: complete depth and write HHA / JET / normals / EVI images for a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.cli.options import depth_sensor_option, json_option, workers_option
from fusionseg.errors import FramesFailed


@click.command(
    "prepare-depth",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg prepare-depth data/synthetic --out data/prepared --depth-column depth_raw \\\n"
    "      --complete fast --hha --jet\n"
    "  fusionseg prepare-depth kitti/sparse_depth --out out/kitti --depth-scale kitti \\\n"
    "      --complete fast --jet --jet-max-depth 80\n"
    "  fusionseg prepare-depth nyu --pattern '*/depth_raw*.png' --out out/nyu --depth-scale 1e-4m \\\n"
    "      --complete fast --hha \\\n"
    "      --intrinsics 518.858,519.470,325.582,253.736 --intrinsics-one-based",
)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: <product>/<id>.png, a new list file and meta.json.",
)
@click.option(
    "--complete",
    type=click.Choice(["none", "fast", "multiscale"]),
    default="none",
    show_default=True,
    help="ip_basic depth completion before encoding; also writes depth_filled/ (16-bit).",
)
@click.option("--extrapolate", is_flag=True, help="ip_basic: fill above the top-most measurement too.")
@click.option(
    "--blur",
    type=click.Choice(["bilateral", "gaussian"]),
    default="bilateral",
    show_default=True,
    help="ip_basic smoothing.",
)
@click.option(
    "--max-depth",
    "max_depth_m",
    type=float,
    default=100.0,
    show_default=True,
    help="ip_basic inversion depth in metres; farther depth is dropped.",
)
@click.option("--hha", is_flag=True, help="Write HHA (disparity, height, angle) to hha/.")
@click.option("--jet", is_flag=True, help="Write JET-coloured depth to jet/.")
@click.option(
    "--jet-max-depth",
    "jet_max_depth_m",
    type=float,
    default=7.0,
    show_default=True,
    help="Depth in metres at the top of the JET map (7 indoors, ~80 for LiDAR).",
)
@click.option("--normals", is_flag=True, help="Write colour-coded surface normals to normals/.")
@click.option("--evi", is_flag=True, help="Write colour-coded EVI from the nir and rgb columns to evi/.")
@click.option("--ndvi", is_flag=True, help="Write colour-coded NDVI from the nir and rgb columns to ndvi/.")
@click.option(
    "--intrinsics",
    default=None,
    metavar="FILE|fx,fy,cx,cy",
    help="Camera intrinsics (pixels, 0-based): four numbers, a JSON file, a 3x3 K matrix file or a "
    "KITTI calib file. Default: the dataset's meta.json, or a per-frame intrinsics/calib column.",
)
@click.option(
    "--intrinsics-one-based",
    is_flag=True,
    help="The --intrinsics (else the per-frame intrinsics files) use MATLAB's 1-based pixel centres "
    "(NYU toolbox values, SUN RGB-D K): subtract 1 from cx, cy.",
)
@click.option(
    "--depth-scale",
    default=None,
    metavar="UNIT|NUMBER",
    help="Depth unit: mm, 0.1mm, 1e-4m, kitti, 1/256, cm, m, or metres per stored unit. Default: the "
    "dataset's meta.json; never guessed.",
)
@click.option(
    "--depth-column",
    default="depth",
    show_default=True,
    help="List column (or modality folder) holding the depth to prepare, e.g. depth_raw.",
)
@click.option(
    "--pattern",
    default="*.png",
    show_default=True,
    help="Glob for depth files when INPUT is a plain folder, e.g. '*/depth_raw*.png'.",
)
@workers_option
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="cuda: HHA and ip_basic completion with the torch back-ends on the GPU (error without CUDA).",
)
@click.option("--overwrite", is_flag=True, help="Recompute outputs that already exist.")
@depth_sensor_option()
@json_option
def command(
    input_path: Path,
    out_dir: Path,
    complete: str,
    extrapolate: bool,
    blur: str,
    max_depth_m: float,
    hha: bool,
    jet: bool,
    jet_max_depth_m: float,
    normals: bool,
    evi: bool,
    ndvi: bool,
    intrinsics: str | None,
    intrinsics_one_based: bool,
    depth_scale: str | None,
    depth_column: str,
    pattern: str,
    workers: int,
    device: str,
    overwrite: bool,
    depth_sensor: str,
    as_json: bool,
) -> None:
    """Prepare depth (and NIR) frames: completion, HHA, JET, normals, EVI/NDVI.

    INPUT is a list file with a '# columns:' header, a dataset root (its list files or one folder per
    modality, and meta.json for units and intrinsics) or a folder of depth images (--pattern). Outputs
    mirror the input ids as lossless PNGs; existing outputs are skipped, so a killed run resumes.
    Bad frames are reported and skipped; the exit status is 3 if any frame failed.
    """
    from fusionseg import api
    from fusionseg.cli.console import err, frame_progress, out, print_json, progress

    options = api.PrepareOptions(
        complete=complete,
        extrapolate=extrapolate,
        blur=blur,
        max_depth_m=max_depth_m,
        hha=hha,
        jet=jet,
        jet_max_depth_m=jet_max_depth_m,
        normals=normals,
        evi=evi,
        ndvi=ndvi,
        depth_column=depth_column,
        pattern=pattern,
        workers=workers,
        hha_backend="torch" if device == "cuda" else "numpy",
        completion_backend="torch" if device == "cuda" else "numpy",
        device=device,
        overwrite=overwrite,
        depth_sensor=depth_sensor,
    )
    bar = progress()
    start, advance = frame_progress(bar, "prepare-depth")
    try:
        summary = api.prepare_depth(
            input_path,
            out_dir,
            options,
            depth_scale=depth_scale,
            intrinsics=intrinsics,
            intrinsics_one_based=intrinsics_one_based,
            on_plan=lambda plan: start(len(plan.tasks)),
            on_result=lambda result: advance(result.status == "done"),
        )
    finally:
        bar.stop()

    if as_json:
        print_json(summary.to_dict())
    else:
        _render(summary, out, err)
    if not summary.ok:
        raise FramesFailed(
            f"{summary.failed} of {summary.total} frames failed (listed above and in {summary.meta_path}); "
            "the other outputs are complete, fix the inputs and rerun to resume"
        )


def _render(summary, out, err) -> None:  # noqa: ANN001 - PrepareSummary, rich consoles
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"prepare-depth -> {summary.out_dir}", show_header=False)
    table.add_row("products", ", ".join(summary.products))
    table.add_row("frames", str(summary.total))
    table.add_row("done", f"[green]{summary.done}[/]")
    table.add_row("skipped (already there)", str(summary.skipped))
    table.add_row("failed", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("time", f"{summary.seconds:.1f} s ({summary.frames_per_s:.1f} frames/s)")
    table.add_row("lists", escape(", ".join(str(p) for p in summary.lists)))
    table.add_row("meta", escape(str(summary.meta_path)))
    out.print(table)
    for failure in summary.failures:
        err.print(
            f"[red]failed[/] {escape(failure.id)}: {escape(failure.message)}", highlight=False, soft_wrap=True
        )
