"""`fusionseg summary`: a registered model kind built from a config and summarised (no weights)."""

from __future__ import annotations

import torch

from fusionseg import registry
from fusionseg.config import RunConfig
from fusionseg.errors import ConfigError
from fusionseg.models.adapnet import check_size_multiple
from fusionseg.models.summary import ModelSummary
from fusionseg.models.summary import summarize_model as summarize_module


def summarize_model(
    model: str = "adapnetpp",
    cfg: RunConfig | None = None,
    *,
    in_channels: int = 3,
    size_px: tuple[int, int] | None = (384, 768),
    batch_size: int = 1,
) -> ModelSummary:
    """Build a model from its config and summarise it (`fusionseg summary`).

    Fused kinds are summarised over `cfg.data.modalities` (default rgb, depth) with their experts
    frozen as fusion stage 2 trains them; the expert reads one `in_channels`-channel input. The model
    is built on the meta device: counts, shapes and FLOPs need no weights.

    Args:
        model: A key of `fusionseg.registry.MODEL_KINDS` ("adapnetpp", "ssma", "cmode").
        cfg: Run config (the model and fusion sections are used); default the code defaults.
        in_channels: Input channels of an expert (3 for images, 1 for raw depth).
        size_px: (H, W) of the example input, multiples of 16; None counts parameters only.
        batch_size: Batch size of the example input.

    Returns:
        Per-module counts, tap shapes and GFLOPs (`fusionseg.models.summary.ModelSummary`).

    Raises:
        ConfigError: unknown model, or a size that is not a positive multiple of 16.
    """
    kind = registry.model_kind(model)
    if size_px is not None:
        check_size_multiple(*size_px, what="size_px")
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    cfg = cfg or RunConfig()
    channels = registry.example_channels(model, cfg)
    if not kind.fused:
        channels = {next(iter(channels)): in_channels}
    with torch.device("meta"):  # shapes and FLOPs only: no weights allocated, nothing computed
        net = registry.prepare_for_training(registry.build_model(model, cfg, channels), cfg)
    example = None  # (build_adapnet already puts the experts in channels_last when asked)
    if size_px is not None:
        example = registry.example_inputs(channels, batch_size, *size_px, device="meta")
        if cfg.model.channels_last:
            example = {m: x.contiguous(memory_format=torch.channels_last) for m, x in example.items()}
    return summarize_module(net, example, name=model)
