"""Robustness evaluation: seeded corruptions, dropped modalities, gate reports (SSMA and CMoDE)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fusion_helpers import NUM_CLASSES, TinyExpert, TinyTrunk, fusion_config

from fusionseg.config import config_to_dict
from fusionseg.data.catalog import SYNTHETIC
from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
from fusionseg.engine.robustness import (
    FOG_AIRLIGHT_GREY,
    FOG_TRANSMISSION,
    Degradation,
    GateRecorder,
    GateReport,
    corrupt,
    parse_degradations,
    render_gate_plot,
)
from fusionseg.errors import ConfigError
from fusionseg.fusion.build import build_model
from fusionseg.fusion.cmode import CMoDE
from fusionseg.fusion.fused import CMoDEModel, SSMAModel
from fusionseg.workflows.robustness import evaluate_robustness


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_parse_degradations():
    assert parse_degradations(["rgb=fog", "depth=noise"], ["hha"]) == {
        "rgb": "fog",
        "depth": "noise",
        "hha": "zero",
    }
    with pytest.raises(ConfigError, match="expected MODALITY=KIND"):
        parse_degradations(["rgb"])
    with pytest.raises(ConfigError, match="unknown corruption 'rain'"):
        parse_degradations(["rgb=rain"])
    with pytest.raises(ConfigError, match="applies to image modalities"):
        parse_degradations(["depth=dark"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_degradations(["rgb=fog"], ["rgb"])
    with pytest.raises(ConfigError, match="modalities are rgb, depth"):
        parse_degradations(["hha=fog"], modalities=["rgb", "depth"])


def test_corruptions_in_raw_units():
    x = torch.full((3, 8, 8), 100.0)
    assert torch.equal(corrupt(x, "zero", is_depth=False, generator=gen()), torch.zeros_like(x))
    fog = corrupt(torch.zeros(3, 4, 4), "fog", is_depth=False, generator=gen())
    assert torch.allclose(fog, torch.full_like(fog, FOG_AIRLIGHT_GREY * (1 - FOG_TRANSMISSION)))
    noisy = corrupt(x, "noise", is_depth=False, generator=gen())
    assert noisy.min() >= 0 and noisy.max() <= 255 and not torch.equal(noisy, x)
    assert torch.equal(noisy, corrupt(x, "noise", is_depth=False, generator=gen()))  # seeded
    assert corrupt(x, "dark", is_depth=False, generator=gen()).mean() < 40
    depth = torch.full((1, 32, 32), 4.0)
    noisy_d = corrupt(depth, "noise", is_depth=True, generator=gen())
    assert (noisy_d == 0).any() and (noisy_d >= 0).all()
    valid = noisy_d[noisy_d > 0]
    assert abs(valid.mean().item() - 4.0) < 0.1
    with pytest.raises(ValueError, match="does not apply to depth"):
        corrupt(depth, "fog", is_depth=True, generator=gen())
    assert torch.equal(x, torch.full((3, 8, 8), 100.0))  # input untouched


def test_degradation_is_independent_of_batch_size_and_keeps_inputs():
    torch.manual_seed(0)
    batch = {"rgb": 255 * torch.rand(4, 3, 8, 8), "depth": 5 * torch.rand(4, 1, 8, 8)}
    original = {k: v.clone() for k, v in batch.items()}
    whole = Degradation({"rgb": "noise", "depth": "noise"}, seed=3)(batch)
    split = Degradation({"rgb": "noise", "depth": "noise"}, seed=3)
    parts = [split({k: v[:2] for k, v in batch.items()}), split({k: v[2:] for k, v in batch.items()})]
    for k in batch:
        assert torch.equal(batch[k], original[k])
        assert torch.equal(whole[k], torch.cat([p[k] for p in parts]))
    other_seed = Degradation({"rgb": "noise"}, seed=4)(batch)
    assert not torch.equal(other_seed["rgb"], whole["rgb"])
    assert other_seed["depth"] is batch["depth"]  # untouched modality passes through


def test_degradation_respects_normalisation():
    norm = {"rgb": ((100.0, 100.0, 100.0), (50.0, 50.0, 50.0))}
    batch = {"rgb": torch.randn(2, 3, 4, 4)}
    zeroed = Degradation({"rgb": "zero"}, normalization=norm)(batch)
    assert torch.allclose(zeroed["rgb"], torch.full_like(batch["rgb"], -2.0))  # raw 0 -> (0 - 100) / 50


def tiny_ssma() -> SSMAModel:
    torch.manual_seed(0)
    return SSMAModel(
        {m: TinyTrunk(3) for m in ("rgb", "depth")}, num_classes=4, deep_reduction=4, skip_reduction=2
    )


def test_ssma_gate_report_splits_gate_by_modality():
    model = tiny_ssma().eval()
    seen: dict[str, list[torch.Tensor]] = {}
    for tap, block in model.fusion.items():
        block.gate.register_forward_hook(lambda m, i, o, tap=tap: seen.setdefault(tap, []).append(o.detach()))
    x = [{m: 255 * torch.rand(2, 3, 32, 64) for m in ("rgb", "depth")} for _ in range(2)]
    with GateRecorder(model) as rec, torch.no_grad():
        for batch in x:
            model(batch)
    report = rec.report()
    assert report.scheme == "ssma" and report.images == 4 and report.modalities == ("rgb", "depth")
    assert report.rows == ("easpp (stride 16)", "skip2 (stride 8)", "skip1 (stride 4)")
    for row, values in zip(report.rows, report.values):
        gates = torch.cat(seen[row.split()[0]])  # (4, 2F, h, w)
        f = gates.shape[1] // 2
        expected = (gates[:, :f].mean().item(), gates[:, f:].mean().item())
        assert values == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        model(x[0])  # hooks are gone after the block
    assert rec.images == 4


def test_cmode_gate_report_weights_per_class():
    torch.manual_seed(0)
    model = CMoDEModel({"rgb": TinyExpert(), "depth": TinyExpert()}, num_classes=3, mode="light").eval()
    assert isinstance(model.fusion, CMoDE)
    with GateRecorder(model, class_names=["void", "a", "b"]) as rec, torch.no_grad():
        model({m: torch.rand(2, 3, 32, 64) for m in ("rgb", "depth")})
    report = rec.report()
    assert report.scheme == "cmode" and report.rows == ("void", "a", "b")
    assert all(sum(v) == pytest.approx(1.0) for v in report.values)
    with pytest.raises(ValueError, match="no forward pass"):
        GateRecorder(model).report()


def test_gate_plot_draws_bars():
    a = GateReport(
        "ssma", ("rgb", "depth"), ("easpp (stride 16)", "skip2 (stride 8)"), ((0.2, 0.9), (0.5, 0.5)), 3
    )
    b = GateReport("ssma", ("rgb", "depth"), a.rows, ((0.9, 0.2), (0.5, 0.5)), 3)
    img_a, img_b = render_gate_plot(a), render_gate_plot(b)
    assert img_a.dtype == np.uint8 and img_a.ndim == 3 and img_a.shape[2] == 3
    assert (img_a < 250).any() and not np.array_equal(img_a, img_b)


@pytest.fixture(scope="module")
def fused_ckpt(tmp_path_factory):
    """An (untrained) SSMA checkpoint in the trainer's format, for evaluation."""
    cfg = fusion_config(fusion={"scheme": "ssma"}, data={"modalities": ["rgb", "hha"]})
    torch.manual_seed(0)
    model = build_model(cfg, in_channels={"rgb": 3, "hha": 3})
    payload = checkpoint_header(
        kind="ssma",
        num_classes=NUM_CLASSES,
        modalities=["rgb", "hha"],
        in_channels={"rgb": 3, "hha": 3},
        class_names=list(SYNTHETIC.classes),
        normalization={},
        step=0,
        model=model.state_dict(),
        config=config_to_dict(cfg),
    )
    return save_checkpoint(tmp_path_factory.mktemp("fused") / "ssma.pt", payload)


@pytest.fixture(scope="module")
def hha_data(tmp_path_factory):
    from fusion_helpers import write_dataset

    return write_dataset(tmp_path_factory.mktemp("hha"), columns=("rgb", "hha"), n_train=1, n_val=2)


def test_evaluate_robustness_with_gate_report(tmp_path, fused_ckpt, hha_data):
    report = evaluate_robustness(
        fused_ckpt, hha_data / "val.txt", drop=["hha"], gate_report=True, out_dir=tmp_path, device="cpu"
    )
    assert report.degradations == {"hha": "zero"}
    assert report.evaluation.num_images == 2
    assert report.gates is not None and report.gates.images == 2
    assert report.gates.modalities == ("rgb", "hha") and len(report.gates.rows) == 3
    assert (tmp_path / "gates.png").exists()
    assert json.loads((tmp_path / "gates.json").read_text())["scheme"] == "ssma"
    with pytest.raises(ConfigError, match="uses rgb, hha"):
        evaluate_robustness(fused_ckpt, hha_data / "val.txt", degrade=["depth=noise"], device="cpu")


def test_evaluate_cli_degrade_and_gates_json(fused_ckpt, hha_data):
    from fusionseg.cli import cli

    args = [
        "evaluate",
        "--checkpoint",
        str(fused_ckpt),
        "--data",
        str(hha_data / "val.txt"),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(cli, [*args, "--degrade", "rgb=fog", "--gate-report", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert data["degradations"] == {"rgb": "fog"} and data["gates"]["scheme"] == "ssma"
    assert set(data["gates"]["rows"]["easpp (stride 16)"]) == {"rgb", "hha"}


def _bar_lengths(img: np.ndarray, colour: tuple[int, int, int], *, below_px: int = 50) -> list[int]:
    """Lengths (pixels along x) of the solid bars of one colour, top to bottom (legend excluded)."""
    mask = np.all(img == np.array(colour, np.uint8), axis=2)
    mask[:below_px] = False  # the legend swatches sit above the plot
    rows = np.flatnonzero(mask.any(axis=1))
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if rows.size else []
    return [int(mask[band[len(band) // 2]].sum()) for band in bands]


def test_gate_plot_bar_lengths_are_the_values():
    """Bars are drawn proportional to the gate values on a shared 0..1 axis (read back from pixels)."""
    from fusionseg.engine.robustness import _COLOURS_BGR

    values = ((0.2, 0.9), (0.5, 0.5), (1.0, 0.05))
    report = GateReport("ssma", ("rgb", "depth"), ("easpp", "skip2", "skip1"), values, 3)
    img = render_gate_plot(report)
    lengths = [_bar_lengths(img, _COLOURS_BGR[i]) for i in range(2)]  # per modality, per row
    assert [len(per_modality) for per_modality in lengths] == [3, 3]
    full = lengths[0][2]  # the bar of value 1.0 spans the whole axis
    for i in range(2):
        for r, row in enumerate(values):
            assert abs(lengths[i][r] - row[i] * full) <= 2, (i, r, lengths)
