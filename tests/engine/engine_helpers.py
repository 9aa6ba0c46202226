"""A tiny segmentation model and an in-memory dataset for fast engine tests (imported by the tests)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from fusionseg.config import RunConfig, config_from_dict
from fusionseg.models.output import ExpertOutput

NUM_CLASSES = 4


class TinyNet(nn.Module):
    """Conv-BN-ReLU-dropout and a 1x1 classifier, with two 1x1 aux heads (train mode only).

    Called as every fusionseg model: `model({modality: (B, C, H, W)}) -> ExpertOutput`.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = NUM_CLASSES, aux: bool = True, modality: str = "rgb"
    ) -> None:
        super().__init__()
        self.modality = modality
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout2d(0.2),  # draws from the global torch RNG: exercises RNG restore on resume
        )
        self.head = nn.Conv2d(8, num_classes, 1)
        self.aux_heads = nn.ModuleList([nn.Conv2d(8, num_classes, 1) for _ in range(2)]) if aux else None

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> ExpertOutput:
        feats = self.body(inputs[self.modality])
        aux = ()
        if self.aux_heads is not None and self.training:
            aux = tuple(h(feats) for h in self.aux_heads)
        return ExpertOutput(logits=self.head(feats), aux=aux, taps={"feat": feats})


class ColourBlocks(Dataset):
    """Images whose class is readable from the colour: class k paints 0-255 channel k-1 bright.

    Accepts `(index, epoch)` keys like `SegmentationDataset`; a horizontal flip is drawn from
    (seed, epoch, index).
    """

    def __init__(self, n: int = 12, size: tuple[int, int] = (16, 32), seed: int = 0, modality: str = "rgb"):
        rng = np.random.default_rng(seed)
        self.modality = modality
        self.items = []
        h, w = size
        for i in range(n):
            label = np.zeros((h, w), np.int64)
            for _ in range(4):
                y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
                label[y : y + rng.integers(3, 8), x : x + rng.integers(3, 12)] = rng.integers(1, NUM_CLASSES)
            label[label == 0] = 1
            label[0, :3] = 0  # some void
            image = rng.normal(40, 10, (3, h, w)).astype(np.float32)
            for k in range(1, NUM_CLASSES):
                image[k - 1][label == k] += 150
            self.items.append((torch.from_numpy(image), torch.from_numpy(label), f"s{i:02d}"))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        image, label, sid = self.items[index]
        if np.random.default_rng([7, epoch, index]).random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return {
            "inputs": {self.modality: image.clone()},
            "label": label.clone(),
            "id": sid,
            "files": {self.modality: f"/mem/{sid}.png", "label": f"/mem/{sid}_label.png"},
        }


def tiny_config(**train) -> RunConfig:
    values = {
        "data": {"num_workers": 0, "height_px": 16, "width_px": 32},
        "model": {"num_classes": NUM_CLASSES},
        "train": {
            "batch_size": 2,
            "iterations": 6,
            "lr": 1e-2,
            "lr_end": 1e-3,
            "val_every": 3,
            "ckpt_every": 3,
            "log_every": 1,
            "device": "cpu",
            "tensorboard": False,
            **train,
        },
    }
    return config_from_dict(values)


def tiny_meta(modality: str = "rgb", num_classes: int = NUM_CLASSES) -> dict:
    return {
        "kind": "tiny",
        "num_classes": num_classes,
        "modalities": [modality],
        "in_channels": {modality: 3},
        "class_names": [f"c{i}" for i in range(num_classes)],
    }
