"""Staged fusion training (ssma-cmode.md §A.5, §A.6, §B.1): which parameters train, at what rate.

Stage 1 trains one AdapNet++ expert per modality (`fusionseg train-unimodal`). Stage 2 ("fusion")
builds the fused model, loads each expert from its unimodal checkpoint by prefix, freezes the experts
(weights, BN statistics, dropout) and trains the fresh fusion head at `fusion.lr` with the poly schedule.
Stage 3 ("finetune", optional) starts from the stage-2 weights and trains the groups in
`fusion.finetune_groups` at `fusion.finetune_lr` (1e-5 by default), the rest frozen.

Every stage runs the same `Trainer`; stages differ only in their parameter groups (`Stage`). Each
stage's checkpoints record the expert checkpoints (path and sha256) the model was built from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from fusionseg.config import RunConfig, config_from_dict, config_to_dict, load_config, strip_retired_keys
from fusionseg.engine import distributed
from fusionseg.engine.checkpoint import as_plain, load_checkpoint, load_model_state
from fusionseg.engine.trainer import ProgressFn, Trainer, TrainResult, check_resume_config
from fusionseg.errors import CheckpointError, ConfigError, FusionsegError
from fusionseg.fsutil import sha256_file
from fusionseg.fusion.build import build_model
from fusionseg.fusion.fused import CMoDEModel, ExpertEnsemble
from fusionseg.models.adapnet import trunk_state_dict
from fusionseg.models.output import ExpertOutput

if TYPE_CHECKING:
    from fusionseg.engine.report import ResultsTable

EXPERT_KIND = "expert"  # checkpoint kind written by train-unimodal
ARCHITECTURE_KEYS = ("dilations", "easpp_rates")  # model keys that change an expert's computation
FINETUNE_DIR = "finetune"  # stage-3 run folder inside the stage-2 one


def fused_forward(model: nn.Module, batch: Mapping[str, Any]) -> ExpertOutput:
    """`forward(model, batch)` of a fused model: every modality of `batch["inputs"]` goes in."""
    return model(batch["inputs"])


# ---------------------------------------------------------------------------------------------------
# Loading experts from unimodal checkpoints
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpertSource:
    """Where an expert's weights came from; stored in every fusion checkpoint.

    Attributes:
        modality: The expert's modality.
        path: Absolute path of the unimodal checkpoint.
        sha256: Hex digest of that file.
        step: Training step of the checkpoint (None if not recorded).
    """

    modality: str
    path: str
    sha256: str
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        return dataclasses.asdict(self)


def check_expert_payload(
    payload: Mapping[str, Any],
    *,
    modality: str,
    cfg: RunConfig,
    in_channels: int,
    class_names: Sequence[str] | None,
    source: str,
) -> None:
    """Refuse a unimodal checkpoint that does not fit the expert slot it was given for.

    Args:
        payload: The loaded checkpoint.
        modality: Name the checkpoint was given for (`--experts NAME=CKPT`).
        cfg: The fusion run's config (`model.num_classes`, architecture keys, `data.normalization`).
        in_channels: Input channels of that modality.
        class_names: The dataset's class names, compared when the checkpoint records its own.
        source: File name for messages.

    Raises:
        CheckpointError: naming the mismatch (kind, modality, class count, class names, input channels,
            architecture key or normalisation).
    """
    kind = payload.get("kind")
    if kind != EXPERT_KIND:
        raise CheckpointError(
            f"{source}: a {kind!r} checkpoint, not a unimodal expert (train one per modality with "
            "fusionseg train-unimodal)"
        )
    have_modalities = list(payload.get("modalities") or [])
    if have_modalities != [modality]:
        raise CheckpointError(
            f"{source}: modality mismatch: the checkpoint is an expert for "
            f"{', '.join(map(repr, have_modalities)) or 'no modality'}, but it was given for {modality!r}"
        )
    have_classes = payload.get("num_classes")
    if have_classes != cfg.model.num_classes:
        raise CheckpointError(
            f"{source}: class count mismatch: the expert has {have_classes} classes, the fusion run "
            f"needs model.num_classes={cfg.model.num_classes}"
        )
    names = payload.get("class_names")
    if class_names is not None and names is not None and list(names) != list(class_names):
        raise CheckpointError(
            f"{source}: class names mismatch: the expert has {list(names)}, the dataset {list(class_names)}"
        )
    have_channels = (payload.get("in_channels") or {}).get(modality)
    if have_channels != in_channels:
        raise CheckpointError(
            f"{source}: input channel mismatch for {modality!r}: the expert reads {have_channels}, "
            f"the data gives {in_channels}"
        )
    model_cfg = (payload.get("config") or {}).get("model") or {}
    for key in ARCHITECTURE_KEYS:
        have, want = model_cfg.get(key), getattr(cfg.model, key)
        if have is not None and as_plain(have) != as_plain(want):
            raise CheckpointError(
                f"{source}: architecture mismatch: the expert was built with model.{key}={as_plain(have)!r}, "
                f"the fusion run uses {as_plain(want)!r}"
            )
    have_norm = (payload.get("normalization") or {}).get(modality)
    want_norm = cfg.data.normalization.get(modality)
    if "normalization" in payload and as_plain(have_norm) != as_plain(want_norm):
        raise CheckpointError(
            f"{source}: normalisation mismatch for {modality!r}: the expert was trained with "
            f"{as_plain(have_norm)!r}, the fusion run uses "
            f"data.normalization.{modality}={as_plain(want_norm)!r}"
        )


def expert_weights(model: ExpertEnsemble, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The part of a unimodal `AdapNetPP` state dict an expert slot of `model` takes.

    SSMA experts are trunks: the `trunk.` entries, prefix removed (decoder and aux heads are not used,
    §A.2). CMoDE experts are complete networks: the whole state dict (§B.1).
    """
    return dict(state) if isinstance(model, CMoDEModel) else trunk_state_dict(state)


def load_experts(
    model: ExpertEnsemble,
    paths: Mapping[str, str | Path],
    *,
    cfg: RunConfig,
    in_channels: Mapping[str, int],
    class_names: Sequence[str] | None = None,
) -> list[ExpertSource]:
    """Load every expert of `model` from its unimodal checkpoint, after validating it.

    Args:
        model: The fused model; its expert `experts.<m>` receives checkpoint `paths[m]`.
        paths: Modality -> unimodal checkpoint; must name exactly the model's modalities.
        cfg: The fusion run's config.
        in_channels: Modality -> input channels.
        class_names: The dataset's class names (checked against the checkpoints').

    Returns:
        Provenance of each expert, in modality order.

    Raises:
        CheckpointError: a missing, corrupt or mismatched checkpoint (the message names the file and
            the mismatch: modality, class count, architecture key or weight key).
        ConfigError: experts given for other modalities than the model's.
    """
    given, wanted = list(paths), list(model.modalities)
    if sorted(given) != sorted(wanted):
        raise ConfigError(
            f"fusion.experts: experts given for {given or 'no modality'}, the model fuses {wanted} "
            "(pass one --experts NAME=CKPT per modality)"
        )
    sources = []
    for modality in model.modalities:
        path = Path(paths[modality])
        source = f"{path} (expert {modality!r})"
        payload = load_checkpoint(path, map_location="cpu")
        check_expert_payload(
            payload,
            modality=modality,
            cfg=cfg,
            in_channels=in_channels[modality],
            class_names=class_names,
            source=source,
        )
        state = expert_weights(model, payload["model"])
        try:
            load_model_state(model.experts[modality], state, source=source)
        except CheckpointError as exc:
            raise CheckpointError(f"architecture mismatch: {exc}") from None
        step = payload.get("step")
        sources.append(
            ExpertSource(
                modality, str(path.resolve()), sha256_file(path), int(step) if step is not None else None
            )
        )
    return sources


# ---------------------------------------------------------------------------------------------------
# Stages: parameter groups and learning rates
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# Running stages 2 and 3
# ---------------------------------------------------------------------------------------------------


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


def _best_or_last(run_dir: Path) -> Path:
    best = run_dir / "best.pt"
    return best if best.exists() else run_dir / "last.pt"


def completed_checkpoint(run_dir: Path, iterations: int) -> dict[str, Any] | None:
    """The payload of `run_dir/last.pt` if it exists, verifies and reached the run's steps.

    The run's steps are `iterations`, or, for a run sized to `train.time_budget_s`, the count it
    fitted to its budget (recorded as `total_steps`).
    """
    last = run_dir / "last.pt"
    if not last.exists():
        return None
    try:
        payload = load_checkpoint(last, map_location="cpu")
    except CheckpointError:
        return None
    target = iterations
    if payload.get("budget_planned") and payload.get("total_steps"):
        target = min(int(payload["total_steps"]), iterations)
    return payload if int(payload.get("step", -1)) >= target else None


def stage_complete(run_dir: Path, iterations: int) -> bool:
    """True when `run_dir/last.pt` exists, verifies and reached the run's steps (`completed_checkpoint`)."""
    return completed_checkpoint(run_dir, iterations) is not None


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
    import torch

    from fusionseg.data.catalog import get_dataset_info
    from fusionseg.data.dataset import build_dataset
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.models.adapnet import check_training_size

    check_training_size(cfg.data.height_px, cfg.data.width_px)
    fc = cfg.fusion
    modalities = tuple(cfg.data.modalities)
    if not fc.experts:
        raise ConfigError("fusion.experts: no expert checkpoints given (--experts rgb=CKPT depth=CKPT)")
    if sorted(fc.experts) != sorted(modalities):
        raise ConfigError(
            f"fusion.experts: experts for {list(fc.experts)} but data.modalities is {list(modalities)}"
        )
    info = get_dataset_info(cfg.data.dataset)
    if info.num_classes != cfg.model.num_classes:
        raise ConfigError(
            f"model.num_classes: {cfg.model.num_classes} but dataset {info.name!r} has "
            f"{info.num_classes} classes"
        )
    num_classes = cfg.model.num_classes
    in_channels = {m: get_modality(m).channels for m in modalities}
    run_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)

    # the stages, from a weightless copy of the model (group names and sizes only)
    with torch.device("meta"):
        shape = build_model(cfg, in_channels=in_channels)
    groups = list(shape.module_groups())
    stages = [fusion_stage(cfg, groups)]
    if fc.finetune:
        stages.append(finetune_stage(cfg, groups))
    stage_dirs = [run_dir if s.name == "fusion" else run_dir / FINETUNE_DIR for s in stages]
    total = sum(p.numel() for p in shape.parameters())
    trained = [sum(p.numel() for g in apply_stage(shape, s) for p in g["params"]) for s in stages]
    done: list[list[dict[str, Any]] | None] = []  # per stage: None, or the finished run's expert record
    for stage_dir, stage in zip(stage_dirs, stages):
        payload = completed_checkpoint(stage_dir, stage.iterations) if skip_complete else None
        if payload is not None:  # reused only if it was trained with this config
            check_resume_config(
                payload.get("config") or {},
                stage_config(cfg, stage, stage_dir),
                run_dir=stage_dir,
                source=str(stage_dir / "last.pt"),
                step=int(payload["step"]),
            )
        done.append(None if payload is None else list(payload.get("experts") or []))
        del payload
    if done and all(done):  # every stage finished already: report it without loading anything else
        sources = tuple(ExpertSource(**e) for e in done[-1])  # type: ignore[union-attr]
        check_provenance(sources, fc.experts, source=str(stage_dirs[-1] / "last.pt"))
        results = tuple(
            StageResult(s.name, d, _best_or_last(d), None, n, total - n)
            for s, d, n in zip(stages, stage_dirs, trained)
        )
        return FusionResult(fc.scheme, sources, results, cfg)

    if not (resume or skip_complete) and _has_ckpt(stage_dirs[0]):  # fail before the slow set-up
        raise FusionsegError(
            f"{stage_dirs[0]}: run folder already holds checkpoints; pass --resume to continue it "
            "or choose another output folder"
        )
    train_set = build_dataset(
        cfg.data, "train", modalities=modalities, num_classes=num_classes, seed=cfg.train.seed
    )
    val_set = build_dataset(
        cfg.data, "val", modalities=modalities, num_classes=num_classes, seed=cfg.train.seed
    )
    torch.manual_seed(cfg.train.seed)  # fresh fusion head: reproducible initialisation
    model = build_model(cfg, in_channels=in_channels)
    experts = load_experts(model, fc.experts, cfg=cfg, in_channels=in_channels, class_names=info.classes)
    meta = {
        "kind": fc.scheme,
        "num_classes": num_classes,
        "modalities": list(modalities),
        "in_channels": dict(in_channels),
        "class_names": list(info.classes),
        "palette": [list(c) for c in info.palette],
        "normalization": config_to_dict(cfg.data)["normalization"],  # modality -> [mean, std]
        "modality_kind": {m: get_modality(m).kind for m in modalities},
        "input_size": [cfg.data.height_px, cfg.data.width_px],
        "dataset": info.name,
        "experts": [e.to_dict() for e in experts],
    }
    results: list[StageResult] = []
    previous: Path | None = None
    for stage, stage_dir, n_trained, finished in zip(stages, stage_dirs, trained, done):
        if finished is not None:
            results.append(
                StageResult(
                    stage.name, stage_dir, _best_or_last(stage_dir), None, n_trained, total - n_trained
                )
            )
            previous = results[-1].checkpoint
            continue
        if previous is not None:  # stage 3 starts from the stage-2 weights
            payload = load_checkpoint(previous, map_location="cpu")
            load_model_state(model, payload["model"], source=str(previous))
            del payload
        opt_groups = apply_stage(model, stage)
        if on_stage is not None:
            on_stage(stage.name, stage)
        stage_meta = {**meta, "stage": stage.name}
        if previous is not None:
            stage_meta["init_from"] = {"path": str(previous.resolve()), "sha256": sha256_file(previous)}
        trainer = Trainer(
            model,
            forward=fused_forward,
            train_set=train_set,
            val_set=val_set,
            config=stage_config(cfg, stage, stage_dir),
            run_dir=stage_dir,
            num_classes=num_classes,
            modalities=modalities,
            checkpoint_meta=stage_meta,
            param_groups=opt_groups,
            aux_weights=fc.aux_weights if fc.aux else (),
            class_names=info.classes,
            channels_last=cfg.model.channels_last,
            progress=progress,
        )
        # a folder with checkpoints is continued with --resume, and always by the pipeline
        continue_run = _has_ckpt(stage_dir) and (resume or skip_complete)
        if continue_run and (stage_dir / "last.pt").exists():
            recorded = load_checkpoint(stage_dir / "last.pt", map_location="cpu").get("experts") or []
            check_provenance(
                [ExpertSource(**e) for e in recorded], fc.experts, source=str(stage_dir / "last.pt")
            )
        result = trainer.fit(resume=continue_run)
        results.append(
            StageResult(stage.name, stage_dir, _best_or_last(stage_dir), result, n_trained, total - n_trained)
        )
        previous = results[-1].checkpoint
    return FusionResult(fc.scheme, tuple(experts), tuple(results), cfg)


def check_provenance(
    recorded: Sequence[ExpertSource], experts: Mapping[str, str | Path], *, source: str
) -> None:
    """Refuse to continue a fusion run that was built from other expert checkpoints.

    Raises:
        CheckpointError: a modality whose given checkpoint's sha256 differs from the recorded one.
    """
    by_modality = {e.modality: e for e in recorded}
    for modality, path in experts.items():
        known = by_modality.get(modality)
        if known is None or sha256_file(path) != known.sha256:
            raise CheckpointError(
                f"{source}: this run was built from another {modality!r} expert "
                f"({known.path if known else 'none'}), not {path}; use another output folder"
            )


def _has_ckpt(run_dir: Path) -> bool:
    return (run_dir / "last.pt").exists() or any(run_dir.glob("ckpt-*.pt"))


# ---------------------------------------------------------------------------------------------------
# Config of a train-fusion run
# ---------------------------------------------------------------------------------------------------


def fusion_run_config(
    experts: Mapping[str, str | Path],
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    scheme: str | None = None,
    out_dir: str | Path | None = None,
    finetune: bool | None = None,
) -> RunConfig:
    """Resolve the config of `fusionseg train-fusion`.

    Precedence, lowest first: code defaults <- the first expert checkpoint's saved config (data, model
    and train sections, so a bare `train-fusion --experts ...` trains on the experts' data) <- the YAML
    file <- `--set` overrides <- explicit options (`scheme`, `out_dir`, `finetune`, the experts, whose
    order becomes `data.modalities`).

    Raises:
        ConfigError: bad file, key or value. CheckpointError: unreadable first expert checkpoint.
    """
    if not experts:
        raise ConfigError("--experts: give one NAME=CKPT per modality, e.g. rgb=runs/rgb/best.pt depth=...")
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


# ---------------------------------------------------------------------------------------------------
# train-pipeline: every stage from one config
# ---------------------------------------------------------------------------------------------------

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
    `fusion.finetune`), then, when `fusion.pipeline_evaluate`, the report (`engine.report`): every
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
    from fusionseg.data.io import write_png
    from fusionseg.engine import report
    from fusionseg.engine.trainer import train_expert
    from fusionseg.models.adapnet import check_training_size

    check_training_size(cfg.data.height_px, cfg.data.width_px)  # before any step makes a folder
    run_dir = Path(cfg.train.out_dir)
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
        conditions, skipped_conditions = report.parse_conditions(cfg.fusion.pipeline_robustness, modalities)
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
    for modality in modalities:
        name = f"expert {modality}"
        expert_dir = run_dir / EXPERTS_DIR / modality
        expert_cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, modalities=(modality,)),
            train=dataclasses.replace(cfg.train, out_dir=str(expert_dir)),
        )
        finished = completed_checkpoint(expert_dir, cfg.train.iterations)
        if finished is not None:  # reused only if it was trained with this config
            check_resume_config(
                finished.get("config") or {},
                expert_cfg,
                run_dir=expert_dir,
                source=str(expert_dir / "last.pt"),
                step=int(finished["step"]),
            )
            del finished
            steps.append(PipelineStep(name, "skipped", _best_or_last(expert_dir)))
        else:
            notify(name)
            train_expert(expert_cfg, modality, resume=_has_ckpt(expert_dir), progress=progress)
            steps.append(PipelineStep(name, "done", _best_or_last(expert_dir)))
        checkpoints[name] = steps[-1].path
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
    eval_dir = run_dir / EVAL_DIR
    val = Path(cfg.data.root) / (cfg.data.val_list if cfg.data.layout == "list" else "val")
    table = report.evaluate_models(
        checkpoints,
        val,
        out_dir=eval_dir,
        conditions=conditions,
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
