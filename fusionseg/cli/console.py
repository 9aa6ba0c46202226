"""Rich consoles: progress and messages go to stderr, results to stdout.

On a terminal, long jobs draw rich progress bars. When stderr is not a terminal (CI logs, `nohup`,
`| tee`), a bar would print nothing until the job ends, so `progress()` returns a `PlainProgress`
instead: the same interface, rendered as one plain line per task at a steady interval (and when a
task starts and finishes) with count, percentage, the task's rate text, elapsed time and ETA.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# results tables: 120 columns when stdout is a file or a pipe (rich would assume 80 and cut columns)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)

# seconds between two plain progress lines of a running task (FUSIONSEG_PROGRESS_INTERVAL_S overrides)
PLAIN_INTERVAL_S = 15.0


def progress(description_width: int = 24) -> Progress:
    """A progress display on stderr: a rich bar on a terminal, `PlainProgress` lines otherwise."""
    if not err.is_terminal:
        return PlainProgress(console=err, interval_s=_interval_from_env())
    return Progress(
        TextColumn(f"[bold]{{task.description:<{description_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _interval_from_env() -> float:
    raw = os.environ.get("FUSIONSEG_PROGRESS_INTERVAL_S", "")
    try:
        value = float(raw) if raw else PLAIN_INTERVAL_S
    except ValueError:
        value = PLAIN_INTERVAL_S
    return value if value > 0 else PLAIN_INTERVAL_S


def format_duration(seconds: float | None) -> str:
    """'1:02:03', '4:05' or '-' (unknown)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PlainProgress(Progress):
    """`rich.progress.Progress` for a pipe: plain lines at a steady interval instead of a live bar.

    Tasks are tracked by rich itself (count, elapsed time, speed); nothing is drawn live. A line is
    printed when a task is added, every `interval_s` seconds while it runs (from a daemon thread, so a
    job that stalls between updates still shows that it is alive), and once when it completes, e.g.

        training  120/300 (40%)  loss 0.5312 lr 9.1e-04 12.3 img/s  elapsed 1:02  ETA 1:33

    Args:
        console: Where lines go (stderr).
        interval_s: Seconds between two lines of a running task.
    """

    def __init__(self, *, console: Console, interval_s: float = PLAIN_INTERVAL_S) -> None:
        super().__init__(console=console, disable=True)
        self.interval_s = float(interval_s)
        self._wake = threading.Event()
        self._ticker: threading.Thread | None = None
        self._announced: set[TaskID] = set()
        self._finished: set[TaskID] = set()
        self._print_lock = threading.Lock()

    # -- rich interface ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._ticker is None or not self._ticker.is_alive():
            self._wake.clear()
            self._ticker = threading.Thread(target=self._tick, name="fusionseg-progress", daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        self._wake.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5.0)
        self._ticker = None
        for task in self.tasks:  # the last state of a task that ended without reaching its total
            if task.id not in self._finished and task.completed > 0:
                self._line(task)
                self._finished.add(task.id)

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        task_id = super().add_task(
            description, start=start, total=total, completed=completed, visible=visible, **fields
        )
        self._after_change(task_id)
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._after_change(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._after_change(task_id)

    # -- lines ---------------------------------------------------------------------------------------

    def _after_change(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        if task_id not in self._announced:
            self._announced.add(task_id)
            self._line(task)
        elif task.finished and task_id not in self._finished:
            self._finished.add(task_id)
            self._line(task)

    def _tick(self) -> None:
        while not self._wake.wait(self.interval_s):
            for task in self.tasks:
                if task.id not in self._finished:
                    self._line(task)

    def _line(self, task: Task) -> None:
        done = int(task.completed)
        count = f"{done}/{int(task.total)}" if task.total else f"{done}"
        if task.total:
            count += f" ({100.0 * task.completed / task.total:.0f}%)"
        rate = str(task.fields.get("rate", "") or "").strip()
        elapsed = task.finished_time if task.finished_time is not None else task.elapsed
        parts = [f"{task.description}", count]
        if rate:
            parts.append(rate)
        parts.append(f"elapsed {format_duration(elapsed)}")
        if task.finished:
            parts.append("done")
        else:
            parts.append(f"ETA {format_duration(_eta_s(task))}")
        with self._print_lock:
            self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True, emoji=False)


def _eta_s(task: Task) -> float | None:
    """Seconds to the task's total at its mean rate so far (rich's recent-speed estimate first)."""
    if not task.total or task.completed <= 0:
        return None
    remaining = task.total - task.completed
    if task.time_remaining is not None:
        return float(task.time_remaining)
    elapsed = task.elapsed or 0.0
    return elapsed / task.completed * remaining if elapsed > 0 else None


def frame_progress(bar: Progress, description: str) -> tuple[Callable[[int], None], Callable[[bool], None]]:
    """Callbacks driving one progress task of a batch job over frames, with a frames/s rate.

    Returns:
        (start(total), advance(done)): call `start` once with the frame count, then `advance` per
        finished frame (`done` False for a skipped or failed one, which the rate leaves out).
    """
    state: dict[str, Any] = {"start": 0.0, "done": 0}

    def start(total: int) -> None:
        state["task"] = bar.add_task(description, total=total, rate="")
        state["start"] = time.perf_counter()
        bar.start()

    def advance(done: bool) -> None:
        state["done"] += int(done)
        elapsed = max(time.perf_counter() - state["start"], 1e-9)
        bar.update(state["task"], advance=1, rate=f"{state['done'] / elapsed:.1f} frames/s")

    return start, advance


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (no rich markup)."""
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))
