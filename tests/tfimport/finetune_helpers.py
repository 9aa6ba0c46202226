"""Tiny labelled datasets and run settings for the fine-tuning tests (`--init-from`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

TINY = ["data.height_px=64", "data.width_px=128", "train.iterations=1", "train.batch_size=1"]
TINY += ["train.val_every=1", "train.ckpt_every=1", "train.log_every=1", "train.time_budget_s=0"]
TINY += ["data.augment=false", "train.tensorboard=false"]


def finetune_dataset(root: Path, columns: tuple[str, ...]) -> Path:
    """Two labelled 64x128 frames (12 classes) with one 3-channel image per column; train = val."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        names = []
        for column in (*columns, "label"):
            (root / column).mkdir(parents=True, exist_ok=True)
            image = (
                rng.integers(0, 12, (64, 128), dtype=np.uint8)
                if column == "label"
                else rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
            )
            cv2.imwrite(str(root / column / f"{i}.png"), image)
            names.append(f"{column}/{i}.png")
        rows.append(" ".join(names))
    text = f"# columns: {' '.join((*columns, 'label'))}\n" + "\n".join(rows) + "\n"
    for split in ("train", "val"):
        (root / f"{split}.txt").write_text(text)
    return root


def finetune_sets(root: Path, extra: list[str]) -> list[str]:
    return [arg for item in (*TINY, f"data.root={root}", *extra) for arg in ("--set", item)]
