"""Fixtures of the fusion tests: a narrow stand-in trunk, a tiny on-disk dataset, expert checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from fusionseg.backbones.features import FeatureSpec
from fusionseg.config import RunConfig, config_from_dict, config_to_dict
from fusionseg.data.catalog import SYNTHETIC
from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
from fusionseg.models.output import ExpertOutput

NUM_CLASSES = SYNTHETIC.num_classes  # 9
H, W = 64, 128


class TinyTrunk(nn.Module):
    """Narrow stand-in for `AdapNetTrunk`: same tap names and strides, BN and dropout inside."""

    def __init__(self, in_channels: int = 3, skip: int = 4, deep: int = 8) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.feature_info = {
            "skip1": FeatureSpec(skip, 4),
            "skip2": FeatureSpec(skip, 8),
            "easpp": FeatureSpec(deep, 16),
        }
        self.s4 = nn.Sequential(nn.Conv2d(in_channels, skip, 3, stride=4, padding=1), nn.BatchNorm2d(skip))
        self.s8 = nn.Sequential(nn.Conv2d(skip, skip, 3, stride=2, padding=1), nn.BatchNorm2d(skip))
        self.s16 = nn.Sequential(
            nn.Conv2d(skip, deep, 3, stride=2, padding=1), nn.BatchNorm2d(deep), nn.Dropout(0.5)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s4 = self.s4(x)
        s8 = self.s8(s4)
        return {"skip1": s4, "skip2": s8, "easpp": self.s16(s8)}


class TinyExpert(nn.Module):
    """Narrow stand-in for a complete `AdapNetPP`: a `TinyTrunk` and a 1x1 classifier, upsampled."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.trunk = TinyTrunk(in_channels)
        self.head = nn.Conv2d(self.trunk.feature_info["easpp"].channels, num_classes, 1)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> ExpertOutput:
        """`{modality: (B, C, H, W)}` with one entry, as a fused model calls its experts."""
        (x,) = inputs.values()
        taps = self.trunk(x)
        logits = nn.functional.interpolate(self.head(taps["easpp"]), size=x.shape[-2:], mode="bilinear")
        return ExpertOutput(logits=logits, taps=taps)


def fusion_config(root: Path | str = "unused", **sections) -> RunConfig:
    """Small CPU run config over the tiny dataset (sections override nested values)."""
    values = {
        "data": {
            "root": str(root),
            "dataset": "synthetic",
            "modalities": ["rgb", "depth"],
            "height_px": H,
            "width_px": W,
            "augment": False,
            "num_workers": 0,
        },
        "model": {"num_classes": NUM_CLASSES},
        "train": {
            "batch_size": 2,
            "iterations": 2,
            "val_every": 2,
            "ckpt_every": 100,
            "log_every": 1,
            "device": "cpu",
            "tensorboard": False,
        },
    }
    for section, changes in sections.items():
        values.setdefault(section, {}).update(changes)
    return config_from_dict(values)


def write_dataset(
    root: Path, *, columns=("rgb", "depth"), n_train: int = 4, n_val: int = 2, seed: int = 0
) -> Path:
    """Write `n` random frames (BGR PNG, 16-bit depth in mm, labels 0..8) and train/val list files."""
    rng = np.random.default_rng(seed)
    writers = {
        "rgb": lambda: rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "depth": lambda: rng.integers(500, 8000, (H, W), dtype=np.uint16),
        "hha": lambda: rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
    }
    for split, n in (("train", n_train), ("val", n_val)):
        lines = [f"# columns: {' '.join(columns)} label"]
        for i in range(n):
            row = []
            for col in (*columns, "label"):
                (root / col).mkdir(parents=True, exist_ok=True)
                rel = f"{col}/{split}{i}.png"
                image = (
                    rng.integers(0, NUM_CLASSES, (H, W), dtype=np.uint8) if col == "label" else writers[col]()
                )
                assert cv2.imwrite(str(root / rel), image)
                row.append(rel)
            lines.append(" ".join(row))
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def save_expert(path: Path, cfg: RunConfig, modality: str, state: dict, **meta) -> Path:
    """Write a unimodal checkpoint as the engine writes them (kind "expert"), `meta` overriding keys."""
    channels = 1 if modality == "depth" else 3
    payload = checkpoint_header(
        kind="expert",
        num_classes=cfg.model.num_classes,
        modalities=[modality],
        in_channels={modality: channels},
        class_names=list(SYNTHETIC.classes),
        normalization={},
        step=7,
        model=state,
        config=config_to_dict(cfg),
    )
    payload.update(meta)
    return save_checkpoint(path, payload)
