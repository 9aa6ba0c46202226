"""The one training loop: Adam + poly LR, AMP, gradient accumulation, validation, checkpoints, resume.

`Trainer` knows nothing about which network it trains. A caller passes the model, which parameters
train (a filter or explicit parameter groups), a `forward(model, batch) -> ExpertOutput` function, the
datasets and the `RunConfig`; an expert and a fusion stage differ only in those arguments.

Determinism: the training stream is an endless sequence of batches whose k-th element depends only on
(seed, k) (`StepBatchSampler`); a checkpoint stores the step, the optimiser/scheduler/scaler states and
the Python, numpy and torch RNG states, so a resumed run repeats the uninterrupted one exactly on CPU
with `data.num_workers = 0`. With worker processes each worker is seeded from (seed, resume step, worker
id): runs are reproducible, but a resumed one may draw different augmentations than an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from fusionseg.config import (
    ModelConfig,
    RunConfig,
    config_changes,
    config_to_dict,
    dump_config,
    strip_retired_keys,
)
from fusionseg.engine import distributed
from fusionseg.engine.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    check_compatible,
    checkpoint_header,
    load_model_state,
    restore_rng_state,
)
from fusionseg.engine.inference import (
    ForwardFn,
    autocast_context,
    evaluate_model,
    expert_forward,
    inputs_to_device,
    resolve_device,
)
from fusionseg.engine.losses import SegmentationLoss
from fusionseg.engine.metrics import SegmentationMetrics
from fusionseg.engine.schedule import PolyLR
from fusionseg.errors import ConfigError, DataError, FusionsegError
from fusionseg.fsutil import OutputLock, atomic_write_text, ensure_writable_dir, remove_stale_temps

CSV_FIELDS = (
    "step",
    "split",
    "loss",
    "loss_main",
    "loss_aux1",
    "loss_aux2",
    "lr",
    "images_per_s",
    "miou",
    "miou_spec",
    "pixel_accuracy",
    "wall_s",
)
# checkpoint keys that must match between a run and the checkpoint it resumes from
COMPAT_KEYS = ("kind", "num_classes", "modalities", "in_channels")


# ---------------------------------------------------------------------------------------------------
# Seeding and data order
# ---------------------------------------------------------------------------------------------------


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may draw from the global state
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed numpy and Python from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - per-worker global state
    random.seed(seed)


class StepBatchSampler(Sampler[list[Any]]):
    """Endless batches of dataset indices; batch k depends only on (seed, k).

    Sample position p = k * batch_size + i reads epoch e = p // N of a permutation drawn from
    `np.random.default_rng([seed, e])`, so a run restarted at batch k sees exactly what an
    uninterrupted one sees. With `with_epoch` the sampler yields `(index, epoch)` pairs, which
    datasets with a `set_epoch` method (`SegmentationDataset`) accept as keys and use to seed each
    sample's augmentation from (seed, epoch, index), independently of worker processes.

    Args:
        num_samples: N, dataset length (> 0).
        batch_size: Samples per batch.
        seed: Run seed.
        start_batch: First batch index to yield.
        with_epoch: Yield `(index, epoch)` pairs instead of plain indices.
    """

    def __init__(
        self, num_samples: int, batch_size: int, *, seed: int, start_batch: int = 0, with_epoch: bool = False
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the training set is empty")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.with_epoch = with_epoch
        self._epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _index(self, position: int) -> Any:
        epoch, offset = divmod(position, self.num_samples)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._epoch = epoch
        index = int(self._perm[offset])
        return (index, epoch) if self.with_epoch else index

    def batch(self, k: int) -> list[Any]:
        """Indices of batch k."""
        return [self._index(k * self.batch_size + i) for i in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[Any]]:
        k = self.start_batch
        while True:
            yield self.batch(k)
            k += 1

    def __len__(self) -> int:  # pragma: no cover - endless; DataLoader only needs it for len()
        return 2**62


# ---------------------------------------------------------------------------------------------------
# Events and results
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainEvent:
    """What the loop reports to a progress callback.

    Attributes:
        kind: "start" (step = first step), "step", "plan" (the run's steps were fitted to
            `train.time_budget_s`; total_steps is the new count, message says why), "val",
            "checkpoint", "warn" or "end".
        step: Optimiser steps completed.
        total_steps: Steps of the run.
        loss: Mean total loss since the last "step" event.
        parts: Mean unweighted CE per head since the last "step" event.
        lr: Learning rate of the first parameter group.
        images_per_s: Training throughput since the last "step" event.
        eta_s: Estimated seconds to the end.
        metrics: Validation metrics ("val").
        message: Human-readable text ("warn", "checkpoint").
    """

    kind: Literal["start", "step", "plan", "val", "checkpoint", "warn", "end"]
    step: int
    total_steps: int
    loss: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    metrics: SegmentationMetrics | None = None
    message: str = ""


ProgressFn = Callable[[TrainEvent], None]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of `Trainer.fit`.

    Attributes:
        run_dir: The run folder.
        steps: Optimiser steps completed (including skipped ones): `train.iterations`, or the count
            fitted to `train.time_budget_s`.
        last_checkpoint: `last.pt`.
        best_checkpoint: `best.pt` (None if never validated).
        best_miou: Best validation mIoU (headline convention), NaN if never validated.
        metrics: Validation metrics at the last step.
        skipped_steps: Steps skipped for a non-finite loss.
        resumed_from: Checkpoint the run resumed from, if any.
    """

    run_dir: Path
    steps: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_miou: float
    metrics: SegmentationMetrics | None
    skipped_steps: int
    resumed_from: Path | None = None


# ---------------------------------------------------------------------------------------------------
# Logging sinks
# ---------------------------------------------------------------------------------------------------


class MetricsLog:
    """`metrics.csv` (flushed appends) plus TensorBoard when `torch.utils.tensorboard` imports."""

    def __init__(self, run_dir: Path, *, tensorboard: bool, warn: Callable[[str], None]) -> None:
        self.path = run_dir / "metrics.csv"
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                warn("tensorboard is not installed: TensorBoard logging skipped (metrics.csv is written)")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a resumed run repeats them) and torn rows; atomic rewrite.

        A row cut short by a crash mid-append lacks fields (its step may even read as an earlier one,
        "1" of "12"); rows are only ever appended before the checkpoint of their step, so a torn row
        always belongs after the checkpoint resumed from and is dropped with the others.
        """
        if not self.path.exists():
            return
        with self.path.open(newline="", encoding="utf-8") as fh:
            rows = [
                r
                for r in csv.DictReader(fh)
                if None not in r.values()  # every field present (a torn last line lacks some)
                and None not in r  # and none extra
                and r["step"].isdigit()
                and int(r["step"]) <= step
            ]
        lines = [",".join(CSV_FIELDS)]
        for row in rows:
            lines.append(",".join(row.get(k, "") or "" for k in CSV_FIELDS))
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing fields empty) and mirror numbers to TensorBoard."""
        new = not self.path.exists()
        try:
            with self.path.open("a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerow({k: _csv_value(row.get(k)) for k in CSV_FIELDS})
                fh.flush()
                os.fsync(fh.fileno())  # on disk before the checkpoint of this step (none lost on resume)
        except OSError as exc:  # a full disk: a torn row is dropped when the run resumes
            raise DataError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        if self._writer is not None:
            for key, value in row.items():
                if key not in ("step", "split") and isinstance(value, float) and math.isfinite(value):
                    self._writer.add_scalar(f"{row['split']}/{key}", value, int(row["step"]))
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


# ---------------------------------------------------------------------------------------------------
# Resuming with the config a run was started with
# ---------------------------------------------------------------------------------------------------

CONFIG_CHANGES_FILE = "config-changes.txt"


def check_resume_config(
    saved: Mapping[str, Any], cfg: RunConfig, *, run_dir: str | Path, source: str, step: int
) -> list[str]:
    """Refuse to continue (or reuse) a run under another config than the one it was started with.

    Keys that only change how a run reports or how far it goes (`config.RESUME_MUTABLE_KEYS`) may
    differ. With `train.allow_config_change` the differences are accepted and appended to
    `<run_dir>/config-changes.txt` (step and keys), and config.yaml is rewritten by the run.

    Returns:
        The differences ('key: old -> new'), empty when there are none.

    Raises:
        ConfigError: the configs differ and `train.allow_config_change` is off (names the keys).
    """
    changes = config_changes(strip_retired_keys(saved), config_to_dict(cfg))
    if not changes:
        return changes
    if not cfg.train.allow_config_change:
        shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
        raise ConfigError(
            f"{source}: this run was started with another config ({shown}); rerun with the config it "
            "was started with (its config.yaml), or --set train.allow_config_change=true to go on "
            "with the new one"
        )
    line = f"step {step}: " + "; ".join(changes) + "\n"
    path = Path(run_dir) / CONFIG_CHANGES_FILE
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, previous + line)
    return changes


# ---------------------------------------------------------------------------------------------------
# Wall-clock budget
# ---------------------------------------------------------------------------------------------------


class _BudgetClock:
    """Sizes a run to `train.time_budget_s` from the time its first steps took on this machine.

    Steps 1 .. `budget_calibration_steps` run with the schedule of `train.iterations`; step 1 is a
    warm-up (allocations, first batches) and the others are timed. Then the run's total T is the
    number of steps that fit the rest of the budget, with validation passes counted at their measured
    cost when one has run, else estimated as a forward pass (a third of a training step) per image:
    T = clamp(done + (remaining - validations) / step_s, budget_min_iterations, iterations). The
    poly schedule is stretched to T from there on; the lr of the calibration steps differs from the
    fitted schedule's by at most (1 - k/iterations)^0.9 vs (1 - k/T)^0.9 for k <= calibration steps.
    """

    def __init__(
        self, tc: Any, *, start_step: int, run_t0: float, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.tc = tc
        self.clock = clock
        self.start_step = start_step
        self.run_t0 = run_t0
        self.warm = max(1, int(tc.budget_calibration_steps))
        self.t_first: float | None = None  # clock after the warm-up step
        self.step_s = float("nan")
        self.paused_s = 0.0  # validation and checkpoints so far
        self.val_s: float | None = None  # measured cost of one validation pass

    def ready(self, step: int) -> bool:
        """Call after each step; True once the calibration steps are done."""
        done = step - self.start_step
        now = self.clock()
        if done == 1:
            self.t_first = now - self.paused_s
        if done < self.warm and step < self.tc.iterations:
            return False
        if self.t_first is None or done < 2:  # iterations too small to time anything: keep them
            self.step_s = (now - self.run_t0 - self.paused_s) / max(done, 1)
        else:
            self.step_s = (now - self.paused_s - self.t_first) / (done - 1)
        return True

    def pause(self, seconds: float, *, validated: bool) -> None:
        """Validation/checkpoint time of one step (excluded from the step time)."""
        self.paused_s += seconds
        if validated and self.val_s is None and seconds > 0:
            self.val_s = seconds

    def plan(self, step: int, *, val_images: int) -> int:
        """The run's total steps from here (called once, right after `ready` returned True)."""
        tc = self.tc
        # 5 % of the budget is kept for what is not modelled (checkpoint writes, the final log lines)
        left = 0.95 * tc.time_budget_s - (self.clock() - self.run_t0)
        per_val = self.val_s
        if per_val is None:
            per_val = val_images * self.step_s / (3.0 * max(tc.batch_size * tc.grad_accum, 1))
        steps = step
        while steps < tc.iterations:  # one more step, and the validations it brings, still fit?
            nxt = steps + 1
            cost = self.step_s + (per_val if val_images and nxt % tc.val_every == 0 else 0.0)
            if left - cost < per_val * (1 if val_images else 0):  # the final validation must fit too
                break
            left -= cost
            steps = nxt
        return int(min(tc.iterations, max(steps, tc.budget_min_iterations, step)))

    def exhausted(self) -> bool:
        """True once the whole budget is spent (the calibration's estimate proved too optimistic)."""
        return self.clock() - self.run_t0 >= self.tc.time_budget_s

    def describe_stop(self, step: int) -> str:
        return (
            f"time budget {self.tc.time_budget_s:g} s spent at step {step}: stopping there "
            "(the machine ran slower than in the calibration)"
        )

    def describe(self, total: int) -> str:
        return (
            f"time budget {self.tc.time_budget_s:g} s: {total} steps "
            f"({self.step_s:.2f} s/step measured over the first steps; train.iterations {self.tc.iterations})"
        )


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------


class Trainer:
    """Trains any segmentation model that returns `ExpertOutput`.

    Args:
        model: The network (moved to the configured device by the trainer).
        forward: `forward(model, batch) -> ExpertOutput`; `batch["inputs"]` is already on the device.
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
        forward: ForwardFn,
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
        for key in (
            "batch_size",
            "grad_accum",
            "iterations",
            "val_every",
            "ckpt_every",
            "log_every",
            "budget_calibration_steps",
            "budget_min_iterations",
        ):
            if getattr(tc, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(tc, key)}")
        if not math.isfinite(tc.time_budget_s) or tc.time_budget_s < 0:
            raise ConfigError(f"train.time_budget_s must be >= 0 seconds (0 = off), got {tc.time_budget_s}")
        self.model = model
        self.forward = forward
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

    # -- helpers -----------------------------------------------------------------------------------

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
            self.forward,
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
        """Loss scaling for fp16 autocast on CUDA (a disabled scaler otherwise).

        A step whose scaled gradients overflow is skipped by the scaler, which lowers its scale and
        goes on: routine under fp16, so it neither stops the run nor counts as a non-finite step.
        """
        enabled = self.cfg.train.amp == "fp16" and self.device.type == "cuda"
        return torch.amp.GradScaler("cuda", enabled=enabled)

    # -- the loop ----------------------------------------------------------------------------------

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
        if not resume and manager.has_checkpoints():
            raise FusionsegError(
                f"{self.run_dir}: run folder already holds checkpoints; pass --resume to continue it "
                "or choose another output folder"
            )
        # torchrun: join the process group; per-process batch, rank 0 logs and checkpoints (distributed.py)
        dist = distributed.init_distributed(tc.ddp_backend, device=self.device)
        self.device = distributed.distributed_device(self.device, dist)
        seed_everything(tc.seed, deterministic=tc.deterministic)
        model = self.model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if dist.is_distributed and tc.sync_bn:
            model = self.model = distributed.convert_sync_batchnorm(model, device=self.device)
        optimizer = self._build_optimizer()
        scheduler = PolyLR(optimizer, total_steps=tc.iterations, lr_end=tc.lr_end, power=tc.poly_power)
        # the run's steps: train.iterations, or what fits train.time_budget_s (decided after the first
        # steps and recorded in every checkpoint, so a resumed run keeps the same schedule)
        total, planned = tc.iterations, tc.time_budget_s <= 0
        scaler = self._grad_scaler()
        use_scaler = scaler.is_enabled()
        start_step, best_miou, resumed_from = 0, float("-inf"), None
        log = MetricsLog(self.run_dir, tensorboard=tc.tensorboard and dist.is_main, warn=self._warn)
        log_row = log.write if dist.is_main else (lambda row: None)  # metrics.csv / TensorBoard: rank 0

        if resume:
            resumed_from, state = manager.load_latest(map_location="cpu")
            check_compatible(state, {k: self.meta[k] for k in COMPAT_KEYS}, source=str(resumed_from))
            check_resume_config(
                state.get("config") or {},
                self.cfg,
                run_dir=self.run_dir,
                source=str(resumed_from),
                step=int(state["step"]),
            )
            load_model_state(model, state["model"], source=str(resumed_from))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if use_scaler and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            restore_rng_state(state["rng"])
            start_step = int(state["step"])
            if not planned and state.get("budget_planned"):
                total, planned = min(int(state["total_steps"]), tc.iterations), True
                scheduler.set_total_steps(total)
            best = state.get("best_miou")
            best_miou = float(best) if best is not None else float("-inf")
            if state.get("is_best") and dist.is_main:
                manager.publish_best(resumed_from)  # a crash may have come before best.pt was updated
            del state
        if dist.is_main:
            log.truncate_after(start_step)  # rows a resumed (or crashed, never checkpointed) run repeats
            dump_config(self.cfg, self.run_dir / "config.yaml")

        fwd_model: nn.Module = model
        if dist.is_distributed:
            fwd_model = distributed.wrap_ddp(
                model, device=self.device, find_unused_parameters=tc.ddp_find_unused
            )
        if tc.compile:
            fwd_model = torch.compile(fwd_model)  # type: ignore[assignment]
        sampler: Sampler = StepBatchSampler(
            len(self.train_set),
            tc.batch_size * dist.world_size,  # global batch k; each rank reads its slice of it
            seed=tc.seed,
            start_batch=start_step * tc.grad_accum,
            with_epoch=hasattr(self.train_set, "set_epoch"),
        )
        if dist.is_distributed:
            sampler = distributed.ShardedBatchSampler(sampler, rank=dist.rank, world_size=dist.world_size)
        batches = iter(self._loader(self.train_set, sampler, seed=tc.seed * 1_000_003 + start_step))

        def payload(step: int, metrics: SegmentationMetrics | None, is_best: bool) -> dict[str, Any]:
            return checkpoint_header(
                **self.meta,
                step=step,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if use_scaler else {},
                total_steps=total,  # the run's steps (train.iterations, or fitted to time_budget_s)
                budget_planned=tc.time_budget_s > 0 and planned,
                rng=capture_rng_state(),
                sampler={"seed": tc.seed, "batch_size": tc.batch_size, "next_batch": step * tc.grad_accum},
                config=config_to_dict(self.cfg),
                best_miou=None if not math.isfinite(best_miou) else best_miou,
                is_best=is_best,  # this checkpoint is best.pt (restored on resume)
                metrics=metrics.to_dict() if metrics is not None else {},
            )

        batch_total = distributed.effective_batch_size(
            tc.batch_size, world_size=dist.world_size, grad_accum=tc.grad_accum
        )
        setup = f"{dist.world_size} process(es), {dist.backend or 'no'} backend, batch {batch_total} per step"
        self._emit(TrainEvent("start", start_step, total, lr=scheduler.get_last_lr()[0], message=setup))
        model.train()
        step, skipped, last_metrics = start_step, 0, None
        window_loss: dict[str, float] = {}
        window_steps, window_images, window_t0 = 0, 0, time.perf_counter()
        run_t0 = time.perf_counter()
        budget = _BudgetClock(tc, start_step=start_step, run_t0=run_t0)
        try:
            while step < total:
                lr = scheduler.get_last_lr()[0]
                loss_sum, parts_sum, bad_batch, bad_what = self._train_step(
                    fwd_model, optimizer, scaler, batches
                )
                if bad_batch is not None:
                    where = _describe_batch(bad_batch)
                    if tc.on_nonfinite == "stop":
                        last = manager.last_path if manager.last_path.exists() else None
                        raise FusionsegError(
                            f"non-finite {bad_what} at step {step + 1} ({where}); training stopped, last "
                            f"good checkpoint: {last or 'none written yet'} "
                            "(set train.on_nonfinite=skip to skip)"
                        )
                    skipped += 1
                    self._warn(f"non-finite {bad_what} at step {step + 1} ({where}): step skipped", step)
                scheduler.step()
                step += 1
                if not planned and budget.ready(step):  # only with train.time_budget_s > 0
                    total = distributed.all_ranks_min(
                        budget.plan(step, val_images=len(self.val_set) if self.val_set is not None else 0),
                        device=self.device,
                    )
                    planned = True
                    scheduler.set_total_steps(total)
                    self._emit(TrainEvent("plan", step, total, message=budget.describe(total)))
                elif (
                    tc.time_budget_s > 0
                    and step < total
                    and distributed.all_ranks_true(budget.exhausted(), device=self.device)
                ):  # the machine got slower than in the calibration: this step is the last one
                    total = step
                    self._emit(TrainEvent("plan", step, total, message=budget.describe_stop(step)))
                images = batch_total
                window_images += images
                if bad_batch is None:
                    window_steps += 1
                    window_loss["loss"] = window_loss.get("loss", 0.0) + loss_sum
                    for k, v in parts_sum.items():
                        window_loss[k] = window_loss.get(k, 0.0) + v

                if step % tc.log_every == 0 or step == total:
                    elapsed = time.perf_counter() - window_t0
                    rate = window_images / elapsed if elapsed > 0 else float("nan")
                    done = step - start_step
                    eta = (time.perf_counter() - run_t0) / done * (total - step)
                    means = {k: v / window_steps for k, v in window_loss.items()} if window_steps else {}
                    parts = {k: v for k, v in means.items() if k != "loss"}
                    log_row(  # under DDP the loss is rank 0's shard
                        {
                            "step": step,
                            "split": "train",
                            "loss": means.get("loss"),
                            **{f"loss_{k}": v for k, v in parts.items()},
                            "lr": lr,
                            "images_per_s": rate,
                            "wall_s": time.perf_counter() - run_t0,
                        }
                    )
                    self._emit(
                        TrainEvent(
                            "step",
                            step,
                            total,
                            loss=means.get("loss"),
                            parts=parts,
                            lr=lr,
                            images_per_s=rate,
                            eta_s=eta,
                        )
                    )
                    window_loss, window_steps, window_images = {}, 0, 0
                    window_t0 = time.perf_counter()

                pause_t0 = time.perf_counter()  # validation and checkpoints do not count in images/s
                is_best = validated = False
                if self.val_set is not None and (step % tc.val_every == 0 or step == total):
                    validated = True
                    last_metrics = self.validate()
                    score = last_metrics.miou if math.isfinite(last_metrics.miou) else float("-inf")
                    is_best = score > best_miou
                    best_miou = max(best_miou, score)
                    log_row(
                        {
                            "step": step,
                            "split": "val",
                            "miou": last_metrics.miou,
                            "miou_spec": last_metrics.miou_spec,
                            "pixel_accuracy": last_metrics.pixel_accuracy,
                            "wall_s": time.perf_counter() - run_t0,
                        }
                    )
                    self._emit(TrainEvent("val", step, total, metrics=last_metrics))
                    model.train()
                if dist.is_main and (step % tc.ckpt_every == 0 or step == total or is_best):
                    path = manager.save(payload(step, last_metrics, is_best), step=step, best=is_best)
                    self._emit(TrainEvent("checkpoint", step, total, message=str(path)))
                paused = time.perf_counter() - pause_t0
                window_t0 += paused
                budget.pause(paused, validated=validated)
        finally:
            log.close()
        distributed.barrier()  # rank 0's checkpoints exist before any rank returns them
        self._emit(TrainEvent("end", step, total, metrics=last_metrics))
        return TrainResult(
            run_dir=self.run_dir,
            steps=step,
            last_checkpoint=manager.last_path,
            best_checkpoint=manager.best_path if manager.best_path.exists() else None,
            best_miou=best_miou if math.isfinite(best_miou) else float("nan"),
            metrics=last_metrics,
            skipped_steps=skipped,
            resumed_from=resumed_from,
        )

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
                output = self.forward(model, {**batch, "inputs": inputs})
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
            return float("nan"), {}, _merge_batches(used), "gradient"
        scaler.step(optimizer)
        scaler.update()
        return loss_total, {k: float(v) for k, v in parts_total.items()}, None, ""


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """True when every gradient the optimiser would apply is finite (one device sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _merge_batches(batches: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The ids and files of a step's micro-batches as one batch-like mapping (for messages)."""
    if len(batches) == 1:
        return batches[0]
    ids = [i for b in batches for i in b.get("id", [])]
    files: dict[str, list[Any]] = {}
    for b in batches:
        for column, values in (b.get("files") or {}).items():
            files.setdefault(column, []).extend(values)
    return {"id": ids, "files": files}


def _describe_batch(batch: Mapping[str, Any], limit: int = 4) -> str:
    """'samples a, b (files x, y)' for error messages."""
    ids = [str(i) for i in batch.get("id", [])]
    files: list[str] = []
    for column, values in (batch.get("files") or {}).items():
        for v in list(values)[:limit]:
            files.append(f"{column}={v}")
    text = f"samples {', '.join(ids[:limit]) or '?'}" + (" ..." if len(ids) > limit else "")
    if files:
        text += f"; files {', '.join(files[: 2 * limit])}"
    return text


# ---------------------------------------------------------------------------------------------------
# The unimodal stage: one AdapNet++ expert on one modality
# ---------------------------------------------------------------------------------------------------


def expert_checkpoint_meta(cfg: RunConfig, modality: str, *, in_channels: int) -> dict[str, Any]:
    """What an expert checkpoint records besides weights and loop state.

    Keys: kind, modality, modalities, in_channels (per modality), num_classes, class_names, palette
    (RGB per id), normalization (modality -> [mean, std] or absent), modality_kind, input_size [H, W],
    dataset.
    """
    from fusionseg.data.catalog import get_dataset_info
    from fusionseg.data.modality_specs import get_modality

    info = get_dataset_info(cfg.data.dataset)
    if cfg.model.num_classes != info.num_classes:
        raise ConfigError(
            f"model.num_classes is {cfg.model.num_classes} but dataset {info.name!r} has "
            f"{info.num_classes} classes (void included)"
        )
    norm = cfg.data.normalization.get(modality)
    return {
        "kind": "expert",
        "modality": modality,
        "modalities": [modality],
        "in_channels": {modality: int(in_channels)},
        "num_classes": info.num_classes,
        "class_names": list(info.classes),
        "palette": [list(c) for c in info.palette],
        "normalization": {modality: [list(norm[0]), list(norm[1])]} if norm else {},
        "modality_kind": {modality: get_modality(modality).kind},
        "input_size": [cfg.data.height_px, cfg.data.width_px],
        "dataset": info.name,
    }


def check_init_config(model_cfg: ModelConfig, *, in_channels: int) -> None:
    """Refuse ImageNet-init settings that cannot apply (ConfigError naming the key)."""
    if model_cfg.init_flip_channels and not model_cfg.init:
        raise ConfigError("model.init_flip_channels: needs model.init (a local ResNet-50 state dict)")
    if model_cfg.init_flip_channels and in_channels != 3:
        raise ConfigError(
            f"model.init_flip_channels: reorders a 3-channel stem, this modality has {in_channels} channel(s)"
        )


def initial_expert(model_cfg: ModelConfig, *, in_channels: int, pretrained: bool = True) -> nn.Module:
    """A new AdapNet++ expert: He init, then the ImageNet encoder init of `model.init` (§9) if set.

    Args:
        model_cfg: The `model` section; `init` names a local torchvision/timm ResNet-50 state dict and
            `init_flip_channels` reverses the stem filters' input channels (RGB-trained filters for
            BGR input, adapnetpp.md §9 optional mode).
        in_channels: Channels of the expert's modality.
        pretrained: Apply `model.init` (False when a checkpoint will overwrite every weight).

    Raises:
        ConfigError: inconsistent init settings. CheckpointError: unreadable or non-ResNet-50 file.
    """
    from fusionseg.models.adapnet import build_adapnet

    check_init_config(model_cfg, in_channels=in_channels)
    model = build_adapnet(model_cfg, in_channels=in_channels)
    if model_cfg.init and pretrained:
        from fusionseg.backbones.init import load_imagenet_init

        load_imagenet_init(model, model_cfg.init, flip_input_channels=model_cfg.init_flip_channels)
    return model


def train_expert(
    cfg: RunConfig, modality: str, *, resume: bool = False, progress: ProgressFn | None = None
) -> TrainResult:
    """Train an AdapNet++ expert on one modality (`fusionseg train-unimodal`).

    Args:
        cfg: Resolved run config; `train.out_dir` is the run folder.
        modality: Modality column to train on (e.g. "rgb", "depth", "jet", "hha", "evi").
        resume: Continue the run in `train.out_dir` from its newest intact checkpoint.
        progress: Receives `TrainEvent`s.

    Returns:
        The `TrainResult` (checkpoints, best and final validation metrics).

    Raises:
        ConfigError: bad config (class count not matching the dataset, unknown modality, ...).
        DataError: unreadable lists or files. CheckpointError: see `Trainer.fit`.
    """
    from fusionseg.data.dataset import build_dataset
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.models.adapnet import check_training_size

    check_training_size(cfg.data.height_px, cfg.data.width_px)
    spec = get_modality(modality)
    check_init_config(cfg.model, in_channels=spec.channels)  # before any list or image is read
    meta = expert_checkpoint_meta(cfg, modality, in_channels=spec.channels)
    seed = cfg.train.seed
    train_set = build_dataset(
        cfg.data, "train", modalities=[modality], num_classes=meta["num_classes"], seed=seed
    )
    val_set = build_dataset(
        cfg.data, "val", modalities=[modality], num_classes=meta["num_classes"], seed=seed
    )
    torch.manual_seed(seed)  # the initial weights depend on the seed only
    # a resumed run loads every weight from its checkpoint: no ImageNet init file is read
    model = initial_expert(cfg.model, in_channels=spec.channels, pretrained=not resume)
    trainer = Trainer(
        model,
        forward=expert_forward(modality),
        train_set=train_set,
        val_set=val_set,
        config=cfg,
        run_dir=cfg.train.out_dir,
        num_classes=meta["num_classes"],
        modalities=[modality],
        checkpoint_meta=meta,
        aux_weights=cfg.model.aux_weights,
        class_names=meta["class_names"],
        channels_last=cfg.model.channels_last,
        progress=progress,
    )
    return trainer.fit(resume=resume)
