"""`fusionseg train-unimodal`: train one AdapNet++ expert on one modality."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import click

from fusionseg.cli.options import config_options, json_option, resolve_config


def metrics_table(metrics: Any, title: str) -> Any:
    """A rich table of per-class IoU with both mIoU conventions and pixel accuracy."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for i, name in enumerate(metrics.class_names):
        if i == 0:
            continue
        iou = metrics.iou[i]
        table.add_row(name, "absent" if not math.isfinite(iou) else f"{100 * iou:.2f}")
    table.add_section()
    table.add_row("[bold]mIoU (classes present)", f"[bold]{_pct(metrics.miou)}")
    table.add_row("mIoU (all classes, spec §8)", _pct(metrics.miou_spec))
    table.add_row("pixel accuracy (void excluded)", _pct(metrics.pixel_accuracy))
    return table


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.2f}"


class TrainProgress:
    """Renders `TrainEvent`s: a rich bar on stderr with loss, lr, images/s and ETA; lines for the rest."""

    def __init__(self, quiet: bool = False) -> None:
        from fusionseg.cli.console import err, progress

        self.err = err
        self.quiet = quiet
        self.bar = progress()
        self.task: Any = None

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            self.bar.start()
            self.task = self.bar.add_task(
                "training", total=event.total_steps, completed=event.step, rate=f"lr {event.lr:.2e}"
            )
        elif event.kind == "step" and self.task is not None:
            parts = f"loss {event.loss:.4f}" if event.loss is not None else "loss n/a"
            rate = f"{parts}  lr {event.lr:.2e}  {event.images_per_s:.1f} img/s"
            self.bar.update(self.task, completed=event.step, total=event.total_steps, rate=rate)
        elif event.kind == "plan":
            if self.task is not None:
                self.bar.update(self.task, total=event.total_steps)
            self.bar.console.print(event.message)
        elif event.kind == "val" and event.metrics is not None:
            m = event.metrics
            self.bar.console.print(
                f"step {event.step}: val mIoU {_pct(m.miou)} % (spec {_pct(m.miou_spec)} %), "
                f"pixel acc {_pct(m.pixel_accuracy)} %"
            )
        elif event.kind == "warn":
            self.bar.console.print(f"[yellow]warning: {event.message}")
        elif event.kind == "end":
            self.stop()

    def stop(self) -> None:
        self.bar.stop()


@click.command(
    "train-unimodal",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg train-unimodal --config configs/synthetic-rgb.yaml --modality rgb\n"
    "  fusionseg train-unimodal --config configs/synthetic-depth.yaml --modality depth --resume\n"
    "  fusionseg train-unimodal --config configs/synthetic-rgb.yaml --modality rgb \\\n"
    "      --out runs/rgb-long --set train.iterations=2000",
)
@config_options
@click.option(
    "--modality",
    required=True,
    metavar="NAME",
    help="Modality column to train on: rgb, depth, depth_raw, jet, hha, evi, nir, ...",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder (default: train.out_dir of the config).",
)
@click.option("--resume", is_flag=True, help="Continue the run folder from its newest intact checkpoint.")
@click.option(
    "--init-from",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fine-tune an expert checkpoint (e.g. from import-deepscene): its weights and saved model "
    "settings start the run; --config and --set change the rest (e.g. data.root).",
)
@json_option
def command(
    config_path: Path | None,
    overrides: tuple[str, ...],
    modality: str,
    out_dir: Path | None,
    resume: bool,
    init_from: Path | None,
    as_json: bool,
) -> None:
    """Train an AdapNet++ expert on one modality; prints the final validation table.

    The run folder receives config.yaml, metrics.csv, ckpt-<step>.pt, last.pt and best.pt (each with a
    .sha256 sidecar). With --resume the run continues exactly where its last checkpoint left off.
    """
    from fusionseg import api
    from fusionseg.cli.console import out, print_json

    if init_from is not None:
        cfg = api.init_run_config(init_from, config_path=config_path, overrides=overrides)
    else:
        cfg = resolve_config(config_path, overrides)
    if out_dir is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out_dir=str(out_dir)))
    reporter = TrainProgress()
    try:
        result = api.train_expert(cfg, modality, resume=resume, progress=reporter)
    finally:
        reporter.stop()
    if not api.is_main_process():  # under torchrun only rank 0 reports
        return
    if as_json:
        print_json(result.to_dict())
        return
    if result.metrics is not None:
        out.print(metrics_table(result.metrics, f"validation after {result.steps} steps ({modality})"))
    out.print(f"best val mIoU {_pct(result.best_miou)} %  checkpoints: {result.run_dir}")
