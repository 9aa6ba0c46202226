"""A full disk: the write fails with one clear error, nothing finished is damaged, and once space is
freed the job resumes to the result it would have had.

The disk fills "for real" from the writer's point of view: `os.fsync` of the temp file raises ENOSPC,
as it does when delayed allocation finds no free block.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from faults_helpers import PREPARE_SETTINGS, build_tiny_trainer, make_dataset, temp_files

from fusionseg.data.prepare import PrepareOptions, prepare_depth
from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.errors import DataError
from fusionseg.fsutil import OutputLock, atomic_write_bytes

pytestmark = pytest.mark.faults


def fill_disk_after(monkeypatch, writes: int) -> None:
    """Let `writes` more fsyncs succeed, then fail every one with ENOSPC."""
    real, calls = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state.bin"
    atomic_write_bytes(path, b"old")
    fill_disk_after(monkeypatch, 0)
    with pytest.raises(DataError, match=r"state.bin: cannot write \(No space left on device\)"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and not temp_files(tmp_path)


# fsyncs of the tiny run: config.yaml, a metrics row per step (two at validation steps) and every 2
# steps a checkpoint's sidecar then data: the 11th is the row of step 6, the 14th checkpoint 6's data
@pytest.mark.parametrize(("writes", "file"), [(10, "metrics.csv"), (13, "ckpt-00000006.pt")])
def test_training_on_a_full_disk_stops_cleanly_and_resumes(
    tmp_path: Path, monkeypatch, writes: int, file: str
) -> None:
    reference = build_tiny_trainer(tmp_path / "reference", iterations=8)
    reference.fit()
    run = tmp_path / "run"
    fill_disk_after(monkeypatch, writes)
    with pytest.raises(DataError, match=rf"/{file}: cannot write \(No space left on device\)"):
        build_tiny_trainer(run, iterations=8).fit()
    monkeypatch.undo()  # space freed
    last = load_checkpoint(run / "last.pt", require_sidecar=True)
    assert 0 < last["step"] < 8  # the checkpoints written before stay intact
    assert not temp_files(run) and not (run / OutputLock.NAME).exists()
    resumed = build_tiny_trainer(run, iterations=8)
    resumed.fit(resume=True)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_prepare_on_a_full_disk_loses_nothing_and_resumes(tmp_path: Path, monkeypatch) -> None:
    data = make_dataset(tmp_path / "ds", 6)
    options = PrepareOptions(**PREPARE_SETTINGS, workers=1)
    prepare_depth(data, tmp_path / "reference", options)
    out = tmp_path / "out"
    fill_disk_after(monkeypatch, 13)  # meta.json and a few frames fit
    with pytest.raises(DataError, match="No space left on device"):
        prepare_depth(data, out, options)  # frames fail one by one; the final list write cannot be done
    monkeypatch.undo()
    kept = sorted(out.rglob("*.png"))
    assert 0 < len(kept) < 6 * 5 and not temp_files(out)
    summary = prepare_depth(data, out, options)
    assert summary.ok and summary.done + summary.skipped == 6
    for ref in sorted((tmp_path / "reference").rglob("*.png")):
        assert (out / ref.relative_to(tmp_path / "reference")).read_bytes() == ref.read_bytes()
