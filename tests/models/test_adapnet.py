"""AdapNet++ expert: parameter counts (adapnetpp.md §10), wiring (§2-7), shapes, trunk reuse."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fusionseg.backbones.resnet import MULTISCALE_UNITS, Bottleneck, MultiscaleConv2d, MultiscaleResNet50
from fusionseg.config import ModelConfig
from fusionseg.errors import ConfigError
from fusionseg.layers import PooledBatchNorm2d
from fusionseg.models.adapnet import (
    DILATION_PRESETS,
    AdapNetPP,
    AdapNetTrunk,
    build_adapnet,
    trunk_state_dict,
)
from fusionseg.models.decoder import Decoder
from fusionseg.models.easpp import EASPP
from fusionseg.models.output import ExpertOutput
from fusionseg.models.summary import summarize_model

H, W = 64, 128  # small input for wiring tests


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_buffers(module: nn.Module) -> int:
    return sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))


def meta_model(**kwargs) -> AdapNetPP:
    """Structure only (no memory, no init cost): enough for counting."""
    with torch.device("meta"):
        return AdapNetPP(**kwargs)


@pytest.fixture(scope="module")
def model() -> AdapNetPP:
    torch.manual_seed(0)
    return AdapNetPP(num_classes=5)


@pytest.fixture(scope="module")
def encoder(model: AdapNetPP) -> MultiscaleResNet50:
    return model.trunk.encoder


@pytest.fixture
def image() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, H, W, generator=gen) * 255.0


# ---------------------------------------------------------------------------------------------------
# §10 parameter counts
# ---------------------------------------------------------------------------------------------------


def test_breakdown_for_12_classes_matches_spec() -> None:
    m = meta_model(num_classes=12)
    expected = {  # §10.1: (params, buffers)
        "stem": (9_542, 134),
        "block1": (215_296, 2_304),
        "block2": (1_218_560, 6_144),
        "block3": (7_094_272, 16_384),
        "block4": (14_962_688, 20_480),
        "skips": (18_528, 96),
        "easpp": (2_044_032, 4_224),
        "decoder": (4_582_448, 3_120),
        "aux": (6_192, 48),
    }
    got = {name: (n_params(g), n_buffers(g)) for name, g in m.module_groups().items()}
    assert got == expected
    assert n_params(m) == 30_151_558
    assert n_buffers(m) == 52_934
    assert n_params(m.trunk) == 25_562_918 and n_buffers(m.trunk) == 49_766  # §10.2, reused by SSMA


def test_per_unit_counts_match_spec() -> None:
    enc = meta_model(num_classes=12).trunk.encoder
    expected = {  # §10.1 per unit (pre-act BN counted with its unit)
        1: [73_984, 70_400, 70_400],
        2: [377_344] + [280_064] * 3,
        3: [1_508_352] + [1_117_184] * 5,
        4: [6_033_408] + [4_462_592] * 2,
    }
    for b, counts in expected.items():
        block = getattr(enc, f"block{b}")
        assert [n_params(getattr(block, f"unit{u + 1}")) for u in range(len(counts))] == counts


@pytest.mark.parametrize("c", [6, 12, 20, 21, 38])
def test_parameter_formula_in_classes(c: int) -> None:
    with_aux, without_aux = meta_model(num_classes=c), meta_model(num_classes=c, aux=False)
    assert n_params(with_aux) == 30_133_030 + 64 * c * c + 776 * c  # §10.2
    assert n_buffers(with_aux) == 52_838 + 8 * c
    assert n_params(without_aux) == 30_133_030 + 64 * c * c + 260 * c
    assert n_buffers(without_aux) == 52_838 + 4 * c
    assert without_aux.aux is None and "aux" not in without_aux.module_groups()


def test_table_of_published_totals() -> None:
    table = {6: 30_139_990, 12: 30_151_558, 20: 30_174_150, 21: 30_177_550, 38: 30_254_934}  # §10.2
    for c, total in table.items():
        m = meta_model(num_classes=c)
        assert n_params(m) == total
        assert n_params(m) + n_buffers(m) == total + 52_838 + 8 * c


def test_dilation_presets_same_count_and_applied() -> None:
    for preset, dil in DILATION_PRESETS.items():
        m = meta_model(num_classes=12, dilations=dil)
        assert n_params(m) == 30_151_558, preset
        enc = m.trunk.encoder
        for name in MULTISCALE_UNITS:
            block, unit = name.split(".")
            conv2 = getattr(getattr(enc, block), unit).conv2
            assert isinstance(conv2, MultiscaleConv2d)
            assert tuple(c.dilation[0] for c in conv2.convs) == tuple(dil[name])
            assert tuple(c.padding[0] for c in conv2.convs) == tuple(dil[name])
    assert DILATION_PRESETS["may2019"]["block3.unit6"] == (1, 16)  # §3.3
    assert DILATION_PRESETS["released"]["block4.unit3"] == (2, 2)


def test_decoder_context_gates_add_the_ssma_gate_parameters() -> None:
    kwargs = dict(in_channels=256, skip_channels={"skip1": 24, "skip2": 24}, num_classes=12)
    with torch.device("meta"):
        plain, gated = Decoder(**kwargs), Decoder(**kwargs, context_gates=True)
    assert n_params(gated) - n_params(plain) == 12_384  # ssma-cmode.md §A.7
    assert n_buffers(gated) - n_buffers(plain) == 96


# ---------------------------------------------------------------------------------------------------
# §1 conventions: no biases, BN settings, he init
# ---------------------------------------------------------------------------------------------------


def test_no_conv_bias_and_bn_settings(model: AdapNetPP) -> None:
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs and all(m.bias is None for m in convs)
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-5 and m.affine for m in bns)


@pytest.mark.parametrize(
    "path",
    [
        "trunk.encoder.block4.unit2.conv3",
        "trunk.encoder.block3.unit1.shortcut",
        "decoder.stages.skip2.up.conv",
    ],
)
def test_he_truncated_normal_init(model: AdapNetPP, path: str) -> None:
    conv = model.get_submodule(path)
    w = conv.weight.detach()
    c_in = w.shape[0] if isinstance(conv, nn.ConvTranspose2d) else w.shape[1]
    std = math.sqrt(2.0 / (w.shape[2] * w.shape[3] * c_in))
    assert w.abs().max() <= 2 * std + 1e-7
    # a normal truncated at +-2 sigma has std 0.8796 sigma
    assert w.std().item() == pytest.approx(0.8796 * std, rel=0.03)


# ---------------------------------------------------------------------------------------------------
# §3 encoder wiring
# ---------------------------------------------------------------------------------------------------


def _randomise_bn(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=gen)
            m.running_mean = torch.randn(m.num_features, generator=gen)
            m.running_var = torch.rand(m.num_features, generator=gen) + 0.5


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _reference_unit(unit: Bottleneck, x: torch.Tensor, kind: str) -> torch.Tensor:
    """§3.1 written out with functional ops (eval mode)."""
    h = F.relu(_bn(unit.pre_bn, x)) if kind in ("standard", "block4_first") else x
    a1 = F.relu(_bn(unit.bn1, F.conv2d(h, unit.conv1.weight)))
    a2 = F.relu(_bn(unit.bn2, unit.conv2(a1)))
    y = F.conv2d(a2, unit.conv3.weight)
    if kind == "standard":
        return x + y
    if kind == "block1_first":
        return F.conv2d(a1, unit.shortcut.weight) + y
    return F.conv2d(h, unit.shortcut.weight, stride=unit.shortcut.stride) + y


@pytest.mark.parametrize(
    ("unit_path", "kind", "in_ch", "size"),
    [
        ("block1.unit1", "block1_first", 64, 16),
        ("block1.unit2", "standard", 256, 16),
        ("block2.unit1", "block2_first", 256, 16),
        ("block2.unit4", "standard", 512, 8),
        ("block4.unit1", "block4_first", 1024, 4),
    ],
)
def test_unit_wiring(encoder: MultiscaleResNet50, unit_path: str, kind: str, in_ch: int, size: int) -> None:
    torch.manual_seed(2)
    unit = copy.deepcopy(encoder.get_submodule(unit_path)).eval()
    _randomise_bn(unit, seed=3)
    x = torch.randn(2, in_ch, size, size)
    with torch.no_grad():
        assert torch.allclose(unit(x), _reference_unit(unit, x, kind), atol=1e-4, rtol=1e-4)
    # first units of blocks 1-3 have no pre-activation; block-4 unit 1 has one (§3.2)
    assert (unit.pre_bn is None) == (kind in ("block1_first", "block2_first"))


def test_block_output_norms_and_dropout_placement(model: AdapNetPP) -> None:
    enc = model.trunk.encoder
    for b, has_norm in ((1, True), (2, True), (3, False), (4, True)):
        assert hasattr(getattr(enc, f"block{b}"), "out_bn") == has_norm
    dropouts = [name for name, m in enc.named_modules() if isinstance(m, nn.Dropout)]
    assert dropouts == ["block4.unit3.dropout"]
    assert enc.block4.unit3.dropout.p == 0.7
    assert enc.block4.unit1.shortcut.in_channels == 1024 and enc.block4.unit1.pre_bn.num_features == 1024


def test_multiscale_conv_halves() -> None:
    torch.manual_seed(4)
    conv = MultiscaleConv2d(8, 8, (1, 3))
    x = torch.randn(1, 8, 12, 12)
    y = conv(x)
    w1, w2 = conv.convs[0].weight, conv.convs[1].weight
    assert torch.allclose(y[:, :4], F.conv2d(x, w1, padding=1, dilation=1), atol=1e-5)
    assert torch.allclose(y[:, 4:], F.conv2d(x, w2, padding=3, dilation=3), atol=1e-5)
    same = MultiscaleConv2d(8, 8, (2, 2))  # 2||2 equals one dilation-2 3x3 (§3.2)
    ref = F.conv2d(x, torch.cat([same.convs[0].weight, same.convs[1].weight]), padding=2, dilation=2)
    assert torch.allclose(same(x), ref, atol=1e-5)


def test_encoder_features_match_feature_info(model: AdapNetPP, image: torch.Tensor) -> None:
    enc = model.trunk.encoder.eval()
    with torch.no_grad():
        feats = enc(image)
    assert set(feats) == set(enc.feature_info)
    for key, spec in enc.feature_info.items():
        assert tuple(feats[key].shape) == spec.shape(2, H, W)
    assert feats["b1_out"].min() >= 0 and feats["b3_out"].min() < 0  # b1 after ReLU; b3 is a raw sum


# ---------------------------------------------------------------------------------------------------
# forward: shapes, aux, taps, errors
# ---------------------------------------------------------------------------------------------------


def test_full_size_forward_shapes() -> None:
    """The one full-size check: 384x768, batch 1, eval (§11)."""
    m = AdapNetPP(num_classes=12).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 384, 768) * 255)
    assert isinstance(out, ExpertOutput)
    assert out.logits.shape == (1, 12, 384, 768)
    assert out.aux == ()
    assert {k: tuple(v.shape) for k, v in out.taps.items()} == {
        "skip1": (1, 24, 96, 192),
        "skip2": (1, 24, 48, 96),
        "easpp": (1, 256, 24, 48),
    }


def test_training_mode_returns_aux_and_taps(model: AdapNetPP, image: torch.Tensor) -> None:
    model.train()
    out = model(image)
    assert out.logits.shape == (2, 5, H, W)
    assert len(out.aux) == 2 and all(a.shape == (2, 5, H, W) for a in out.aux)
    assert model.aux_weights == (0.6, 0.5)
    for tap, spec in model.feature_info.items():
        assert tuple(out.taps[tap].shape) == spec.shape(2, H, W)
    (out.logits.mean() + 0.6 * out.aux[0].mean() + 0.5 * out.aux[1].mean()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        assert model(image).aux == ()


def test_aux_sources(model: AdapNetPP, image: torch.Tensor) -> None:
    """aux1 reads deconv_up2 (stride 4), aux2 reads deconv_up1 (stride 8) before the concat (§7)."""
    model.eval()
    with torch.no_grad():
        taps = model.trunk(image)
        dec = model.decoder(taps["easpp"], taps)
        aux1, aux2 = model.aux(dec.ups, (H, W))
    assert dec.ups[0].shape == (2, 256, H // 8, W // 8) and dec.ups[1].shape == (2, 256, H // 4, W // 4)
    ref1 = F.interpolate(model.aux.aux1(dec.ups[1]), size=(H, W), mode="bilinear", align_corners=False)
    assert torch.equal(aux1, ref1)
    assert aux2.shape == (2, 5, H, W)


def test_batch_one_training_uses_running_stats_in_image_pool() -> None:
    torch.manual_seed(5)
    m = AdapNetPP(num_classes=3, aux=False).train()
    pool_bn = m.trunk.easpp.image_pool.bn
    assert isinstance(pool_bn, PooledBatchNorm2d)
    before = pool_bn.running_mean.clone()
    stem_before = m.trunk.encoder.stem.bn.running_mean.clone()
    out = m(torch.rand(1, 3, H, W) * 255)
    assert torch.isfinite(out.logits).all()
    assert torch.equal(pool_bn.running_mean, before)  # N = 1: running statistics, not updated
    assert not torch.equal(m.trunk.encoder.stem.bn.running_mean, stem_before)  # other BNs train normally
    m(torch.rand(2, 3, H, W) * 255)
    assert not torch.equal(pool_bn.running_mean, before)  # N >= 2: plain BN


def test_single_channel_input_and_eval_determinism() -> None:
    torch.manual_seed(6)
    m = AdapNetPP(in_channels=1, num_classes=4).eval()
    x = torch.rand(2, 1, H, W) * 255
    with torch.no_grad():
        a, b = m(x).logits, m(x).logits
    assert a.shape == (2, 4, H, W) and torch.equal(a, b)


@pytest.mark.parametrize("shape", [(1, 3, 64, 120), (1, 3, 72, 128), (1, 3, 8, 8)])
def test_size_not_multiple_of_16_raises(model: AdapNetPP, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        model.eval()(torch.zeros(shape))


def test_wrong_channels_or_rank_raise(model: AdapNetPP) -> None:
    with pytest.raises(ValueError, match="channels"):
        model(torch.zeros(1, 1, H, W))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.zeros(3, H, W))


def test_input_not_modified(model: AdapNetPP, image: torch.Tensor) -> None:
    before = image.clone()
    model.train()(image)
    assert torch.equal(image, before)


@pytest.fixture(scope="module")
def model_pair() -> tuple[AdapNetPP, AdapNetPP]:
    """The same weights twice: contiguous and channels_last."""
    torch.manual_seed(7)
    m = AdapNetPP(num_classes=4, dropout=0.0)
    m_cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
    return m, m_cl


def test_channels_last_matches_contiguous_in_eval(model_pair: tuple[AdapNetPP, AdapNetPP]) -> None:
    m, m_cl = (net.eval() for net in model_pair)
    assert m_cl.trunk.encoder.block2.unit1.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(8)) * 255
    with torch.no_grad():
        ref, got = m(x), m_cl(x.contiguous(memory_format=torch.channels_last))
    for name, a, b in [
        ("logits", got.logits, ref.logits),
        *((t, got.taps[t], ref.taps[t]) for t in ref.taps),
    ]:
        assert torch.allclose(a, b, atol=1e-5 * float(b.abs().max()), rtol=0.0), name


def test_channels_last_matches_contiguous_in_training(model_pair: tuple[AdapNetPP, AdapNetPP]) -> None:
    """Outputs and gradients in training mode, in float64.

    In float32 this comparison is dominated by rounding: with batch statistics over a 2x4x8 stride-16
    grid (and over 2 values in the pooled BN) even float32 vs float64 gradients differ by up to 30 %
    of a tensor's range at 64x128, so the layouts are compared in float64.
    """
    m, m_cl = (copy.deepcopy(net).double().train() for net in model_pair)
    x = (torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(8)) * 255).double()
    weight = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(9)).double()
    ref, got = m(x), m_cl(x.contiguous(memory_format=torch.channels_last))
    for name, a, b in [
        ("logits", got.logits, ref.logits),
        *((t, got.taps[t], ref.taps[t]) for t in ref.taps),
    ]:
        assert torch.allclose(a, b, atol=1e-9 * float(b.detach().abs().max()), rtol=0.0), name
    assert len(got.aux) == 2
    # a weighted sum: a plain sum of train-mode BN outputs has (numerically) zero gradient
    (got.logits * weight).sum().backward()
    (ref.logits * weight).sum().backward()
    for (name, p), p_cl in zip(m.named_parameters(), m_cl.parameters()):
        if name.startswith("aux."):
            continue  # aux outputs are not in this loss
        assert torch.allclose(p_cl.grad, p.grad, atol=1e-8 * float(p.grad.abs().max()), rtol=0.0), name


# ---------------------------------------------------------------------------------------------------
# trunk reuse, config
# ---------------------------------------------------------------------------------------------------


def test_trunk_is_reusable_and_loads_by_prefix(model: AdapNetPP, image: torch.Tensor) -> None:
    model.eval()
    experts = nn.ModuleDict({"rgb": AdapNetTrunk(3), "depth": AdapNetTrunk(3)})
    experts["rgb"].load_state_dict(trunk_state_dict(model.state_dict()))
    experts.eval()
    with torch.no_grad():
        ref = model(image).taps
        got = experts["rgb"](image)
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert experts["rgb"].feature_info == model.feature_info
    assert not hasattr(experts["rgb"], "decoder")


def test_easpp_branch_order_and_rates() -> None:
    with torch.device("meta"):
        easpp = EASPP(2048, 256, (6, 12, 18))
    assert [c[1].conv.dilation[0] for c in easpp.cascades] == [6, 12, 18]
    assert easpp.fuse.conv.in_channels == 5 * 256 and not hasattr(easpp.fuse, "relu")
    with pytest.raises(ValueError, match="rates"):
        EASPP(16, 8, ())


def test_build_from_config() -> None:
    cfg = ModelConfig(num_classes=7, dilations="may2019", easpp_rates=(6, 12, 18), aux=False, dropout=0.5)
    with torch.device("meta"):
        m = build_adapnet(cfg, in_channels=1)
        cl = build_adapnet(ModelConfig(channels_last=True), in_channels=3)
    assert m.num_classes == 7 and m.in_channels == 1 and m.aux is None
    assert m.trunk.easpp.rates == (6, 12, 18)
    assert m.trunk.encoder.block4.unit3.dropout.p == 0.5
    assert m.trunk.encoder.dilations == DILATION_PRESETS["may2019"]
    assert cl.trunk.encoder.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"num_classes": 1}, "model.num_classes"), ({"dropout": 1.0}, "model.dropout")],
)
def test_build_rejects_bad_config(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_adapnet(ModelConfig(**kwargs), in_channels=3)


# ---------------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------------


def test_summary_counts_frozen_parts_and_restores_mode() -> None:
    m = meta_model(num_classes=12).train()
    m.trunk.requires_grad_(False)  # as in SSMA fusion training (ssma-cmode.md §A.5)
    x = torch.zeros(2, 3, 32, 64, device="meta")
    s = summarize_model(m, x)
    assert m.training  # restored
    assert s.total_params == 30_151_558 and s.frozen_params == 25_562_918
    assert s.trainable_params == 30_151_558 - 25_562_918 and s.buffers == 52_934
    assert [r.name for r in s.modules] == list(m.module_groups())
    assert s.taps == {"skip1": (2, 24, 8, 16), "skip2": (2, 24, 4, 8), "easpp": (2, 256, 2, 4)}
    assert s.logits_shape == (2, 12, 32, 64) and s.input_shape == (2, 3, 32, 64)
    assert s.gflops is not None and s.gflops > 0
    partial = summarize_model(m, groups={"decoder": m.decoder})
    assert [r.name for r in partial.modules] == ["decoder", "(other)"]
    assert sum(r.params for r in partial.modules) == 30_151_558 and partial.gflops is None


def test_summary_flops_scale_with_pixels() -> None:
    m = meta_model(num_classes=12)
    small = summarize_model(m, torch.zeros(1, 3, 32, 64, device="meta")).gflops
    big = summarize_model(m, torch.zeros(1, 3, 64, 128, device="meta")).gflops
    # FLOPs = a * H * W + b, where b is the image-pool 1x1 conv on the 1x1 pooled map (2048 -> 256)
    pooled_conv = 2 * 2048 * 256 / 1e9
    assert big - pooled_conv == pytest.approx(4 * (small - pooled_conv), rel=1e-9)
