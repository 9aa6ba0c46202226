"""Staged fusion training (ssma-cmode.md §A.5, §A.6, §B.1): which parameters train, at what rate.

Stage 1 trains one AdapNet++ expert per modality (`fusionseg train-unimodal`). Stage 2 ("fusion")
builds the fused model, loads each expert from its unimodal checkpoint by prefix, freezes the experts
(weights, BN statistics, dropout) and trains the fresh fusion head at `fusion.lr` with the poly schedule.
Stage 3 ("finetune", optional) starts from the stage-2 weights and trains the groups in
`fusion.finetune_groups` at `fusion.finetune_lr` (1e-5 by default), the rest frozen.

`fusionseg train-fusion` runs stages 2 and 3. Every stage runs the same `Trainer`; stages differ only
in their parameter groups (`Stage`). Each stage's checkpoints record the expert checkpoints (path and
sha256) the model was built from (`workflows.fusion_experts`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fusionseg.config import RunConfig, config_from_dict, config_to_dict, load_config, strip_retired_keys
from fusionseg.engine.checkpoint import CheckpointManager, load_checkpoint, load_model_state
from fusionseg.engine.events import ProgressFn, TrainResult
from fusionseg.engine.runlog import check_resume_config
from fusionseg.engine.trainer import Trainer
from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.fsutil import sha256_file
from fusionseg.fusion.build import build_model
from fusionseg.fusion.fused import ExpertEnsemble
from fusionseg.workflows.fusion_experts import ExpertSource, check_provenance, load_experts
from fusionseg.workflows.run_meta import check_num_classes, checkpoint_meta

FINETUNE_DIR = "finetune"  # stage-3 run folder inside the stage-2 one


@dataclass(frozen=True)
class Stage:
    """One fusion training stage.

    Attributes:
        name: "fusion" (stage 2) or "finetune" (stage 3).
        lrs: Trained group -> initial learning rate; every other group is frozen.
        lr_end: Poly floor of the group(s) with the largest learning rate; other groups keep the ratio.
        iterations: Optimiser steps.
    """

    name: str
    lrs: dict[str, float]
    lr_end: float
    iterations: int

    @property
    def lr(self) -> float:
        """The largest learning rate of the stage."""
        return max(self.lrs.values())


def resolve_groups(selectors: Sequence[str], groups: Sequence[str], *, key: str) -> list[str]:
    """Expand group selectors ("all", a group name, or a prefix such as "experts") to group names.

    Raises:
        ConfigError: a selector matching no group (names `key` and lists the groups).
    """
    chosen: list[str] = []
    for sel in selectors:
        if sel == "all":
            matched = list(groups)
        else:
            matched = [g for g in groups if g == sel or g.startswith(sel + ".")]
        if not matched:
            raise ConfigError(f"{key}: {sel!r} matches no parameter group (groups: all, {', '.join(groups)})")
        chosen += [g for g in matched if g not in chosen]
    return chosen


def fusion_stage(cfg: RunConfig, groups: Sequence[str]) -> Stage:
    """Stage 2 (§A.5, §A.6 [spec]): fresh fusion head at `fusion.lr`, experts frozen unless
    `fusion.freeze_experts` is false (then they train at the same rate)."""
    trained = [g for g in groups if not (cfg.fusion.freeze_experts and g.startswith("experts."))]
    return Stage(
        name="fusion",
        lrs={g: cfg.fusion.lr for g in trained},
        lr_end=cfg.train.lr_end,
        iterations=cfg.fusion.iterations or cfg.train.iterations,
    )


def finetune_stage(cfg: RunConfig, groups: Sequence[str]) -> Stage:
    """Stage 3 (§A.6 [spec]): `fusion.finetune_groups` at `fusion.finetune_lr` (1e-5), with
    `fusion.finetune_group_lrs` overriding single groups; everything else frozen."""
    trained = resolve_groups(cfg.fusion.finetune_groups, groups, key="fusion.finetune_groups")
    lrs = {g: cfg.fusion.finetune_lr for g in trained}
    for sel, lr in cfg.fusion.finetune_group_lrs.items():
        for g in resolve_groups([sel], groups, key=f"fusion.finetune_group_lrs.{sel}"):
            if g not in lrs:
                raise ConfigError(
                    f"fusion.finetune_group_lrs.{sel}: group {g!r} is not in fusion.finetune_groups"
                )
            lrs[g] = lr
    return Stage(
        name="finetune",
        lrs=lrs,
        lr_end=cfg.fusion.finetune_lr_end,
        iterations=cfg.fusion.finetune_iterations or cfg.train.iterations,
    )


def apply_stage(model: ExpertEnsemble, stage: Stage) -> list[dict[str, Any]]:
    """Freeze the groups a stage does not train and return its Adam parameter groups.

    Frozen groups get `requires_grad=False`, stay in eval mode (BN statistics fixed, dropout off, also
    after `model.train()`) and are left out of the optimiser (§A.5).

    Returns:
        One optimiser group per trained group: {"params", "lr", "lr_end", "name"}.

    Raises:
        ConfigError: the stage trains nothing, a learning rate is not positive, or a group is unknown.
    """
    groups = model.parameter_groups()
    unknown = [g for g in stage.lrs if g not in groups]
    if unknown:
        raise ConfigError(
            f"stage {stage.name}: unknown parameter group {unknown[0]!r} (groups: {', '.join(groups)})"
        )
    if not stage.lrs:
        raise ConfigError(f"stage {stage.name}: no parameter group to train")
    for name, lr in stage.lrs.items():
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"stage {stage.name}: learning rate of {name!r} must be positive, got {lr}")
    frozen = [g for g in groups if g not in stage.lrs]
    model.unfreeze(list(stage.lrs))
    model.freeze(frozen)
    top = stage.lr
    return [
        {"params": groups[name], "lr": lr, "lr_end": stage.lr_end * lr / top, "name": name}
        for name, lr in stage.lrs.items()
    ]


def stage_config(cfg: RunConfig, stage: Stage, run_dir: Path) -> RunConfig:
    """The run config a stage's trainer sees: its iterations, top lr and floor, and its run folder."""
    budget = cfg.fusion.time_budget_s if cfg.fusion.time_budget_s >= 0 else cfg.train.time_budget_s
    train = dataclasses.replace(
        cfg.train,
        iterations=stage.iterations,
        lr=stage.lr,
        lr_end=stage.lr_end,
        out_dir=str(run_dir),
        time_budget_s=budget,
    )
    return dataclasses.replace(cfg, train=train)


@dataclass(frozen=True)
class StageResult:
    """Outcome of one fusion stage.

    Attributes:
        stage: "fusion" or "finetune".
        run_dir: Its run folder.
        checkpoint: The checkpoint to use downstream (best.pt, else last.pt).
        train: What the trainer returned (None when the stage was already complete and skipped).
        trainable_params / frozen_params: Parameter elements trained and frozen in the stage.
    """

    stage: str
    run_dir: Path
    checkpoint: Path
    train: TrainResult | None
    trainable_params: int
    frozen_params: int


@dataclass(frozen=True)
class FusionResult:
    """Outcome of `train_fusion`.

    Attributes:
        scheme: "ssma" or "cmode".
        experts: Provenance of the experts.
        stages: One result per stage run (fusion, then finetune when asked).
        config: The resolved config (fusion section with the experts used).
    """

    scheme: str
    experts: tuple[ExpertSource, ...]
    stages: tuple[StageResult, ...]
    config: RunConfig

    @property
    def checkpoint(self) -> Path:
        """The final model's checkpoint."""
        return self.stages[-1].checkpoint

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: scheme, expert provenance, each stage's folder, checkpoint and counts."""
        stages = [
            {
                "stage": s.stage,
                "run_dir": str(s.run_dir),
                "checkpoint": str(s.checkpoint),
                "skipped": s.train is None,
                "steps": None if s.train is None else s.train.steps,
                "best_miou": None if s.train is None else s.train.best_miou,
                "trainable_params": s.trainable_params,
                "frozen_params": s.frozen_params,
            }
            for s in self.stages
        ]
        experts = [e.to_dict() for e in self.experts]
        return {
            "scheme": self.scheme,
            "experts": experts,
            "stages": stages,
            "checkpoint": str(self.checkpoint),
        }


def stage_complete(run_dir: Path, iterations: int) -> bool:
    """True when `run_dir/last.pt` exists, verifies and reached the run's steps
    (`CheckpointManager.completed`)."""
    return CheckpointManager(run_dir).completed(iterations) is not None


@dataclass
class _Plan:
    """The stages of a `train_fusion` call, their folders and sizes, and what already exists."""

    stages: list[Stage]
    dirs: list[Path]
    total: int  # parameter elements of the model
    trained: list[int]  # per stage: parameter elements it trains
    done: list[list[dict[str, Any]] | None] = field(default_factory=list)  # finished: its expert record
    last: dict[int, dict[str, Any]] = field(default_factory=dict)  # unfinished: last.pt, loaded once

    def result(self, index: int, train: TrainResult | None) -> StageResult:
        name, folder, n = self.stages[index].name, self.dirs[index], self.trained[index]
        return StageResult(name, folder, CheckpointManager(folder).best_or_last(), train, n, self.total - n)


def _check_fusion_config(cfg: RunConfig) -> Any:
    """Refuse a fusion config before anything is read; returns the dataset's `DatasetInfo`."""
    from fusionseg.models.adapnet import check_training_size

    check_training_size(cfg.data.height_px, cfg.data.width_px)
    fc = cfg.fusion
    modalities = tuple(cfg.data.modalities)
    if cfg.train.init_from and fc.experts:
        raise ConfigError(
            "train.init_from: a fused checkpoint brings its experts; give it or `experts`, not both"
        )
    if not fc.experts and not cfg.train.init_from:
        raise ConfigError("fusion.experts: no expert checkpoints given (`experts` rgb=CKPT depth=CKPT)")
    if fc.experts and sorted(fc.experts) != sorted(modalities):
        raise ConfigError(
            f"fusion.experts: experts for {list(fc.experts)} but data.modalities is {list(modalities)}"
        )
    return check_num_classes(cfg)


def _plan(cfg: RunConfig, run_dir: Path, in_channels: Mapping[str, int], *, skip_complete: bool) -> _Plan:
    """The stages from a weightless copy of the model (group names and sizes only), and which of them
    finished already (with `skip_complete`; a finished stage is reused only if trained with this config)."""
    import torch

    with torch.device("meta"):
        shape = build_model(cfg, in_channels=in_channels)
    groups = list(shape.module_groups())
    stages = [fusion_stage(cfg, groups)]
    if cfg.fusion.finetune:
        stages.append(finetune_stage(cfg, groups))
    dirs = [run_dir if s.name == "fusion" else run_dir / FINETUNE_DIR for s in stages]
    total = sum(p.numel() for p in shape.parameters())
    trained = [sum(p.numel() for g in apply_stage(shape, s) for p in g["params"]) for s in stages]
    plan = _Plan(stages, dirs, total, trained)
    for i, (stage_dir, stage) in enumerate(zip(dirs, stages)):
        manager = CheckpointManager(stage_dir)
        payload = manager.read_last() if skip_complete else None
        finished = payload is not None and _reached(payload, stage.iterations)
        if finished:
            check_resume_config(
                payload.get("config") or {},
                stage_config(cfg, stage, stage_dir),
                run_dir=stage_dir,
                source=str(manager.last_path),
                step=int(payload["step"]),
            )
        elif payload is not None:
            plan.last[i] = payload  # resumed below: not loaded again
        plan.done.append(list(payload.get("experts") or []) if finished else None)
        del payload
    return plan


def _reached(payload: Mapping[str, Any], iterations: int) -> bool:
    """A loaded last.pt reached its run's steps (`CheckpointManager.completed`)."""
    target = iterations
    if payload.get("budget_planned") and payload.get("total_steps"):
        target = min(int(payload["total_steps"]), iterations)
    return int(payload.get("step", -1)) >= target


def train_fusion(
    cfg: RunConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    skip_complete: bool = False,
    progress: ProgressFn | None = None,
    on_stage: Callable[[str, Stage], None] | None = None,
) -> FusionResult:
    """Run stage 2 (and stage 3 when `cfg.fusion.finetune`) of a fusion scheme.

    Args:
        cfg: Resolved config: `fusion.scheme`, `fusion.experts` (modality -> unimodal checkpoint, in
            `data.modalities` order), data, model and train sections.
        out_dir: Stage-2 run folder (default `train.out_dir`); stage 3 runs in `<out_dir>/finetune`.
        resume: Continue stages whose folder holds checkpoints.
        skip_complete: Skip a stage whose `last.pt` already reached its iterations (pipeline).
        progress: Trainer events.
        on_stage: Called with (stage name, `Stage`) before a stage trains.

    Returns:
        `FusionResult` with the experts' provenance and each stage's checkpoint.

    Raises:
        ConfigError, CheckpointError, DataError: bad config, expert checkpoints or data (named).
    """

    from fusionseg.data.modality_specs import get_modality

    info = _check_fusion_config(cfg)
    fc = cfg.fusion
    modalities = tuple(cfg.data.modalities)
    in_channels = {m: get_modality(m).channels for m in modalities}
    run_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    plan = _plan(cfg, run_dir, in_channels, skip_complete=skip_complete)
    if plan.done and all(plan.done):  # every stage finished already: report it without loading anything else
        sources = tuple(ExpertSource(**e) for e in plan.done[-1])  # type: ignore[union-attr]
        check_provenance(sources, fc.experts, source=str(CheckpointManager(plan.dirs[-1]).last_path))
        return FusionResult(
            fc.scheme, sources, tuple(plan.result(i, None) for i in range(len(plan.stages))), cfg
        )

    if not (resume or skip_complete):  # fail before the slow set-up
        CheckpointManager(plan.dirs[0]).refuse_existing()
    (train_set, val_set), model, experts, init_from = _build(cfg, in_channels, class_names=info.classes)
    meta = checkpoint_meta(cfg, kind=fc.scheme, in_channels=in_channels)
    meta["experts"] = [e.to_dict() for e in experts]
    if init_from is not None:
        meta["init_from"] = init_from
    results: list[StageResult] = []
    previous: Path | None = None
    for i, stage in enumerate(plan.stages):
        if plan.done[i] is None:
            if previous is not None:  # stage 3 starts from the stage-2 weights
                payload = load_checkpoint(previous, map_location="cpu")
                load_model_state(model, payload["model"], source=str(previous))
                del payload
            opt_groups = apply_stage(model, stage)
            if on_stage is not None:
                on_stage(stage.name, stage)
            trainer = _stage_trainer(
                cfg,
                model,
                stage,
                plan.dirs[i],
                _stage_meta(meta, stage, previous),
                opt_groups,
                datasets=(train_set, val_set),
                class_names=info.classes,
                progress=progress,
            )
            result = _run_stage(trainer, plan, i, continue_ok=resume or skip_complete, experts=fc.experts)
            results.append(plan.result(i, result))
        else:
            results.append(plan.result(i, None))
        previous = results[-1].checkpoint
    return FusionResult(fc.scheme, tuple(experts), tuple(results), cfg)


def _build(
    cfg: RunConfig, in_channels: Mapping[str, int], *, class_names: Sequence[str]
) -> tuple[tuple[Any, Any], ExpertEnsemble, list[ExpertSource], dict[str, str] | None]:
    """The datasets, and the fused model with its experts loaded from their checkpoints, or with every
    weight from `train.init_from` (then its provenance comes last, and no expert sources)."""
    import torch

    from fusionseg.data.dataset import build_dataset

    modalities, num_classes, seed = tuple(in_channels), cfg.model.num_classes, cfg.train.seed
    train_set = build_dataset(cfg.data, "train", modalities=modalities, num_classes=num_classes, seed=seed)
    val_set = build_dataset(cfg.data, "val", modalities=modalities, num_classes=num_classes, seed=seed)
    torch.manual_seed(seed)  # fresh fusion head: reproducible initialisation
    model = build_model(cfg, in_channels=in_channels)
    if cfg.train.init_from:  # experts and head from one fused checkpoint (fine-tuning)
        from fusionseg.workflows.init_from import load_init_weights

        init = load_init_weights(
            model, cfg, kind=cfg.fusion.scheme, modalities=modalities, in_channels=in_channels
        )
        return (train_set, val_set), model, [], init
    experts = load_experts(
        model, cfg.fusion.experts, cfg=cfg, in_channels=in_channels, class_names=class_names
    )
    return (train_set, val_set), model, experts, None


def _stage_meta(meta: Mapping[str, Any], stage: Stage, previous: Path | None) -> dict[str, Any]:
    """A stage's checkpoint metadata: the run's, its name and (stage 3) the checkpoint it started from."""
    stage_meta = {**meta, "stage": stage.name}
    if previous is not None:
        stage_meta["init_from"] = {"path": str(previous.resolve()), "sha256": sha256_file(previous)}
    return stage_meta


def _stage_trainer(
    cfg: RunConfig,
    model: nn.Module,
    stage: Stage,
    stage_dir: Path,
    meta: Mapping[str, Any],
    opt_groups: Sequence[dict[str, Any]],
    *,
    datasets: tuple[Any, Any],
    class_names: Sequence[str],
    progress: ProgressFn | None,
) -> Trainer:
    """The `Trainer` of one stage: its parameter groups, config and run folder."""
    fc = cfg.fusion
    return Trainer(
        model,
        train_set=datasets[0],
        val_set=datasets[1],
        config=stage_config(cfg, stage, stage_dir),
        run_dir=stage_dir,
        num_classes=cfg.model.num_classes,
        modalities=tuple(cfg.data.modalities),
        checkpoint_meta=meta,
        param_groups=opt_groups,
        aux_weights=fc.aux_weights if fc.aux else (),
        class_names=class_names,
        channels_last=cfg.model.channels_last,
        progress=progress,
    )


def _run_stage(
    trainer: Trainer, plan: _Plan, index: int, *, continue_ok: bool, experts: Mapping[str, str | Path]
) -> TrainResult:
    """Train one stage, continuing its folder's run (built from the same experts) when allowed."""
    manager = CheckpointManager(plan.dirs[index])
    # a folder with checkpoints is continued with --resume, and always by the pipeline
    continue_run = manager.has_checkpoints() and continue_ok
    if continue_run and manager.last_path.exists():
        last = manager.last_path
        payload = plan.last.pop(index, None) or load_checkpoint(last, map_location="cpu")
        recorded = payload.get("experts") or []
        check_provenance([ExpertSource(**e) for e in recorded], experts, source=str(last))
        trainer.resume_with(last, payload)  # last.pt is loaded (and its digest checked) once
        del payload
    return trainer.fit(resume=continue_run)


def fusion_run_config(
    experts: Mapping[str, str | Path],
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    scheme: str | None = None,
    out_dir: str | Path | None = None,
    finetune: bool | None = None,
    init_from: str | Path | None = None,
) -> RunConfig:
    """Resolve the config of `fusionseg train-fusion`.

    Precedence, lowest first: code defaults <- the first expert checkpoint's saved config (data, model
    and train sections, so a bare `train-fusion --experts ...` trains on the experts' data) <- the YAML
    file <- `--set` overrides <- explicit options (`scheme`, `out_dir`, `finetune`, the experts, whose
    order becomes `data.modalities`).

    With `init_from` (a fused checkpoint to fine-tune, e.g. an imported SSMA) and no experts, the
    defaults are that checkpoint's saved config instead (`workflows.init_from.init_run_config`).

    Raises:
        ConfigError: bad file, key or value. CheckpointError: unreadable first expert checkpoint.
    """
    if init_from is not None and not experts:
        from fusionseg.workflows.init_from import init_run_config

        cfg = init_run_config(init_from, config_path=config_path, overrides=overrides)
        fusion = cfg.fusion
        fusion = dataclasses.replace(fusion, scheme=scheme or fusion.scheme)
        fusion = dataclasses.replace(fusion, finetune=fusion.finetune if finetune is None else finetune)
        train = cfg.train if out_dir is None else dataclasses.replace(cfg.train, out_dir=str(out_dir))
        return dataclasses.replace(cfg, fusion=fusion, train=train)
    if not experts:
        raise ConfigError("experts: give one NAME=CKPT per modality, e.g. rgb=runs/rgb/best.pt depth=...")
    first = Path(next(iter(experts.values())))
    saved = strip_retired_keys(load_checkpoint(first, map_location="cpu").get("config") or {})
    base = {k: saved[k] for k in ("data", "model", "train") if isinstance(saved.get(k), Mapping)}
    if "train" in base:
        base["train"] = {k: v for k, v in base["train"].items() if k != "out_dir"}
    try:
        config_from_dict(base)
    except ConfigError as exc:
        raise CheckpointError(f"{first}: the saved config does not fit this fusionseg ({exc})") from None
    values = config_to_dict(load_config(config_path, overrides, base=base))
    values["fusion"]["experts"] = {m: str(p) for m, p in experts.items()}
    values["data"]["modalities"] = list(experts)
    if scheme is not None:
        values["fusion"]["scheme"] = scheme
    if finetune is not None:
        values["fusion"]["finetune"] = finetune
    if out_dir is not None:
        values["train"]["out_dir"] = str(out_dir)
    return config_from_dict(values)
