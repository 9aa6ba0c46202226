"""Exports of real AdapNet++ and SSMA checkpoints: ONNX checked with onnxruntime at two spatial sizes,
TorchScript, torch.export and safetensors round trips, and the `fusionseg export` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fusionseg.cli import main
from fusionseg.config import config_from_dict, config_to_dict
from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
from fusionseg.engine.export import NOISE_FACTOR, export_model
from fusionseg.engine.inference import load_for_inference
from fusionseg.errors import FusionsegError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

NUM_CLASSES = 5
SIZE_HW = (64, 128)
OTHER_HW = (96, 160)  # a second spatial size: the graphs must not have baked the first one in
# Parity bound (as export_model's): 1e-3 plus NOISE_FACTOR (8) times PyTorch's own float32 error on the
# same input (|float32 - float64| logits). These untrained 100-layer models amplify rounding: PyTorch
# float32 is 2e-3..8e-3 from float64 on logits of 20-300, onnxruntime 2e-3..1e-2, so no float32 runtime
# meets a flat 1e-3; a wrong graph (resize mode, padding, baked-in size) misses by 1e-1 or more.
LOGIT_ATOL = 1e-3


def _calibrate_bn(model: nn.Module, inputs: object) -> None:
    """Give BN layers the statistics of one batch, as training would, so logits have a realistic scale
    (He-initialised layers on 0-255 input otherwise produce logits of ~1e5)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, the batch statistics
    model.train()
    with torch.no_grad():
        model(inputs)
    for bn in bns:
        bn.momentum = 0.01
    model.eval()


def _save(path: Path, model: nn.Module, cfg, *, kind: str, in_channels: dict[str, int]) -> Path:
    payload = checkpoint_header(
        kind=kind,
        modalities=list(in_channels),
        in_channels=in_channels,
        num_classes=NUM_CLASSES,
        class_names=[f"c{i}" for i in range(NUM_CLASSES)],
        modality_kind={m: "depth" if m == "depth" else "image" for m in in_channels},
        input_size=list(SIZE_HW),
        config=config_to_dict(cfg),
        model=model.state_dict(),
    )
    return save_checkpoint(path, payload)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """AdapNet++ experts (rgb; symmetric and TF `SAME` padding, deepscene-tf.md §4) and an SSMA model
    (rgb + 1-channel depth) at 64x128, 5 classes."""
    from fusionseg.fusion.build import build_model
    from fusionseg.models.adapnet import build_adapnet

    root = tmp_path_factory.mktemp("export")
    data = {"height_px": SIZE_HW[0], "width_px": SIZE_HW[1]}
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"num_classes": NUM_CLASSES}, "data": data})
    expert = build_adapnet(cfg.model, in_channels=3)
    _calibrate_bn(expert, torch.rand(2, 3, *SIZE_HW) * 255)
    tf_cfg = config_from_dict({"model": {"num_classes": NUM_CLASSES, "padding": "tf_same"}, "data": data})
    tf_expert = build_adapnet(tf_cfg.model, in_channels=3)
    _calibrate_bn(tf_expert, torch.rand(2, 3, *SIZE_HW) * 255)
    fcfg = config_from_dict(
        {"model": {"num_classes": NUM_CLASSES}, "data": {**data, "modalities": ["rgb", "depth"]}}
    )
    ssma = build_model(fcfg, in_channels={"rgb": 3, "depth": 1})
    _calibrate_bn(ssma, {"rgb": torch.rand(2, 3, *SIZE_HW) * 255, "depth": torch.rand(2, 1, *SIZE_HW) * 10})
    return {
        "expert": _save(root / "expert.pt", expert, cfg, kind="expert", in_channels={"rgb": 3}),
        "expert_tf_same": _save(root / "tf.pt", tf_expert, tf_cfg, kind="expert", in_channels={"rgb": 3}),
        "ssma": _save(root / "ssma.pt", ssma, fcfg, kind="ssma", in_channels={"rgb": 3, "depth": 1}),
    }


def _inputs(
    channels: dict[str, int], batch: int, size_hw: tuple[int, int], seed: int
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        m: torch.rand(batch, c, *size_hw, generator=gen) * (10.0 if m == "depth" else 255.0)
        for m, c in channels.items()
    }


def _pytorch_logits(checkpoint: Path, inputs: dict[str, torch.Tensor]) -> tuple[np.ndarray, float]:
    """(float32 logits, parity bound = LOGIT_ATOL + NOISE_FACTOR * max |float32 - float64 logits|)."""
    model, payload = load_for_inference(checkpoint)
    outs = []
    for dtype in (torch.float32, torch.float64):
        model = model.to(dtype)
        x = {m: t.to(dtype) for m, t in inputs.items()}
        with torch.no_grad():
            outs.append((model(x["rgb"]) if payload["kind"] == "expert" else model(x)).logits.numpy())
    noise = float(np.abs(outs[0].astype(np.float64) - outs[1]).max())
    return outs[0], LOGIT_ATOL + NOISE_FACTOR * noise


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("expert", {"rgb": 3}),
        ("expert_tf_same", {"rgb": 3}),  # run-time F.pad amounts must not bake in the export size
        # the 56M-parameter fused model takes ~1-2 min to export and check on 2 CPU cores
        pytest.param("ssma", {"rgb": 3, "depth": 1}, marks=pytest.mark.slow),
    ],
)
def test_onnx_matches_pytorch_at_two_sizes(checkpoints, tmp_path: Path, name: str, channels: dict) -> None:
    out = tmp_path / f"{name}.onnx"
    report = export_model(checkpoints[name], out, format="onnx", opset=17)
    assert report.verified and report.dynamic_hw and report.inputs == channels
    assert all(c.max_abs_diff <= LOGIT_ATOL + NOISE_FACTOR * c.float32_noise for c in report.checks)
    assert all(c.label_agreement >= 0.999 for c in report.checks)
    assert [c.size_hw for c in report.checks] == [SIZE_HW, (SIZE_HW[0] + 16, SIZE_HW[1] + 32)]

    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == list(channels)  # named inputs, model order
    assert [o.name for o in proto.graph.output] == ["logits"]
    for tensor in proto.graph.input:  # batch, height and width are symbolic
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
        assert dims[1].dim_value == channels[tensor.name]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["modalities"]) == list(channels) and meta["num_classes"] == str(NUM_CLASSES)

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch, size_hw, seed in ((1, SIZE_HW, 10), (2, OTHER_HW, 11)):
        inputs = _inputs(channels, batch, size_hw, seed)
        got = session.run(["logits"], {m: t.numpy() for m, t in inputs.items()})[0]
        expected, bound = _pytorch_logits(checkpoints[name], inputs)
        assert got.shape == expected.shape == (batch, NUM_CLASSES, *size_hw)
        assert 1.0 < np.abs(expected).max() < 1e4  # calibrated BN (uncalibrated: ~1e5)
        assert bound < 0.1  # float32 noise stays small next to logits of tens of units
        assert np.abs(got - expected).max() <= bound
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated upstream
def test_torchscript_round_trip(checkpoints, tmp_path: Path) -> None:
    report = export_model(checkpoints["expert"], tmp_path / "e.torchscript.pt", format="torchscript")
    assert report.verified
    module = torch.jit.load(str(report.out))
    inputs = _inputs({"rgb": 3}, 1, OTHER_HW, 3)
    with torch.no_grad():
        got = module(inputs["rgb"]).numpy()
    expected, bound = _pytorch_logits(checkpoints["expert"], inputs)
    assert np.abs(got - expected).max() <= bound


@pytest.mark.slow  # tracing with symbolic shapes twice takes ~30 s here
def test_torch_export_with_dynamic_size(checkpoints, tmp_path: Path) -> None:
    report = export_model(checkpoints["ssma"], tmp_path / "s.pt2", format="torch-export")
    assert report.verified and report.dynamic_hw
    program = torch.export.load(str(report.out)).module()
    inputs = _inputs({"rgb": 3, "depth": 1}, 1, OTHER_HW, 4)
    with torch.no_grad():
        got = program(inputs["rgb"], inputs["depth"]).numpy()
    expected, bound = _pytorch_logits(checkpoints["ssma"], inputs)
    assert np.abs(got - expected).max() <= bound


@pytest.mark.slow  # writes and re-reads the 56M-parameter fused model (~1 min here)
def test_safetensors_weights_round_trip(checkpoints, tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    report = export_model(checkpoints["ssma"], tmp_path / "s.safetensors", format="safetensors")
    assert report.verified and report.max_abs_diff == 0.0
    tensors = safetensors.load_file(str(report.out))
    model, _ = load_for_inference(checkpoints["ssma"])
    state = model.state_dict()
    assert set(tensors) == set(state)
    assert all(torch.equal(tensors[k], v) for k, v in state.items())
    with open(report.out, "rb") as fh:  # header: 8-byte length, then JSON with the metadata
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    meta = header["__metadata__"]
    assert meta["kind"] == "ssma" and json.loads(meta["in_channels"]) == {"rgb": 3, "depth": 1}
    assert json.loads(meta["config"])["model"]["num_classes"] == NUM_CLASSES


def test_failed_parity_removes_the_file(checkpoints, tmp_path: Path) -> None:
    out = tmp_path / "e.onnx"
    with pytest.raises(FusionsegError, match="differs from PyTorch"):
        export_model(checkpoints["expert"], out, format="onnx", atol=-1.0)  # nothing can pass
    assert not out.exists()


def test_cli_export_json_and_errors(checkpoints, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.onnx"
    args = ["export", "--checkpoint", str(checkpoints["expert"]), "--out", str(out), "--size", "32x64"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "onnx" and report["verified"] and report["size_hw"] == [32, 64]
    assert report["inputs"] == {"rgb": 3} and out.is_file()
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(checkpoints["expert"]), "--size", "30x64"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert main(["export", "--help"]) == 0
