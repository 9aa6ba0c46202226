"""AdapNet++ encoder: a pre-activation ResNet-50 with multiscale residual units (adapnetpp.md §2-3).

The layer primitives it shares with the heads and fusion blocks (BN settings, conv + BN, "he" init) are
in `fusionseg.layers`.

Module names (used by the ImageNet mapping in `backbones/init.py` and by model summaries):

    stem.input_bn, stem.conv, stem.bn                      §2
    block{b}.unit{u}.{pre_bn, conv1, bn1, conv2, bn2, conv3, dropout, shortcut}
    block{b}.unit{u}.conv2.convs.{0,1}                     multiscale 3x3 halves (r1 first), §3.1
    block1.out_bn, block2.out_bn, block4.out_bn            block-output norms, §3.2
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fusionseg.backbones.features import FeatureSpec
from fusionseg.layers import batch_norm, check_padding, init_he_, strided_conv, strided_max_pool

# ResNet-50 layout (§3): units per block, block output widths; bottleneck width = output / 4.
BLOCK_UNITS = (3, 4, 6, 3)
BLOCK_CHANNELS = (256, 512, 1024, 2048)
STEM_CHANNELS = 64

# The multiscale units of §3.2, in network order; every one takes an (r1, r2) dilation pair.
MULTISCALE_UNITS = (
    "block2.unit4",
    "block3.unit3",
    "block3.unit4",
    "block3.unit5",
    "block3.unit6",
    "block4.unit1",
    "block4.unit2",
    "block4.unit3",
)

# §3.2 (released code): 1||2 in blocks 2 and 3, 2||2 (a plain dilation-2 3x3) in block 4.
RELEASED_DILATIONS: Mapping[str, tuple[int, int]] = {
    **{name: (1, 2) for name in MULTISCALE_UNITS if not name.startswith("block4")},
    **{name: (2, 2) for name in MULTISCALE_UNITS if name.startswith("block4")},
}


class MultiscaleConv2d(nn.Module):
    """3x3 conv whose output channels are split in two halves with their own dilation (§3.1).

    Both halves read all input maps; the r1 half comes first in the output. Padding equals the
    dilation (symmetric), so the spatial size is kept.

    Args:
        in_channels: Input maps (the unit's bottleneck width).
        out_channels: Output maps, even; each half has out_channels / 2.
        dilations: (r1, r2).
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: tuple[int, int]) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"MultiscaleConv2d: out_channels must be even, got {out_channels}")
        if len(dilations) != 2 or min(dilations) < 1:
            raise ValueError(f"MultiscaleConv2d: dilations must be two ints >= 1, got {dilations!r}")
        self.dilations = (int(dilations[0]), int(dilations[1]))
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels // 2, 3, padding=r, dilation=r, bias=False)
            for r in self.dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W): [r1 half, r2 half] along channels."""
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class Bottleneck(nn.Module):
    """One pre-activation bottleneck unit of §3.1, covering all four unit kinds.

    Branch: [pre-activation h = ReLU(pre_bn(x))] -> 1x1 conv1 -> BN -> ReLU -> 3x3 conv2 (stride,
    dilation or multiscale) -> BN -> ReLU -> 1x1 conv3 (no BN, no ReLU) [-> dropout]. The output is
    shortcut + branch, where the shortcut is

    - "identity": the raw unit input x (standard and multiscale units);
    - "input": a 1x1 projection (stride `stride`, no BN) of h (first units of blocks 2-3, where h = x,
      and block-4 unit 1, where h is pre-activated);
    - "branch": a 1x1 projection of the branch's first activation ReLU(bn1(conv1(x))) (block-1 unit 1).

    Args:
        in_channels: Input maps.
        mid_channels: Bottleneck width.
        out_channels: Output maps.
        stride: Stride of the 3x3 conv and of an "input" projection.
        dilations: One dilation for a plain 3x3, or (r1, r2) for a multiscale 3x3.
        preact: Whether the unit pre-activates its input with BN -> ReLU.
        shortcut: "identity", "input" or "branch" (see above).
        dropout: Drop probability on the branch output (0 = no dropout layer).
        padding: "symmetric" or "tf_same": how a strided 3x3 conv2 pads (deepscene-tf.md §4); stride-1
            and dilated convs always pad symmetrically (equal to TF `SAME` there).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilations: int | tuple[int, int] = 1,
        preact: bool = True,
        shortcut: str = "identity",
        dropout: float = 0.0,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if shortcut not in ("identity", "input", "branch"):
            raise ValueError(f"Bottleneck: shortcut must be identity|input|branch, got {shortcut!r}")
        if shortcut == "identity" and (stride != 1 or in_channels != out_channels):
            raise ValueError("Bottleneck: an identity shortcut needs stride 1 and in == out channels")
        if shortcut == "branch" and stride != 1:
            raise ValueError("Bottleneck: a shortcut on the branch activation needs stride 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Bottleneck: dropout must be in [0, 1), got {dropout}")
        self.shortcut_kind = shortcut
        self.pre_bn = batch_norm(in_channels) if preact else None
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = batch_norm(mid_channels)
        if stride != 1 and dilations == 1:
            self.conv2: nn.Module = strided_conv(
                mid_channels, mid_channels, 3, stride=stride, padding=padding
            )
        elif isinstance(dilations, int):
            self.conv2 = nn.Conv2d(
                mid_channels,
                mid_channels,
                3,
                stride=stride,
                padding=dilations,
                dilation=dilations,
                bias=False,
            )
        else:
            if stride != 1:
                raise ValueError("Bottleneck: multiscale units have stride 1 (§3.2)")
            self.conv2 = MultiscaleConv2d(mid_channels, mid_channels, dilations)
        self.bn2 = batch_norm(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        if shortcut == "identity":
            self.shortcut = None
        else:
            src = mid_channels if shortcut == "branch" else in_channels
            self.shortcut = nn.Conv2d(src, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride), the raw (un-normalised) sum."""
        h = F.relu(self.pre_bn(x), inplace=True) if self.pre_bn is not None else x
        a1 = F.relu(self.bn1(self.conv1(h)), inplace=True)
        a2 = F.relu(self.bn2(self.conv2(a1)), inplace=True)
        y = self.conv3(a2)
        if self.dropout is not None:
            y = self.dropout(y)  # §3.1: on the branch output, before the addition
        if self.shortcut_kind == "identity":
            return x + y
        if self.shortcut_kind == "branch":
            return self.shortcut(a1) + y  # §3.1 block-1 unit-1 wiring
        return self.shortcut(h) + y


class Stem(nn.Module):
    """§2: input BN (no ReLU) -> 7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool (padding 1).

    The input BN is learnable and replaces mean subtraction (§1); input is raw 0-255 values. With
    padding="tf_same" the conv and the pool pad like TF `SAME` (deepscene-tf.md §4) instead of 3 / 1
    each side; the parameters are the same.
    """

    def __init__(
        self, in_channels: int, out_channels: int = STEM_CHANNELS, *, padding: str = "symmetric"
    ) -> None:
        super().__init__()
        self.input_bn = batch_norm(in_channels)
        self.conv = strided_conv(in_channels, out_channels, 7, stride=2, padding=padding)
        self.bn = batch_norm(out_channels)
        self.pool = strided_max_pool(3, stride=2, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) float 0-255 -> (B, 64, H / 4, W / 4)."""
        x = self.input_bn(x)
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        return self.pool(x)


class MultiscaleResNet50(nn.Module):
    """The AdapNet++ encoder of §3: pre-activation ResNet-50, multiscale units, output stride 16.

    Returns a dict with fixed keys (see `feature_info`):

    - "b1_out": (B, 256, H/4, W/4), block-1 output after its BN -> ReLU;
    - "b2_out": (B, 512, H/8, W/8), block-2 output after its BN -> ReLU;
    - "b3_out": (B, 1024, H/16, W/16), block-3 raw sum (no output norm in §3.2);
    - "b4_out": (B, 2048, H/16, W/16), block-4 output after its BN -> ReLU.

    Args:
        in_channels: Input channels (3 for BGR/HHA/JET/EVI images, 1 for raw depth).
        dilations: (r1, r2) for every name in `MULTISCALE_UNITS` (§3.3); default = released code.
        dropout: Drop probability on the branch of block-4 unit 3 (§3.1; original 0.7).
        padding: "symmetric" (default) or "tf_same": TF `SAME` on the four stride-2 layers (stem conv,
            stem pool, conv2 of block-2 and block-3 unit 1; deepscene-tf.md §4). Same parameters.
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        dilations: Mapping[str, tuple[int, int]] = RELEASED_DILATIONS,
        dropout: float = 0.7,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"MultiscaleResNet50: in_channels must be >= 1, got {in_channels}")
        if set(dilations) != set(MULTISCALE_UNITS):
            missing = sorted(set(MULTISCALE_UNITS) - set(dilations))
            extra = sorted(set(dilations) - set(MULTISCALE_UNITS))
            raise ValueError(
                f"MultiscaleResNet50: dilations must name exactly {', '.join(MULTISCALE_UNITS)} "
                f"(missing {missing}, unknown {extra})"
            )
        self.in_channels = in_channels
        self.padding = check_padding(padding)
        self.dilations = {name: tuple(dilations[name]) for name in MULTISCALE_UNITS}
        self.stem = Stem(in_channels, padding=padding)
        in_ch = STEM_CHANNELS
        for b, (num_units, out_ch) in enumerate(zip(BLOCK_UNITS, BLOCK_CHANNELS), start=1):
            units: OrderedDict[str, nn.Module] = OrderedDict()
            for u in range(1, num_units + 1):
                name = f"block{b}.unit{u}"
                first = u == 1
                units[f"unit{u}"] = Bottleneck(
                    in_ch if first else out_ch,
                    out_ch // 4,
                    out_ch,
                    # §3.2: stride 2 in the 3x3 of the first unit of blocks 2 and 3 (output stride 16)
                    stride=2 if first and b in (2, 3) else 1,
                    dilations=self.dilations.get(name, 1),
                    # first units of blocks 1-3 read an already normalised input; block-4 unit 1
                    # pre-activates the raw block-3 sum
                    preact=not first or b == 4,
                    shortcut=("branch" if b == 1 else "input") if first else "identity",
                    dropout=dropout if (b, u) == (4, 3) else 0.0,
                    padding=padding,
                )
            if b != 3:  # §3.2: block-output norms after blocks 1, 2 and 4 only
                units["out_bn"] = batch_norm(out_ch)
                units["out_relu"] = nn.ReLU(inplace=True)
            self.add_module(f"block{b}", nn.Sequential(units))
            in_ch = out_ch
        self.feature_info: dict[str, FeatureSpec] = {
            "b1_out": FeatureSpec(BLOCK_CHANNELS[0], 4),
            "b2_out": FeatureSpec(BLOCK_CHANNELS[1], 8),
            "b3_out": FeatureSpec(BLOCK_CHANNELS[2], 16),
            "b4_out": FeatureSpec(BLOCK_CHANNELS[3], 16),
        }
        init_he_(self)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(B, C_in, H, W) float -> {"b1_out", "b2_out", "b3_out", "b4_out"} (shapes: `feature_info`)."""
        x = self.stem(x)  # (B, 64, H/4, W/4)
        b1 = self.block1(x)  # (B, 256, H/4, W/4)
        b2 = self.block2(b1)  # (B, 512, H/8, W/8)
        b3 = self.block3(b2)  # (B, 1024, H/16, W/16)
        b4 = self.block4(b3)  # (B, 2048, H/16, W/16)
        return {"b1_out": b1, "b2_out": b2, "b3_out": b3, "b4_out": b4}
