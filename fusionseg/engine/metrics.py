"""Segmentation metrics from a confusion matrix accumulated on the fly (adapnetpp.md §8, evaluation).

Rows are ground truth, columns predictions, both over all C ids (void included). Pixels whose ground
truth is void (0) or outside 0..C-1 are not counted at all, which equals the original's "prediction set
to void at void-GT pixels". A non-void pixel predicted as void counts as a false negative of its class.

Two mIoU conventions over classes 1..C-1 are reported:

- `miou` (headline): mean IoU over the classes *present*, i.e. with TP + FP + FN > 0 (the class occurs
  in the ground truth or in the predictions);
- `miou_spec`: the released code's convention, sum of IoUs / (C - 1), absent classes counting 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from fusionseg.engine.losses import VOID_ID


class ConfusionMatrix:
    """Accumulates a (C, C) int64 confusion matrix with `torch.bincount` on the tensors' device.

    Args:
        num_classes: C, including void (id 0).
        device: Where the matrix lives (that of the predictions, usually).
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (void + one class), got {num_classes}")
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix.zero_()

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch.

        Args:
            pred: (B, H, W) or (H, W) int predicted ids in 0..C-1.
            target: Same shape, int ground-truth ids; void and ids outside 0..C-1 are skipped.

        Raises:
            ValueError: shapes differ or predictions are out of range.
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        c = self.num_classes
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)  # (N,)
        target = target.reshape(-1).to(self.matrix.device, torch.int64)  # (N,)
        keep = (target != VOID_ID) & (target >= 0) & (target < c)
        pred, target = pred[keep], target[keep]
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= c):
            raise ValueError(f"predicted ids must lie in 0..{c - 1}")
        counts = torch.bincount(target * c + pred, minlength=c * c)  # (C*C,)
        self.matrix += counts.reshape(c, c)

    def compute(self, class_names: Sequence[str] | None = None) -> SegmentationMetrics:
        """Metrics of everything accumulated so far."""
        return metrics_from_confusion(self.matrix.cpu().numpy(), class_names=class_names)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores derived from a confusion matrix.

    Attributes:
        confusion: (C, C) int64 counts, rows = ground truth, columns = prediction; row 0 (void) is 0.
        iou: (C,) float64 per-class IoU = TP / (TP + FP + FN); NaN for void and for absent classes.
        present: (C,) bool, classes 1..C-1 with TP + FP + FN > 0.
        miou: Headline mIoU over present classes 1..C-1 (NaN when none is present).
        miou_spec: Sum of IoU over classes 1..C-1 divided by C - 1, absent classes counting 0.
        pixel_accuracy: Correct / all non-void ground-truth pixels (NaN when there are none).
        class_names: Name per id (or "class<i>").
    """

    confusion: NDArray[np.int64]
    iou: NDArray[np.float64]
    present: NDArray[np.bool_]
    miou: float
    miou_spec: float
    pixel_accuracy: float
    class_names: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (NaN becomes None)."""

        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {
            "miou": num(self.miou),
            "miou_convention": "mean over classes 1..C-1 present in ground truth or prediction",
            "miou_spec": num(self.miou_spec),
            "miou_spec_convention": "sum over classes 1..C-1 / (C-1), absent classes count 0",
            "pixel_accuracy": num(self.pixel_accuracy),
            "per_class_iou": {
                name: num(self.iou[i]) for i, name in enumerate(self.class_names) if i != VOID_ID
            },
            "num_pixels": int(self.confusion.sum()),
        }


def metrics_from_confusion(
    confusion: NDArray[np.integer], *, class_names: Sequence[str] | None = None
) -> SegmentationMetrics:
    """Per-class IoU, both mIoU conventions and pixel accuracy of a confusion matrix.

    Args:
        confusion: (C, C) counts, rows = ground truth, columns = prediction. Row 0 (void GT) is
            ignored; column 0 (predicted void) counts as a miss of the GT class.
        class_names: Optional C names.

    Returns:
        The metrics; IoU and means over classes 1..C-1 only.
    """
    cm = np.asarray(confusion, dtype=np.int64).copy()
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {cm.shape}")
    c = cm.shape[0]
    names = tuple(class_names) if class_names is not None else tuple(f"class{i}" for i in range(c))
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} entries for a {c}x{c} confusion matrix")
    cm[VOID_ID, :] = 0  # void ground truth never counts
    tp = np.diag(cm).astype(np.float64)  # (C,)
    fn = cm.sum(axis=1) - tp  # GT pixels of the class predicted as something else (void included)
    fp = cm.sum(axis=0) - tp  # pixels of other (non-void) GT predicted as the class
    union = tp + fp + fn
    present = union > 0
    present[VOID_ID] = False
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / np.where(union > 0, union, 1), np.nan)
    iou[VOID_ID] = np.nan
    miou = float(np.mean(iou[present])) if present.any() else float("nan")
    miou_spec = float(np.nansum(iou[1:]) / (c - 1))
    labelled = cm.sum()
    pixel_accuracy = float(tp[1:].sum() / labelled) if labelled > 0 else float("nan")
    return SegmentationMetrics(
        confusion=cm,
        iou=iou,
        present=present,
        miou=miou,
        miou_spec=miou_spec,
        pixel_accuracy=pixel_accuracy,
        class_names=names,
    )
