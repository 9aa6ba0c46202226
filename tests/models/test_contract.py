"""The model contract, run over every registered kind (`fusionseg.registry.MODEL_KINDS`).

One test per property, parametrised over the registry as timm's `tests/test_models.py` does: a new kind
is covered the moment it is registered. The real architectures run at 64x128, batch 2, 5 classes.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fusionseg import api, registry
from fusionseg.config import config_from_dict, config_to_dict
from fusionseg.engine.checkpoint import (
    checkpoint_header,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from fusionseg.models.output import ExpertOutput

KINDS = list(registry.MODEL_KINDS)
NUM_CLASSES = 5
H, W = 64, 128


def config():
    # CMoDE's reference gates pool to the stride-16 grid of the training size (§B.3): 4x8 at 64x128
    data = {"height_px": H, "width_px": W}
    return config_from_dict(
        {"model": {"num_classes": NUM_CLASSES}, "data": data, "fusion": {"cmode_pool_hw": [4, 8]}}
    )


def build(name: str, *, seed: int = 0) -> tuple[nn.Module, dict[str, int]]:
    cfg = config()
    channels = registry.example_channels(name, cfg)
    torch.manual_seed(seed)
    return registry.build_model(name, cfg, channels), channels


def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


def test_registry_names_and_checkpoint_kinds_are_unique() -> None:
    assert KINDS == ["adapnetpp", "ssma", "cmode"]
    kinds = [k.checkpoint_kind for k in registry.MODEL_KINDS.values()]
    assert len(set(kinds)) == len(kinds)
    with pytest.raises(Exception, match="known: adapnetpp, ssma, cmode"):
        registry.model_kind("adapnet")


@pytest.mark.parametrize("name", KINDS)
def test_forward_takes_the_modality_mapping(name: str) -> None:
    model, channels = build(name)
    model.eval()
    inputs = registry.example_inputs(channels, 2, H, W)
    assert tuple(model.modalities) == tuple(channels) and dict(model.input_channels) == channels
    with torch.no_grad():
        out = model({**inputs, "nir": torch.zeros(2, 1, H, W)})  # extra modalities are ignored
    assert isinstance(out, ExpertOutput) and out.aux == ()
    assert out.logits.shape == (2, NUM_CLASSES, H, W) and torch.isfinite(out.logits).all()
    for tap, value in out.taps.items():  # every tap is a (B, C, H/s, W/s) map at a stride of 4-16
        assert value.shape[0] == 2 and value.ndim == 4, tap
        assert H // value.shape[2] in (4, 8, 16) and W // value.shape[3] == H // value.shape[2], tap
    missing = next(iter(channels))
    with pytest.raises(ValueError, match=f"modality {missing!r} is missing"):
        model({m: x for m, x in inputs.items() if m != missing})


@pytest.mark.parametrize("name", KINDS)
def test_backward_reaches_every_trainable_parameter_only(name: str) -> None:
    model, channels = build(name)
    registry.prepare_for_training(model, config()).train()
    out = model(registry.example_inputs(channels, 2, H, W))
    loss = out.logits.float().square().mean() + sum(a.float().square().mean() for a in out.aux)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, no_grad[:5]
    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen_with_grad


@pytest.mark.parametrize("name", KINDS)
def test_frozen_parts_keep_weights_and_bn_statistics(name: str) -> None:
    """Fused kinds freeze their experts (§A.5); an expert has no frozen part, so its BN must move in
    training mode and stay fixed in eval mode (the same check, turned around)."""
    model, channels = build(name)
    registry.prepare_for_training(model, config()).train()
    frozen = [
        m for g, m in getattr(model, "module_groups", dict)().items() if g in getattr(model, "frozen", ())
    ]
    watched = frozen[0] if frozen else model
    before = bn_state(watched)
    weights = {k: v.detach().clone() for k, v in watched.named_parameters()}
    model(registry.example_inputs(channels, 2, H, W))
    after = bn_state(watched)
    moved = any(not torch.equal(before[k], after[k]) for k in before)
    assert moved is (not frozen), "frozen BN statistics moved" if frozen else "BN statistics did not train"
    assert all(torch.equal(v, dict(watched.named_parameters())[k]) for k, v in weights.items())
    model.eval()
    before = bn_state(model)
    with torch.no_grad():
        model(registry.example_inputs(channels, 2, H, W))
    assert all(torch.equal(v, bn_state(model)[k]) for k, v in before.items())


@pytest.mark.parametrize("name", KINDS)
def test_checkpoint_round_trip_rebuilds_the_same_model(name: str, tmp_path) -> None:
    model, channels = build(name, seed=3)
    model.eval()
    kind = registry.model_kind(name)
    cfg = config()
    path = tmp_path / f"{name}.pt"
    payload = checkpoint_header(
        kind=kind.checkpoint_kind,
        num_classes=NUM_CLASSES,
        modalities=list(channels),
        in_channels=channels,
        model=model.state_dict(),
        config=config_to_dict(cfg),
    )
    save_checkpoint(path, payload)
    loaded = model_from_checkpoint(load_checkpoint(path), source=str(path))
    assert type(loaded) is type(model) and list(loaded.state_dict()) == list(model.state_dict())
    inputs = registry.example_inputs(channels, 1, H, W, seed=5)
    with torch.no_grad():
        assert torch.equal(loaded(inputs).logits, model(inputs).logits)


@pytest.mark.parametrize("name", KINDS)
def test_export_matches_pytorch(name: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model, channels = build(name, seed=4)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(
        path,
        checkpoint_header(
            kind=registry.model_kind(name).checkpoint_kind,
            num_classes=NUM_CLASSES,
            modalities=list(channels),
            in_channels=channels,
            input_size=[H, W],
            model=model.state_dict(),
            config=config_to_dict(config()),
        ),
    )
    report = api.export_model(path, tmp_path / f"{name}.onnx", format="onnx")
    assert report.verified and report.checks and all(c.ok for c in report.checks)
    assert report.inputs == channels and report.num_classes == NUM_CLASSES


@pytest.mark.parametrize("name", KINDS)
def test_summary_counts_the_built_model(name: str) -> None:
    cfg = config()
    summary = api.summarize_model(name, cfg, size_px=(H, W), batch_size=2)
    model, channels = build(name)
    registry.prepare_for_training(model, cfg)
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary.buffers == sum(b.numel() for n, b in model.named_buffers() if "num_batches" not in n)
    assert tuple(summary.logits_shape) == (2, NUM_CLASSES, H, W) and summary.gflops > 0
