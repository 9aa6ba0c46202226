"""`fusionseg train-pipeline`: every stage of a fusion experiment from one config."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.cli.options import json_option


@click.command(
    "train-pipeline",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg make-synthetic --out data/synthetic --size 96x192\n"
    "  fusionseg train-pipeline configs/synthetic-pipeline.yaml\n"
    "  fusionseg train-pipeline configs/synthetic-pipeline.yaml --set fusion.pipeline_schemes=[ssma,cmode]",
)
@click.argument("config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config value, e.g. --set train.iterations=100 (repeatable).",
)
@json_option
def command(config_path: Path, overrides: tuple[str, ...], as_json: bool) -> None:
    """Run prepare-depth (if fusion.pipeline_prepare lists products), one AdapNet++ expert per
    modality, each scheme of fusion.pipeline_schemes (stage 3 too with fusion.finetune) and the
    evaluation of every model, all under train.out_dir. Stages whose checkpoint is complete are
    skipped and interrupted ones resumed, so rerunning continues where it stopped.
    """
    from rich.table import Table

    from fusionseg import api
    from fusionseg.cli.console import out, print_json
    from fusionseg.cli.train_fusion import TrainingDisplay

    display = TrainingDisplay()
    try:
        result = api.train_pipeline(
            config_path, overrides, progress=display, on_step=display.new_step, on_stage=display.stage
        )
    finally:
        display.stop()
    if as_json:
        print_json(result.to_dict())
        return
    table = Table(title=f"pipeline {result.run_dir}")
    for col in ("step", "status", "val mIoU", "output"):
        table.add_column(col)
    for step in result.steps:
        miou = "" if step.miou is None else f"{100 * step.miou:.2f}"
        table.add_row(step.name, step.status, miou, str(step.path))
    out.print(table)
    if result.miou:
        best = max(result.miou, key=lambda k: result.miou[k])
        out.print(f"best model: {best} (val mIoU {100 * result.miou[best]:.2f})")
