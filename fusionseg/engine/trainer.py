"""The one training loop: Adam + poly LR, AMP, gradient accumulation, validation, checkpoints, resume.

`Trainer` knows nothing about which network it trains. A caller passes the model (called as
`model(batch["inputs"]) -> ExpertOutput`), which parameters train (a filter or explicit parameter
groups), the datasets and the `RunConfig`; an expert and a fusion stage differ only in those arguments.

Determinism: batch k of the endless training stream depends only on (seed, k) (`engine.sampling`);
a checkpoint stores the step, optimiser/scheduler/scaler and RNG states, so a resumed run repeats the
uninterrupted one exactly on CPU with `data.num_workers = 0` (worker processes are seeded from (seed,
resume step, worker id): reproducible, but a resumed run may draw other augmentations).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from fusionseg.config import RunConfig, config_to_dict, dump_config
from fusionseg.engine import distributed
from fusionseg.engine.budget import BudgetClock
from fusionseg.engine.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    check_compatible,
    checkpoint_header,
    load_model_state,
    restore_rng_state,
)
from fusionseg.engine.events import (
    ProgressFn,
    ReportWindow,
    TrainEvent,
    TrainResult,
    describe_batch,
    merge_batches,
)
from fusionseg.engine.inference import evaluate_model
from fusionseg.engine.losses import SegmentationLoss
from fusionseg.engine.metrics import SegmentationMetrics
from fusionseg.engine.runlog import MetricsLog, check_resume_config
from fusionseg.engine.runtime import autocast_context, grad_scaler, inputs_to_device, resolve_device
from fusionseg.engine.sampling import StepBatchSampler, seed_everything, seed_worker
from fusionseg.engine.schedule import PolyLR
from fusionseg.errors import ConfigError, DataError, FusionsegError
from fusionseg.fsutil import OutputLock, ensure_writable_dir, remove_stale_temps

# checkpoint keys that must match between a run and the checkpoint it resumes from
COMPAT_KEYS = ("kind", "num_classes", "modalities", "in_channels")
# train.* counts the loop needs to be >= 1
POSITIVE_TRAIN_KEYS = ("batch_size", "grad_accum", "iterations", "val_every", "ckpt_every", "log_every")
POSITIVE_TRAIN_KEYS += ("budget_calibration_steps", "budget_min_iterations")


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------


class Trainer:
    """Trains any segmentation model that returns `ExpertOutput`.

    Args:
        model: The network, called as `model(batch["inputs"]) -> ExpertOutput` (moved to the
            configured device by the trainer).
        train_set: Dataset of dict samples `{"inputs": {...}, "label": (H, W) int64, "id", "files"}`.
        val_set: Same, for periodic validation (None: no validation, no `best.pt`).
        config: The resolved run config (`train` section drives the loop; saved with the run).
        run_dir: Output folder (config.yaml, metrics.csv, checkpoints).
        num_classes: C, including void.
        modalities: Modalities the model consumes (selected from each batch).
        checkpoint_meta: Plain values stored in every checkpoint: at least "kind", "num_classes",
            "modalities", "in_channels"; also class names, palette, normalisation.
        trainable: Filter (name, parameter) -> bool of the parameters to optimise; the others get
            `requires_grad=False`. Default: all parameters.
        param_groups: Explicit Adam parameter groups instead of `trainable` (each may set "lr").
        aux_weights: Deep-supervision weights (`ModelConfig.aux_weights`).
        class_names: Names for validation reports.
        channels_last: Run the model and inputs in channels-last memory format.
        progress: Called with each `TrainEvent`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        train_set: Dataset,
        val_set: Dataset | None,
        config: RunConfig,
        run_dir: str | Path,
        num_classes: int,
        modalities: Sequence[str],
        checkpoint_meta: Mapping[str, Any],
        trainable: Callable[[str, nn.Parameter], bool] | None = None,
        param_groups: Sequence[dict[str, Any]] | None = None,
        aux_weights: Sequence[float] = (0.6, 0.5),
        class_names: Sequence[str] | None = None,
        channels_last: bool = False,
        progress: ProgressFn | None = None,
    ) -> None:
        missing = [k for k in COMPAT_KEYS if k not in checkpoint_meta]
        if missing:
            raise ValueError(f"checkpoint_meta lacks {missing}")
        if trainable is not None and param_groups is not None:
            raise ValueError("pass either trainable or param_groups, not both")
        self.cfg = config
        tc = config.train
        for key in POSITIVE_TRAIN_KEYS:
            if getattr(tc, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(tc, key)}")
        if not math.isfinite(tc.time_budget_s) or tc.time_budget_s < 0:
            raise ConfigError(f"train.time_budget_s must be >= 0 seconds (0 = off), got {tc.time_budget_s}")
        self.model = model
        self.train_set = train_set
        self.val_set = val_set
        self.run_dir = Path(run_dir)
        self.num_classes = num_classes
        self.modalities = tuple(modalities)
        self.meta = dict(checkpoint_meta)
        self.class_names = tuple(class_names) if class_names else None
        self.channels_last = channels_last
        self._progress = progress
        self.loss = SegmentationLoss(aux_weights)
        self.device = resolve_device(tc.device)
        autocast_context(self.device, tc.amp)  # validates amp against the device early
        self._trainable = trainable
        self._param_groups = param_groups
        self._preloaded: tuple[Path, dict[str, Any]] | None = None

    def resume_with(self, path: Path, payload: dict[str, Any]) -> None:
        """Make the next `fit(resume=True)` continue from this already-loaded checkpoint of the run
        folder instead of loading the newest one (the trainer lets go of it once restored)."""
        self._preloaded = (Path(path), payload)

    def _emit(self, event: TrainEvent) -> None:
        if self._progress is not None and distributed.is_main_process():  # rank 0 reports (DDP)
            self._progress(event)

    def _warn(self, message: str, step: int = 0) -> None:
        if self._progress is None:
            warnings.warn(message, stacklevel=3)
        else:
            self._emit(TrainEvent("warn", step, self.cfg.train.iterations, message=message))

    def _build_optimizer(self) -> torch.optim.Optimizer:
        tc = self.cfg.train
        if self._param_groups is not None:
            groups = [dict(g) for g in self._param_groups]
        else:
            keep = self._trainable or (lambda name, p: True)
            params = []
            for name, p in self.model.named_parameters():
                if keep(name, p):
                    params.append(p)
                else:
                    p.requires_grad_(False)
            groups = [{"params": params}]
        if not any(list(g["params"]) for g in groups):
            raise ConfigError("nothing to train: the trainable filter selected no parameters")
        return torch.optim.Adam(groups, lr=tc.lr, betas=tuple(tc.adam_betas), eps=tc.adam_eps)

    def _loader(
        self, dataset: Dataset, batch_sampler: Sampler | None, *, seed: int, **kwargs: Any
    ) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=workers,
            worker_init_fn=seed_worker if workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),  # never draw from the global RNG
            pin_memory=self.device.type == "cuda",
            **kwargs,
        )

    def val_loader(self) -> DataLoader:
        """Loader over the validation set in order."""
        assert self.val_set is not None
        tc = self.cfg.train
        info = distributed.current()  # under DDP each rank evaluates its own shard, once per sample
        shard = distributed.ShardSampler(len(self.val_set), rank=info.rank, world_size=info.world_size)
        return self._loader(
            self.val_set,
            None,
            seed=tc.seed,
            batch_size=tc.val_batch_size or tc.batch_size,
            shuffle=False,
            sampler=shard if info.is_distributed else None,
        )

    def validate(self) -> SegmentationMetrics:
        """mIoU etc. of the model on the validation set (single scale, padded to multiples of 16)."""
        metrics = evaluate_model(
            self.model,
            self.val_loader(),
            num_classes=self.num_classes,
            modalities=self.modalities,
            class_names=self.class_names,
            device=self.device,
            mode="pad",
            amp=self.cfg.train.amp,
            channels_last=self.channels_last,
        )
        return distributed.all_reduce_metrics(metrics, device=self.device)  # sum of the ranks' shards

    def _grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 autocast on CUDA, or on a CPU with native fp16 (disabled otherwise).

        A step whose scaled gradients overflow is skipped by the scaler, which lowers its scale and
        goes on: routine under fp16, so it neither stops the run nor counts as a non-finite step.
        """
        return grad_scaler(self.device, self.cfg.train.amp)

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train for `train.iterations` optimiser steps (or the rest of them when resuming).

        Args:
            resume: Continue from the newest intact checkpoint in the run folder (falling back past
                corrupt ones, with a warning). Without it a run folder that already holds checkpoints
                is refused.

        Raises:
            CheckpointError: nothing to resume, or a checkpoint for another class count/modality.
            DataError: another live process is writing to the run folder (its lock file names it).
            FusionsegError: a non-finite loss or gradient with `train.on_nonfinite = "stop"` (names step
                and samples).
        """
        info = distributed.current()
        if not info.is_distributed:
            info = distributed.launch_info()  # torchrun's variables, before the process group is up
        if not info.is_main:  # rank 0 alone writes to the run folder and holds its lock
            return self._fit(resume=resume)
        # one writer per run folder: a second run refuses before it touches a file (fsutil.OutputLock);
        # the lock of a crashed run is stale and taken over
        with OutputLock(self.run_dir, purpose="training"):
            remove_stale_temps(self.run_dir)  # temp files of writes a crash cut short
            return self._fit(resume=resume)

    def _fit(self, *, resume: bool) -> TrainResult:
        """`fit` once the run folder's lock is held."""
        tc = self.cfg.train
        ensure_writable_dir(self.run_dir)
        manager = CheckpointManager(self.run_dir, keep_last=tc.keep_last, warn=self._warn)
        if not resume:
            manager.refuse_existing()
        # torchrun: join the process group; per-process batch, rank 0 logs and checkpoints (distributed.py)
        dist = distributed.init_distributed(tc.ddp_backend, device=self.device)
        self.device = distributed.distributed_device(self.device, dist)
        seed_everything(tc.seed, deterministic=tc.deterministic)
        run = self._start(dist, manager)
        if resume:
            loaded, self._preloaded = self._preloaded, None
            self._resume(run, loaded or manager.load_latest(map_location="cpu"))
            del loaded  # weights and optimiser state are in the run now
        if dist.is_main:
            run.log.truncate_after(run.start_step)  # rows a resumed (or crashed) run repeats
            dump_config(self.cfg, self.run_dir / "config.yaml")
        fwd_model = self._forward_model(run)
        batches = iter(
            self._loader(self.train_set, self._sampler(run), seed=tc.seed * 1_000_003 + run.start_step)
        )
        setup = (
            f"{dist.world_size} process(es), {dist.backend or 'no'} backend, "
            f"batch {self._batch_total(run)} per step"
        )
        self._emit(
            TrainEvent("start", run.start_step, run.total, lr=run.scheduler.get_last_lr()[0], message=setup)
        )
        run.model.train()
        try:
            self._loop(run, fwd_model, batches)
        finally:
            run.log.close()
        distributed.barrier()  # rank 0's checkpoints exist before any rank returns them
        self._emit(TrainEvent("end", run.step, run.total, metrics=run.last_metrics))
        return TrainResult(
            run_dir=self.run_dir,
            steps=run.step,
            last_checkpoint=manager.last_path,
            best_checkpoint=manager.best_path if manager.best_path.exists() else None,
            best_miou=run.best_miou if math.isfinite(run.best_miou) else float("nan"),
            metrics=run.last_metrics,
            skipped_steps=run.skipped,
            resumed_from=run.resumed_from,
        )

    def _start(self, dist: distributed.DistInfo, manager: CheckpointManager) -> _Run:
        """Model on the device, optimiser, schedule, loss scaler and logs of a run at step 0."""
        tc = self.cfg.train
        model = self.model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if dist.is_distributed and tc.sync_bn:
            model = self.model = distributed.convert_sync_batchnorm(model, device=self.device)
        optimizer = self._build_optimizer()
        scheduler = PolyLR(optimizer, total_steps=tc.iterations, lr_end=tc.lr_end, power=tc.poly_power)
        scaler = self._grad_scaler()
        log = MetricsLog(self.run_dir, tensorboard=tc.tensorboard and dist.is_main, warn=self._warn)
        # the run's steps: train.iterations, or what fits train.time_budget_s (decided after the first
        # steps and recorded in every checkpoint, so a resumed run keeps the same schedule)
        return _Run(
            dist, manager, model, optimizer, scheduler, scaler, log, tc.iterations, tc.time_budget_s <= 0
        )

    def _resume(self, run: _Run, loaded: tuple[Path, dict[str, Any]]) -> None:
        """Restore weights, optimiser, schedule, scaler, RNG and the best score from a checkpoint."""
        tc = self.cfg.train
        path, state = loaded
        run.resumed_from = path
        check_compatible(state, {k: self.meta[k] for k in COMPAT_KEYS}, source=str(path))
        check_resume_config(
            state.get("config") or {},
            self.cfg,
            run_dir=self.run_dir,
            source=str(path),
            step=int(state["step"]),
        )
        load_model_state(run.model, state["model"], source=str(path))
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if run.scaler.is_enabled() and state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        run.start_step = run.step = int(state["step"])
        if not run.planned and state.get("budget_planned"):
            run.total, run.planned = min(int(state["total_steps"]), tc.iterations), True
            run.scheduler.set_total_steps(run.total)
        best = state.get("best_miou")
        run.best_miou = float(best) if best is not None else float("-inf")
        if state.get("is_best") and run.dist.is_main:
            run.manager.publish_best(path)  # a crash may have come before best.pt was updated

    def _forward_model(self, run: _Run) -> nn.Module:
        """The module the training steps call: the model, DDP-wrapped and/or compiled as configured."""
        tc = self.cfg.train
        fwd_model: nn.Module = run.model
        if run.dist.is_distributed:
            fwd_model = distributed.wrap_ddp(
                run.model, device=self.device, find_unused_parameters=tc.ddp_find_unused
            )
        if tc.compile:
            fwd_model = torch.compile(fwd_model)  # type: ignore[assignment]
        return fwd_model

    def _sampler(self, run: _Run) -> Sampler:
        """The endless batch sampler from the run's start step (this rank's slice under DDP)."""
        tc, dist = self.cfg.train, run.dist
        sampler: Sampler = StepBatchSampler(
            len(self.train_set),
            tc.batch_size * dist.world_size,  # global batch k; each rank reads its slice of it
            seed=tc.seed,
            start_batch=run.start_step * tc.grad_accum,
            with_epoch=hasattr(self.train_set, "set_epoch"),
        )
        if dist.is_distributed:
            sampler = distributed.ShardedBatchSampler(sampler, rank=dist.rank, world_size=dist.world_size)
        return sampler

    def _batch_total(self, run: _Run) -> int:
        tc = self.cfg.train
        return distributed.effective_batch_size(
            tc.batch_size, world_size=run.dist.world_size, grad_accum=tc.grad_accum
        )

    def _payload(self, run: _Run, metrics: SegmentationMetrics | None, is_best: bool) -> dict[str, Any]:
        """The checkpoint of the run's current step."""
        tc = self.cfg.train
        step = run.step
        return checkpoint_header(
            **self.meta,
            step=step,
            model=run.model.state_dict(),
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            scaler=run.scaler.state_dict() if run.scaler.is_enabled() else {},
            total_steps=run.total,  # the run's steps (train.iterations, or fitted to time_budget_s)
            budget_planned=tc.time_budget_s > 0 and run.planned,
            rng=capture_rng_state(),
            sampler={"seed": tc.seed, "batch_size": tc.batch_size, "next_batch": step * tc.grad_accum},
            config=config_to_dict(self.cfg),
            best_miou=None if not math.isfinite(run.best_miou) else run.best_miou,
            is_best=is_best,  # this checkpoint is best.pt (restored on resume)
            metrics=metrics.to_dict() if metrics is not None else {},
        )

    def _loop(self, run: _Run, fwd_model: nn.Module, batches: Iterator[Mapping[str, Any]]) -> None:
        """Train from `run.step` to `run.total`: steps, logs, validation and checkpoints."""
        tc = self.cfg.train
        window = ReportWindow(t0=time.perf_counter())
        run.t0 = time.perf_counter()
        budget = BudgetClock(tc, start_step=run.start_step, run_t0=run.t0)
        batch_total = self._batch_total(run)
        while run.step < run.total:
            lr = run.scheduler.get_last_lr()[0]
            loss_sum, parts_sum, bad_batch, bad_what = self._train_step(
                fwd_model, run.optimizer, run.scaler, batches
            )
            if bad_batch is not None:
                self._nonfinite(run, bad_batch, bad_what)
            run.scheduler.step()
            run.step += 1
            self._fit_budget(run, budget)
            window.images += batch_total
            if bad_batch is None:
                window.add(loss_sum, parts_sum)
            if run.step % tc.log_every == 0 or run.step == run.total:
                self._log_train(run, window, lr)
            pause_t0 = time.perf_counter()  # validation and checkpoints do not count in images/s
            validated, is_best = self._maybe_validate(run)
            if run.dist.is_main and (run.step % tc.ckpt_every == 0 or run.step == run.total or is_best):
                path = run.manager.save(
                    self._payload(run, run.last_metrics, is_best), step=run.step, best=is_best
                )
                self._emit(TrainEvent("checkpoint", run.step, run.total, message=str(path)))
            paused = time.perf_counter() - pause_t0
            window.t0 += paused
            budget.pause(paused, validated=validated)

    def _nonfinite(self, run: _Run, batch: Mapping[str, Any], what: str) -> None:
        """Stop (FusionsegError) or count and warn about a step with a non-finite loss or gradient."""
        where = describe_batch(batch)
        if self.cfg.train.on_nonfinite == "stop":
            last = run.manager.last_path if run.manager.last_path.exists() else None
            raise FusionsegError(
                f"non-finite {what} at step {run.step + 1} ({where}); training stopped, last "
                f"good checkpoint: {last or 'none written yet'} "
                "(set train.on_nonfinite=skip to skip)"
            )
        run.skipped += 1
        self._warn(f"non-finite {what} at step {run.step + 1} ({where}): step skipped", run.step)

    def _fit_budget(self, run: _Run, budget: BudgetClock) -> None:
        """With `train.time_budget_s`: fit the run's steps after the calibration, or stop when spent."""
        tc, step = self.cfg.train, run.step
        if not run.planned and budget.ready(step):  # only with train.time_budget_s > 0
            val_images = len(self.val_set) if self.val_set is not None else 0
            run.total = distributed.all_ranks_min(
                budget.plan(step, val_images=val_images), device=self.device
            )
            run.planned = True
            run.scheduler.set_total_steps(run.total)
            self._emit(TrainEvent("plan", step, run.total, message=budget.describe(run.total)))
        elif (
            tc.time_budget_s > 0
            and step < run.total
            and distributed.all_ranks_true(budget.exhausted(), device=self.device)
        ):  # the machine got slower than in the calibration: this step is the last one
            run.total = step
            self._emit(TrainEvent("plan", step, run.total, message=budget.describe_stop(step)))

    def _log_train(self, run: _Run, window: ReportWindow, lr: float) -> None:
        """The training row of metrics.csv and the "step" event; starts a new throughput window."""
        step, total = run.step, run.total
        elapsed = time.perf_counter() - window.t0
        rate = window.images / elapsed if elapsed > 0 else float("nan")
        done = step - run.start_step
        eta = (time.perf_counter() - run.t0) / done * (total - step)
        means = {k: v / window.steps for k, v in window.loss.items()} if window.steps else {}
        parts = {k: v for k, v in means.items() if k != "loss"}
        run.log_row(  # under DDP the loss is rank 0's shard
            {
                "step": step,
                "split": "train",
                "loss": means.get("loss"),
                **{f"loss_{k}": v for k, v in parts.items()},
                "lr": lr,
                "images_per_s": rate,
                "wall_s": time.perf_counter() - run.t0,
            }
        )
        self._emit(
            TrainEvent(
                "step", step, total, loss=means.get("loss"), parts=parts, lr=lr, images_per_s=rate, eta_s=eta
            )
        )
        window.reset(time.perf_counter())

    def _maybe_validate(self, run: _Run) -> tuple[bool, bool]:
        """Validate when due; returns (validated, the score is the best so far)."""
        tc, step = self.cfg.train, run.step
        if self.val_set is None or not (step % tc.val_every == 0 or step == run.total):
            return False, False
        run.last_metrics = metrics = self.validate()
        score = metrics.miou if math.isfinite(metrics.miou) else float("-inf")
        is_best = score > run.best_miou
        run.best_miou = max(run.best_miou, score)
        run.log_row(
            {
                "step": step,
                "split": "val",
                "miou": metrics.miou,
                "miou_spec": metrics.miou_spec,
                "pixel_accuracy": metrics.pixel_accuracy,
                "wall_s": time.perf_counter() - run.t0,
            }
        )
        self._emit(TrainEvent("val", step, run.total, metrics=metrics))
        run.model.train()
        return True, is_best

    def _train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        batches: Iterator[Mapping[str, Any]],
    ) -> tuple[float, dict[str, float], Mapping[str, Any] | None, str]:
        """One optimiser step over `grad_accum` micro-batches.

        Returns:
            (summed total loss / accum, summed parts / accum, the offending batch or None, "loss" or
            "gradient": what was non-finite). On a non-finite loss no update is made, and the step's
            remaining micro-batches are still drawn so that the data order stays a function of the
            step. Non-finite gradients (finite loss) also cancel the update, naming every micro-batch
            of the step; with an enabled fp16 `scaler` they are its business (overflow: step skipped).
        """
        tc = self.cfg.train
        accum = tc.grad_accum
        optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        parts_total: dict[str, Tensor] = {}
        bad: Mapping[str, Any] | None = None
        used: list[Mapping[str, Any]] = []
        for _ in range(accum):
            batch = next(batches)
            if bad is not None:
                continue
            used.append(batch)
            inputs = inputs_to_device(batch["inputs"], self.device, channels_last=self.channels_last)
            missing = [m for m in self.modalities if m not in inputs]
            if missing:
                raise DataError(f"training batch lacks modality {missing[0]!r} (has {sorted(inputs)})")
            label = batch["label"].to(self.device, non_blocking=True)  # (B, H, W) int64
            with autocast_context(self.device, tc.amp):
                output = model(inputs)
            terms = self.loss(output, label)
            if not distributed.all_ranks_true(bool(torch.isfinite(terms.total)), device=self.device):
                bad = batch  # every rank skips the step together
                if distributed.current().is_distributed:
                    (terms.total * 0.0).backward()  # DDP expects a backward after each forward
                optimizer.zero_grad(set_to_none=True)
                continue
            scaler.scale(terms.total / accum).backward()
            loss_total += float(terms.total.detach()) / accum
            for k, v in terms.parts.items():
                parts_total[k] = parts_total.get(k, 0.0) + v / accum
        if bad is not None:
            return float("nan"), {}, bad, "loss"
        # under DDP the gradients are already averaged over ranks: every rank decides alike
        if not scaler.is_enabled() and not _grads_finite(optimizer):
            optimizer.zero_grad(set_to_none=True)
            return float("nan"), {}, merge_batches(used), "gradient"
        scaler.step(optimizer)
        scaler.update()
        return loss_total, {k: float(v) for k, v in parts_total.items()}, None, ""


@dataclass
class _Run:
    """What one `Trainer.fit` call works on and how far it has got."""

    dist: distributed.DistInfo
    manager: CheckpointManager
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: PolyLR
    scaler: torch.amp.GradScaler
    log: MetricsLog
    total: int  # the run's steps: train.iterations, or what fits train.time_budget_s
    planned: bool  # total is final (no budget, or the budget was fitted)
    start_step: int = 0
    step: int = 0
    best_miou: float = float("-inf")
    resumed_from: Path | None = None
    skipped: int = 0
    last_metrics: SegmentationMetrics | None = None
    t0: float = 0.0  # perf_counter at the first step of this process

    def log_row(self, row: Mapping[str, Any]) -> None:
        """metrics.csv / TensorBoard: rank 0 only."""
        if self.dist.is_main:
            self.log.write(row)


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """True when every gradient the optimiser would apply is finite (one device sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
