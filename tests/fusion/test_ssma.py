"""SSMA block (ssma-cmode.md §A.1): counts, initialisation, modality order, gating, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fusionseg.fusion.ssma import SSMA


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_buffers(module: nn.Module) -> int:
    return sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))


def analytic_params(f: int, eta: int, n: int, projection: str) -> int:
    """Bottleneck 3x3 nF->nF/eta + bias, gate 3x3 back + bias, projection nF->F (1x1 + BN or 3x3 + bias)."""
    width, hidden = n * f, n * f // eta
    bottleneck = 9 * width * hidden + hidden
    gate = 9 * hidden * width + width
    project = width * f + 2 * f if projection == "1x1-bn" else 9 * width * f + f
    return bottleneck + gate + project


def test_counts_match_spec_table():
    easpp = SSMA(256, 16, projection="1x1-bn")
    skip = SSMA(24, 6, projection="3x3")
    assert n_params(easpp) == 427_040  # §A.1 table
    assert n_buffers(easpp) == 512
    assert n_params(skip) == 17_360
    assert n_buffers(skip) == 0
    assert easpp.bottleneck[0].out_channels == 32 and skip.bottleneck[0].out_channels == 8


@pytest.mark.parametrize("n", [2, 3, 4])
def test_counts_generalise_to_n_modalities(n):
    for f, eta, proj in ((256, 16, "1x1-bn"), (24, 6, "3x3")):
        block = SSMA(f, eta, num_inputs=n, projection=proj)
        assert n_params(block) == analytic_params(f, eta, n, proj)
        assert block.gate[0].out_channels == n * f


def test_layers_have_bias_and_no_bn_except_easpp_projection():
    easpp = SSMA(32, 4, projection="1x1-bn")
    skip = SSMA(32, 4, projection="3x3")
    for block in (easpp, skip):
        assert block.bottleneck[0].bias is not None and block.gate[0].bias is not None
        assert block.bottleneck[0].kernel_size == (3, 3) and block.gate[0].kernel_size == (3, 3)
    assert easpp.project[0].kernel_size == (1, 1) and easpp.project[0].bias is None
    assert isinstance(easpp.project[1], nn.BatchNorm2d)
    assert isinstance(skip.project, nn.Conv2d) and skip.project.kernel_size == (3, 3)
    assert skip.project.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in skip.modules())


def test_he_init_and_bias_001():
    torch.manual_seed(0)
    block = SSMA(256, 16, projection="1x1-bn")
    for conv in (block.bottleneck[0], block.gate[0]):
        assert torch.all(conv.bias == 0.01)
        fan_in = conv.weight[0].numel()
        std = math.sqrt(2.0 / fan_in)
        w = conv.weight.detach()
        assert w.abs().max() <= 2 * std + 1e-6  # truncated at 2 std
        # a normal truncated at +-2 std has std 0.8796 sigma
        assert w.std().item() == pytest.approx(0.8796 * std, rel=0.03)
    bn = block.project[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_modality_one_first_and_gate_reweights():
    """Gate weights zero and bias 0 -> G = 0.5; a projection reading only the first block returns 0.5 x_a."""
    f = 4
    block = SSMA(f, 2, projection="1x1-bn").eval()
    with torch.no_grad():
        block.gate[0].weight.zero_()
        block.gate[0].bias.zero_()
        proj = block.project[0].weight  # (F, 2F, 1, 1)
        proj.zero_()
        proj[:, :f, 0, 0] = torch.eye(f)  # output = first f input maps
    xa, xb = torch.randn(2, f, 5, 6), torch.randn(2, f, 5, 6)
    out = block([xa, xb])
    bn = block.project[1]
    expected = 0.5 * xa / torch.sqrt(torch.tensor(1.0 + bn.eps))  # fresh BN: mean 0, var 1
    torch.testing.assert_close(out, expected)
    swapped = block([xb, xa])
    torch.testing.assert_close(swapped, 0.5 * xb / torch.sqrt(torch.tensor(1.0 + bn.eps)))


def test_gate_is_sigmoid_in_unit_interval_and_shapes():
    block = SSMA(6, 3, num_inputs=3)
    seen = {}
    block.gate.register_forward_hook(lambda m, i, o: seen.setdefault("g", o))
    out = block([torch.randn(2, 6, 8, 16) for _ in range(3)])
    assert out.shape == (2, 6, 8, 16)
    g = seen["g"]
    assert g.shape == (2, 18, 8, 16)
    assert torch.all((g > 0) & (g < 1))


def test_errors():
    with pytest.raises(ValueError, match="reduction"):
        SSMA(4, 16)  # 2F/eta < 1
    with pytest.raises(ValueError, match="projection"):
        SSMA(8, 2, projection="5x5")  # type: ignore[arg-type]
    block = SSMA(8, 2)
    with pytest.raises(ValueError, match="expects 2"):
        block([torch.zeros(1, 8, 4, 4)])
    with pytest.raises(ValueError, match="share one shape"):
        block([torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 4, 8)])
