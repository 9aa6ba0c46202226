"""Checkpoint files: atomic write + sha256 sidecar, weights-only loading, fallback, RNG state."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from fusionseg.engine.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    check_compatible,
    checkpoint_header,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from fusionseg.errors import CheckpointError


def payload(step: int = 1) -> dict:
    return checkpoint_header(kind="expert", step=step, model={"w": torch.arange(4.0) * step}, names=["a"])


def test_round_trip_and_sidecar(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", payload(3))
    digest = sidecar_path(path).read_text().split()
    assert digest[1] == "c.pt" and len(digest[0]) == 64
    loaded = load_checkpoint(path, require_sidecar=True)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(4.0) * 3)
    assert not list(tmp_path.glob(".*tmp*"))  # no stray temp files


def test_truncated_file_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(path)


def test_missing_sidecar_refused_only_when_required(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", payload())
    sidecar_path(path).unlink()
    assert load_checkpoint(path)["step"] == 1
    with pytest.raises(CheckpointError, match="sidecar"):
        load_checkpoint(path, require_sidecar=True)


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch EXPLOITED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "fusionseg-checkpoint", "x": Exploit()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(raw)
    assert not (tmp_path / "EXPLOITED").exists()


def test_non_plain_payload_refused_at_save(tmp_path):
    with pytest.raises(CheckpointError, match="payload.arr"):
        save_checkpoint(tmp_path / "c.pt", {**payload(), "arr": np.zeros(3)})
    assert not (tmp_path / "c.pt").exists()


def test_foreign_file_refused(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a fusionseg checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_manager_keeps_last_n_best_and_last(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        mgr.save(payload(step), step=step, best=step == 2)
    assert [s for s, _ in mgr.step_files()] == [4, 3]
    assert load_checkpoint(mgr.last_path, require_sidecar=True)["step"] == 4
    assert load_checkpoint(mgr.best_path, require_sidecar=True)["step"] == 2  # survives pruning of ckpt 2


def test_corrupt_newest_falls_back_with_message(tmp_path):
    messages = []
    mgr = CheckpointManager(tmp_path, keep_last=3, warn=messages.append)
    for step in (1, 2):
        mgr.save(payload(step), step=step)
    newest = mgr.step_path(2)
    newest.write_bytes(newest.read_bytes()[:100])  # a crash mid-write of a non-atomic writer
    mgr.last_path.write_bytes(b"garbage")
    path, state = mgr.load_latest()
    assert path == mgr.step_path(1) and state["step"] == 1
    assert len(messages) == 2 and all("falling back" in m for m in messages)
    assert "last.pt" in messages[0] and "ckpt-00000002.pt" in messages[1]


def test_no_intact_checkpoint(tmp_path):
    mgr = CheckpointManager(tmp_path, warn=lambda m: None)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        mgr.load_latest()
    mgr.save(payload(1), step=1)
    for p in tmp_path.glob("*.pt"):
        p.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        mgr.load_latest()


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    state = capture_rng_state()
    save_checkpoint(tmp_path / "rng.pt", checkpoint_header(rng=state))
    first = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    from fusionseg.engine.checkpoint import restore_rng_state

    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    assert first == again


def test_check_compatible_names_key_and_values():
    with pytest.raises(CheckpointError, match=r"num_classes=9 but 12"):
        check_compatible({"num_classes": 9}, {"num_classes": 12}, source="x.pt")
    check_compatible({"modalities": ["rgb"]}, {"modalities": ("rgb",)}, source="x.pt")
