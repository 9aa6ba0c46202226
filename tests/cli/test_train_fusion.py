"""CLI of fusion training: `train-fusion` and `train-pipeline` (help, option parsing, one-line errors)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fusionseg.cli import COMMANDS, main
from fusionseg.cli.train_fusion import parse_experts
from fusionseg.config import config_from_dict, config_to_dict
from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
from fusionseg.errors import ConfigError


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Two frames of rgb + 16-bit depth + labels with train/val lists."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for col in ("rgb", "depth", "label"):
        (root / col).mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / f"rgb/{i}.png"), rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
        cv2.imwrite(str(root / f"depth/{i}.png"), rng.integers(500, 5000, (32, 64), dtype=np.uint16))
        cv2.imwrite(str(root / f"label/{i}.png"), rng.integers(0, 9, (32, 64), dtype=np.uint8))
    lines = "# columns: rgb depth label\n" + "".join(
        f"rgb/{i}.png depth/{i}.png label/{i}.png\n" for i in range(2)
    )
    (root / "train.txt").write_text(lines)
    (root / "val.txt").write_text(lines)
    return root


def fake_expert(path: Path, modality: str, data_root: Path) -> Path:
    """A unimodal checkpoint header (kind expert) without weights: enough to fail validation."""
    cfg = config_from_dict(
        {
            "data": {"root": str(data_root), "modalities": [modality], "height_px": 32, "width_px": 64},
            "model": {"num_classes": 9},
            "train": {"device": "cpu", "batch_size": 2},
        }
    )
    payload = checkpoint_header(
        kind="expert",
        num_classes=9,
        modalities=[modality],
        in_channels={modality: 1 if modality == "depth" else 3},
        model={},
        config=config_to_dict(cfg),
    )
    return save_checkpoint(path, payload)


def test_verbs_are_registered_and_have_help():
    assert COMMANDS["train-fusion"] == "fusionseg.cli.train_fusion"
    assert COMMANDS["train-pipeline"] == "fusionseg.cli.train_pipeline"
    runner = CliRunner()
    from fusionseg.cli import cli

    for verb in ("train-fusion", "train-pipeline"):
        result = runner.invoke(cli, [verb, "--help"])
        assert result.exit_code == 0 and "Examples" in result.output


def test_parse_experts_keeps_order_and_refuses_bad_entries():
    assert list(parse_experts(["depth=b.pt", "rgb=a.pt"])) == ["depth", "rgb"]
    with pytest.raises(ConfigError, match="expected MODALITY=CHECKPOINT"):
        parse_experts(["rgb"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_experts(["rgb=a.pt", "rgb=b.pt"])


def test_bad_experts_give_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(["train-fusion", "--experts", "rgb"], capsys)
    assert code == 2 and err.count("\n") == 1 and "expected MODALITY=CHECKPOINT" in err
    code, _, err = run(
        ["train-fusion", "--experts", f"rgb={tmp_path / 'x.pt'}", f"depth={tmp_path / 'y.pt'}"], capsys
    )
    assert code == 2 and "checkpoint not found" in err and err.count("\n") == 1
    code, _, err = run(["train-fusion"], capsys)
    assert code == 2 and "--experts" in err


def test_modality_mismatch_names_the_file(tmp_path, dataset, capsys):
    rgb = fake_expert(tmp_path / "rgb.pt", "rgb", dataset)
    depth = fake_expert(tmp_path / "depth.pt", "depth", dataset)
    code, _, err = run(
        [
            "train-fusion",
            "--scheme",
            "ssma",
            "--experts",
            f"rgb={depth}",
            f"depth={rgb}",
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1
    assert "modality mismatch" in err and "depth.pt" in err


def test_class_count_mismatch_via_set(tmp_path, dataset, capsys):
    rgb = fake_expert(tmp_path / "rgb.pt", "rgb", dataset)
    depth = fake_expert(tmp_path / "depth.pt", "depth", dataset)
    args = ["train-fusion", "--experts", f"rgb={rgb}", f"depth={depth}", "--set", "model.num_classes=12"]
    code, _, err = run(args, capsys)
    assert code == 2 and "model.num_classes" in err


def test_pipeline_config_errors(tmp_path, capsys):
    code, _, err = run(["train-pipeline", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "cannot read config" in err
    cfg = tmp_path / "one.yaml"
    cfg.write_text(f"data:\n  modalities: [rgb]\ntrain:\n  out_dir: {tmp_path / 'run'}\n")
    code, _, err = run(["train-pipeline", str(cfg)], capsys)
    assert code == 2 and "at least two modalities" in err
    code, _, err = run(["train-pipeline", str(cfg), "--set", "fusion.pipeline_schemes=[late]"], capsys)
    assert code == 2 and "fusion.pipeline_schemes" in err
