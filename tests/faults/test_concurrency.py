"""Two jobs writing into one output folder: the second refuses with a clear message and changes nothing.

Training holds `fusionseg.fsutil.OutputLock` on its run folder and prepare-depth on its output folder
for as long as they write there. A second job into the same folder fails with a `DataError` naming the
folder and the other process (one red line and exit status 2 in the CLI) before it writes anything; a
lock left by a killed job is stale and taken over.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faults_helpers import (
    PREPARE_SETTINGS,
    build_tiny_trainer,
    driver_env,
    kill_group,
    make_dataset,
    run_driver,
    start_driver,
    wait_for,
)

from fusionseg.cli import main
from fusionseg.data.prepare import PrepareOptions, prepare_depth
from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.errors import DataError
from fusionseg.fsutil import OutputLock

pytestmark = pytest.mark.faults

_HOLD = (
    "import sys\n"
    "from fusionseg.fsutil import OutputLock\n"
    "lock = OutputLock(sys.argv[1], purpose=sys.argv[2]).acquire()\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
    "lock.release()\n"
)


@contextmanager
def held_by_other_process(folder: Path, purpose: str) -> Iterator[int]:
    """Another process holds the folder's lock inside the block; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder), purpose],
        env=driver_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.communicate(timeout=30)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder` (except the lock) with its bytes and modification time."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != OutputLock.NAME
    }


def test_second_training_into_a_running_run_folder_is_refused(tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "driver.log"
    proc = start_driver(["train", run, "--step-sleep", 0.1], log)
    try:
        started = wait_for(lambda: (run / "last.pt.sha256").exists(), proc)
        assert started, log.read_text()[-2000:]
        config_stamp = (run / "config.yaml").stat().st_mtime_ns
        for resume in (True, False):  # the lock comes first: no "--resume" hint, no reading
            with pytest.raises(DataError) as info:
                build_tiny_trainer(run).fit(resume=resume)
            message = str(info.value)
            assert f"another fusionseg training (pid {proc.pid}" in message and str(run) in message
        assert (run / "config.yaml").stat().st_mtime_ns == config_stamp  # not rewritten by the refused run
        assert kill_group(proc), "the first run ended before the second one was tried"
    finally:
        kill_group(proc)
    build_tiny_trainer(run).fit(resume=True)  # the killed run's lock is stale: taken over
    assert load_checkpoint(run / "last.pt")["step"] == 30 and not (run / OutputLock.NAME).exists()


def test_refused_runs_change_nothing(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    build_tiny_trainer(run, iterations=2).fit()
    data = make_dataset(tmp_path / "ds", 3)
    out = tmp_path / "prepared"
    options = PrepareOptions(**PREPARE_SETTINGS, workers=1)
    prepare_depth(data, out, options)
    before = {"run": _snapshot(run), "out": _snapshot(out)}

    with held_by_other_process(run, "training") as pid:
        with pytest.raises(DataError, match=rf"another fusionseg training \(pid {pid} on "):
            build_tiny_trainer(run, iterations=4).fit(resume=True)
    with held_by_other_process(out, "prepare-depth") as pid:
        with pytest.raises(DataError, match=rf"another fusionseg prepare-depth \(pid {pid} on "):
            prepare_depth(data, out, PrepareOptions(**{**PREPARE_SETTINGS, "overwrite": True}, workers=1))
        capsys.readouterr()
        args = ["prepare-depth", str(data), "--out", str(out), "--complete", "fast", "--hha", "--jet"]
        args += ["--normals", "--evi", "--depth-column", "depth", "--workers", "1"]
        assert main(args) == 2  # CLI: exit status 2, one line naming the other job
        err = capsys.readouterr().err.strip().splitlines()  # (after the emptied progress bar)
        assert [line for line in err if "error" in line] == err[-1:]
        assert f"pid {pid}" in err[-1] and "another output folder" in err[-1]
    assert {"run": _snapshot(run), "out": _snapshot(out)} == before

    build_tiny_trainer(run, iterations=4).fit(resume=True)  # released: the folder is free again
    assert load_checkpoint(run / "last.pt")["step"] == 4


def test_second_prepare_job_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", 12)
    out, log = tmp_path / "out", tmp_path / "driver.log"
    proc = start_driver(["prepare", data, out, "--frame-sleep", 0.15], log)
    try:
        assert wait_for(lambda: (out / "jet").is_dir() and any((out / "jet").glob("*.png")), proc)
        with pytest.raises(DataError, match=rf"another fusionseg prepare-depth \(pid {proc.pid} on "):
            prepare_depth(data, out, PrepareOptions(**PREPARE_SETTINGS, workers=1))
        assert proc.wait(timeout=240) == 0  # the first job is not disturbed
    finally:
        kill_group(proc)
    summary = prepare_depth(data, out, PrepareOptions(**PREPARE_SETTINGS, workers=1))
    assert (summary.skipped, summary.done, summary.failed) == (12, 0, 0)
    other = tmp_path / "other"  # a different folder is no conflict, even while one is held
    with held_by_other_process(out, "prepare-depth"):
        run_driver(["prepare", data, other], log)
    assert (other / "meta.json").is_file()
