"""A prepare-dataset run cut short at any rename resumes to the files of an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dataset_layouts import make_cityscapes

from fusionseg.data.datasets.runner import prepare_dataset


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the job catches it."""


def _files(out: Path) -> dict[str, bytes]:
    """Every output but meta.json (it holds times) and the lock, by relative path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("meta.json", ".fusionseg.lock")
    }


def test_killed_at_any_rename_then_rerun_matches_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_cityscapes(tmp_path / "cityscapes")
    prepare_dataset("cityscapes", root, tmp_path / "whole", num_classes=11, workers=1)
    reference = _files(tmp_path / "whole")
    out = tmp_path / "cut"
    real_replace = os.replace
    temps_left = 0
    # the N-th rename of each run fails; a run renames meta.json, classes.yaml, then per unfinished frame
    # rgb, depth, label and its record, then the lists, meta.json and classes.yaml: these cut the
    # first meta.json, a frame's depth, a record, images of later frames, the val list, the last meta.json
    for kill_at in (1, 4, 6, 7, 9, 12, 5):
        calls = {"n": 0}

        def replace(src: str, dst: str, *, _kill_at: int = kill_at, _calls: dict = calls) -> None:
            _calls["n"] += 1
            if _calls["n"] == _kill_at:
                os.link(src, f"{src}k")  # SIGKILL would leave the temp file (the handler removes src)
                raise _Killed  # the temp file is written, the rename never happens
            real_replace(src, dst)

        monkeypatch.setattr("fusionseg.fsutil.os.replace", replace)
        with pytest.raises(_Killed):
            prepare_dataset("cityscapes", root, out, num_classes=11, workers=1)
        monkeypatch.setattr("fusionseg.fsutil.os.replace", real_replace)
        (out / ".fusionseg.lock").unlink(missing_ok=True)  # a killed process's lock is stale
        for name, data in _files(out).items():
            if Path(name).name.startswith("."):  # the temp file of the cut rename
                temps_left += 1
            else:  # finished files are whole
                assert data == reference[name], name
    assert temps_left >= 7
    summary = prepare_dataset("cityscapes", root, out, num_classes=11, workers=1)
    assert summary.ok and summary.skipped > 0
    assert _files(out) == reference  # no temp file left, every file as in the uninterrupted run
