"""What the training loop reports: progress events, its result, and descriptions of bad batches."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fusionseg.engine.metrics import SegmentationMetrics


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, a never-validated mIoU as None)."""
        return {
            "run_dir": str(self.run_dir),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "last_checkpoint": str(self.last_checkpoint),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "best_miou": None if not math.isfinite(self.best_miou) else self.best_miou,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
        }


def merge_batches(batches: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The ids and files of a step's micro-batches as one batch-like mapping (for messages)."""
    if len(batches) == 1:
        return batches[0]
    ids = [i for b in batches for i in b.get("id", [])]
    files: dict[str, list[Any]] = {}
    for b in batches:
        for column, values in (b.get("files") or {}).items():
            files.setdefault(column, []).extend(values)
    return {"id": ids, "files": files}


def describe_batch(batch: Mapping[str, Any], limit: int = 4) -> str:
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


@dataclass
class ReportWindow:
    """Loss sums and throughput of the training steps since the last "step" event."""

    t0: float
    loss: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    images: int = 0

    def add(self, loss: float, parts: Mapping[str, float]) -> None:
        self.steps += 1
        self.loss["loss"] = self.loss.get("loss", 0.0) + loss
        for k, v in parts.items():
            self.loss[k] = self.loss.get(k, 0.0) + v

    def reset(self, t0: float) -> None:
        self.loss, self.steps, self.images, self.t0 = {}, 0, 0, t0
