"""AdapNet++ decoder D1-D6 and auxiliary heads (adapnetpp.md §6-7), reusable by the SSMA decoder.

The decoder is two `UpStage`s (one per skip tap, coarse to fine), a classifier and a x4 deconv. The SSMA
fused decoder (ssma-cmode.md §A.3) is the same decoder with a global-context gate on each skip:
`Decoder(..., context_gates=True)`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fusionseg.layers import PooledBatchNorm2d, batch_norm, conv_bn, init_he_, resize_bilinear_tf_legacy

# Skip taps the decoder consumes, coarse to fine: D2 concatenates skip2 (stride 8), D4 skip1 (stride 4).
DECODER_SKIPS = ("skip2", "skip1")


class DecoderOutput(NamedTuple):
    """What `Decoder.forward` returns.

    Attributes:
        logits: (B, C, H, W) class scores at the input resolution (D6 output, after its BN).
        ups: The deconv outputs after their BN and before the skip concat, coarse to fine:
            (deconv_up1 (B, width, H/8, W/8), deconv_up2 (B, width, H/4, W/4)); the aux heads read them.
    """

    logits: Tensor
    ups: tuple[Tensor, ...]


def deconv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """Transposed conv (no bias) -> BN, no ReLU; output exactly `stride` x the input size (§6).

    4x4/2 uses padding 1 and 8x8/4 padding 2, the PyTorch equivalents of TF's SAME deconvs.
    """
    padding = (kernel_size - stride) // 2
    return nn.Sequential(
        OrderedDict(
            conv=nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
            ),
            bn=batch_norm(out_channels),
        )
    )


class GlobalContextGate(nn.Module):
    """SSMA decoder gate (ssma-cmode.md §A.3): global average -> 1x1 conv (no bias) -> BN -> ReLU.

    Args:
        in_channels: Maps of the deconv output the gate reads.
        out_channels: Maps of the skip it scales.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = PooledBatchNorm2d(out_channels)  # 1x1 maps: same batch-size caveat as eASPP branch E

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, 1, 1), non-negative."""
        g = x.mean(dim=(2, 3), keepdim=True)  # (B, C_in, 1, 1)
        return F.relu(self.bn(self.conv(g)))


class UpStage(nn.Module):
    """D1+D2 (or D3+D4): x2 deconv -> BN = up; [gate the skip]; concat [up, skip]; two 3x3 conv-BN-ReLU.

    Args:
        in_channels: Maps of the coarse input.
        skip_channels: Maps of the skip tap at twice the input resolution.
        out_channels: Maps of the deconv and of both 3x3 convs.
        context_gate: Scale the skip by a `GlobalContextGate` of `up` before the concat (SSMA).
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, *, context_gate: bool = False
    ):
        super().__init__()
        self.up = deconv_bn(in_channels, out_channels, 4, 2)
        self.gate = GlobalContextGate(out_channels, skip_channels) if context_gate else None
        self.fuse = nn.Sequential(
            conv_bn(out_channels + skip_channels, out_channels, 3),
            conv_bn(out_channels, out_channels, 3),
        )

    def forward(self, x: Tensor, skip: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, h, w), skip (B, C_skip, 2h, 2w) -> (fused, up), both (B, C_out, 2h, 2w)."""
        up = self.up(x)  # (B, C_out, 2h, 2w)
        if self.gate is not None:
            skip = skip * self.gate(up)  # (B, C_skip, 2h, 2w), gate broadcast over H, W
        fused = self.fuse(torch.cat([up, skip], dim=1))  # concat: deconv first (§6 D2/D4)
        return fused, up


class Decoder(nn.Module):
    """AdapNet++ decoder (§6): D1-D4 as one `UpStage` per skip, D5 classifier (ReLU kept), D6 x4 deconv.

    Args:
        in_channels: Maps of the stride-16 input (the eASPP output).
        skip_channels: Maps of each skip tap, keyed by tap name; must hold every name in `skip_order`.
        num_classes: C, including void.
        width: Maps inside the decoder; default `in_channels` (256 in AdapNet++).
        context_gates: Add the SSMA global-context gate on each skip (ssma-cmode.md §A.3).
        skip_order: Tap names, coarse to fine; each stage doubles the resolution.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        skip_channels: Mapping[str, int],
        num_classes: int,
        width: int | None = None,
        context_gates: bool = False,
        skip_order: Sequence[str] = DECODER_SKIPS,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"Decoder: num_classes must be >= 1, got {num_classes}")
        missing = [name for name in skip_order if name not in skip_channels]
        if missing:
            raise ValueError(f"Decoder: skip_channels lacks {missing} (has {sorted(skip_channels)})")
        width = in_channels if width is None else width
        self.width = width
        self.num_classes = num_classes
        self.stages = nn.ModuleDict()
        for name in skip_order:
            self.stages[name] = UpStage(in_channels, skip_channels[name], width, context_gate=context_gates)
            in_channels = width
        self.classifier = conv_bn(width, num_classes, 1, relu=True)  # D5: ReLU on class scores (§6)
        self.upsample = deconv_bn(num_classes, num_classes, 8, 4)  # D6
        init_he_(self)

    def forward(self, x: Tensor, skips: Mapping[str, Tensor]) -> DecoderOutput:
        """x (B, C_in, H/16, W/16) and skips {name: (B, C_skip, ., .)} -> `DecoderOutput` at H x W."""
        ups = []
        for name, stage in self.stages.items():
            x, up = stage(x, skips[name])  # resolution x2 per stage
            ups.append(up)
        scores = self.classifier(x)  # (B, C, H/4, W/4)
        return DecoderOutput(logits=self.upsample(scores), ups=tuple(ups))  # logits (B, C, H, W)


AUX_RESIZE_MODES = ("half_pixel", "tf_legacy")


class AuxHeads(nn.Module):
    """Deep-supervision heads (§7): 1x1 conv -> BN (no ReLU), bilinearly upsampled to the input size.

    aux1 reads deconv_up2 (stride 4), aux2 reads deconv_up1 (stride 8); loss weights 0.6 / 0.5 are the
    loss's business (engine/losses.py).

    resize="half_pixel" (default; a documented deviation, docs/architecture-adapnetpp.md) is PyTorch
    bilinear with align_corners=False; "tf_legacy" is TF1's legacy rule (deepscene-tf.md §6), used
    with model.padding="tf_same" so TF-trained aux heads give TF's outputs.

    Args:
        in_channels: Maps of the deconv outputs (the decoder width).
        num_classes: C, including void.
        resize: "half_pixel" or "tf_legacy" (`AUX_RESIZE_MODES`).
    """

    def __init__(self, in_channels: int, num_classes: int, *, resize: str = "half_pixel") -> None:
        super().__init__()
        if resize not in AUX_RESIZE_MODES:
            raise ValueError(f"AuxHeads: resize must be one of {', '.join(AUX_RESIZE_MODES)}, got {resize!r}")
        self.resize = resize
        self.aux1 = conv_bn(in_channels, num_classes, 1, relu=False)
        self.aux2 = conv_bn(in_channels, num_classes, 1, relu=False)
        init_he_(self)

    def forward(self, ups: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """ups = (deconv_up1, deconv_up2) as in `DecoderOutput` -> (aux1, aux2), each (B, C, *size)."""
        up1, up2 = ups
        return self._resize(self.aux1(up2), size), self._resize(self.aux2(up1), size)

    def _resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if self.resize == "tf_legacy":
            return resize_bilinear_tf_legacy(x, size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
