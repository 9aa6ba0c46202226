"""`fusionseg train-unimodal`: stage 1, one AdapNet++ expert on one modality.

Builds the expert (He init, then the optional ImageNet encoder init) and its datasets, and hands them
to the engine's `Trainer`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fusionseg.config import ModelConfig, RunConfig
from fusionseg.engine.events import ProgressFn, TrainResult
from fusionseg.engine.trainer import Trainer
from fusionseg.errors import ConfigError
from fusionseg.workflows.run_meta import EXPERT_KIND, checkpoint_meta


def expert_checkpoint_meta(cfg: RunConfig, modality: str, *, in_channels: int) -> dict[str, Any]:
    """What an expert checkpoint records besides weights and loop state.

    Keys: kind, modality, modalities, in_channels (per modality), num_classes, class_names, palette
    (RGB per id), normalization (modality -> [mean, std] or absent), modality_kind, input_size [H, W],
    dataset.

    Raises:
        ConfigError: `model.num_classes` differs from the dataset's class count.
    """
    meta = checkpoint_meta(cfg, kind=EXPERT_KIND, in_channels={modality: in_channels}, normalized=[modality])
    return {"modality": modality, **meta}


def check_init_config(model_cfg: ModelConfig, *, in_channels: int) -> None:
    """Refuse ImageNet-init settings that cannot apply (ConfigError naming the key)."""
    if model_cfg.init_flip_channels and not model_cfg.init:
        raise ConfigError("model.init_flip_channels: needs model.init (a local ResNet-50 state dict)")
    if model_cfg.init_flip_channels and in_channels != 3:
        raise ConfigError(
            f"model.init_flip_channels: reorders a 3-channel stem, this modality has {in_channels} channel(s)"
        )


def initial_expert(
    model_cfg: ModelConfig, *, in_channels: int, pretrained: bool = True, modality: str = "rgb"
) -> nn.Module:
    """A new AdapNet++ expert: He init, then the ImageNet encoder init of `model.init` (§9) if set.

    Args:
        model_cfg: The `model` section; `init` names a local torchvision/timm ResNet-50 state dict and
            `init_flip_channels` reverses the stem filters' input channels (RGB-trained filters for
            BGR input, adapnetpp.md §9 optional mode).
        in_channels: Channels of the expert's modality.
        pretrained: Apply `model.init` (False when a checkpoint will overwrite every weight).
        modality: The key the expert reads from its input mapping.

    Raises:
        ConfigError: inconsistent init settings. CheckpointError: unreadable or non-ResNet-50 file.
    """
    from fusionseg.models.adapnet import build_adapnet

    check_init_config(model_cfg, in_channels=in_channels)
    model = build_adapnet(model_cfg, in_channels=in_channels, modality=modality)
    if model_cfg.init and pretrained:
        from fusionseg.backbones.init import load_imagenet_init

        load_imagenet_init(model, model_cfg.init, flip_input_channels=model_cfg.init_flip_channels)
    return model


def train_expert(
    cfg: RunConfig, modality: str, *, resume: bool = False, progress: ProgressFn | None = None
) -> TrainResult:
    """Train an AdapNet++ expert on one modality (`fusionseg train-unimodal`).

    Args:
        cfg: Resolved run config; `train.out_dir` is the run folder.
        modality: Modality column to train on (e.g. "rgb", "depth", "jet", "hha", "evi").
        resume: Continue the run in `train.out_dir` from its newest intact checkpoint.
        progress: Receives `TrainEvent`s.

    Returns:
        The `TrainResult` (checkpoints, best and final validation metrics).

    Raises:
        ConfigError: bad config (class count not matching the dataset, unknown modality, ...).
        DataError: unreadable lists or files. CheckpointError: see `Trainer.fit`.
    """
    from fusionseg.data.dataset import build_dataset
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.models.adapnet import check_training_size

    check_training_size(cfg.data.height_px, cfg.data.width_px)
    spec = get_modality(modality)
    check_init_config(cfg.model, in_channels=spec.channels)  # before any list or image is read
    meta = expert_checkpoint_meta(cfg, modality, in_channels=spec.channels)
    seed = cfg.train.seed
    train_set = build_dataset(
        cfg.data, "train", modalities=[modality], num_classes=meta["num_classes"], seed=seed
    )
    val_set = build_dataset(
        cfg.data, "val", modalities=[modality], num_classes=meta["num_classes"], seed=seed
    )
    torch.manual_seed(seed)  # the initial weights depend on the seed only
    # a resumed run loads every weight from its checkpoint, and `init_from` replaces them all: no
    # ImageNet init file is read then
    fresh = not resume and not cfg.train.init_from
    model = initial_expert(cfg.model, in_channels=spec.channels, pretrained=fresh, modality=modality)
    if cfg.train.init_from and not resume:
        from fusionseg.workflows.init_from import load_init_weights

        meta["init_from"] = load_init_weights(
            model, cfg, kind=EXPERT_KIND, modalities=[modality], in_channels={modality: spec.channels}
        )
    trainer = Trainer(
        model,
        train_set=train_set,
        val_set=val_set,
        config=cfg,
        run_dir=cfg.train.out_dir,
        num_classes=meta["num_classes"],
        modalities=[modality],
        checkpoint_meta=meta,
        aux_weights=cfg.model.aux_weights,
        class_names=meta["class_names"],
        channels_last=cfg.model.channels_last,
        progress=progress,
    )
    return trainer.fit(resume=resume)
