"""Loss of adapnetpp.md §7 against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from fusionseg.engine.losses import SegmentationLoss, sanitize_labels, segmentation_ce
from fusionseg.models.output import ExpertOutput


def nll(logits: list[float], k: int) -> float:
    """-log softmax_k by hand."""
    return -(logits[k] - math.log(sum(math.exp(v) for v in logits)))


def test_ce_sums_non_void_and_divides_by_all_pixels():
    # C = 3, one image 1 x 4: labels 2, 1, void, 7 (>= C, ignored)
    px = [[0.0, 1.0, 2.0], [1.0, 3.0, -1.0], [5.0, 0.0, 0.0], [0.0, 0.0, 9.0]]
    logits = torch.tensor(px).T.reshape(1, 3, 1, 4)
    target = torch.tensor([[[2, 1, 0, 7]]])
    expected = (nll(px[0], 2) + nll(px[1], 1)) / 4
    assert float(segmentation_ce(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_total_weights_aux_heads():
    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 8, 8))
    main, a1, a2 = (torch.randn(2, 4, 8, 8) for _ in range(3))
    out = ExpertOutput(logits=main, aux=(a1, a2))
    terms = SegmentationLoss((0.6, 0.5))(out, target)
    ce = [float(segmentation_ce(t, target)) for t in (main, a1, a2)]
    assert float(terms.total) == pytest.approx(ce[0] + 0.6 * ce[1] + 0.5 * ce[2], rel=1e-6)
    assert float(terms.parts["aux2"]) == pytest.approx(ce[2], rel=1e-6)
    # eval mode: no aux, the loss is the main CE
    assert float(SegmentationLoss()(ExpertOutput(main), target).total) == pytest.approx(ce[0], rel=1e-6)


def test_custom_aux_weights_and_too_many_aux():
    target = torch.ones(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 2, 4, 4)
    out = ExpertOutput(logits, aux=(logits, logits))
    terms = SegmentationLoss((1.0, 2.0))(out, target)
    assert float(terms.total) == pytest.approx(4 * math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="aux"):
        SegmentationLoss((0.6,))(out, target)


def test_labels_resized_to_smaller_logits_and_input_untouched():
    target = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 9, 9], [0, 0, 9, 9]]])
    before = target.clone()
    logits = torch.zeros(1, 3, 2, 2)  # uniform: each labelled pixel costs log 3
    assert float(segmentation_ce(logits, target)) == pytest.approx(2 * math.log(3) / 4, rel=1e-6)
    assert torch.equal(target, before)
    assert torch.equal(sanitize_labels(target, 3), torch.where(target >= 3, 0, target))


def test_all_void_gives_zero_loss_with_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = segmentation_ce(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None
