"""Segmentation losses: cross-entropy over all pixels with void ignored, plus deep supervision.

adapnetpp.md §7: total = CE(main) + 0.6 CE(aux1) + 0.5 CE(aux2), where CE sums the per-pixel negative
log-likelihood of non-void pixels and divides by *all* N*H*W pixels (void included in the denominator).
Labels >= C (outside the model's label space) are ignored like void. Deviation [spec §7]: log-softmax
instead of log(softmax + 1e-10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fusionseg.models.output import ExpertOutput

VOID_ID = 0  # label id ignored by losses and metrics (adapnetpp.md §12)


def sanitize_labels(target: Tensor, num_classes: int) -> Tensor:
    """Map labels outside 0..C-1 to void, on a copy.

    Args:
        target: (B, H, W) int64 class ids.
        num_classes: C, including void.

    Returns:
        (B, H, W) int64 ids in 0..C-1, out-of-range ids replaced by `VOID_ID`.
    """
    return torch.where((target >= num_classes) | (target < 0), torch.full_like(target, VOID_ID), target)


def resize_labels(target: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of (B, H, W) label maps to `size` = (h, w); returned as is if equal."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    resized = F.interpolate(target[:, None].float(), size=size, mode="nearest")  # (B, 1, h, w)
    return resized[:, 0].long()


def segmentation_ce(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy summed over non-void pixels, divided by the number of all pixels (spec §7).

    Args:
        logits: (B, C, H, W) float class scores (computed in float32 whatever their dtype).
        target: (B, h, w) int64 ids; resized (nearest) to the logits' size when it differs; ids >= C
            and void (0) contribute nothing but count in the denominator.

    Returns:
        Scalar float32 loss.
    """
    num_classes = logits.shape[1]
    target = resize_labels(sanitize_labels(target, num_classes), tuple(logits.shape[-2:]))
    nll = F.cross_entropy(logits.float(), target, ignore_index=VOID_ID, reduction="sum")
    return nll / target.numel()


@dataclass(frozen=True)
class LossTerms:
    """A loss value and its weighted parts.

    Attributes:
        total: Scalar tensor to back-propagate.
        parts: Unweighted CE of each head, detached scalar tensors: "main", "aux1", "aux2", ...
    """

    total: Tensor
    parts: dict[str, Tensor]


class SegmentationLoss:
    """CE on the main logits plus weighted CE on each auxiliary head (spec §7).

    Args:
        aux_weights: Weight of each aux head in `ExpertOutput.aux` order (`ModelConfig.aux_weights`,
            default (0.6, 0.5)). Aux outputs beyond this list raise `ValueError`; fewer aux outputs
            (eval mode, aux disabled) are fine.
    """

    def __init__(self, aux_weights: Sequence[float] = (0.6, 0.5)) -> None:
        self.aux_weights = tuple(float(w) for w in aux_weights)

    def __call__(self, output: ExpertOutput, target: Tensor) -> LossTerms:
        """Compute the total loss of one model output.

        Args:
            output: Model output with (B, C, H, W) logits and aux logits.
            target: (B, H, W) int64 class ids (0 = void).
        """
        if len(output.aux) > len(self.aux_weights):
            raise ValueError(
                f"model returned {len(output.aux)} aux outputs but only {len(self.aux_weights)} aux "
                "weights are configured (model.aux_weights)"
            )
        main = segmentation_ce(output.logits, target)
        total = main
        parts = {"main": main.detach()}
        for i, (aux_logits, weight) in enumerate(zip(output.aux, self.aux_weights), start=1):
            term = segmentation_ce(aux_logits, target)
            total = total + weight * term
            parts[f"aux{i}"] = term.detach()
        return LossTerms(total=total, parts=parts)
