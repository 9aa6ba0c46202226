"""The AdapNet++ unimodal expert (adapnetpp.md), split into a reusable trunk and a decoder.

    AdapNetPP
    ├── trunk: AdapNetTrunk        encoder + skip convs + eASPP -> taps {"skip1", "skip2", "easpp"}
    │   ├── encoder: MultiscaleResNet50   §2-3
    │   ├── skips: ModuleDict              §4 (skip1 on b1_out, skip2 on b2_out)
    │   └── easpp: EASPP                   §5
    ├── decoder: Decoder            §6 (D1-D6)
    └── aux: AuxHeads | None        §7 (outputs only in training mode)

SSMA/CMoDE reuse the trunk: `nn.ModuleDict({"rgb": trunk, "depth": trunk})`, loading each expert from a
unimodal checkpoint with `trunk_state_dict(checkpoint_state)` (keys under `TRUNK_PREFIX`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from fusionseg.backbones.features import FeatureSpec
from fusionseg.backbones.resnet import MULTISCALE_UNITS, RELEASED_DILATIONS, MultiscaleResNet50
from fusionseg.config import ModelConfig
from fusionseg.errors import ConfigError
from fusionseg.layers import PADDING_MODES, conv_bn, init_he_
from fusionseg.models.decoder import DECODER_SKIPS, AuxHeads, Decoder
from fusionseg.models.easpp import EASPP
from fusionseg.models.output import ExpertOutput

# Tap names (the keys of ExpertOutput.taps and of AdapNetTrunk.feature_info), defined once.
TAP_SKIP1 = "skip1"
TAP_SKIP2 = "skip2"
TAP_EASPP = "easpp"
# §4: encoder feature each skip conv reads.
SKIP_SOURCES: Mapping[str, str] = {TAP_SKIP1: "b1_out", TAP_SKIP2: "b2_out"}
SKIP_CHANNELS = 24  # §4
EASPP_CHANNELS = 256  # §5
OUTPUT_STRIDE = 16  # §1: input H and W must be multiples of this
TRUNK_PREFIX = "trunk."

# §3.3: (r1, r2) of every multiscale unit. "released" = HEAD of DeepSceneSeg/AdapNet-pp and SSMA (§3.2);
# "may2019" = the increasing schedule of the May-2019 SSMA commit. Parameter counts are identical.
DILATION_PRESETS: Mapping[str, Mapping[str, tuple[int, int]]] = {
    "released": RELEASED_DILATIONS,
    "may2019": dict(
        zip(
            MULTISCALE_UNITS,
            [(1, 4), (1, 2), (1, 4), (1, 8), (1, 16), (2, 2), (4, 2), (16, 2)],
        )
    ),
}


def check_input(x: Tensor, in_channels: int) -> None:
    """Raise ValueError unless x is (B, in_channels, H, W) with H and W multiples of 16 (§1)."""
    if x.ndim != 4:
        raise ValueError(f"AdapNet++ input must be (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"AdapNet++ input has {x.shape[1]} channels, the model was built for {in_channels}")
    h, w = x.shape[-2:]
    if not is_valid_size(h, w):
        raise ValueError(
            f"AdapNet++ input height and width must be positive multiples of {OUTPUT_STRIDE}, got {h}x{w} "
            f"(resize or pad to e.g. {_valid_size_hint(h, w)})"
        )


def _valid_size_hint(height_px: int, width_px: int) -> str:
    """'HxW': the size rounded down to multiples of the output stride (at least one stride each)."""
    h = max(OUTPUT_STRIDE, height_px // OUTPUT_STRIDE * OUTPUT_STRIDE)
    w = max(OUTPUT_STRIDE, width_px // OUTPUT_STRIDE * OUTPUT_STRIDE)
    return f"{h}x{w}"


def is_valid_size(height_px: int, width_px: int) -> bool:
    """The one size rule of every fusionseg model: H and W positive multiples of 16 (§1)."""
    return min(height_px, width_px) >= OUTPUT_STRIDE and not (
        height_px % OUTPUT_STRIDE or width_px % OUTPUT_STRIDE
    )


def check_size_multiple(height_px: int, width_px: int, *, what: str) -> None:
    """Refuse a size the networks cannot take: ConfigError naming `what` (the parameter or key).

    Args:
        height_px, width_px: The size asked for.
        what: The parameter or config key that holds it, e.g. "size" or "data.height_px x data.width_px".
    """
    if not is_valid_size(height_px, width_px):
        raise ConfigError(
            f"{what}: {height_px}x{width_px} - height and width must be positive multiples of "
            f"{OUTPUT_STRIDE} (AdapNet++ output stride, adapnetpp.md §1), e.g. "
            f"{_valid_size_hint(height_px, width_px)}"
        )


def check_training_size(height_px: int, width_px: int) -> None:
    """Refuse a training size the network cannot take (ConfigError naming data.height_px/width_px).

    Checked before a run folder is made: a wrong size must not surface at the first forward pass.
    """
    check_size_multiple(height_px, width_px, what="data.height_px x data.width_px")


class AdapNetTrunk(nn.Module):
    """Encoder + skip convs + eASPP: everything of AdapNet++ that the fusion models reuse (§2-5).

    Args:
        in_channels: Input channels (3 for BGR/HHA/JET/EVI, 1 for raw depth).
        dilations: (r1, r2) per multiscale unit (`DILATION_PRESETS`).
        easpp_rates: Atrous rates of the eASPP cascades (§5).
        dropout: Drop probability on the block-4 unit-3 branch (§3.1).
        padding: "symmetric" or "tf_same" for the encoder's stride-2 layers (deepscene-tf.md §4).

    Attributes:
        feature_info: {"skip1": (24, 4), "skip2": (24, 8), "easpp": (256, 16)} as `FeatureSpec`s.
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        dilations: Mapping[str, tuple[int, int]] = RELEASED_DILATIONS,
        easpp_rates: Sequence[int] = (3, 6, 12),
        dropout: float = 0.7,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.encoder = MultiscaleResNet50(in_channels, dilations=dilations, dropout=dropout, padding=padding)
        enc = self.encoder.feature_info
        # §4: 1x1 conv -> BN, no ReLU
        self.skips = nn.ModuleDict(
            (tap, conv_bn(enc[src].channels, SKIP_CHANNELS, 1, relu=False))
            for tap, src in SKIP_SOURCES.items()
        )
        self.easpp = EASPP(enc["b4_out"].channels, EASPP_CHANNELS, easpp_rates)
        self.feature_info: dict[str, FeatureSpec] = {
            **{tap: FeatureSpec(SKIP_CHANNELS, enc[src].stride) for tap, src in SKIP_SOURCES.items()},
            TAP_EASPP: FeatureSpec(EASPP_CHANNELS, enc["b4_out"].stride),
        }
        init_he_(self.skips)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(B, C_in, H, W) float 0-255, H and W multiples of 16 -> taps (shapes: `feature_info`).

        Raises:
            ValueError: wrong rank, channel count, or H / W not multiples of 16.
        """
        check_input(x, self.in_channels)
        feats = self.encoder(x)
        taps = {tap: self.skips[tap](feats[src]) for tap, src in SKIP_SOURCES.items()}
        taps[TAP_EASPP] = self.easpp(feats["b4_out"])  # (B, 256, H/16, W/16)
        return taps


class AdapNetPP(nn.Module):
    """AdapNet++ expert: trunk -> decoder, with optional deep-supervision heads (adapnetpp.md).

    Args:
        in_channels: Input channels (3 for BGR/HHA/JET/EVI, 1 for raw depth).
        num_classes: C, including void (label 0).
        dilations: (r1, r2) per multiscale unit; default the released code (§3.2).
        easpp_rates: eASPP atrous rates (§5).
        dropout: Drop probability on the block-4 unit-3 branch (§3.1; original 0.7).
        padding: "symmetric" (default) or "tf_same": TF `SAME` on the encoder's four stride-2 layers
            (deepscene-tf.md §4), for TF-trained weights; the parameters are the same. "tf_same" also
            upsamples the aux heads with TF1's legacy bilinear rule (§6).
        aux: Build the two aux heads (§7); their outputs appear only in training mode.
        aux_weights: Loss weights of (aux1, aux2), kept here for the loss to read (§7: 0.6, 0.5).
        modality: The modality this expert reads; `forward` takes `{modality: tensor}` like every
            fusionseg model (the fused ones read several keys of the same mapping).

    Forward returns `ExpertOutput(logits (B, C, H, W), aux, taps)`; `aux` = (aux1, aux2), each
    (B, C, H, W), in training mode with aux heads, else (); taps as `trunk.feature_info`.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int,
        dilations: Mapping[str, tuple[int, int]] = RELEASED_DILATIONS,
        easpp_rates: Sequence[int] = (3, 6, 12),
        dropout: float = 0.7,
        aux: bool = True,
        aux_weights: tuple[float, float] = (0.6, 0.5),
        modality: str = "rgb",
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.modality = modality
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.trunk = AdapNetTrunk(
            in_channels, dilations=dilations, easpp_rates=easpp_rates, dropout=dropout, padding=padding
        )
        info = self.trunk.feature_info
        self.decoder = Decoder(
            in_channels=info[TAP_EASPP].channels,
            skip_channels={tap: info[tap].channels for tap in DECODER_SKIPS},
            num_classes=num_classes,
        )
        # deepscene-tf.md §6: TF-trained aux heads need TF1's legacy resize as well
        resize = "tf_legacy" if padding == "tf_same" else "half_pixel"
        self.aux = AuxHeads(self.decoder.width, num_classes, resize=resize) if aux else None
        self.aux_weights = tuple(aux_weights) if aux else ()

    @property
    def feature_info(self) -> dict[str, FeatureSpec]:
        """Shapes of the taps (same as `trunk.feature_info`)."""
        return self.trunk.feature_info

    @property
    def modalities(self) -> tuple[str, ...]:
        """The one modality this expert reads (the key `forward` looks up)."""
        return (self.modality,)

    @property
    def input_channels(self) -> dict[str, int]:
        """Modality -> input channels, the shape contract of `forward`'s mapping."""
        return {self.modality: self.in_channels}

    def module_groups(self) -> dict[str, nn.Module]:
        """The parts of §10.1, in order: stem, block1-4, skips, easpp, decoder[, aux]."""
        enc = self.trunk.encoder
        groups: dict[str, nn.Module] = OrderedDict(stem=enc.stem)
        for b in range(1, 5):
            groups[f"block{b}"] = getattr(enc, f"block{b}")
        groups.update(skips=self.trunk.skips, easpp=self.trunk.easpp, decoder=self.decoder)
        if self.aux is not None:
            groups["aux"] = self.aux
        return groups

    def forward(self, inputs: Mapping[str, Tensor] | Tensor) -> ExpertOutput:
        """Segment one modality.

        Args:
            inputs: `{modality: (B, C_in, H, W)}` float 0-255 (BGR order for images), H and W multiples
                of 16; other keys are ignored. A bare tensor is read as this expert's modality.

        Returns:
            `ExpertOutput` (class docstring).

        Raises:
            ValueError: the modality is missing; wrong rank, channel count, or H / W not multiples of 16.
        """
        x = select_input(inputs, self.modality)
        taps = self.trunk(x)
        out = self.decoder(taps[TAP_EASPP], taps)
        aux: tuple[Tensor, ...] = ()
        if self.aux is not None and self.training:
            aux = self.aux(out.ups, tuple(x.shape[-2:]))
        return ExpertOutput(logits=out.logits, aux=aux, taps=taps)


def select_input(inputs: Mapping[str, Tensor] | Tensor, modality: str) -> Tensor:
    """The tensor of `modality` in a model's input mapping (a bare tensor is taken as it)."""
    if isinstance(inputs, Tensor):
        return inputs
    if modality not in inputs:
        raise ValueError(
            f"input for modality {modality!r} is missing (the expert reads {modality}; "
            f"got {', '.join(inputs) or 'none'})"
        )
    return inputs[modality]


def trunk_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The trunk's entries of an `AdapNetPP` state dict, prefix removed, ready for `trunk.load_state_dict`."""
    return {k[len(TRUNK_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(TRUNK_PREFIX)}


def build_adapnet(cfg: ModelConfig, *, in_channels: int, modality: str = "rgb") -> AdapNetPP:
    """Build an AdapNet++ expert from its config section (no file I/O: ImageNet init is separate).

    Args:
        cfg: The `model` config section.
        in_channels: Channels of the modality this expert reads (3 for images, 1 for raw depth).
        modality: The key the expert reads from its input mapping.

    Returns:
        A freshly initialised model (He init), in channels_last memory format if `cfg.channels_last`.

    Raises:
        ConfigError: invalid value, naming the key.
    """
    if cfg.padding not in PADDING_MODES:
        raise ConfigError(f"model.padding: {cfg.padding!r} is not one of {', '.join(PADDING_MODES)}")
    if cfg.dilations not in DILATION_PRESETS:
        raise ConfigError(f"model.dilations: {cfg.dilations!r} is not one of {', '.join(DILATION_PRESETS)}")
    if cfg.num_classes < 2:
        raise ConfigError(f"model.num_classes: need at least 2 (void + one class), got {cfg.num_classes}")
    if in_channels < 1:
        raise ConfigError(f"in_channels: must be >= 1, got {in_channels}")
    if any(r < 1 for r in cfg.easpp_rates):
        raise ConfigError(f"model.easpp_rates: rates must be >= 1, got {list(cfg.easpp_rates)}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout: drop probability must be in [0, 1), got {cfg.dropout}")
    model = AdapNetPP(
        in_channels=in_channels,
        num_classes=cfg.num_classes,
        dilations=DILATION_PRESETS[cfg.dilations],
        easpp_rates=cfg.easpp_rates,
        dropout=cfg.dropout,
        aux=cfg.aux,
        aux_weights=cfg.aux_weights,
        modality=modality,
        padding=cfg.padding,
    )
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
