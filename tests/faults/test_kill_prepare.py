"""prepare-depth killed with SIGKILL again and again loses no finished output and ends byte-identical.

A 24-frame synthetic dataset (48x64) is prepared with every product (`faults_helpers.PREPARE_SETTINGS`)
by `fault_driver.py` in a subprocess that is killed seven times: from outside after seeded random
delays (once while a 2-worker process pool runs; the whole process group dies), and by itself just
before a chosen `os.fsync` or `os.replace` (a PNG, meta.json or list temp file written, not renamed).
After every kill each output present decodes and equals the uninterrupted run's file, and none that
existed before the kill is gone. The final rerun completes the job: outputs, list files and meta.json
equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import cv2
import pytest
from faults_helpers import (
    FAULT_SEED,
    PREPARE_PRODUCTS,
    PREPARE_SETTINGS,
    kill_group,
    make_dataset,
    start_driver,
    temp_files,
    wait_for,
)

from fusionseg.data.listfile import read_list
from fusionseg.data.prepare import PrepareOptions, prepare_depth
from fusionseg.fsutil import OutputLock

pytestmark = pytest.mark.faults

NUM_FRAMES = 24
# (kind, workers): "time" = SIGKILL of the process group from outside after a random delay once a new
# output exists; "fsync:A-B" / "replace:A-B" = the process kills itself before its N-th call, N in A..B;
# "replace=NAME" = before renaming onto NAME (meta.json first; train.txt after the last frame)
KILL_PLAN = (
    ("time", 1),
    ("replace=meta.json", 1),
    ("fsync:2-12", 1),
    ("time", 2),
    ("replace:2-12", 1),
    ("time", 1),
    ("replace=train.txt", 1),
)
FRAME_SLEEP_S = 0.05


def _outputs(out: Path) -> dict[str, bytes]:
    """Complete product files (relative path -> bytes); temp files are not outputs."""
    found = {}
    for product in PREPARE_PRODUCTS:
        for path in sorted((out / product).rglob("*.png")) if (out / product).is_dir() else []:
            found[path.relative_to(out).as_posix()] = path.read_bytes()
    return found


def _check_intact(out: Path, reference: dict[str, bytes], before: dict[str, bytes]) -> dict[str, bytes]:
    """Every output decodes and equals the reference file; none present before is lost."""
    now = _outputs(out)
    lost = sorted(set(before) - set(now))
    assert not lost, f"outputs lost by a kill: {lost}"
    for rel, data in now.items():
        assert data == reference[rel], f"{rel} differs from the uninterrupted run's"
        assert cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED) is not None, f"{rel} does not decode"
    return now


def test_sigkilled_prepare_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", NUM_FRAMES)
    options = PrepareOptions(**PREPARE_SETTINGS, workers=1)
    ref_dir = tmp_path / "reference"
    ref_summary = prepare_depth(data, ref_dir, options)
    assert ref_summary.done == NUM_FRAMES and ref_summary.ok
    reference = _outputs(ref_dir)
    assert len(reference) == NUM_FRAMES * len(PREPARE_PRODUCTS)

    rng = random.Random(FAULT_SEED)
    out, log = tmp_path / "out", tmp_path / "driver.log"
    present: dict[str, bytes] = {}
    kills: list[str] = []
    for index, (kind, workers) in enumerate(KILL_PLAN):
        args = ["prepare", data, out, "--workers", workers, "--frame-sleep", FRAME_SLEEP_S]
        if kind == "time":
            proc = start_driver(args, log)
            count = len(present)
            progressed = wait_for(lambda c=count: len(_outputs(out)) > c, proc)
            assert progressed, f"run {index} ended before a new output:\n{log.read_text()[-2000:]}"
            time.sleep(rng.uniform(0.0, 0.1 / workers**2))  # a pool runs ahead of the results
            assert kill_group(proc), f"run {index} finished before it could be killed"
            kills.append(f"outside SIGKILL ({workers} worker(s)) with {len(_outputs(out))} outputs")
        else:
            if "=" in kind:
                spec, where = kind, f"the rename onto {kind.split('=')[1]}"
            else:
                name, _, span = kind.partition(":")
                spec = f"{name}:{rng.randint(*(int(v) for v in span.split('-')))}"
                where = f"os.{name} call {spec.split(':')[1]}"
            proc = start_driver(["--die-at", spec, *args], log)
            code = proc.wait(timeout=240)
            kill_group(proc)
            assert code == -signal.SIGKILL, f"run {index} ({spec}) exited {code}:\n{log.read_text()[-2000:]}"
            kills.append(f"self-SIGKILL before {where} with {len(_outputs(out))} outputs")
        present = _check_intact(out, reference, present)

    summary = prepare_depth(data, out, options)  # the rerun: skips what exists, does the rest
    assert summary.ok and summary.done + summary.skipped == NUM_FRAMES and summary.skipped > 0
    assert _check_intact(out, reference, present) == reference
    for lst in ref_summary.lists:  # list files hold every frame, like the uninterrupted run's
        assert (out / lst.name).read_bytes() == lst.read_bytes()
        assert len(read_list(out / lst.name, allow_absolute=True)) == len(read_list(lst, allow_absolute=True))
    meta, ref_meta = (json.loads((d / "meta.json").read_text()) for d in (out, ref_dir))
    assert meta["state"] == "finished" and meta["parameters"] == ref_meta["parameters"]
    assert meta["lists"] == ref_meta["lists"] and meta["frames"].keys() == ref_meta["frames"].keys()
    assert {f["status"] for f in meta["frames"].values()} <= {"done", "skipped"}
    assert meta["summary"]["failed"] == 0 and meta["summary"]["total"] == NUM_FRAMES
    assert not temp_files(out) and not (out / OutputLock.NAME).exists()
    print(f"\n{len(kills)} kills, 0 outputs lost: " + "; ".join(kills))


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_die_with_a_sigkilled_parent_and_the_rerun_completes(tmp_path: Path) -> None:
    """SIGKILL of the parent alone (not its process group): no worker goes on writing, and the next
    run takes the stale lock over only once they are gone, then completes the job."""
    data = make_dataset(tmp_path / "ds", NUM_FRAMES)
    out, log = tmp_path / "out", tmp_path / "driver.log"
    proc = start_driver(["prepare", data, out, "--workers", 2, "--frame-sleep", FRAME_SLEEP_S], log)
    try:
        assert wait_for(lambda: len(_outputs(out)) > 0, proc), log.read_text()[-2000:]
        workers = [p for p in _children(proc.pid) if _alive(p)]
        assert len(workers) >= 2, f"expected the pool's workers, found {workers}"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10.0
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [p for p in workers if _alive(p)], "workers outlived their killed parent"
    finally:
        kill_group(proc)
    summary = prepare_depth(data, out, PrepareOptions(**PREPARE_SETTINGS, workers=1))
    assert summary.ok and summary.done + summary.skipped == NUM_FRAMES
    assert not (out / OutputLock.NAME).exists()
