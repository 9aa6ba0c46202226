"""`fusionseg prepare-dataset`: an official dataset download -> fusionseg lists, labels and depth."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.cli.options import json_option, workers_option
from fusionseg.errors import FramesFailed


def _split_modalities(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in (value or "").split(",") if m.strip())


@click.command(
    "prepare-dataset",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg prepare-dataset cityscapes --root ~/data/cityscapes --out data/cs11 --classes 11\n"
    "  fusionseg prepare-dataset cityscapes --root ~/data/cityscapes --out data/cs19 --modalities hha,jet\n"
    "  fusionseg prepare-dataset freiburg-forest --root ~/data/freiburg_forest_annotated \\\n"
    "      --out data/forest --modalities evi\n"
    "  fusionseg prepare-dataset my_classes.yaml --root ~/data/mine --out data/mine",
)
@click.argument("name", metavar="NAME")
@click.option(
    "--root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The official download, laid out as its distributors ship it (see docs/datasets.md).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: <split>/<column>/<id>.png, train.txt / val.txt / test.txt and meta.json.",
)
@click.option(
    "--classes",
    "num_classes",
    type=click.IntRange(min=1),
    default=None,
    help="Label space, e.g. 19 or 11 for cityscapes (default: the dataset's first choice).",
)
@click.option(
    "--modalities",
    default=None,
    callback=_split_modalities,
    metavar="LIST",
    help="Also run prepare-depth and add its columns: comma-separated hha, jet, normals, evi, ndvi.",
)
@workers_option
@click.option(
    "--frame-step",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="ScanNet: keep every Nth labelled frame (default 100, the 2D benchmark's 25k set).",
)
@click.option(
    "--overwrite", is_flag=True, help="Rewrite finished frames (and allow other settings in --out)."
)
@json_option
def command(
    name: str,
    root: Path,
    out_dir: Path,
    num_classes: int | None,
    modalities: tuple[str, ...],
    workers: int,
    frame_step: int | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Prepare an official download: NAME is cityscapes, synthia, freiburg-forest, nyuv2, sunrgbd, scannet,
    or the path of a class file (.yaml) for a dataset of your own.

    Writes 8-bit labels in fusionseg's class ids, 16-bit depth in a unit that holds the dataset's range,
    RGB as downloaded, one list per official split with labels, and meta.json (classes, palette, depth
    unit, per-frame intrinsics). Finished frames are skipped, so a killed run resumes. Bad frames are
    reported and skipped; the exit status is 3 if any frame failed.
    """
    from fusionseg import api
    from fusionseg.cli.console import err, frame_progress, out, print_json, progress

    bar = progress()
    stages: dict[str, tuple] = {}  # stage -> (start, advance) of its progress task

    def on_plan(stage: str, total: int) -> None:
        stages[stage] = frame_progress(bar, stage)
        stages[stage][0](total)

    try:
        summary = api.prepare_dataset(
            name,
            root,
            out_dir,
            num_classes=num_classes,
            modalities=modalities,
            workers=workers,
            overwrite=overwrite,
            frame_step=frame_step,
            on_plan=on_plan,
            on_result=lambda stage, result: stages[stage][1](result.status == "done"),
        )
    finally:
        bar.stop()
    if as_json:
        print_json(summary.to_dict())
    else:
        _render(summary, out, err)
    if not summary.ok:
        failed = summary.failed + (summary.modalities.failed if summary.modalities is not None else 0)
        raise FramesFailed(
            f"{failed} frames failed (listed above and in {summary.meta_path}); the other outputs are "
            "complete, fix the inputs and rerun to resume"
        )


def _render(summary, out, err) -> None:  # noqa: ANN001 - DatasetSummary, rich consoles
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"prepare-dataset {summary.dataset} -> {summary.out_dir}", show_header=False)
    table.add_row("classes", f"{summary.num_classes} + void")
    table.add_row("frames", str(summary.total))
    table.add_row("splits", ", ".join(f"{k} {v}" for k, v in summary.splits.items()))
    table.add_row("done", f"[green]{summary.done}[/]")
    table.add_row("skipped (already there)", str(summary.skipped))
    table.add_row("failed", f"[red]{summary.failed}[/]" if summary.failed else "0")
    if summary.modalities is not None:
        mod = summary.modalities
        table.add_row(
            "modalities",
            f"{', '.join(mod.products)}: {mod.done} done, {mod.skipped} skipped, {mod.failed} failed",
        )
    table.add_row("time", f"{summary.seconds:.1f} s")
    table.add_row("lists", escape(", ".join(str(p) for p in summary.lists)))
    table.add_row("meta", escape(str(summary.meta_path)))
    out.print(table)
    failures = [(f.frame_id, f.message) for f in summary.failures]
    if summary.modalities is not None:
        failures += [(f.id, f.message) for f in summary.modalities.failures]
    for frame_id, message in failures:
        err.print(f"[red]failed[/] {escape(frame_id)}: {escape(message)}", highlight=False, soft_wrap=True)
