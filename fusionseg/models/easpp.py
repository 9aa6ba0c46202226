"""eASPP: efficient atrous spatial pyramid pooling of AdapNet++ (adapnetpp.md §5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fusionseg.layers import PooledBatchNorm2d, conv_bn, init_he_


class ImagePooling(nn.Module):
    """§5 branch E: global average -> 1x1 conv -> BN -> ReLU -> broadcast to the input's H x W.

    The original resizes the 1x1 map bilinearly to H x W, which is a constant broadcast; `expand` gives
    the same values without an interpolation.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = PooledBatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W), constant over H and W."""
        h, w = x.shape[-2:]
        g = x.mean(dim=(2, 3), keepdim=True)  # (B, C_in, 1, 1)
        g = F.relu(self.bn(self.conv(g)), inplace=True)  # (B, C_out, 1, 1)
        return g.expand(-1, -1, h, w)  # (B, C_out, H, W)


class EASPP(nn.Module):
    """Efficient ASPP (§5): five parallel branches -> concat -> 1x1 fuse conv -> BN (no ReLU).

    Branches, in concat order: A = 1x1 conv; one cascade per rate (1x1 to `bottleneck_channels`, two
    3x3 atrous convs at that rate, 1x1 back to `out_channels`; every conv BN -> ReLU); E = image pooling.

    Args:
        in_channels: Input maps (2048 for the block-4 output).
        out_channels: Maps of every branch and of the output (256 in AdapNet++).
        rates: Atrous rates, one cascade each; (3, 6, 12) for 384x768 models, (6, 12, 18) for the
            768x768 Cityscapes-19 models.
        bottleneck_channels: Width inside each atrous cascade (64 in AdapNet++).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (3, 6, 12),
        *,
        bottleneck_channels: int = 64,
    ) -> None:
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"EASPP: rates must be a non-empty list of ints >= 1, got {tuple(rates)!r}")
        self.rates = tuple(int(r) for r in rates)
        self.out_channels = out_channels
        self.conv1x1 = conv_bn(in_channels, out_channels, 1)  # branch A
        self.cascades = nn.ModuleList(  # branches B, C, D
            nn.Sequential(
                conv_bn(in_channels, bottleneck_channels, 1),
                conv_bn(bottleneck_channels, bottleneck_channels, 3, dilation=r),
                conv_bn(bottleneck_channels, bottleneck_channels, 3, dilation=r),
                conv_bn(bottleneck_channels, out_channels, 1),
            )
            for r in self.rates
        )
        self.image_pool = ImagePooling(in_channels, out_channels)  # branch E
        self.fuse = conv_bn((len(self.rates) + 2) * out_channels, out_channels, 1, relu=False)
        init_he_(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, out_channels, H, W)."""
        branches = [self.conv1x1(x), *(cascade(x) for cascade in self.cascades), self.image_pool(x)]
        return self.fuse(torch.cat(branches, dim=1))  # [A, B, C, D, E]: (B, 5 * out_channels, H, W)
