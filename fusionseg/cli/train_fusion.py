"""`fusionseg train-fusion`: train SSMA or CMoDE on top of unimodal experts (stages 2 and 3)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from fusionseg.cli.options import config_options, json_option
from fusionseg.errors import ConfigError


def parse_experts(values: Iterable[str]) -> dict[str, Path]:
    """["rgb=a.pt", "depth=b.pt"] -> {"rgb": Path("a.pt"), "depth": Path("b.pt")}, order kept.

    Raises:
        ConfigError: an entry without NAME=, an empty path, or a modality given twice.
    """
    experts: dict[str, Path] = {}
    for text in values:
        name, sep, path = text.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"--experts {text!r}: expected MODALITY=CHECKPOINT, e.g. rgb=runs/rgb/best.pt")
        if name in experts:
            raise ConfigError(f"--experts: modality {name!r} given twice")
        experts[name] = Path(path)
    return experts


class TrainingDisplay:
    """Renders `TrainEvent`s: a progress bar per stage on stderr, validation lines, warnings."""

    def __init__(self) -> None:
        from fusionseg.cli.console import progress

        self.bar = progress(description_width=20)
        self.task: Any = None
        self.step = ""  # the pipeline step being run (e.g. "ssma"), prefixed to stage bars
        self.label = "training"
        self.started = False

    def stage(self, name: str, stage: Any) -> None:
        """Start a new bar for a stage (`on_stage` callback)."""
        from fusionseg.cli.console import err

        groups = ", ".join(f"{g} lr {lr:g}" for g, lr in stage.lrs.items())
        err.print(f"[bold]stage {name}[/bold]: {stage.iterations} iterations; trains {groups}")
        self.label = f"{self.step} {name}".strip()
        self.task = None

    def new_step(self, name: str) -> None:
        """Announce a pipeline step; its training bar is labelled with the step's name."""
        from fusionseg.cli.console import err

        err.print(f"[bold cyan]>> {name}[/bold cyan]")
        self.step = self.label = name
        self.task = None

    def __call__(self, event: Any) -> None:
        from fusionseg.cli.console import err

        if not self.started:
            self.bar.start()
            self.started = True
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=event.total_steps, rate="")
        if event.kind in ("start", "step"):
            rate = ""
            if event.loss is not None:
                rate = f"loss {event.loss:.4f} lr {event.lr:.2e}"
            if event.images_per_s is not None:
                rate += f" {event.images_per_s:.1f} img/s"
            self.bar.update(self.task, completed=event.step, total=event.total_steps, rate=rate)
        elif event.kind == "plan":
            self.bar.update(self.task, total=event.total_steps)
            err.print(f"  {event.message}")
        elif event.kind == "val" and event.metrics is not None:
            err.print(f"  step {event.step}: val mIoU {100 * event.metrics.miou:.2f}")
        elif event.kind == "warn":
            err.print(f"[yellow]warning[/yellow]: {event.message}")

    def stop(self) -> None:
        if self.started:
            self.bar.stop()


def render_fusion_result(result: Any) -> None:
    """Rich tables of a `FusionResult` on stdout."""
    from rich.table import Table

    from fusionseg.cli.console import out

    experts = Table(title=f"{result.scheme.upper()} built from")
    for col in ("modality", "checkpoint", "sha256", "step"):
        experts.add_column(col)
    for e in result.experts:
        experts.add_row(e.modality, e.path, e.sha256[:16], str(e.step))
    out.print(experts)
    stages = Table(title="stages")
    for col in ("stage", "steps", "best val mIoU", "trainable", "frozen", "checkpoint"):
        stages.add_column(col, justify="right" if col in ("steps", "trainable", "frozen") else "left")
    for s in result.stages:
        t = s.train
        miou = "skipped (complete)" if t is None else f"{100 * t.best_miou:.2f}"
        steps = "-" if t is None else str(t.steps)
        stages.add_row(
            s.stage, steps, miou, f"{s.trainable_params:,}", f"{s.frozen_params:,}", str(s.checkpoint)
        )
    out.print(stages)


@click.command(
    "train-fusion",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg train-fusion --scheme ssma --experts rgb=runs/rgb/best.pt depth=runs/depth/best.pt\n"
    "  fusionseg train-fusion --scheme cmode --experts rgb=A.pt --experts depth=B.pt --out runs/cmode\n"
    "  fusionseg train-fusion --config configs/synthetic-ssma.yaml --experts rgb=A.pt depth=B.pt --finetune\n"
    "  fusionseg train-fusion --init-from sun-ssma.pt --set data.root=data/sun --out runs/sun-ssma-ft",
)
@click.option(
    "--scheme",
    type=click.Choice(["ssma", "cmode"]),
    default=None,
    help="Fusion scheme [default: fusion.scheme of the config, ssma].",
)
@click.option(
    "--experts",
    "expert_options",
    multiple=True,
    metavar="NAME=CKPT",
    help="Unimodal expert checkpoint per modality, modality 1 first (NAME=CKPT [NAME=CKPT ...]).",
)
@click.argument("more_experts", nargs=-1, metavar="[NAME=CKPT]...")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder [default: train.out_dir]; stage 3 goes to OUT/finetune.",
)
@click.option("--finetune", is_flag=True, default=None, help="Also run stage 3 (all groups at lr 1e-5).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's newest intact checkpoint.")
@click.option(
    "--init-from",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fine-tune a fused checkpoint (e.g. from import-deepscene) instead of fusing experts: its "
    "experts, fusion head and saved settings start the run (give --set data.root=... for your data).",
)
@config_options
@json_option
def command(
    scheme: str | None,
    expert_options: tuple[str, ...],
    more_experts: tuple[str, ...],
    out_dir: Path | None,
    finetune: bool | None,
    resume: bool,
    init_from: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Stage 2 (and 3) of fusion training: load the experts by prefix from their unimodal checkpoints,
    freeze them (weights, BN statistics, dropout) and train fresh fusion blocks and decoder; with
    --finetune, then train the configured groups at the fine-tuning rate. The data, model and train
    settings default to the first expert's; --config and --set change them.
    """
    from fusionseg import api
    from fusionseg.cli.console import print_json

    experts = parse_experts((*expert_options, *more_experts))
    if not experts and init_from is None:
        raise click.UsageError("give the experts: --experts rgb=CKPT depth=CKPT (or --init-from FUSED.pt)")
    display = TrainingDisplay()
    try:
        cfg = api.fusion_run_config(
            experts,
            config_path=config_path,
            overrides=overrides,
            scheme=scheme,
            out_dir=out_dir,
            finetune=True if finetune else None,
            init_from=init_from,
        )
        result = api.train_fusion(cfg, resume=resume, progress=display, on_stage=display.stage)
    finally:
        display.stop()
    if not api.is_main_process():  # under torchrun only rank 0 reports
        return
    if as_json:
        print_json(result.to_dict())
        return
    render_fusion_result(result)
