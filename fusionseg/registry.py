"""The model kinds fusionseg builds, in one table: the AdapNet++ expert, SSMA and CMoDE.

Every kind is called the same way, `model({modality: (B, C_m, H, W) float tensor}) -> ExpertOutput`
(`fusionseg.models.output`), with unchanged state-dict keys. `MODEL_KINDS` says, for each kind, how
to build it from a run config, which `kind` its checkpoints carry, and which modalities its examples
use. Summaries, benchmarks, export, checkpoint loading and the CLI choices all read this table; a new
model is one entry here plus a pass of the contract test (`tests/models/test_contract.py`).

The table is a plain dict (STYLE.md §3); an unknown name raises an error listing the known ones.
torch and the model modules are imported inside the builders, so reading the table is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fusionseg.config import RunConfig, saved_config_from_dict
from fusionseg.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

Builder = Callable[[RunConfig, Mapping[str, int]], "nn.Module"]


@dataclass(frozen=True)
class ModelKind:
    """One buildable model.

    Attributes:
        name: Registry and CLI name ("adapnetpp", "ssma", "cmode").
        checkpoint_kind: The `kind` field of its checkpoints ("expert", "ssma", "cmode").
        description: One line for help texts.
        example_modalities: Modalities of its example inputs when the config does not name enough.
        build: (run config, {modality: input channels}) -> a fresh model in training mode; the
            mapping's keys are the modalities it reads, in fusion order.
    """

    name: str
    checkpoint_kind: str
    description: str
    example_modalities: tuple[str, ...]
    build: Builder

    @property
    def fused(self) -> bool:
        """Whether the kind fuses several modalities."""
        return len(self.example_modalities) > 1


def _build_expert(cfg: RunConfig, in_channels: Mapping[str, int]) -> nn.Module:
    from fusionseg.models.adapnet import build_adapnet

    if len(in_channels) != 1:
        raise ConfigError(f"data.modalities: an expert reads one modality, got {list(in_channels)}")
    ((modality, channels),) = in_channels.items()
    return build_adapnet(cfg.model, in_channels=int(channels), modality=modality)


def _fused_builder(scheme: str) -> Builder:
    def build(cfg: RunConfig, in_channels: Mapping[str, int]) -> nn.Module:
        from fusionseg.fusion.build import build_model

        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, modalities=tuple(in_channels)))
        return build_model(cfg, in_channels=dict(in_channels), scheme=scheme)

    build.__qualname__ = f"build_{scheme}"
    return build


MODEL_KINDS: dict[str, ModelKind] = {
    "adapnetpp": ModelKind(
        "adapnetpp", "expert", "AdapNet++ unimodal expert (adapnetpp.md)", ("rgb",), _build_expert
    ),
    "ssma": ModelKind(
        "ssma",
        "ssma",
        "SSMA fusion of expert trunks (ssma-cmode.md §A)",
        ("rgb", "depth"),
        _fused_builder("ssma"),
    ),
    "cmode": ModelKind(
        "cmode",
        "cmode",
        "CMoDE class-wise mixture of experts (ssma-cmode.md §B)",
        ("rgb", "depth"),
        _fused_builder("cmode"),
    ),
}


def model_kind(name: str) -> ModelKind:
    """The registry entry `name`; ConfigError listing the known names."""
    try:
        return MODEL_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(MODEL_KINDS)})") from None


def checkpoint_model_kind(payload: Mapping[str, Any], *, source: str = "checkpoint") -> ModelKind:
    """The entry whose checkpoints carry `payload["kind"]`; CheckpointError listing the known kinds."""
    kind = payload.get("kind")
    for entry in MODEL_KINDS.values():
        if entry.checkpoint_kind == kind:
            return entry
    known = ", ".join(entry.checkpoint_kind for entry in MODEL_KINDS.values())
    raise CheckpointError(f"{source}: unknown checkpoint kind {kind!r} (known: {known})")


def example_channels(name: str, cfg: RunConfig | None = None) -> dict[str, int]:
    """{modality: input channels} of the kind's examples: `cfg.data.modalities` when it fits the kind
    (one modality for an expert, two or more for a fused model), else `example_modalities`."""
    from fusionseg.data.modality_specs import modality_channels

    entry = model_kind(name)
    modalities = entry.example_modalities
    if cfg is not None and (len(cfg.data.modalities) > 1) == entry.fused:
        modalities = tuple(cfg.data.modalities)
    return {m: modality_channels(m) for m in modalities}


def build_model(name: str, cfg: RunConfig, in_channels: Mapping[str, int]) -> nn.Module:
    """A fresh model of kind `name` over the modalities of `in_channels` (training mode)."""
    return model_kind(name).build(cfg, in_channels)


def prepare_for_training(model: nn.Module, cfg: RunConfig) -> nn.Module:
    """Freeze a fused model's experts as fusion stage 2 trains it (ssma-cmode.md §A.5) when
    `fusion.freeze_experts` is set; experts are returned as they are."""
    freeze = getattr(model, "freeze_experts", None)
    if freeze is not None and cfg.fusion.freeze_experts:
        freeze()
    return model


DEPTH_EXAMPLE_MAX_M = 10.0  # example raw depth spans 0-10 m (an indoor sensor's range)


def example_inputs(
    in_channels: Mapping[str, int],
    batch: int,
    height_px: int,
    width_px: int,
    *,
    kinds: Mapping[str, str] | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Seeded example inputs in each modality's training range.

    Args:
        in_channels: {modality: channels}, in the model's order (the order values are drawn in).
        batch, height_px, width_px: Shape of every input.
        kinds: {modality: "colour" | "gray" | "depth"}; default the modality registry's. Depth kinds
            are uniform in 0-10 m, the others in 0-255.
        device: Device of the tensors; on the meta device they have shapes only (summaries, FLOPs).
        seed: Seed of the one generator all modalities draw from.

    Returns:
        {modality: (batch, C_m, H, W) float32}.
    """
    import torch

    from fusionseg.data.modality_specs import get_modality

    device = torch.device("cpu" if device is None else device)
    shapes = {m: (batch, int(c), height_px, width_px) for m, c in in_channels.items()}
    if device.type == "meta":
        return {m: torch.empty(shape, device=device) for m, shape in shapes.items()}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for m, shape in shapes.items():
        kind = kinds[m] if kinds is not None and m in kinds else get_modality(m).kind
        scale = DEPTH_EXAMPLE_MAX_M if kind == "depth" else 255.0
        out[m] = (torch.rand(shape, generator=gen) * scale).to(device)  # (B, C, H, W)
    return out


def model_for_checkpoint(payload: Mapping[str, Any], *, source: str = "checkpoint") -> nn.Module:
    """An untrained model shaped like the one `payload` (a loaded checkpoint) was saved from.

    Raises:
        CheckpointError: unknown kind, or metadata that does not describe a model.
    """
    entry = checkpoint_model_kind(payload, source=source)
    try:
        cfg = saved_config_from_dict(payload["config"])
        in_channels = {m: int(payload["in_channels"][m]) for m in payload["modalities"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete ({exc})") from None
    return entry.build(cfg, in_channels)
