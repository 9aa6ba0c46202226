"""`fusionseg train-pipeline`: every stage of a fusion experiment from one config, then its report.

prepare-depth, one expert per modality (`workflows.train_expert`), each fusion scheme
(`workflows.train_fusion`) and the evaluation report (`workflows.report`); finished steps are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionseg.config import RunConfig
from fusionseg.engine import distributed
from fusionseg.engine.checkpoint import CheckpointManager
from fusionseg.engine.events import ProgressFn
from fusionseg.engine.runlog import check_resume_config
from fusionseg.errors import ConfigError
from fusionseg.workflows.train_expert import train_expert
from fusionseg.workflows.train_fusion import Stage, train_fusion

if TYPE_CHECKING:
    from fusionseg.workflows.report import ResultsTable

PREPARED_DIR = "prepared"
EXPERTS_DIR = "experts"
EVAL_DIR = "eval"


@dataclass(frozen=True)
class PipelineStep:
    """One step of `run_pipeline`.

    Attributes:
        name: "prepare-depth", "expert <modality>", "<scheme>", "<scheme> finetune", "evaluate <model>"
            or "report".
        status: "done" (ran now) or "skipped" (its output already existed and was complete; an
            evaluation step is skipped when every one of its evaluations was reused).
        path: The step's checkpoint, dataset folder, metrics file or (report) results file.
        miou: Clean validation mIoU (headline convention) of an evaluation step, else None.
    """

    name: str
    status: str
    path: Path
    miou: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "path": str(self.path), "miou": self.miou}


@dataclass(frozen=True)
class PipelineResult:
    """Outcome of `run_pipeline`.

    Attributes:
        run_dir: `train.out_dir`.
        steps: Every step in order.
        checkpoints: Model name ("expert rgb", "ssma", ...) -> checkpoint used downstream.
        miou: Model name -> clean validation mIoU (when `fusion.pipeline_evaluate`).
        results: Every model's mIoU clean and under each robustness condition (when evaluated).
        files: Report files: "results_json", "results_md" and (with `fusion.pipeline_report_frames`)
            "predictions_png".
    """

    run_dir: Path
    steps: tuple[PipelineStep, ...]
    checkpoints: dict[str, Path]
    miou: dict[str, float]
    results: ResultsTable | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "steps": [s.to_dict() for s in self.steps],
            "checkpoints": {k: str(v) for k, v in self.checkpoints.items()},
            "miou": dict(self.miou),
            "results": None if self.results is None else self.results.to_dict(),
            "files": {k: str(v) for k, v in self.files.items()},
        }


def _prepare_step(cfg: RunConfig, run_dir: Path) -> tuple[RunConfig, PipelineStep]:
    """Run prepare-depth into `<run_dir>/prepared` and point `data.root` at its lists."""
    from fusionseg.data.dataset import resolve_depth_sensor
    from fusionseg.data.prepare import PrepareOptions, prepare_depth
    from fusionseg.errors import DataError

    fc = cfg.fusion
    products = set(fc.pipeline_prepare)
    options = PrepareOptions(
        complete=fc.pipeline_prepare_complete,
        hha="hha" in products,
        jet="jet" in products,
        jet_max_depth_m=fc.pipeline_jet_max_depth_m,
        normals="normals" in products,
        evi="evi" in products,
        ndvi="ndvi" in products,
        depth_sensor=resolve_depth_sensor(cfg.data),
    )
    out = run_dir / PREPARED_DIR
    status = "skipped"
    if distributed.is_main_process():  # under torchrun, rank 0 prepares while the others wait
        summary = prepare_depth(Path(cfg.data.root), out, options)
        if not summary.ok:
            first = summary.failures[0]
            raise DataError(
                f"prepare-depth: {summary.failed} of {summary.total} frames failed, first: {first}"
            )
        status = "done" if summary.done else "skipped"
    distributed.barrier()
    # the new lists name the input columns by absolute path (fusionseg.data.prepare)
    data = dataclasses.replace(cfg.data, root=str(out), layout="list", allow_absolute_paths=True)
    return dataclasses.replace(cfg, data=data), PipelineStep("prepare-depth", status, out)


def run_pipeline(
    cfg: RunConfig,
    *,
    progress: ProgressFn | None = None,
    on_step: Callable[[str], None] | None = None,
    on_stage: Callable[[str, Stage], None] | None = None,
) -> PipelineResult:
    """Run every stage of a fusion experiment from one config, skipping finished ones.

    Order: prepare-depth (when `fusion.pipeline_prepare` lists products), one AdapNet++ expert per
    modality of `data.modalities` (`<out>/experts/<modality>`, `train.*` settings), each scheme of
    `fusion.pipeline_schemes` (`<out>/<scheme>`, stage 3 in `<out>/<scheme>/finetune` when
    `fusion.finetune`), then, when `fusion.pipeline_evaluate`, the report (`workflows.report`): every
    model evaluated on the val list clean and under each condition of `fusion.pipeline_robustness`
    (`<out>/eval/<model>/[<condition>/]metrics.json`), the table in `<out>/eval/results.json` and
    `results.md`, and `fusion.pipeline_report_frames` val frames predicted by every model side by
    side in `<out>/eval/predictions.png`. A stage whose `last.pt` reached its iterations is skipped;
    one with checkpoints is resumed; an evaluation already made of the same checkpoint, val list,
    condition and seed is reused; the picture and the tables are always redrawn.

    Args:
        cfg: The resolved config; `train.out_dir` is the pipeline's folder.
        progress: Trainer events of every training stage.
        on_step: Called with a step's name before it runs.
        on_stage: Called with (stage name, `Stage`) before a fusion stage trains.

    Raises:
        ConfigError, CheckpointError, DataError: as the individual steps.
    """
    conditions = _check_pipeline_config(cfg)  # before any step makes a folder
    run_dir = Path(cfg.train.out_dir)
    notify = on_step or (lambda name: None)
    steps: list[PipelineStep] = []
    checkpoints: dict[str, Path] = {}
    # Under torchrun every rank runs this function: join the process group now (a no-op otherwise) so
    # that single-process steps (prepare-depth, evaluation) run on rank 0 while the others wait.
    distributed.init_distributed(cfg.train.ddp_backend)
    if cfg.fusion.pipeline_prepare:
        notify("prepare-depth")
        cfg, step = _prepare_step(cfg, run_dir)
        steps.append(step)
    experts: dict[str, str] = {}
    for modality in cfg.data.modalities:
        steps.append(_expert_step(cfg, modality, run_dir, notify=notify, progress=progress))
        checkpoints[steps[-1].name] = steps[-1].path
        experts[modality] = str(steps[-1].path)
    for scheme in cfg.fusion.pipeline_schemes:
        notify(scheme)
        fusion = dataclasses.replace(cfg.fusion, scheme=scheme, experts=experts)
        result = train_fusion(
            dataclasses.replace(cfg, fusion=fusion),
            out_dir=run_dir / scheme,
            skip_complete=True,
            progress=progress,
            on_stage=on_stage,
        )
        for stage in result.stages:
            name = scheme if stage.stage == "fusion" else f"{scheme} {stage.stage}"
            steps.append(PipelineStep(name, "skipped" if stage.train is None else "done", stage.checkpoint))
            checkpoints[name] = stage.checkpoint
    if not cfg.fusion.pipeline_evaluate or not distributed.is_main_process():
        return PipelineResult(run_dir, tuple(steps), checkpoints, {})
    assert conditions is not None
    return _report_steps(cfg, run_dir, steps, checkpoints, conditions, notify=notify)


def _check_pipeline_config(cfg: RunConfig) -> tuple[Any, Any] | None:
    """Refuse a pipeline config before any step runs; returns `report.parse_conditions`'s (conditions,
    skipped conditions) when the pipeline evaluates, else None."""
    from fusionseg.models.adapnet import check_training_size
    from fusionseg.workflows import report

    check_training_size(cfg.data.height_px, cfg.data.width_px)  # before any step makes a folder
    if cfg.train.init_from:
        raise ConfigError(
            "train.init_from: starts one model; the pipeline trains several (fine-tune with "
            "train-unimodal or train-fusion --init-from)"
        )
    modalities = tuple(cfg.data.modalities)
    if len(modalities) < 2:
        raise ConfigError(
            f"data.modalities: the pipeline fuses at least two modalities, got {list(modalities)}"
        )
    if not cfg.fusion.pipeline_schemes:
        raise ConfigError("fusion.pipeline_schemes: name at least one scheme (ssma, cmode)")
    if cfg.fusion.pipeline_report_frames < 0:
        raise ConfigError(
            f"fusion.pipeline_report_frames: must be >= 0, got {cfg.fusion.pipeline_report_frames}"
        )
    if cfg.fusion.pipeline_evaluate:  # checked before any training: a typo must not surface an hour later
        return report.parse_conditions(cfg.fusion.pipeline_robustness, modalities)
    return None


def _expert_step(
    cfg: RunConfig,
    modality: str,
    run_dir: Path,
    *,
    notify: Callable[[str], None],
    progress: ProgressFn | None,
) -> PipelineStep:
    """Train (or resume, or reuse when finished with this config) the expert of one modality."""
    name = f"expert {modality}"
    expert_dir = run_dir / EXPERTS_DIR / modality
    manager = CheckpointManager(expert_dir)
    expert_cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, modalities=(modality,)),
        train=dataclasses.replace(cfg.train, out_dir=str(expert_dir)),
    )
    finished = manager.completed(cfg.train.iterations)
    if finished is not None:  # reused only if it was trained with this config
        check_resume_config(
            finished.get("config") or {},
            expert_cfg,
            run_dir=expert_dir,
            source=str(manager.last_path),
            step=int(finished["step"]),
        )
        del finished
        return PipelineStep(name, "skipped", manager.best_or_last())
    notify(name)
    train_expert(expert_cfg, modality, resume=manager.has_checkpoints(), progress=progress)
    return PipelineStep(name, "done", manager.best_or_last())


def _report_steps(
    cfg: RunConfig,
    run_dir: Path,
    steps: list[PipelineStep],
    checkpoints: dict[str, Path],
    conditions: tuple[Any, Any],
    *,
    notify: Callable[[str], None],
) -> PipelineResult:
    """Evaluate every model clean and under each condition, draw the predictions, write the tables."""
    from fusionseg.data.io import write_png
    from fusionseg.workflows import report

    eval_dir = run_dir / EVAL_DIR
    val = Path(cfg.data.root) / (cfg.data.val_list if cfg.data.layout == "list" else "val")
    kept, skipped_conditions = conditions
    table = report.evaluate_models(
        checkpoints,
        val,
        out_dir=eval_dir,
        conditions=kept,
        skipped_conditions=skipped_conditions,
        seed=cfg.fusion.pipeline_robustness_seed,
        normalization={m: tuple(v) for m, v in cfg.data.normalization.items()},
        device=cfg.train.device,
        notify=notify,
    )
    miou: dict[str, float] = {}
    for name, row in table.scores.items():
        clean = row[report.CLEAN]
        if clean.miou is not None:
            miou[name] = clean.miou
        reused = all(score.status != "done" for score in row.values())
        steps.append(
            PipelineStep(f"evaluate {name}", "skipped" if reused else "done", clean.metrics, clean.miou)
        )
    picture = None
    if cfg.fusion.pipeline_report_frames:
        notify("report")
        grid = report.render_predictions(
            checkpoints, cfg, frames=cfg.fusion.pipeline_report_frames, device=cfg.train.device
        )
        picture = (write_png(eval_dir / "predictions.png", grid.image), grid)
    files = report.write_results(table, eval_dir, predictions=picture)
    if picture is not None:
        files["predictions_png"] = picture[0]
    steps.append(PipelineStep("report", "done", files["results_md"]))
    return PipelineResult(run_dir, tuple(steps), checkpoints, miou, table, files)
