"""Confusion matrix and IoU conventions against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusionseg.engine.metrics import ConfusionMatrix, metrics_from_confusion


def test_hand_computed_confusion_and_ious():
    # C = 4 (void + 3). class 3 never appears in GT nor prediction.
    target = torch.tensor([[1, 1, 1, 2], [2, 0, 0, 1]])
    pred = torch.tensor([[1, 1, 2, 2], [1, 3, 1, 0]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    expected = np.zeros((4, 4), np.int64)
    # GT 1: pred 1,1,2 and 0 (void prediction) ; GT 2: pred 2, 1 ; void GT skipped
    expected[1, 1], expected[1, 2], expected[1, 0] = 2, 1, 1
    expected[2, 2], expected[2, 1] = 1, 1
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    m = cm.compute(["void", "a", "b", "c"])
    # class 1: TP 2, FN 2 (one as 2, one as void), FP 1 (GT 2 predicted 1) -> 2/5
    # class 2: TP 1, FN 1, FP 1 -> 1/3 ; class 3: absent
    assert m.iou[1] == pytest.approx(2 / 5) and m.iou[2] == pytest.approx(1 / 3)
    assert math.isnan(m.iou[3]) and math.isnan(m.iou[0])
    assert m.miou == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert m.miou_spec == pytest.approx((2 / 5 + 1 / 3) / 3)
    assert m.pixel_accuracy == pytest.approx(3 / 6)
    d = m.to_dict()
    assert d["per_class_iou"]["c"] is None and d["num_pixels"] == 6


def test_false_positive_only_class_is_present_with_iou_zero():
    cm = np.array([[0, 0, 0], [0, 3, 1], [0, 0, 0]])  # class 2 predicted once, never in GT
    m = metrics_from_confusion(cm)
    assert m.present.tolist() == [False, True, True]
    assert m.iou[2] == 0.0 and m.miou == pytest.approx((3 / 4 + 0) / 2)


def test_accumulation_over_batches_equals_one_pass_and_ignores_out_of_range_gt():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 7, (3, 5, 6), generator=g)  # ids 5, 6 are beyond C = 5
    pred = torch.randint(0, 5, (3, 5, 6), generator=g)
    whole, parts = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(pred, target)
    for i in range(3):
        parts.update(pred[i], target[i])
    assert torch.equal(whole.matrix, parts.matrix)
    assert int(whole.matrix.sum()) == int(((target > 0) & (target < 5)).sum())


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="0..2"):
        cm.update(torch.full((2, 2), 3), torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        ConfusionMatrix(1)


def test_empty_matrix_gives_nan_headline():
    m = metrics_from_confusion(np.zeros((3, 3), np.int64))
    assert math.isnan(m.miou) and m.miou_spec == 0.0 and math.isnan(m.pixel_accuracy)
