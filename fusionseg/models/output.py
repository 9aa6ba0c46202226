"""What every segmentation model in fusionseg returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ExpertOutput(NamedTuple):
    """Output of an AdapNet++ expert or a fused model.

    Attributes:
        logits: (B, C, H, W) float class scores at the input resolution (C includes void).
        aux: Deep-supervision logits, each (B, C, H, W) at the input resolution, in the order of the
            model's `aux_weights` (aux1 at stride 4, aux2 at stride 8); empty in eval mode or when the
            model has no aux heads.
        taps: Named intermediate features for fusion, e.g. {"skip1": (B, 24, H/4, W/4),
            "skip2": (B, 24, H/8, W/8), "easpp": (B, 256, H/16, W/16)}; may be empty.
    """

    logits: Tensor
    aux: tuple[Tensor, ...] = ()
    taps: dict[str, Tensor] = {}
