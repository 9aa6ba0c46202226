"""Progress that survives a pipe: with stderr not a terminal, long jobs print plain progress lines at a
steady interval (count, rate, elapsed, ETA) instead of a rich bar that shows nothing until the end."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from fusionseg.cli import console
from fusionseg.cli.console import PlainProgress, format_duration


def _plain(interval_s: float = 0.05) -> tuple[PlainProgress, io.StringIO]:
    buffer = io.StringIO()
    return PlainProgress(console=Console(file=buffer, width=200), interval_s=interval_s), buffer


def test_progress_is_plain_when_stderr_is_not_a_terminal() -> None:
    assert not console.err.is_terminal  # pytest captures stderr
    assert isinstance(console.progress(), PlainProgress)


def test_lines_at_start_at_each_interval_and_at_the_end() -> None:
    bar, buffer = _plain(0.05)
    bar.start()
    task = bar.add_task("training", total=10, rate="lr 1.00e-03")
    bar.update(task, completed=4, rate="loss 0.5000 lr 9.0e-04 12.0 img/s")
    time.sleep(0.3)  # a job that is slow between updates still shows it is alive
    lines_running = buffer.getvalue().splitlines()
    bar.update(task, completed=10)
    bar.stop()
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("training  0/10 (0%)  lr 1.00e-03  elapsed 0:00  ETA -")
    ticks = [line for line in lines_running[1:] if line.startswith("training  4/10 (40%)")]
    assert len(ticks) >= 2, lines_running
    assert all(
        "loss 0.5000" in line and "img/s" in line and re.search(r"ETA \d+:\d\d", line) for line in ticks
    )
    assert lines[-1].startswith("training  10/10 (100%)") and lines[-1].endswith("done")
    assert sum(line.endswith("done") for line in lines) == 1  # stop() does not repeat a finished task


def test_advance_and_an_unfinished_task_at_stop() -> None:
    bar, buffer = _plain(60.0)  # no tick during the test
    bar.start()
    task = bar.add_task("prepare-depth", total=8, rate="")
    for _ in range(3):
        bar.advance(task, 1)
    bar.stop()  # e.g. an error ended the job: its last state is printed once
    lines = buffer.getvalue().splitlines()
    assert lines == [lines[0], lines[-1]] and lines[-1].startswith("prepare-depth  3/8 (38%)")
    assert "ETA" in lines[-1]


def test_no_thread_left_after_stop() -> None:
    bar, _ = _plain(0.01)
    bar.start()
    bar.add_task("x", total=2)
    bar.stop()
    assert bar._ticker is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (float("nan"), "-"), (5.4, "0:05"), (65, "1:05"), (3723, "1:02:03")]
)
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_interval_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("FUSIONSEG_PROGRESS_INTERVAL_S", "2.5")
    assert console.progress().interval_s == 2.5
    monkeypatch.setenv("FUSIONSEG_PROGRESS_INTERVAL_S", "soon")
    assert console.progress().interval_s == console.PLAIN_INTERVAL_S
