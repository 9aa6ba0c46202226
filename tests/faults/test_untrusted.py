"""Untrusted input: a checkpoint or config from the internet cannot run code; list files cannot reach
outside the dataset; bad image files are reported per file.

The malicious files here would run a shell command that creates a marker file; each test first shows
that an unsafe loader does run it, then that every fusionseg entry point refuses the file and the
marker never appears.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import shlex
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from faults_helpers import ROOT, build_tiny_trainer, make_dataset

from fusionseg import api
from fusionseg.config import DataConfig, load_config
from fusionseg.data.dataset import build_dataset
from fusionseg.engine.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, sidecar_path
from fusionseg.engine.inference import load_for_inference
from fusionseg.errors import CheckpointError, ConfigError, DataError

pytestmark = pytest.mark.faults


class Exploit:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _evil_checkpoint(path: Path, marker: Path, style: str) -> Path:
    """A file that looks like a fusionseg checkpoint, with a valid sha256 sidecar, carrying an exploit."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "expert",
        "modalities": ["rgb"],
        "model": {"w": torch.zeros(2)},
        "hook": Exploit(marker),
    }
    if style == "raw-pickle":
        data = pickle.dumps(payload)
    else:
        buffer = io.BytesIO()
        torch.save(payload, buffer, _use_new_zipfile_serialization=style == "zip")
        data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sidecar_path(path).write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "EXPLOITED"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("style", ["zip", "legacy", "raw-pickle"])
def test_malicious_checkpoint_would_run_code_but_is_refused(tmp_path: Path, marker: Path, style: str) -> None:
    evil = _evil_checkpoint(tmp_path / "evil.pt", marker, style)
    if style == "raw-pickle":
        pickle.loads(evil.read_bytes())
    else:
        torch.load(evil, weights_only=False)
    assert marker.exists(), "the test file must be a working exploit"
    marker.unlink()

    for require_sidecar in (False, True):
        with pytest.raises(CheckpointError, match="refused to load"):
            load_checkpoint(evil, require_sidecar=require_sidecar)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_for_inference(evil)  # evaluate, predict and export load through it
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore")
def test_every_checkpoint_entry_point_refuses_the_exploit(tmp_path: Path, marker: Path) -> None:
    evil = _evil_checkpoint(tmp_path / "evil.pt", marker, "zip")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    calls = {
        "evaluate": lambda: api.evaluate(evil, tmp_path / "list.txt"),
        "predict": lambda: api.predict(evil, [image], tmp_path / "pred"),
        "export": lambda: api.export_model(evil, tmp_path / "evil.onnx"),
    }
    for name, call in calls.items():
        with pytest.raises(CheckpointError, match="refused to load"):
            call()
        assert not marker.exists(), name

    # resuming a run whose newest checkpoint was replaced (with a matching sidecar)
    run = tmp_path / "run"
    build_tiny_trainer(run, iterations=2, ckpt_every=2).fit()
    for name in ("last.pt", "ckpt-00000002.pt"):
        (run / name).unlink()  # drop the hard link first: never write through it into the other file
        _evil_checkpoint(run / name, marker, "zip")
    with pytest.raises(CheckpointError, match="no intact checkpoint.*refused to load"):
        build_tiny_trainer(run, iterations=4, ckpt_every=2).fit(resume=True)

    # ImageNet initialisation from a downloaded ResNet-50 file
    from fusionseg.backbones.init import load_imagenet_init
    from fusionseg.backbones.resnet import MultiscaleResNet50

    with pytest.raises(CheckpointError, match="not a PyTorch state-dict file"):
        load_imagenet_init(MultiscaleResNet50(), evil)
    assert not marker.exists()


# (module path, function) pairs that read back bytes the same call has just produced (export checks)
_SELF_PRODUCED = {
    ("fusionseg/engine/export.py", "_torchscript_run"),
    ("fusionseg/engine/export.py", "_torch_export_run"),
}


def _calls(tree: ast.AST):
    """(enclosing function name, dotted callee, call node) for every call in a module."""
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, func = stack.pop()
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Call):
                yield name, ast.unparse(child.func), child
            stack.append((child, name))


def test_no_unsafe_deserialisation_in_the_library() -> None:
    """Static guard: torch.load only with weights_only=True; no pickle/marshal/yaml.load/eval/exec,
    no numpy pickles; TorchScript/torch.export loading only of self-produced bytes."""
    problems, torch_loads = [], 0
    for path in sorted((ROOT / "fusionseg").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for func, callee, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            keywords = {k.arg: k.value for k in call.keywords}
            where = f"{rel}:{call.lineno} {callee}"
            if callee == "torch.load":
                torch_loads += 1
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where} without weights_only=True")
            elif callee.split(".")[-1] in ("loads", "load", "Unpickler") and callee.split(".")[0] in (
                "pickle",
                "marshal",
                "dill",
                "cloudpickle",
            ):
                problems.append(where)
            elif callee in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
                problems.append(where)
            elif callee in ("eval", "exec", "compile", "__import__"):
                problems.append(where)
            elif callee in ("np.load", "numpy.load"):
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where} with allow_pickle")
            elif callee in ("torch.jit.load", "torch.export.load") and (rel, func) not in _SELF_PRODUCED:
                problems.append(f"{where} outside the export self-checks")
    assert not problems, problems
    assert torch_loads >= 2  # the scan sees the checkpoint and ImageNet-init loaders


DANGEROUS_YAML = [
    "!!python/object/apply:os.system ['touch {m}']",
    "!!python/object/new:os.system ['touch {m}']",
    "!!python/name:os.system",
    "!!python/module:os",
]


@pytest.mark.parametrize("tag", DANGEROUS_YAML, ids=["apply", "new", "name", "module"])
def test_yaml_python_tags_are_refused_in_files_and_overrides(tmp_path: Path, marker: Path, tag: str) -> None:
    value = tag.format(m=marker)
    if "apply" in tag:
        yaml.unsafe_load(f"x: {value}")
        assert marker.exists(), "the test YAML must be a working exploit"
        marker.unlink()
    config = tmp_path / "evil.yaml"
    config.write_text(f"train:\n  out_dir: {value}\n")
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        load_config(config)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, [f"train.out_dir={value}"])
    assert not marker.exists()


def test_yaml_alias_bomb_gives_a_short_error(tmp_path: Path) -> None:
    """Nine levels of nine aliases: 387 million strings if expanded, a few hundred bytes of YAML."""
    levels = ["&a0 [" + ", ".join(["x"] * 9) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("model:\n  num_classes: [" + ", ".join(levels) + "]\n")
    assert bomb.stat().st_size < 1000
    with pytest.raises(ConfigError, match="model.num_classes: expected an integer") as info:
        load_config(bomb)
    assert len(str(info.value)) < 1000  # the value is abbreviated, never expanded


# ---------------------------------------------------------------------------------------------------
# Dataset lists and files
# ---------------------------------------------------------------------------------------------------


def test_dataset_lists_cannot_escape_the_root_unless_allowed(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    for column in ("rgb", "label"):
        (outside / f"{column}.png").write_bytes((root / "train" / column / "000000.png").read_bytes())
    cfg = DataConfig(root=str(root), dataset="synthetic", modalities=("rgb",), height_px=48, width_px=64)
    entries = (("../outside/{c}.png", "leaves the list's folder"), (f"{outside}/{{c}}.png", "absolute"))
    for entry, kind in entries:
        row = f"{entry.format(c='rgb')} {entry.format(c='label')}"
        (root / "train.txt").write_text(f"# columns: rgb label\n{row}\n")
        with pytest.raises(DataError, match=rf"{kind}.*data.allow_absolute_paths=true"):
            build_dataset(cfg, "train", num_classes=9)
        allowed = build_dataset(replace(cfg, allow_absolute_paths=True), "train", num_classes=9)
        assert allowed[0]["inputs"]["rgb"].shape == (3, 48, 64)


def _png_with_size(width: int, height: int) -> bytes:
    """A 1x1 8-bit PNG whose header claims another size (CRC fixed, so only the size is wrong)."""
    data = bytearray(cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _jpeg_with_size(width: int, height: int) -> bytes:
    """An 8x8 JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


# kind -> (column of the bad file, its bytes from the good file's, words of the expected message)
BAD_FILES = {
    "truncated": ("rgb", lambda good: good[: len(good) // 2], "not a readable image"),
    "empty": ("label", lambda good: b"", "file is empty"),
    "garbage": ("depth", lambda good: bytes(range(256)) * 2, "not a readable image"),
    "16-bit colour": ("rgb", lambda good: _png(np.zeros((48, 64, 3), np.uint16)), "expected an 8-bit image"),
    "8-bit depth": ("depth", lambda good: _png(np.ones((48, 64), np.uint8)), "depth is 8-bit"),
    "colour label": ("label", lambda good: _png(np.ones((48, 64, 3), np.uint8)), "3 channels"),
    "huge png": ("rgb", lambda good: _png_with_size(60_000, 60_000), "pixel limit"),
    "huge jpeg": ("rgb", lambda good: _jpeg_with_size(60_000, 60_000), "pixel limit"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_training_files_are_reported_by_name(tmp_path: Path, kind: str) -> None:
    root = make_dataset(tmp_path / "ds", 3)
    column, make, words = BAD_FILES[kind]
    bad = root / "train" / column / "000001.png"
    bad.write_bytes(make(bad.read_bytes()))
    cfg = DataConfig(
        root=str(root), dataset="synthetic", modalities=("rgb", "depth"), height_px=48, width_px=64
    )
    dataset = build_dataset(cfg, "train", num_classes=9)  # frames 000000-000002, in order
    assert dataset[0]["label"].shape == (48, 64)  # the good ones still load
    with pytest.raises(DataError, match=words) as info:
        dataset[1]
    assert str(bad) in str(info.value)


def test_yaml_tag_error_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "evil.yaml"
    config.write_text("train:\n  out_dir: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert "\n" not in message and "line 2" in message and "no tags" in message, message
