"""`--init-from`: fine-tuning imported DeepScene models (issue 16); the fused case is in
test_fused_import.py (it needs that module's SSMA fixture)."""

from __future__ import annotations

from pathlib import Path

import torch
from finetune_helpers import finetune_dataset, finetune_sets

from fusionseg.cli import main
from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.fsutil import sha256_file


def _unimodal(modality: str, checkpoint: Path, out: Path) -> list[str]:
    return ["train-unimodal", "--modality", modality, "--init-from", str(checkpoint), "--out", str(out)]


def test_train_unimodal_fine_tunes_an_imported_expert(converted: Path, tmp_path: Path, capsys) -> None:
    data = finetune_dataset(tmp_path / "data", ("rgb",))
    args = _unimodal("rgb", converted, tmp_path / "run")
    assert main([*args, *finetune_sets(data, ["train.lr=0", "train.lr_end=0"]), "--json"]) == 0
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["init_from"] == {"path": str(converted.resolve()), "sha256": sha256_file(converted)}
    assert last["config"]["model"]["padding"] == "tf_same"  # the imported model's settings came along
    imported = load_checkpoint(converted)["model"]
    key = "trunk.encoder.stem.conv.weight"
    assert torch.equal(last["model"][key], imported[key])  # lr 0: the start was the imported weights


def test_weights_of_another_function_are_refused(converted: Path, tmp_path: Path, capsys) -> None:
    data = finetune_dataset(tmp_path / "data", ("rgb",))
    args = _unimodal("rgb", converted, tmp_path / "run")
    assert main([*args, *finetune_sets(data, ["model.padding=symmetric"])]) == 2
    err = capsys.readouterr().err
    assert "model.padding is 'tf_same' but this run's is 'symmetric'" in err and len(err.splitlines()) == 1
    data = finetune_dataset(tmp_path / "data-hha", ("hha",))
    args = _unimodal("hha", converted, tmp_path / "r2")
    assert main([*args, *finetune_sets(data, [])]) == 2
    assert "modalities" in capsys.readouterr().err
