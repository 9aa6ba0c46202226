"""What a run folder logs besides checkpoints: `metrics.csv` (+ TensorBoard) and config changes on resume."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fusionseg.config import RunConfig, config_changes, config_to_dict, strip_retired_keys
from fusionseg.errors import ConfigError, DataError
from fusionseg.fsutil import atomic_write_text

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
            "was started with (its config.yaml), or go on with the new one with the override "
            "train.allow_config_change=true (`overrides`)"
        )
    line = f"step {step}: " + "; ".join(changes) + "\n"
    path = Path(run_dir) / CONFIG_CHANGES_FILE
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, previous + line)
    return changes
