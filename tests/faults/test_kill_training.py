"""Training killed with SIGKILL, again and again, resumes to exactly the result of an uninterrupted run.

A tiny CPU run (`faults_helpers.TRAIN_SETTINGS`: 30 steps, a checkpoint every 2, the last 2 kept) runs
in a subprocess (`fault_driver.py`) and is killed: from outside after seeded random delays, and by
itself just before a chosen `os.fsync`, `os.replace` or `os.link` call, the moments inside a checkpoint
or metrics.csv write where a writer that is not atomic would leave a torn file. The newest checkpoint
is also truncated on disk once, as a storage fault would leave it. Each restart passes `--resume`. The
final weights, optimiser state, best checkpoint, kept files and metrics.csv rows must equal those of an
uninterrupted run bit for bit (CPU, one thread, no data workers; the reference and the final resume run
in this process with one torch thread, like the driver).
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from faults_helpers import (
    FAULT_SEED,
    TRAIN_SETTINGS,
    build_tiny_trainer,
    kill_group,
    metrics_rows,
    start_driver,
    temp_files,
    wait_for,
)

from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.errors import CheckpointError, FusionsegError
from fusionseg.fsutil import OutputLock

pytestmark = pytest.mark.faults

# kind of each kill, in order: "time" = SIGKILL from outside after a random delay once the run has
# written a new checkpoint; "fsync:A-B" / "replace:A-B" / "link:A-B" = the process kills itself just
# before its N-th call of that function, N drawn from A..B
KILL_PLAN = ("time", "fsync:3-10", "time", "replace:2-8", "link:1-4", "time")
STEP_SLEEP_S = 0.04  # slows the subprocess down so that outside kills land mid-run
CORRUPT_AFTER_KILL = 3  # truncate the newest checkpoint after this kill (a torn file on disk)
_CKPT = re.compile(r"^ckpt-(\d+)\.pt$")


@pytest.fixture
def one_thread():
    """One torch thread in this process, as in the driver (results are bit-exact per thread count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _fit(run: Path, *, resume: bool, **train) -> list[str]:
    """Train in this process; returns the warnings the run reported."""
    warnings: list[str] = []

    def progress(event) -> None:
        if event.kind == "warn":
            warnings.append(event.message)

    build_tiny_trainer(run, progress=progress, **train).fit(resume=resume)
    return warnings


def _newest_step(run: Path) -> int:
    """Step of the newest periodic checkpoint with its sidecar (0 when none)."""
    steps = [0]
    for path in run.glob("ckpt-*.pt"):
        match = _CKPT.match(path.name)
        if match and path.with_name(path.name + ".sha256").exists():
            steps.append(int(match.group(1)))
    return max(steps)


def _assert_same_run(run: Path, reference: Path) -> None:
    """Same final and best checkpoints (weights, Adam state), same files, same metrics.csv rows."""
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(reference / name, require_sidecar=True)
        b = load_checkpoint(run / name, require_sidecar=True)
        assert (a["step"], a["best_miou"]) == (b["step"], b["best_miou"]), name
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), f"{name}: {key} differs"
        for k, state in a["optimizer"]["state"].items():
            for key in state:
                assert torch.equal(state[key], b["optimizer"]["state"][k][key]), f"{name}: Adam {k}.{key}"
    assert metrics_rows(run) == metrics_rows(reference)  # every row once: none lost, none doubled
    names = sorted(p.name for p in run.iterdir() if p.is_file())
    assert names == sorted(p.name for p in reference.iterdir() if p.is_file())  # same kept checkpoints
    assert not temp_files(run) and not (run / OutputLock.NAME).exists()


def test_sigkilled_training_resumes_to_the_uninterrupted_result(tmp_path: Path, one_thread) -> None:
    reference = tmp_path / "reference"
    _fit(reference, resume=False)

    rng = random.Random(FAULT_SEED)
    run, log = tmp_path / "run", tmp_path / "driver.log"
    kills: list[str] = []
    for index, kind in enumerate(KILL_PLAN):
        before = _newest_step(run)
        args = ["train", run, "--step-sleep", STEP_SLEEP_S] + (["--resume"] if index else [])
        if kind == "time":
            proc = start_driver(args, log)
            progressed = wait_for(lambda b=before: _newest_step(run) > b, proc)
            assert progressed, f"run {index} ended before a new checkpoint:\n{log.read_text()[-2000:]}"
            time.sleep(rng.uniform(0.0, 0.1))
            assert kill_group(proc), f"run {index} finished before it could be killed"
            kills.append(f"outside SIGKILL after checkpoint {_newest_step(run)}")
        else:
            name, _, span = kind.partition(":")
            spec = f"{name}:{rng.randint(*(int(v) for v in span.split('-')))}"
            proc = start_driver(["--die-at", spec, *args], log)
            code = proc.wait(timeout=240)
            kill_group(proc)
            assert code == -signal.SIGKILL, f"run {index} ({spec}) exited {code}:\n{log.read_text()[-2000:]}"
            kills.append(f"self-SIGKILL before os.{name} call {spec.split(':')[1]}")
        assert (run / OutputLock.NAME).exists()  # the dead run's lock stays behind (stale, taken over)
        if index + 1 == CORRUPT_AFTER_KILL:
            last = run / "last.pt"
            os.truncate(last, last.stat().st_size // 2)  # also cuts the ckpt-*.pt it is a hard link of
            kills.append(f"last.pt of step {_newest_step(run)} truncated")

    warnings = _fit(run, resume=True)
    if not any("falling back" in w for w in warnings):  # the truncated checkpoint was met earlier
        assert "falling back to the previous checkpoint" in log.read_text()
    assert load_checkpoint(run / "last.pt")["step"] == TRAIN_SETTINGS["iterations"]
    _assert_same_run(run, reference)
    print(f"\n{len(KILL_PLAN)} kills and 1 corruption: " + "; ".join(kills))


# (file whose rename the run dies before, in a 4-step run with checkpoints at 2 and 4 and validation
# at 4, what a rerun must do): the windows of the first checkpoint and of publishing best.pt
CRASH_POINTS = [
    ("ckpt-00000002.pt.sha256", "restart"),  # nothing committed yet
    ("ckpt-00000002.pt", "restart"),  # an orphan sidecar only
    ("last.pt", "resume"),  # ckpt-2 complete, never published as last.pt
    ("last.pt.sha256", "resume"),  # last.pt without its sidecar: falls back to ckpt-2
    ("best.pt", "resume"),  # the final step committed as last.pt, best.pt not yet updated
]


@pytest.fixture(scope="module")
def short_reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("short") / "reference"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit(run, resume=False, iterations=4)
    finally:
        torch.set_num_threads(old)
    return run


@pytest.mark.parametrize(("target", "rerun"), CRASH_POINTS)
def test_sigkill_inside_a_checkpoint_save(
    tmp_path: Path, short_reference: Path, one_thread, target: str, rerun: str
) -> None:
    run, log = tmp_path / "run", tmp_path / "driver.log"
    proc = start_driver(["--die-at", f"replace={target}", "train", run, "--iterations", 4], log)
    code = proc.wait(timeout=240)
    kill_group(proc)
    assert code == -signal.SIGKILL, log.read_text()[-2000:]
    if rerun == "restart":
        with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
            _fit(run, resume=True, iterations=4)  # says so clearly ...
        _fit(run, resume=False, iterations=4)  # ... and a plain rerun is not refused
    else:
        with pytest.raises(FusionsegError, match="`resume`"):
            _fit(run, resume=False, iterations=4)  # a started run is not restarted by accident
        _fit(run, resume=True, iterations=4)
    _assert_same_run(run, short_reference)


def test_resuming_from_the_best_checkpoint_leaves_no_temp_files(tmp_path: Path) -> None:
    """Re-publishing best.pt onto the file it already is (same inode) must not leave the temp link."""
    run = tmp_path / "run"
    _fit(run, resume=False, iterations=4)  # step 4 is validated and best: last.pt is best.pt
    assert os.path.samefile(run / "last.pt", run / "best.pt")
    _fit(run, resume=True, iterations=4)  # nothing left to train; best.pt is published again
    assert not temp_files(run) and load_checkpoint(run / "best.pt", require_sidecar=True)["step"] == 4
