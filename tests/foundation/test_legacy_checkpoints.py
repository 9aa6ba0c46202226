"""Checkpoints written before the architecture redesign (issue 13) still evaluate, predict and export.

The fixtures in `tests/fixtures/legacy_checkpoints/` were captured at commit 905492c from the demo's
run folders (`capture.py` says how): every metadata field verbatim and every state-dict key with its
shape and dtype. Each test writes a file in that layout, the way that commit's `save_checkpoint` did
(`torch.save` of a plain dict, sha256 sidecar "<digest>  <name>"), with seeded weights, and runs the
CLI on it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusionseg import api
from fusionseg.cli import main
from fusionseg.config import SyntheticConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_checkpoints"
NUM_CLASSES = 9


def _tensor(key: str, shape: list[int], dtype: str, gen: torch.Generator) -> torch.Tensor:
    dt = getattr(torch, dtype.removeprefix("torch."))
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=dt)
    if key.endswith("running_var"):
        return torch.ones(shape, dtype=dt)
    if key.endswith("running_mean") or key.endswith(".bias") or len(shape) <= 1:
        # BN scales near 1, biases and means near 0: outputs stay finite and well scaled
        base = 1.0 if key.endswith(".weight") else 0.0
        return (base + 0.05 * torch.randn(shape, generator=gen)).to(dt)
    fan_in = math.prod(shape[1:])
    return (torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)).to(dt)


def write_legacy(name: str, path: Path, *, expert_paths: dict[str, Path] | None = None) -> dict:
    """Write the fixture `name` as a checkpoint file in the pre-redesign format; returns its payload."""
    with gzip.open(FIXTURES / f"{name}.json.gz", "rt", encoding="utf-8") as f:
        payload = json.load(f)
    gen = torch.Generator().manual_seed(0)
    payload["model"] = {key: _tensor(key, *desc["__tensor__"], gen) for key, desc in payload["model"].items()}
    for entry in payload.get("experts", []):  # point the provenance at this test's expert files
        if expert_paths is not None:
            entry["path"] = str(expert_paths[entry["modality"]])
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return payload


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("legacy")
    experts = {m: root / f"expert-{m}.pt" for m in ("rgb", "depth")}
    for m, path in experts.items():
        write_legacy(f"expert-{m}", path)
    paths = dict(experts)
    for scheme in ("ssma", "cmode"):
        paths[scheme] = root / f"{scheme}.pt"
        write_legacy(scheme, paths[scheme], expert_paths=experts)
    return {"rgb": experts["rgb"], "depth": experts["depth"], **paths}


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    api.make_synthetic(root, SyntheticConfig(num_frames=8, height_px=64, width_px=128, workers=1))
    return root


def test_fixtures_keep_the_pre_redesign_layout() -> None:
    """The fixtures themselves: the metadata and key names the redesign must keep reading."""
    with gzip.open(FIXTURES / "ssma.json.gz", "rt", encoding="utf-8") as f:
        ssma = json.load(f)
    assert ssma["format"] == "fusionseg-checkpoint" and ssma["format_version"] == 1
    assert ssma["kind"] == "ssma" and ssma["modalities"] == ["rgb", "depth"]
    assert "experts.rgb.encoder.stem.input_bn.weight" in ssma["model"]
    with gzip.open(FIXTURES / "expert-rgb.json.gz", "rt", encoding="utf-8") as f:
        expert = json.load(f)
    assert expert["kind"] == "expert" and expert["modality"] == "rgb"
    assert "trunk.encoder.stem.input_bn.weight" in expert["model"]


@pytest.mark.parametrize("name", ["rgb", "depth", "ssma", "cmode"])
def test_legacy_checkpoint_evaluates(name: str, legacy: dict[str, Path], frames: Path, tmp_path, capsys):
    capsys.readouterr()
    args = ["evaluate", "--checkpoint", str(legacy[name]), "--data", str(frames / "val.txt"), "--json"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] > 0 and 0 <= report["miou"] <= 1
    assert np.load(tmp_path / "confusion.npy").shape == (NUM_CLASSES, NUM_CLASSES)


@pytest.mark.parametrize("name", ["rgb", "ssma", "cmode"])
def test_legacy_checkpoint_predicts(name: str, legacy: dict[str, Path], frames: Path, tmp_path, capsys):
    capsys.readouterr()
    args = ["predict", "--checkpoint", str(legacy[name]), str(frames / "val.txt"), "--out", str(tmp_path)]
    args += ["--depth-scale", "mm"]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"]
    for frame in summary["frames"]:
        labels = cv2.imread(frame["outputs"]["labels"], cv2.IMREAD_UNCHANGED)
        assert labels.shape == (64, 128) and labels.max() < NUM_CLASSES


@pytest.mark.parametrize("name", ["rgb", "ssma"])
def test_legacy_checkpoint_exports(name: str, legacy: dict[str, Path], tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / f"{name}.onnx"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(legacy[name]), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and report["verified"] and report["kind"] == legacy_kind(name)
    assert report["checks"] and all(check["ok"] for check in report["checks"])


def legacy_kind(name: str) -> str:
    return "expert" if name in ("rgb", "depth") else name
