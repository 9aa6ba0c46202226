"""fusionseg's SSMA and CMoDE heads against the original graphs run by TensorFlow.

`tests/fixtures/deepscene-fused/` holds the authors' `SSMA._setup` and `CMoDE._setup` (released code,
patched only for TF2 / Python 3, narrow widths) run by TensorFlow 2.21 on seeded taps, the TF1 bundles
TensorFlow wrote and its outputs (`tools/make_fused_tf_fixture.py`, fixture README). Each bundle is read
by `tfimport.bundle` and mapped by the real rules (`ssma_head_rules`, `cmode_head_rules`); the modules
must give TensorFlow's outputs to float32 rounding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fusionseg.backbones.features import FeatureSpec
from fusionseg.cli import main
from fusionseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
from fusionseg.errors import CheckpointError
from fusionseg.fusion.cmode import CMoDE
from fusionseg.fusion.fused import SSMAModel
from fusionseg.tfimport.bundle import TFCheckpoint, model_tensors
from fusionseg.tfimport.mapping import apply_mapping, cmode_head_rules, ssma_head_rules

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "deepscene-fused"
WIDTH = 32  # eASPP / decoder width of the fixture (256 in the released models)
CLASSES = 5
TOLERANCE = 1e-4  # float32 rounding of a few hundred-term sums; a wrong rule is off by O(1)


class TapStub(nn.Module):
    """Stands in for an AdapNet++ trunk: publishes its taps' shapes and returns the given taps."""

    def __init__(self) -> None:
        super().__init__()
        self.in_channels = 3
        self.feature_info = {
            "skip1": FeatureSpec(24, 4),
            "skip2": FeatureSpec(24, 8),
            "easpp": FeatureSpec(WIDTH, 16),
        }

    def forward(self, taps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return taps


class Head(nn.Module):
    """The non-expert part of a fused model, under the model's own key names."""

    def __init__(self, **parts: nn.Module) -> None:
        super().__init__()
        for name, part in parts.items():
            self.add_module(name, part)


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


def read_fixture(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(TF tensors read by fusionseg's bundle reader, TensorFlow's inputs and outputs)."""
    reader = TFCheckpoint(FIXTURES / name / "model.ckpt-1")
    tensors = {key: reader.read(info.key) for key, info in model_tensors(reader).items()}
    with np.load(FIXTURES / name / "io.npz") as io:
        return tensors, dict(io)


def ssma_model(tensors: dict[str, np.ndarray]) -> SSMAModel:
    model = SSMAModel({"rgb": TapStub(), "depth": TapStub()}, num_classes=CLASSES).eval()
    head = Head(fusion=model.fusion, decoder=model.decoder)
    head.load_state_dict(apply_mapping(ssma_head_rules(model), tensors, head), strict=True)
    return model


def ssma_inputs(io: dict[str, np.ndarray], order: tuple[int, int] = (1, 2)) -> dict:
    taps = ("easpp", "skip1", "skip2")
    return {m: {t: nchw(io[f"m{i}_{t}"]) for t in taps} for m, i in zip(("rgb", "depth"), order)}


def test_ssma_head_reproduces_tensorflow() -> None:
    tensors, io = read_fixture("ssma")
    model = ssma_model(tensors)
    with torch.no_grad():
        out = model(ssma_inputs(io))
    assert out.logits.shape == (2, CLASSES, 64, 96)
    assert (out.logits - nchw(io["logits"])).abs().max() <= TOLERANCE
    for tap in ("easpp", "skip1", "skip2"):  # the three SSMA blocks, by stride (§7 naming swap)
        assert (out.taps[tap] - nchw(io[f"fused_{tap}"])).abs().max() <= TOLERANCE, tap
    # the decoder's global-context gates (conv550 on the stride-8 skip, conv551 on the stride-4 skip):
    # the gated skip is what the first 3x3 conv of each stage reads after the deconv output
    gated: dict[str, torch.Tensor] = {}

    def keep_skip(tap: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            gated[tap] = args[0][:, WIDTH:]  # concat [up (WIDTH maps), gated skip (24)]

        return hook

    for tap in ("skip2", "skip1"):
        model.decoder.stages[tap].fuse[0].register_forward_hook(keep_skip(tap))
    with torch.no_grad():
        model(ssma_inputs(io))
    for tap in ("skip2", "skip1"):
        assert (gated[tap] - nchw(io[f"gated_{tap}"])).abs().max() <= TOLERANCE, tap


def test_ssma_fusion_order_matters() -> None:
    """Feeding modality 2 to the `rgb` expert slot changes the output: the parity above pins the order."""
    tensors, io = read_fixture("ssma")
    model = ssma_model(tensors)
    with torch.no_grad():
        swapped = model(ssma_inputs(io, order=(2, 1))).logits
    assert (swapped - nchw(io["logits"])).abs().max() > 0.1


def cmode_module(tensors: dict[str, np.ndarray], grid: tuple[int, int]) -> CMoDE:
    fusion = CMoDE(2 * WIDTH, CLASSES, pool_hw=grid).eval()
    head = Head(fusion=fusion)
    head.load_state_dict(apply_mapping(cmode_head_rules(head), tensors, head), strict=True)
    return fusion


def test_cmode_head_reproduces_tensorflow() -> None:
    tensors, io = read_fixture("cmode")
    grid = io["m1_easpp"].shape[1:3]  # (4, 6): the fixture's stride-16 grid (24 x 48 at 384x768)
    fusion = cmode_module(tensors, grid)
    features = [nchw(io["m1_easpp"]), nchw(io["m2_easpp"])]
    logits = [nchw(io["m1_logits"]), nchw(io["m2_logits"])]
    with torch.no_grad():
        weights = fusion.class_weights(features)  # (B, C, 2): [:, c, 0] weights modality 1
        out = fusion(features, logits)
    softmax = torch.from_numpy(io["gate_softmax"])  # (B, C, 2): TF's (o, p) per class
    assert (weights - softmax.flip(-1)).abs().max() <= 1e-5  # §8: p weights modality 1
    assert softmax.min() < 0.2 and softmax.max() > 0.8  # the gates do not sit at 0.5: the test can see
    assert (out - nchw(io["logits"])).abs().max() <= TOLERANCE


def test_cmode_flatten_order_is_nhwc() -> None:
    """With the FC rows permuted to NCHW order (a plausible converter mistake) the gates differ (§8)."""
    tensors, io = read_fixture("cmode")
    grid = io["m1_easpp"].shape[1:3]
    h, w = grid
    for i in range(CLASSES):
        name = f"fc{512 + 3 * i}/weights"
        rows = tensors[name].reshape(h, w, 20, -1).transpose(2, 0, 1, 3).reshape(h * w * 20, -1)
        tensors[name] = rows
    fusion = cmode_module(tensors, grid)
    features = [nchw(io["m1_easpp"]), nchw(io["m2_easpp"])]
    with torch.no_grad():
        weights = fusion.class_weights(features)
    assert (weights - torch.from_numpy(io["gate_softmax"]).flip(-1)).abs().max() > 1e-2


def test_a_missing_head_tensor_is_named() -> None:
    tensors, _ = read_fixture("ssma")
    del tensors["conv550/BatchNorm/moving_mean"]
    model = SSMAModel({"rgb": TapStub(), "depth": TapStub()}, num_classes=CLASSES)
    head = Head(fusion=model.fusion, decoder=model.decoder)
    with pytest.raises(CheckpointError, match="lacks tensor 'conv550/BatchNorm/moving_mean'"):
        apply_mapping(ssma_head_rules(model), tensors, head)


FULL = os.environ.get("FUSIONSEG_FUSED_TF_FULL")


@pytest.mark.slow
@pytest.mark.skipif(
    not FULL, reason="set FUSIONSEG_FUSED_TF_FULL to a `make_fused_tf_fixture.py --full` folder"
)
@pytest.mark.parametrize("model", ["ssma", "cmode"])
def test_complete_graph_reproduces_tensorflow(model: str, tmp_path: Path) -> None:
    """The released graph, complete (two full experts, 12 classes, 384x768, 225 / 388 MB: not
    committed), through the real reader, `import-deepscene` and the fused model."""
    folder = Path(str(FULL)) / model
    out = tmp_path / f"{model}.pt"
    args = ["import-deepscene", str(folder), "--dataset", "cityscapes11", "--modalities", "rgb,hha"]
    assert main([*args, "--out", str(out)]) == 0
    payload = load_checkpoint(out)
    assert payload["kind"] == model
    net = model_from_checkpoint(payload).eval()
    with np.load(folder / "io.npz") as io:
        inputs = {m: nchw(io[f"modality{i}_bgr"].astype(np.float32)) for i, m in ((1, "rgb"), (2, "hha"))}
        expected = nchw(io["logits"])
    with torch.no_grad():
        logits = net(inputs).logits
    agreement = (logits.argmax(1) == expected.argmax(1)).float().mean().item()
    # the generator calibrates the BN statistics, so logits are of order 10 (40 measured for SSMA)
    relative = ((logits - expected).abs().max() / expected.abs().max()).item()
    delta = (logits - expected).abs().max().item()
    print(f"{model}: logits up to {expected.abs().max().item():.3g}, max |dlogit| {delta:.2e} (relative "
          f"{relative:.2e}), argmax agreement {agreement:.5%}")  # fmt: skip
    assert agreement >= 0.999  # deepscene-tf.md §9: any mapping mistake flips tens of percent
    assert relative <= 1e-4
