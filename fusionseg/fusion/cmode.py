"""CMoDE: class-wise convoluted mixture of deep experts (ssma-cmode.md §B.1).

For every class c (void included) an independent gate looks at the concatenated eASPP outputs of the
experts and produces one softmax weight per expert and image. The experts' class-c logits are mixed with
these weights and a final 3×3 conv C -> C turns the mixture into the fused logits.

Deviations (documented in docs/fusion.md):

* Resolution independence (§B.3): the original flattens a hard-wired 24×48 grid. In "reference" mode the
  20 gate maps are adaptive-average-pooled to `pool_hw` (24×48 by default) before the flatten, which is
  the identity at 384×768 input, so parameters and outputs match the original there. "light" mode uses
  global average pooling (FC 20 -> 128), not parameter-compatible with the original.
* N experts: the gate's last FC has N outputs. For N = 2 its softmax (o, p) weights modality 1 with p and
  modality 2 with o (§B.1 step 3); in general the softmax outputs are assigned to the experts in reverse
  order, which is that rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from fusionseg.layers import init_fusion_

GateMode = Literal["reference", "light"]

REFERENCE_POOL_HW = (24, 48)  # stride-16 grid of a 384×768 input (§B.2)


class ClassGate(nn.Module):
    """Gate of one class: per-image mixture weights of the N experts (§B.1 step 2).

    3×3 conv (in -> `gate_channels`, bias) -> ReLU -> Dropout2d(0.5) -> pool -> flatten (NHWC order, as
    the original) -> FC -> `hidden` (bias) -> ReLU -> FC -> N (bias) -> softmax.

    Args:
        in_channels: Maps of the concatenated expert features (2 × 256 for two AdapNet++ experts).
        num_experts: N, number of experts mixed.
        gate_channels: Maps of the gate conv (20 in the original).
        hidden: Width of the hidden FC layer (128 in the original).
        pool_hw: (h, w) grid the gate maps are adaptive-average-pooled to before the flatten; (1, 1) is
            global average pooling ("light" mode).
        dropout: Drop probability of the channel-wise dropout (keep 0.5 in the original).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_experts: int = 2,
        gate_channels: int = 20,
        hidden: int = 128,
        pool_hw: tuple[int, int] = REFERENCE_POOL_HW,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_experts < 2:
            raise ValueError(f"num_experts must be at least 2, got {num_experts}")
        self.conv = nn.Conv2d(in_channels, gate_channels, 3, padding=1, bias=True)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout2d(dropout)
        self.pool = nn.AdaptiveAvgPool2d(pool_hw)
        self.fc1 = nn.Linear(gate_channels * pool_hw[0] * pool_hw[1], hidden)
        self.fc2 = nn.Linear(hidden, num_experts)

    def forward(self, features: Tensor) -> Tensor:
        """Mixture weights of one class.

        Args:
            features: (B, in_channels, h, w) concatenated expert features (stride 16).

        Returns:
            (B, N) float weights in expert order (modality 1 first), summing to 1 per image.
        """
        x = self.dropout(self.relu(self.conv(features)))  # (B, 20, h, w)
        x = self.pool(x)  # (B, 20, 24, 48) in reference mode, (B, 20, 1, 1) in light mode
        x = x.permute(0, 2, 3, 1).flatten(1)  # (B, 24·48·20), NHWC order as the original (§B.1)
        x = self.fc2(torch.relu(self.fc1(x)))  # (B, N)
        return torch.softmax(x, dim=1).flip(1)  # (B, N); softmax (o, p) -> weights (p, o), §B.1 step 3


class CMoDE(nn.Module):
    """Class-wise gates, per-class mixture of expert logits and the final 3×3 conv (§B.1 steps 2-4).

    Args:
        in_channels: Maps of the concatenated gate input (sum over experts of their eASPP widths).
        num_classes: C, including void; one gate per class.
        num_experts: N, number of experts mixed.
        mode: "reference" pools the gate maps to `pool_hw` (§B.3, default 24×48); "light" uses global
            average pooling.
        pool_hw: Flatten grid of the reference mode.
        gate_channels: Maps of each gate's conv (20).
        hidden: Hidden FC width of each gate (128).
        dropout: Channel-dropout probability inside the gates (0.5).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        num_experts: int = 2,
        mode: GateMode = "reference",
        pool_hw: tuple[int, int] = REFERENCE_POOL_HW,
        gate_channels: int = 20,
        hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if mode not in ("reference", "light"):
            raise ValueError(f"mode must be 'reference' or 'light', got {mode!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        grid = pool_hw if mode == "reference" else (1, 1)
        self.num_experts = num_experts
        self.gates = nn.ModuleList(
            ClassGate(
                in_channels,
                num_experts=num_experts,
                gate_channels=gate_channels,
                hidden=hidden,
                pool_hw=grid,
                dropout=dropout,
            )
            for _ in range(num_classes)
        )
        self.final = nn.Conv2d(num_classes, num_classes, 3, padding=1, bias=True)  # §B.1 step 4
        init_fusion_(self)

    def class_weights(self, features: Sequence[Tensor]) -> Tensor:
        """Per-class expert weights.

        Args:
            features: N tensors (B, F_i, h, w), the experts' eASPP outputs, modality 1 first.

        Returns:
            (B, C, N) float weights; `[:, c, i]` weights expert i's class-c logits.
        """
        x = torch.cat(list(features), dim=1)  # (B, ΣF_i, h, w), modality 1 first (§B.1 step 1)
        return torch.stack([gate(x) for gate in self.gates], dim=1)  # (B, C, N)

    def forward(self, features: Sequence[Tensor], logits: Sequence[Tensor]) -> Tensor:
        """Mix the experts' logits class by class and apply the final conv.

        Args:
            features: N tensors (B, F_i, h, w), gate input (the experts' eASPP outputs).
            logits: N tensors (B, C, H, W), the experts' full-resolution pre-softmax logits.

        Returns:
            (B, C, H, W) fused logits.

        Raises:
            ValueError: wrong number of experts or mismatched logits shapes.
        """
        if len(features) != self.num_experts or len(logits) != self.num_experts:
            raise ValueError(
                f"CMoDE mixes {self.num_experts} experts, got {len(features)} feature maps and "
                f"{len(logits)} logits"
            )
        if any(t.shape != logits[0].shape for t in logits[1:]):  # trace-safe (ONNX export)
            raise ValueError(f"expert logits must share one shape, got {[tuple(t.shape) for t in logits]}")
        weights = self.class_weights(features)  # (B, C, N)
        stacked = torch.stack(list(logits), dim=-1)  # (B, C, H, W, N)
        mixed = (stacked * weights[:, :, None, None, :]).sum(-1)  # (B, C, H, W), §B.1 step 3
        return self.final(mixed)  # (B, C, H, W)
