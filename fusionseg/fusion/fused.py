"""Fused models: SSMA over expert trunks (`SSMAModel`) and CMoDE over complete experts (`CMoDEModel`),
both built on `ExpertEnsemble` (experts keyed by modality, parameter groups, freezing).

Both hold their experts in `experts = nn.ModuleDict({modality: expert})`, modality 1 first, so expert
weights are named `experts.<modality>.…` and load by prefix from unimodal checkpoints. Frozen experts
(ssma-cmode.md §A.5, §B.1) have `requires_grad=False` and stay in eval mode through `train()` — BN keeps
its moving statistics and block-4 dropout is off — until `unfreeze_experts` is called.

Parameter groups (`module_groups()`, `parameter_groups()`), used by the training stages and summaries:
`experts.<modality>` for each expert, `fusion` (the SSMA blocks, or the CMoDE gates and final conv) and
`decoder` (SSMA only: the fused decoder with its global-context gates and optional aux heads).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from fusionseg.backbones.features import FeatureSpec
from fusionseg.fusion.cmode import REFERENCE_POOL_HW, CMoDE, GateMode
from fusionseg.fusion.ssma import SSMA
from fusionseg.models.decoder import DECODER_SKIPS, AuxHeads, Decoder
from fusionseg.models.output import ExpertOutput


def _deepest_tap(feature_info: Mapping[str, FeatureSpec]) -> str:
    """Name of the tap with the largest stride (the eASPP output of an AdapNet++ trunk)."""
    return max(feature_info, key=lambda name: feature_info[name].stride)


class ExpertEnsemble(nn.Module):
    """Base of the fused models: experts keyed by modality, named parameter groups, freezing (§A.5).

    A frozen group has `requires_grad=False` and stays in eval mode when the model is put in training
    mode (`train()` is overridden): its BN layers keep their moving statistics and dropout stays off.

    Args:
        experts: Modality -> expert module, in modality order (modality 1 first).

    Raises:
        ValueError: fewer than two experts.
    """

    def __init__(self, experts: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if len(experts) < 2:
            raise ValueError(f"a fused model needs at least two experts, got {list(experts)}")
        self.experts = nn.ModuleDict(dict(experts))
        self.frozen: set[str] = set()  # names of frozen groups, e.g. {"experts.rgb", "experts.depth"}

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in fusion order (modality 1 first)."""
        return tuple(self.experts.keys())

    @property
    def input_channels(self) -> dict[str, int]:
        """Modality -> input channels, the shape contract of `forward`'s mapping."""
        return {m: int(expert.in_channels) for m, expert in self.experts.items()}

    def head_groups(self) -> dict[str, nn.Module]:
        """Named non-expert parts, each a parameter group (defined by subclasses)."""
        raise NotImplementedError

    def module_groups(self) -> dict[str, nn.Module]:
        """Disjoint named parts covering the model: `experts.<modality>` per expert, then the head groups."""
        groups: dict[str, nn.Module] = {f"experts.{m}": self.experts[m] for m in self.modalities}
        groups.update(self.head_groups())
        return groups

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per group of `module_groups()` (disjoint, covering `parameters()`)."""
        return {name: list(module.parameters()) for name, module in self.module_groups().items()}

    def _groups(self, names: Iterable[str]) -> dict[str, nn.Module]:
        groups = self.module_groups()
        chosen = list(names)
        unknown = [n for n in chosen if n not in groups]
        if unknown:
            raise ValueError(f"no parameter group {unknown[0]!r} (groups: {', '.join(groups)})")
        return {n: groups[n] for n in chosen}

    def freeze(self, names: Iterable[str]) -> None:
        """Freeze parameter groups: no gradients, BN moving statistics, dropout off — also after `train()`.

        Args:
            names: Group names of `module_groups()`, e.g. "experts.rgb".
        """
        for name, module in self._groups(names).items():
            module.requires_grad_(False)
            module.eval()
            self.frozen.add(name)

    def unfreeze(self, names: Iterable[str]) -> None:
        """Make groups trainable again; their BN and dropout follow the model's mode from now on."""
        for name, module in self._groups(names).items():
            module.requires_grad_(True)
            module.train(self.training)
            self.frozen.discard(name)

    def freeze_experts(self, modalities: Iterable[str] | None = None) -> None:
        """Freeze experts (§A.5); all of them when `modalities` is None."""
        self.freeze(f"experts.{m}" for m in (self.modalities if modalities is None else modalities))

    def unfreeze_experts(self, modalities: Iterable[str] | None = None) -> None:
        """Unfreeze experts; all of them when `modalities` is None."""
        self.unfreeze(f"experts.{m}" for m in (self.modalities if modalities is None else modalities))

    def train(self, mode: bool = True) -> ExpertEnsemble:
        """Set the training mode, keeping frozen groups in eval mode (STYLE.md §2, §A.5)."""
        super().train(mode)
        groups = self.module_groups()
        for name in self.frozen:
            groups[name].eval()  # BN running stats stay fixed, dropout stays off
        return self

    def _ordered_inputs(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Inputs in modality order; ValueError naming a missing modality."""
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise ValueError(
                f"input for modality {missing[0]!r} is missing (model fuses {', '.join(self.modalities)}; "
                f"got {', '.join(inputs) or 'none'})"
            )
        return [inputs[m] for m in self.modalities]


class SSMAModel(ExpertEnsemble):
    """SSMA fusion of N expert trunks with the gated fused decoder (ssma-cmode.md §A.2-A.4).

    One SSMA block per tap the decoder uses, in `self.fusion` keyed by tap name: the deepest tap (the
    eASPP output, stride 16) gets η = `deep_reduction` and the 1×1 + BN projection, the skip taps
    η = `skip_reduction` and the 3×3 projection (§A.1 table). Channel counts come from the trunks'
    `feature_info`. The decoder is the AdapNet++ decoder with a global-context gate on each skip (§A.3),
    freshly initialised (§A.5).

    Args:
        experts: Modality -> trunk (`AdapNetPP.trunk`: forward(x) -> {tap: (B, C, H/s, W/s)} and a
            `feature_info` {tap: FeatureSpec}); all trunks must publish the same taps.
        num_classes: C, including void.
        deep_reduction: η of the eASPP-level block (16).
        skip_reduction: η of the skip-level blocks (6).
        aux: Add aux heads on up1/up2 (§A.4 [spec] option; the released SSMA has none).

    Raises:
        ValueError: trunks with different taps or widths, or a tap the decoder needs is missing.
    """

    def __init__(
        self,
        experts: Mapping[str, nn.Module],
        *,
        num_classes: int,
        deep_reduction: int = 16,
        skip_reduction: int = 6,
        aux: bool = False,
    ) -> None:
        super().__init__(experts)
        first = next(iter(experts))
        specs: Mapping[str, FeatureSpec] = experts[first].feature_info
        for name, trunk in experts.items():
            if dict(trunk.feature_info) != dict(specs):
                raise ValueError(
                    f"expert {name!r} publishes taps {dict(trunk.feature_info)} but {first!r} "
                    f"publishes {dict(specs)}; SSMA fuses maps of equal width and stride"
                )
        deep = _deepest_tap(specs)
        missing = [tap for tap in DECODER_SKIPS if tap not in specs]
        if missing:
            raise ValueError(f"expert trunks lack the decoder taps {missing} (taps: {list(specs)})")
        self.deep_tap = deep
        n = len(experts)
        # §A.2: one SSMA block per tap, after the experts' own eASPP and skip convs
        self.fusion = nn.ModuleDict(
            {
                tap: SSMA(
                    specs[tap].channels,
                    deep_reduction if tap == deep else skip_reduction,
                    num_inputs=n,
                    projection="1x1-bn" if tap == deep else "3x3",
                )
                for tap in (deep, *DECODER_SKIPS)
            }
        )
        # §A.3: AdapNet++ decoder D1-D6 plus the ReLU global-context gates G1, G2 on the fused skips
        self.decoder = Decoder(
            in_channels=specs[deep].channels,
            skip_channels={tap: specs[tap].channels for tap in DECODER_SKIPS},
            num_classes=num_classes,
            context_gates=True,
        )
        self.aux_heads = AuxHeads(self.decoder.width, num_classes) if aux else None

    def head_groups(self) -> dict[str, nn.Module]:
        """`fusion`: the SSMA blocks; `decoder`: fused decoder with its gates (and aux heads)."""
        decoder = self.decoder if self.aux_heads is None else nn.ModuleList([self.decoder, self.aux_heads])
        return {"fusion": self.fusion, "decoder": decoder}

    def forward(self, inputs: Mapping[str, Tensor]) -> ExpertOutput:
        """Segment a multimodal sample.

        Args:
            inputs: Modality -> (B, C_m, H, W) float input; H and W multiples of 16. Extra modalities
                are ignored.

        Returns:
            `ExpertOutput` with logits (B, C, H, W), aux logits (training with aux heads only) and the
            fused taps {tap: (B, F, H/s, W/s)}.
        """
        images = self._ordered_inputs(inputs)
        taps = [self.experts[m](x) for m, x in zip(self.modalities, images)]  # N × {tap: (B, F, h, w)}
        fused = {tap: block([t[tap] for t in taps]) for tap, block in self.fusion.items()}
        out = self.decoder(fused[self.deep_tap], fused)  # logits (B, C, H, W)
        aux: tuple[Tensor, ...] = ()
        if self.aux_heads is not None and self.training:
            aux = self.aux_heads(out.ups, tuple(images[0].shape[-2:]))
        return ExpertOutput(logits=out.logits, aux=aux, taps=fused)


class CMoDEModel(ExpertEnsemble):
    """CMoDE over N complete experts (ssma-cmode.md §B.1): class-wise mixture of the experts' logits.

    The gates read the concatenated deepest taps (eASPP outputs) of the experts; experts keep their
    (unused) aux heads, as in the original model whose parameter count includes them (§B.2).

    Args:
        experts: Modality -> complete expert (`AdapNetPP`: forward(x) -> `ExpertOutput` with logits
            and taps, and `trunk.feature_info`).
        num_classes: C, including void.
        mode: Gate pooling, "reference" (adaptive average to `pool_hw`) or "light" (global), §B.3.
        pool_hw: Reference-mode flatten grid (24×48, the stride-16 grid of 384×768).
    """

    def __init__(
        self,
        experts: Mapping[str, nn.Module],
        *,
        num_classes: int,
        mode: GateMode = "reference",
        pool_hw: tuple[int, int] = REFERENCE_POOL_HW,
    ) -> None:
        super().__init__(experts)
        infos = [expert.trunk.feature_info for expert in experts.values()]
        self.gate_tap = _deepest_tap(infos[0])
        if any(self.gate_tap not in info for info in infos):
            raise ValueError(f"every expert must publish the tap {self.gate_tap!r} the CMoDE gates read")
        in_channels = sum(info[self.gate_tap].channels for info in infos)  # 2 × 256 = 512
        self.fusion = CMoDE(in_channels, num_classes, num_experts=len(experts), mode=mode, pool_hw=pool_hw)

    def head_groups(self) -> dict[str, nn.Module]:
        """`fusion`: the C class gates and the final 3×3 conv."""
        return {"fusion": self.fusion}

    def forward(self, inputs: Mapping[str, Tensor]) -> ExpertOutput:
        """Segment a multimodal sample.

        Args:
            inputs: Modality -> (B, C_m, H, W) float input; H and W multiples of 16.

        Returns:
            `ExpertOutput` with the fused logits (B, C, H, W), no aux, and the gate input taps
            {"<modality>.<tap>": (B, F, H/16, W/16)}.
        """
        images = self._ordered_inputs(inputs)
        outs = [self.experts[m]({m: x}) for m, x in zip(self.modalities, images)]
        features = [o.taps[self.gate_tap] for o in outs]  # N × (B, 256, H/16, W/16)
        logits = self.fusion(features, [o.logits for o in outs])  # (B, C, H, W)
        taps = {f"{m}.{self.gate_tap}": f for m, f in zip(self.modalities, features)}
        return ExpertOutput(logits=logits, aux=(), taps=taps)


# The name of `SSMAModel` before issue 13 ("fused" described every scheme, yet meant SSMA only); kept so
# user code written against it still imports. Checkpoints never stored class names.
FusedModel = SSMAModel
