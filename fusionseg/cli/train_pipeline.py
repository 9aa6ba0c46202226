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
    "  fusionseg train-pipeline configs/synthetic-pipeline.yaml --set fusion.pipeline_schemes=[ssma]\n"
    "  fusionseg train-pipeline configs/synthetic-pipeline.yaml --set 'fusion.pipeline_robustness=[rgb=fog]'",
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
    """Train and compare fusion models from one config, all under train.out_dir.

    Runs prepare-depth (if fusion.pipeline_prepare lists products), one AdapNet++ expert per modality,
    each scheme of fusion.pipeline_schemes (stage 3 too with fusion.finetune), then evaluates every
    model on the val list, clean and under each sensor fault of fusion.pipeline_robustness (default:
    rgb and depth dropped, dark and foggy rgb, noisy depth; seeded). Prints one table of val mIoU (%),
    models by conditions, and writes eval/results.json, eval/results.md and eval/predictions.png
    (fusion.pipeline_report_frames val frames: inputs, ground truth and every model's prediction).
    Finished stages and evaluations are skipped and interrupted ones resumed, so rerunning continues
    where it stopped.
    """
    from rich import box
    from rich.table import Table

    from fusionseg import api
    from fusionseg.cli.console import out, print_json
    from fusionseg.cli.train_fusion import TrainingDisplay

    display = TrainingDisplay()
    try:
        cfg = api.load_config(config_path, overrides)
        result = api.run_pipeline(cfg, progress=display, on_step=display.new_step, on_stage=display.stage)
    finally:
        display.stop()
    if not api.is_main_process():  # under torchrun only rank 0 reports
        return
    if as_json:
        print_json(result.to_dict())
        return
    stages = " · ".join(f"{s.name} {s.status}" for s in result.steps if not s.name.startswith("evaluate "))
    out.print(f"[dim]{result.run_dir}: {stages}[/dim]")
    table = result.results
    if table is None:  # fusion.pipeline_evaluate: false
        for name, path in result.checkpoints.items():
            out.print(f"{name}: {path}")
        return
    format_miou = api.format_miou

    grid = Table(
        title=f"val mIoU (%), {table.num_images} images, faults seeded {table.seed}", box=box.SIMPLE_HEAD
    )
    grid.add_column("model", no_wrap=True)
    for cond in table.conditions:
        grid.add_column(cond.title, justify="right")
    if table.training:  # the steps each model trained (a time-budgeted run sizes them to the machine)
        grid.add_column("steps", justify="right")
        grid.add_column("train s", justify="right")
    for model, row in table.scores.items():
        cells = []
        for cond in table.conditions:
            text = format_miou(row[cond.name].miou)
            cells.append(f"[dim]{text}[/dim]" if row[cond.name].status == "unaffected" else text)
        if table.training:
            run = table.training.get(model)
            seconds = "-" if run is None or run.seconds is None else f"{run.seconds:.0f}"
            cells += ["-" if run is None else str(run.steps), seconds]
        grid.add_row(model, *cells)
    out.print(grid)
    notes = ["dim: the model does not read the faulty modality (clean score)"]
    if table.skipped_conditions:
        notes.append(f"skipped (modality not used): {', '.join(table.skipped_conditions)}")
    out.print(f"[dim]{'; '.join(notes)}[/dim]")
    out.print("written: " + ", ".join(str(p) for p in result.files.values()))
