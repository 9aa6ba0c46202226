"""Fused models: parameter counts (§A.7, §B.2), expert naming, forward shapes, freezing (§A.5)."""

from __future__ import annotations

import pytest
import torch
from fusion_helpers import NUM_CLASSES, TinyExpert, TinyTrunk, fusion_config
from torch import nn

from fusionseg.errors import ConfigError
from fusionseg.fusion.build import FUSION_SCHEMES, build_model
from fusionseg.fusion.fused import CMoDEModel, SSMAModel
from fusionseg.fusion.ssma import SSMA
from fusionseg.models.decoder import GlobalContextGate

H, W = 64, 128


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def n_buffers(module: nn.Module) -> int:
    return sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))


def meta_build(scheme: str, num_classes: int, modalities=("rgb", "depth"), **fusion):
    cfg = fusion_config(
        model={"num_classes": num_classes}, fusion=fusion, data={"modalities": list(modalities)}
    )
    with torch.device("meta"):
        return build_model(cfg, in_channels={m: 3 for m in modalities}, scheme=scheme)


def inputs(modalities, channels=None, batch=2, size=(H, W)):
    torch.manual_seed(0)
    channels = channels or {}
    return {m: 255 * torch.rand(batch, channels.get(m, 3), *size) for m in modalities}


# --- counts (no forward pass, meta tensors) --------------------------------------------------------


def test_ssma_counts_c12():
    model = meta_build("ssma", 12)
    assert n_params(model) == 56_182_428  # §A.7, frozen experts included
    assert n_buffers(model) == 103_260
    model.freeze_experts()
    assert n_trainable(model) == 5_056_592
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    assert groups == {
        "experts.rgb": 25_562_918,
        "experts.depth": 25_562_918,
        "fusion": 427_040 + 2 * 17_360,
        "decoder": 4_582_448 + 12_384,
    }


@pytest.mark.parametrize("c", [6, 9, 20, 21, 38])
def test_ssma_count_formula(c):
    model = meta_build("ssma", c)
    assert n_params(model) == 56_170_092 + 64 * c * c + 260 * c
    assert n_buffers(model) == 103_212 + 4 * c
    model.freeze_experts()
    assert n_trainable(model) == 5_044_256 + 64 * c * c + 260 * c


def test_cmode_counts_c12():
    model = meta_build("cmode", 12)
    assert n_params(model.fusion) == 36_501_540  # gating head at the reference 24x48 grid
    assert n_params(model) == 96_804_656  # experts' unused aux heads included (§B.2)
    assert n_params(model) + n_buffers(model) == 96_910_524
    light = meta_build("cmode", 12, cmode_gate="light")
    assert n_params(light.fusion) == 12 * 95_126 + 9 * 144 + 12


def test_ssma_aux_option_adds_two_heads():
    c = 12
    plain, aux = meta_build("ssma", c), meta_build("ssma", c, aux=True)
    assert n_params(aux) - n_params(plain) == 2 * (256 * c + 2 * c)


# --- structure ------------------------------------------------------------------------------------


def test_experts_are_trunks_named_by_modality():
    model = meta_build("ssma", 12, modalities=("rgb", "hha", "depth"))
    keys = list(model.state_dict())
    assert model.modalities == ("rgb", "hha", "depth")
    for m in model.modalities:
        mine = [k for k in keys if k.startswith(f"experts.{m}.")]
        assert mine and not any(".decoder." in k or ".aux" in k for k in mine)
    assert set(model.fusion) == {"easpp", "skip2", "skip1"}
    info = model.experts["rgb"].feature_info
    for tap, block in model.fusion.items():
        assert isinstance(block, SSMA)
        assert block.channels == info[tap].channels and block.num_inputs == 3
    assert model.fusion["easpp"].bottleneck[0].out_channels == 3 * 256 // 16
    assert model.fusion["skip1"].bottleneck[0].out_channels == 3 * 24 // 6
    gates = [m for m in model.decoder.modules() if isinstance(m, GlobalContextGate)]
    assert len(gates) == 2 and all(g.conv.out_channels == 24 for g in gates)


def test_build_errors():
    cfg = fusion_config(data={"modalities": ["rgb"]})
    with pytest.raises(ConfigError, match="data.modalities"):
        build_model(cfg, in_channels={"rgb": 3})
    with pytest.raises(ConfigError, match="known: ssma, cmode"):
        build_model(fusion_config(), in_channels={"rgb": 3, "depth": 1}, scheme="late")
    assert list(FUSION_SCHEMES) == ["ssma", "cmode"]


# --- narrow stand-in trunks: wiring and freezing -------------------------------------------------


def tiny_fused(modalities=("rgb", "depth"), aux=False) -> SSMAModel:
    torch.manual_seed(0)
    return SSMAModel(
        {m: TinyTrunk(3) for m in modalities}, num_classes=5, deep_reduction=4, skip_reduction=2, aux=aux
    )


def test_tiny_forward_aux_and_missing_modality():
    model = tiny_fused(aux=True).train()
    out = model(inputs(("rgb", "depth")))
    assert out.logits.shape == (2, 5, H, W)
    assert len(out.aux) == 2 and all(a.shape == (2, 5, H, W) for a in out.aux)
    assert tiny_fused().train()(inputs(("rgb", "depth"))).aux == ()  # no aux losses by default (§A.4)
    with pytest.raises(ValueError, match="'depth' is missing"):
        model({"rgb": torch.zeros(1, 3, H, W)})


def test_frozen_experts_stay_in_eval_and_unchanged():
    model = tiny_fused()
    model.freeze_experts()
    model.train()
    assert all(not m.training for e in model.experts.values() for m in e.modules())
    assert all(m.training for m in model.fusion.modules())
    before = {k: v.clone() for k, v in model.experts.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.fusion.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(not p.requires_grad for p in model.experts.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(inputs(("rgb", "depth"))).logits.square().mean().backward()
        opt.step()
    for k, v in model.experts.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN running statistics
    changed = [k for k, v in model.fusion.state_dict().items() if not torch.equal(v, head_before[k])]
    assert any("running_mean" in k for k in changed) and any("weight" in k for k in changed)
    model.unfreeze_experts(["rgb"])
    model.train()
    assert model.experts["rgb"].training and not model.experts["depth"].training


def tiny_model(scheme: str, modalities=("rgb", "depth")):
    torch.manual_seed(0)
    if scheme == "ssma":
        return tiny_fused(modalities)
    return CMoDEModel({m: TinyExpert(3, 5) for m in modalities}, num_classes=5, pool_hw=(2, 4))


@pytest.mark.parametrize("scheme", ["ssma", "cmode"])
def test_contract_backward_reaches_trainable_only(scheme):
    model = tiny_model(scheme)
    model.freeze_experts()
    model.train()
    model(inputs(("rgb", "depth"))).logits.square().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("experts."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("scheme", ["ssma", "cmode"])
def test_contract_state_dict_round_trip(scheme):
    a, b = tiny_model(scheme).eval(), tiny_model(scheme)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    b.load_state_dict(a.state_dict())
    b.eval()
    x = inputs(("rgb", "depth"))
    with torch.no_grad():
        torch.testing.assert_close(a(x).logits, b(x).logits)
    groups = a.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(a.parameters()))


# --- the real models: forward shapes --------------------------------------------------------------


@pytest.mark.parametrize("modalities", [("rgb", "depth"), ("rgb", "depth", "hha")])
def test_ssma_forward_shapes(modalities):
    cfg = fusion_config(data={"modalities": list(modalities)})
    channels = {"rgb": 3, "depth": 1, "hha": 3}
    torch.manual_seed(0)
    model = build_model(cfg, in_channels={m: channels[m] for m in modalities}).eval()
    with torch.no_grad():
        out = model(inputs(modalities, channels))
    assert out.logits.shape == (2, NUM_CLASSES, H, W)
    assert out.aux == ()
    assert {k: tuple(v.shape) for k, v in out.taps.items()} == {
        "easpp": (2, 256, H // 16, W // 16),
        "skip2": (2, 24, H // 8, W // 8),
        "skip1": (2, 24, H // 4, W // 4),
    }
    assert torch.isfinite(out.logits).all()


def test_cmode_forward_at_two_resolutions():
    cfg = fusion_config(fusion={"scheme": "cmode"})
    torch.manual_seed(0)
    model = build_model(cfg, in_channels={"rgb": 3, "depth": 1})
    assert isinstance(model, CMoDEModel)
    model.eval()
    with torch.no_grad():
        for size in ((64, 128), (96, 160)):
            out = model(inputs(("rgb", "depth"), {"depth": 1}, size=size))
            assert out.logits.shape == (2, NUM_CLASSES, *size)
            assert out.taps["rgb.easpp"].shape == (2, 256, size[0] // 16, size[1] // 16)
            weights = model.fusion.class_weights([out.taps["rgb.easpp"], out.taps["depth.easpp"]])
            torch.testing.assert_close(weights.sum(-1), torch.ones(2, NUM_CLASSES))
