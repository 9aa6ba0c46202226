"""`build_model`: the one place where a run config becomes a fused model (STYLE.md §3).

A scheme name picks its builder from the plain dict `FUSION_SCHEMES`; an unknown name raises
`ConfigError` listing the known ones. Experts are built freshly (He init) here; their trained weights
are loaded by the training stages (`fusionseg.workflows.train_fusion`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from fusionseg.config import RunConfig
from fusionseg.errors import ConfigError
from fusionseg.fusion.fused import CMoDEModel, ExpertEnsemble, SSMAModel
from fusionseg.models.adapnet import build_adapnet


def _check_modalities(cfg: RunConfig, in_channels: Mapping[str, int]) -> tuple[str, ...]:
    modalities = tuple(cfg.data.modalities)
    if len(modalities) < 2:
        raise ConfigError(
            f"data.modalities: fusion needs at least two modalities, got {list(modalities)} "
            "(e.g. data.modalities=[rgb,depth])"
        )
    if len(set(modalities)) != len(modalities):
        raise ConfigError(f"data.modalities: duplicate modality in {list(modalities)}")
    missing = [m for m in modalities if m not in in_channels]
    if missing:
        raise ConfigError(f"data.modalities: no input channel count for {missing[0]!r}")
    return modalities


def build_ssma(cfg: RunConfig, in_channels: Mapping[str, int]) -> SSMAModel:
    """SSMA model (ssma-cmode.md §A.2): one AdapNet++ trunk per modality, SSMA blocks, fused decoder.

    Args:
        cfg: Run config (`data.modalities` in fusion order, `model.*` for the trunks, `fusion.*`).
        in_channels: Modality -> input channels.
    """
    modalities = _check_modalities(cfg, in_channels)
    for key in ("ssma_reduction_easpp", "ssma_reduction_skip"):
        if getattr(cfg.fusion, key) < 1:
            raise ConfigError(f"fusion.{key}: must be >= 1, got {getattr(cfg.fusion, key)}")
    # §A.2: experts are trunks only (encoder + skip convs + eASPP), no decoder and no aux heads
    trunks = {m: build_adapnet(cfg.model, in_channels=in_channels[m]).trunk for m in modalities}
    return SSMAModel(
        trunks,
        num_classes=cfg.model.num_classes,
        deep_reduction=cfg.fusion.ssma_reduction_easpp,
        skip_reduction=cfg.fusion.ssma_reduction_skip,
        aux=cfg.fusion.aux,
    )


def build_cmode(cfg: RunConfig, in_channels: Mapping[str, int]) -> CMoDEModel:
    """CMoDE model (ssma-cmode.md §B.1): complete AdapNet++ experts and class-wise gates.

    Args:
        cfg: Run config (`data.modalities` in fusion order, `model.*` for the experts, `fusion.*`).
        in_channels: Modality -> input channels.
    """
    modalities = _check_modalities(cfg, in_channels)
    if any(v < 1 for v in cfg.fusion.cmode_pool_hw):
        raise ConfigError(
            f"fusion.cmode_pool_hw: both sizes must be >= 1, got {list(cfg.fusion.cmode_pool_hw)}"
        )
    experts = {m: build_adapnet(cfg.model, in_channels=in_channels[m], modality=m) for m in modalities}
    return CMoDEModel(
        experts,
        num_classes=cfg.model.num_classes,
        mode=cfg.fusion.cmode_gate,
        pool_hw=cfg.fusion.cmode_pool_hw,
    )


# scheme name -> builder; `fusion.scheme` picks one (STYLE.md §3: a plain dict, not a registry)
FUSION_SCHEMES: dict[str, Callable[[RunConfig, Mapping[str, int]], ExpertEnsemble]] = {
    "ssma": build_ssma,
    "cmode": build_cmode,
}


def build_model(
    cfg: RunConfig, *, in_channels: Mapping[str, int], scheme: str | None = None
) -> ExpertEnsemble:
    """Build the fused model a run config describes (fresh weights, all parameters trainable).

    Args:
        cfg: Run config.
        in_channels: Modality -> input channels (3 for images, 1 for raw depth).
        scheme: Overrides `cfg.fusion.scheme`.

    Returns:
        A `SSMAModel` (ssma) or `CMoDEModel` (cmode) in training mode.

    Raises:
        ConfigError: unknown scheme (lists the known ones) or invalid value (names the key).
    """
    name = cfg.fusion.scheme if scheme is None else scheme
    builder = FUSION_SCHEMES.get(name)
    if builder is None:
        raise ConfigError(f"fusion.scheme: unknown scheme {name!r} (known: {', '.join(FUSION_SCHEMES)})")
    model: nn.Module = builder(cfg, in_channels)
    assert isinstance(model, ExpertEnsemble)
    return model
