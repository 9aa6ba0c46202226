"""`model.padding`: TF `SAME` on the encoder's stride-2 layers (deepscene-tf.md §4) versus symmetric."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fusionseg import registry
from fusionseg.backbones.resnet import MultiscaleResNet50
from fusionseg.config import config_from_dict, config_to_dict
from fusionseg.engine.checkpoint import (
    checkpoint_header,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from fusionseg.errors import ConfigError
from fusionseg.layers import (
    TFSameConv2d,
    TFSameMaxPool2d,
    resize_bilinear_tf_legacy,
    strided_conv,
    strided_max_pool,
    tf_same_pad,
)
from fusionseg.models.adapnet import build_adapnet

NUM_CLASSES = 5
H, W = 64, 128
# the four stride-2 layers of §4 (the 1x1/2 shortcuts need no padding and stay plain)
TF_SAME_LAYERS = {
    "trunk.encoder.stem.conv",
    "trunk.encoder.stem.pool",
    "trunk.encoder.block2.unit1.conv2",
    "trunk.encoder.block3.unit1.conv2",
}


def config(padding: str | None):
    model = {"num_classes": NUM_CLASSES, **({"padding": padding} if padding else {})}
    return config_from_dict({"model": model, "data": {"height_px": H, "width_px": W}})


@pytest.fixture(scope="module")
def experts() -> dict[str, nn.Module]:
    """A symmetric and a tf_same AdapNet++ with the same weights, in eval mode."""
    torch.manual_seed(0)
    sym = build_adapnet(config(None).model, in_channels=3).eval()
    tf = build_adapnet(config("tf_same").model, in_channels=3).eval()
    tf.load_state_dict(sym.state_dict())
    return {"symmetric": sym, "tf_same": tf}


@pytest.mark.parametrize(
    ("n", "k", "s", "want"),
    [(384, 7, 2, (2, 3)), (192, 3, 2, (0, 1)), (33, 3, 2, (1, 1)), (33, 7, 2, (3, 3)), (10, 1, 2, (0, 0))],
)
def test_same_pad_rule(n: int, k: int, s: int, want: tuple[int, int]) -> None:
    assert tf_same_pad(n, k, s) == want


def test_same_pad_is_symmetric_at_stride_one() -> None:
    assert tf_same_pad(48, 3, 1, dilation=2) == (2, 2)  # = PyTorch padding d * (k - 1) / 2


@pytest.mark.parametrize("hw", [(32, 48), (33, 47)])
def test_tf_same_conv_equals_explicit_pad_and_differs_from_symmetric(hw: tuple[int, int]) -> None:
    torch.manual_seed(1)
    tf = strided_conv(4, 6, 7, stride=2, padding="tf_same")
    sym = strided_conv(4, 6, 7, stride=2, padding="symmetric")
    sym.load_state_dict(tf.state_dict())
    assert isinstance(tf, TFSameConv2d) and list(tf.state_dict()) == list(sym.state_dict())
    x = torch.randn(2, 4, *hw)
    (top, bottom), (left, right) = tf_same_pad(hw[0], 7, 2), tf_same_pad(hw[1], 7, 2)
    ref = F.conv2d(F.pad(x, (left, right, top, bottom)), tf.weight, stride=2)
    out = tf(x)
    assert out.shape[-2:] == (-(-hw[0] // 2), -(-hw[1] // 2))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    if hw[0] % 2 == 0:  # even sizes: TF pads (2, 3), PyTorch (3, 3)
        assert (out - sym(x)).abs().max() > 1e-2


def test_tf_same_max_pool_equals_explicit_pad() -> None:
    x = torch.rand(1, 3, 16, 24)  # post-ReLU input: padding value 0 and -inf agree
    pool = strided_max_pool(3, stride=2, padding="tf_same")
    assert isinstance(pool, TFSameMaxPool2d)
    ref = F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 3, stride=2)
    assert torch.equal(pool(x), ref)
    assert not torch.equal(pool(x), strided_max_pool(3, stride=2, padding="symmetric")(x))


def test_tf_same_changes_exactly_the_four_stride_two_layers(experts: dict[str, nn.Module]) -> None:
    tf_layers = {
        name
        for name, m in experts["tf_same"].named_modules()
        if isinstance(m, (TFSameConv2d, TFSameMaxPool2d))
    }
    assert tf_layers == TF_SAME_LAYERS
    assert not any(isinstance(m, (TFSameConv2d, TFSameMaxPool2d)) for m in experts["symmetric"].modules())


def test_modes_share_parameters_and_differ_in_logits(experts: dict[str, nn.Module]) -> None:
    sym, tf = experts["symmetric"], experts["tf_same"]
    assert {k: v.shape for k, v in sym.state_dict().items()} == {
        k: v.shape for k, v in tf.state_dict().items()
    }
    x = torch.rand(2, 3, H, W) * 255
    with torch.no_grad():
        a, b = sym(x).logits, tf(x).logits
    assert a.shape == b.shape == (2, NUM_CLASSES, H, W)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_unknown_padding_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.padding"):
        config("reflect")


def test_tf_same_checkpoint_rebuilds_in_tf_same_mode(experts: dict[str, nn.Module], tmp_path) -> None:
    model = experts["tf_same"]
    path = tmp_path / "tf.pt"
    payload = checkpoint_header(
        kind=registry.model_kind("adapnetpp").checkpoint_kind,
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        in_channels={"rgb": 3},
        model=model.state_dict(),
        config=config_to_dict(config("tf_same")),
    )
    save_checkpoint(path, payload)
    loaded = model_from_checkpoint(load_checkpoint(path), source=str(path))
    assert loaded.trunk.encoder.padding == "tf_same"
    assert isinstance(loaded.trunk.encoder.stem.conv, TFSameConv2d)
    x = torch.rand(1, 3, H, W) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)


def test_checkpoint_without_padding_key_rebuilds_symmetric(experts: dict[str, nn.Module], tmp_path) -> None:
    saved = config_to_dict(config(None))
    del saved["model"]["padding"]  # written before the key existed
    payload = checkpoint_header(
        kind=registry.model_kind("adapnetpp").checkpoint_kind,
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        in_channels={"rgb": 3},
        model=experts["symmetric"].state_dict(),
        config=saved,
    )
    path = save_checkpoint(tmp_path / "old.pt", payload)
    loaded = model_from_checkpoint(load_checkpoint(path), source=str(path))
    assert loaded.trunk.encoder.padding == "symmetric"
    assert type(loaded.trunk.encoder.stem.conv) is nn.Conv2d


def test_fused_experts_get_the_padding() -> None:
    from fusionseg.fusion.build import build_model

    cfg = config_from_dict(
        {
            "model": {"num_classes": NUM_CLASSES, "padding": "tf_same"},
            "data": {"height_px": H, "width_px": W, "modalities": ["rgb", "depth"]},
        }
    )
    ssma = build_model(cfg, in_channels={"rgb": 3, "depth": 1})
    encoders = [m for m in ssma.modules() if isinstance(m, MultiscaleResNet50)]
    assert len(encoders) == 2 and all(e.padding == "tf_same" for e in encoders)


def test_tf_legacy_resize_of_a_2x_upsample_by_hand() -> None:
    # TF1 legacy: output i samples source i * in / out = i / 2, the upper tap clamped at the far edge
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    want = torch.tensor(
        [[0.0, 2.0, 4.0, 4.0], [4.0, 6.0, 8.0, 8.0], [8.0, 10.0, 12.0, 12.0], [8.0, 10.0, 12.0, 12.0]]
    )
    got = resize_bilinear_tf_legacy(x, (4, 4))
    assert torch.equal(got[0, 0], want)
    assert not torch.equal(got, F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False))
    assert not torch.equal(got, F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=True))


def test_tf_legacy_resize_non_integer_scale() -> None:
    x = torch.arange(3.0).view(1, 1, 1, 3)  # 3 -> 4: sources 0, 0.75, 1.5, 2.25 (clamped to 2)
    got = resize_bilinear_tf_legacy(x, (1, 4))
    torch.testing.assert_close(got.flatten(), torch.tensor([0.0, 0.75, 1.5, 2.0]))


def test_tf_same_expert_uses_the_legacy_aux_resize(experts: dict[str, nn.Module]) -> None:
    assert experts["tf_same"].aux.resize == "tf_legacy"
    assert experts["symmetric"].aux.resize == "half_pixel"
    model = copy.deepcopy(experts["tf_same"]).train()  # training mode updates BN statistics
    with torch.no_grad():
        out = model(torch.rand(2, 3, H, W) * 255)
    assert [a.shape for a in out.aux] == [(2, NUM_CLASSES, H, W)] * 2


def test_tf_same_encoder_follows_tf_output_sizes_at_odd_sizes() -> None:
    # TF SAME output = ceil(n / 2) at each stride-2 layer: 33x47 -> 17x24 -> 9x12 -> 5x6 -> 3x3
    encoder = MultiscaleResNet50(3, padding="tf_same").eval()
    with torch.no_grad():
        feats = encoder(torch.rand(1, 3, 33, 47) * 255)
    assert feats["b1_out"].shape[-2:] == (9, 12)
    assert feats["b2_out"].shape[-2:] == (5, 6)
    assert feats["b4_out"].shape[-2:] == (3, 3)
