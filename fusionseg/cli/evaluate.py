"""`fusionseg evaluate`: mIoU, per-class IoU, pixel accuracy and confusion matrix of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fusionseg.cli.options import (
    checkpoint_option,
    config_options,
    json_option,
    refuse_ignored_overrides,
    resolve_config,
)

# what evaluate reads from --config/--set: how to read the data, and the batch size
EVALUATE_READS = ("data.", "train.batch_size", "train.val_batch_size")


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> (0.75, 1.0, 1.25); raises click.BadParameter on anything else."""
    try:
        scales = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None
    if not scales or any(not 0 < s <= 8 for s in scales):
        raise click.BadParameter(f"{text!r}: scales must be numbers in (0, 8]")
    return scales


@click.command(
    "evaluate",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg evaluate --checkpoint runs/synthetic-rgb/best.pt --data data/synthetic/val.txt\n"
    "  fusionseg evaluate --checkpoint best.pt --data val.txt --scales 0.75,1,1.25 --flip --out eval/\n"
    "  fusionseg evaluate --checkpoint best.pt --data val.txt --json",
)
@checkpoint_option
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="List file with the model's modality columns and label, or a dataset folder.",
)
@click.option("--scales", default="1", show_default=True, help="Comma-separated inference scales.")
@click.option("--flip", is_flag=True, help="Also average the horizontally flipped prediction.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write confusion.npy, confusion.png and metrics.json here.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--drop-modality", "drop", multiple=True, metavar="NAME", help="Zero this modality's input.")
@click.option(
    "--degrade",
    multiple=True,
    metavar="NAME=KIND",
    help="Corrupt a modality's input: noise, zero, dark or fog (seeded, deterministic; repeatable).",
)
@click.option(
    "--gate-report",
    is_flag=True,
    help="Fused models: mean SSMA gate per modality and level, or CMoDE weight per class (+ gates.png).",
)
@config_options
@json_option
def command(
    checkpoint: Path,
    data: Path,
    scales: str,
    flip: bool,
    out_dir: Path | None,
    batch_size: int | None,
    device: str,
    drop: tuple[str, ...],
    degrade: tuple[str, ...],
    gate_report: bool,
    config_path: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Evaluate a checkpoint on labelled data at its training resolution (void excluded).

    The headline mIoU averages the classes present in the ground truth or the predictions; the
    spec's convention (all classes, absent ones counting 0) is reported beside it. Data is read with
    the checkpoint's data settings unless --config/--set are given.
    """
    from fusionseg import api
    from fusionseg.cli.console import out, print_json, progress
    from fusionseg.cli.train_unimodal import metrics_table

    scale_values = parse_scales(scales)
    # only the data section and the batch size are read from --config/--set; the rest is the checkpoint's
    refuse_ignored_overrides(overrides, used=EVALUATE_READS, verb="evaluate")
    cfg = resolve_config(config_path, overrides) if config_path is not None or overrides else None
    bar = progress()
    task = {"id": None}

    def on_start(total: int) -> None:
        bar.start()
        task["id"] = bar.add_task("evaluating", total=total, rate="")

    def on_batch(n: int) -> None:
        bar.advance(task["id"], n)

    # robustness options (fusionseg.engine.robustness): corrupted inputs and the fused model's gates
    robust = {"drop": drop, "degrade": degrade, "gate_report": gate_report}
    robust = robust if drop or degrade or gate_report else {}
    try:
        result = (api.evaluate_robustness if robust else api.evaluate)(
            checkpoint,
            data,
            scales=scale_values,
            flip=flip,
            out_dir=out_dir,
            config=cfg,
            batch_size=batch_size,
            device=device,
            on_start=on_start,
            on_batch=on_batch,
            **robust,
        )
    finally:
        bar.stop()
    if as_json:
        print_json(result.to_dict())
        return
    report = result.evaluation if robust else result
    title = (
        f"{checkpoint} on {data}: {report.num_images} images at {report.size_hw[0]}x{report.size_hw[1]}, "
        f"scales {','.join(f'{s:g}' for s in report.scales)}{', flip' if flip else ''}"
    )
    out.print(metrics_table(report.metrics, title))
    for name, path in report.files.items():
        out.print(f"{name}: {path}")
    if robust:
        _print_robustness(result)


def _print_robustness(result: Any) -> None:
    """Corruptions applied and the gate table of a `RobustnessReport`."""
    from rich.table import Table

    from fusionseg.cli.console import out

    if result.degradations:
        out.print("inputs corrupted: " + ", ".join(f"{m}={k}" for m, k in result.degradations.items()))
    if result.gates is not None:
        gates = result.gates
        what = "SSMA mean gate" if gates.scheme == "ssma" else "CMoDE mean expert weight"
        table = Table(title=f"{what} over {gates.images} images")
        table.add_column("level" if gates.scheme == "ssma" else "class")
        for m in gates.modalities:
            table.add_column(m, justify="right")
        for row, values in zip(gates.rows, gates.values):
            table.add_row(row, *(f"{v:.3f}" for v in values))
        out.print(table)
    for name, path in result.files.items():
        out.print(f"{name}: {path}")
