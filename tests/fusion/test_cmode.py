"""CMoDE block (ssma-cmode.md §B.1-B.3): counts, mixture order, resolution independence, NHWC flatten."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fusionseg.fusion.cmode import ClassGate, CMoDE


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gating_params(c: int, grid: int) -> int:
    """§B.2: C * (92,566 + 2,560 h w) + 9 C^2 + C."""
    return c * (92_566 + 2_560 * grid) + 9 * c * c + c


def meta(cls, *args, **kwargs):
    with torch.device("meta"):
        return cls(*args, **kwargs)


def test_reference_counts_match_spec():
    assert n_params(meta(ClassGate, 512)) == 3_041_686  # conv 92,180 + FC 2,949,248 + FC 258
    assert n_params(meta(CMoDE, 512, 12)) == 36_501_540
    for c in (6, 9, 20):
        assert n_params(meta(CMoDE, 512, c)) == gating_params(c, 24 * 48)


def test_light_counts():
    assert n_params(meta(ClassGate, 512, pool_hw=(1, 1))) == 95_126  # 92,180 + 2,688 + 258
    light = meta(CMoDE, 512, 12, mode="light")
    assert n_params(light) == 12 * 95_126 + 9 * 144 + 12
    assert light.gates[0].fc1.in_features == 20


def test_one_independent_gate_per_class():
    model = CMoDE(16, 5, pool_hw=(2, 4))
    assert len(model.gates) == 5
    ids = {id(p) for gate in model.gates for p in gate.parameters()}
    assert len(ids) == 5 * len(list(model.gates[0].parameters()))
    assert model.final.kernel_size == (3, 3) and model.final.bias is not None
    assert all(torch.all(g.fc1.bias == 0.01) for g in model.gates)


def _identity_final(model: CMoDE) -> None:
    with torch.no_grad():
        model.final.weight.zero_()
        model.final.bias.zero_()
        for c in range(model.final.out_channels):
            model.final.weight[c, c, 1, 1] = 1.0


def test_mixture_order_p_weights_modality_one():
    """Softmax (o, p) = (0.25, 0.75) -> M = 0.75 L1 + 0.25 L2 (§B.1 step 3)."""
    model = CMoDE(8, 3, pool_hw=(2, 2)).eval()
    _identity_final(model)
    with torch.no_grad():
        for gate in model.gates:
            gate.fc2.weight.zero_()
            gate.fc2.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    feats = [torch.randn(2, 4, 4, 8), torch.randn(2, 4, 4, 8)]
    l1, l2 = torch.randn(2, 3, 16, 32), torch.randn(2, 3, 16, 32)
    out = model(feats, [l1, l2])
    torch.testing.assert_close(out, 0.75 * l1 + 0.25 * l2)
    weights = model.class_weights(feats)
    assert weights.shape == (2, 3, 2)
    torch.testing.assert_close(weights[..., 0], torch.full((2, 3), 0.75))


def test_resolution_independent_and_identity_pool_at_reference_grid():
    torch.manual_seed(0)
    model = CMoDE(8, 4, pool_hw=(3, 6)).eval()
    for h, w in ((3, 6), (4, 8), (7, 5)):
        feats = [torch.randn(2, 4, h, w), torch.randn(2, 4, h, w)]
        logits = [torch.randn(2, 4, 16 * h, 16 * w) for _ in range(2)]
        assert model(feats, logits).shape == (2, 4, 16 * h, 16 * w)
    x = torch.randn(1, 20, 3, 6)
    torch.testing.assert_close(model.gates[0].pool(x), x)  # identity at the reference grid (§B.3)


def test_flatten_is_nhwc():
    """fc1 column j reads pooled value (h, w, c) with c fastest, as the original's NHWC flatten."""
    gate = ClassGate(2, gate_channels=2, hidden=1, pool_hw=(1, 2), dropout=0.0).eval()
    with torch.no_grad():
        gate.conv.weight.zero_()
        gate.conv.bias.copy_(torch.tensor([1.0, 2.0]))  # channel c constant c + 1 everywhere
        gate.fc1.weight.zero_()
        gate.fc1.bias.zero_()
        gate.fc1.weight[0, 1] = 1.0  # NHWC index 1 = (h 0, w 0, channel 1) -> value 2
        gate.fc2.weight.copy_(torch.tensor([[0.0], [1.0]]))
        gate.fc2.bias.zero_()
    weights = gate(torch.zeros(1, 2, 3, 4))
    # softmax (o, p) = softmax(0, 2): the weight of modality 1 is p
    torch.testing.assert_close(weights[0, 0], torch.sigmoid(torch.tensor(2.0)))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = CMoDE(8, 2, pool_hw=(2, 2))
    feats = [torch.randn(4, 4, 4, 4), torch.randn(4, 4, 4, 4)]
    model.eval()
    torch.testing.assert_close(model.class_weights(feats), model.class_weights(feats))
    model.train()
    assert not torch.equal(model.class_weights(feats), model.class_weights(feats))


def test_errors():
    with pytest.raises(ValueError, match="mode"):
        CMoDE(8, 2, mode="tiny")  # type: ignore[arg-type]
    model = CMoDE(8, 2, pool_hw=(1, 1))
    with pytest.raises(ValueError, match="mixes 2 experts"):
        model([torch.zeros(1, 8, 2, 2)], [torch.zeros(1, 2, 32, 32)])
    with pytest.raises(ValueError, match="share one shape"):
        model([torch.zeros(1, 4, 2, 2)] * 2, [torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 16)])
