"""Feature metadata shared by backbones, heads and fusion blocks (STYLE.md §2).

A backbone or trunk returns `dict[str, Tensor]` with fixed keys and publishes one `FeatureSpec` per key
in its `feature_info`, so consumers read channel counts and strides instead of hard-coding them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSpec:
    """Shape metadata of one named feature map.

    Attributes:
        channels: Number of channels C of the (B, C, H / stride, W / stride) map.
        stride: Spatial reduction with respect to the network input (1, 2, 4, 8, 16, ...).
    """

    channels: int
    stride: int

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"FeatureSpec.channels must be >= 1, got {self.channels}")
        if self.stride < 1:
            raise ValueError(f"FeatureSpec.stride must be >= 1, got {self.stride}")

    def shape(self, batch_size: int, height_px: int, width_px: int) -> tuple[int, int, int, int]:
        """(B, C, H / stride, W / stride) for an input of `height_px` x `width_px` pixels."""
        return (batch_size, self.channels, height_px // self.stride, width_px // self.stride)
