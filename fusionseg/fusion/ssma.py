"""SSMA: self-supervised model adaptation block (ssma-cmode.md §A.1).

The block concatenates the features of every modality (modality 1 first), predicts a per-pixel,
per-channel sigmoid gate from them through a small bottleneck, re-weights the concatenation with it and
projects back to the width of one modality.

N-modality generalisation (a documented deviation; the spec defines two inputs): the concatenation holds
N·F maps, the bottleneck maps N·F -> N·F/η, the gate N·F/η -> N·F and the projection N·F -> F. With
N = 2 this is exactly the block of §A.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from fusionseg.layers import batch_norm, init_fusion_

Projection = Literal["1x1-bn", "3x3"]


class SSMA(nn.Module):
    """Gate the concatenated features of N modalities and fuse them into one feature map (§A.1).

    Args:
        channels: F, maps per modality (and of the output).
        reduction: η; the bottleneck has N·F/η maps (16 at the eASPP level, 6 at the skips, §A.1 table).
        num_inputs: N, number of modalities fused (2 in the spec).
        projection: Output projection N·F -> F. "1x1-bn": 1×1 conv without bias followed by BN, no ReLU
            (the eASPP-level block, `conv515`); "3x3": 3×3 conv with bias, no BN, no ReLU (the skip-level
            blocks, `conv552`, `conv553`).

    Raises:
        ValueError: non-positive sizes, or η larger than N·F.
    """

    def __init__(
        self, channels: int, reduction: int, *, num_inputs: int = 2, projection: Projection = "3x3"
    ) -> None:
        super().__init__()
        if channels < 1 or reduction < 1 or num_inputs < 1:
            raise ValueError(
                f"channels, reduction and num_inputs must be positive, got {channels}, {reduction}, "
                f"{num_inputs}"
            )
        width = num_inputs * channels  # N·F
        hidden = width // reduction  # N·F/η, integer division as the original
        if hidden < 1:
            raise ValueError(f"reduction {reduction} leaves no bottleneck maps for {width} input maps")
        self.channels = channels
        self.num_inputs = num_inputs
        # §A.1 step 2: 3×3 conv with bias, ReLU, no BN
        self.bottleneck = nn.Sequential(nn.Conv2d(width, hidden, 3, padding=1, bias=True), nn.ReLU())
        # §A.1 step 3: 3×3 conv with bias, sigmoid, no BN; its output is the gate G
        self.gate = nn.Sequential(nn.Conv2d(hidden, width, 3, padding=1, bias=True), nn.Sigmoid())
        # §A.1 step 5: the projection differs by location
        if projection == "1x1-bn":
            self.project: nn.Module = nn.Sequential(
                nn.Conv2d(width, channels, 1, bias=False), batch_norm(channels)
            )
        elif projection == "3x3":
            self.project = nn.Conv2d(width, channels, 3, padding=1, bias=True)
        else:
            raise ValueError(f"projection must be '1x1-bn' or '3x3', got {projection!r}")
        init_fusion_(self)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Fuse one feature map per modality.

        Args:
            features: N tensors (B, F, H, W) float, modality 1 first, all the same shape.

        Returns:
            (B, F, H, W) fused features.

        Raises:
            ValueError: wrong number of inputs or mismatched shapes.
        """
        if len(features) != self.num_inputs:
            raise ValueError(f"SSMA expects {self.num_inputs} feature maps, got {len(features)}")
        # compare torch.Size objects (not a set of tuples): also works while tracing for ONNX export
        if any(f.shape != features[0].shape for f in features[1:]):
            raise ValueError(f"SSMA inputs must share one shape, got {[tuple(f.shape) for f in features]}")
        x = torch.cat(list(features), dim=1)  # (B, N·F, H, W), modality 1 first (§A.1 step 1)
        g = self.gate(self.bottleneck(x))  # (B, N·F, H, W) in (0, 1)
        return self.project(x * g)  # (B, F, H, W)
