"""Tiny copies of official dataset downloads, built from each distributor's documentation.

Each builder writes a few small frames in the official folder layout with known values at known pixels
(listed in its `EXPECTED_*` constants), plus the frames a reader must leave out (test sets without
labels, extra sets).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

H, W = 16, 32  # rows, columns of every fixture image

# --- Cityscapes (cityscapesScripts README: leftImg8bit/ gtFine/ disparity/ camera/) -------------------

CITYSCAPES_FRAMES = {
    "train": ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"],
    "val": ["frankfurt_000000_000294"],
}
CITYSCAPES_LEFT_OUT = {"test": ["berlin_000000_000019"], "train_extra": ["augsburg_000000_000000"]}
CS_BASELINE_M, CS_FX, CS_CENTRE = 0.2, 2000.0, (15.5, 7.5)
# (row, col) -> official label id, fusionseg 19-class id, 11-class id (background: road 7 -> 1 / 3)
CS_LABEL_PIXELS = {
    (1, 2): (26, 14, 8),  # car
    (2, 3): (8, 2, 4),  # sidewalk
    (3, 4): (1, 0, 0),  # ego vehicle: void
    (4, 5): (12, 4, 2),  # wall -> Building in 11
    (5, 6): (22, 10, 6),  # terrain -> Vegetation
    (6, 7): (19, 7, 9),  # traffic light -> Traffic Sign
    (7, 8): (31, 17, 8),  # train -> Car/Truck/Bus
    (8, 9): (23, 11, 1),  # sky
    (9, 10): (9, 0, 0),  # parking: ignored by the benchmark
    (10, 11): (33, 19, 11),  # bicycle
}
# (row, col) -> raw disparity value, expected depth in metres (0 = missing); background p=2561: 40 m
CS_DISPARITY_PIXELS = {
    (0, 0): (0, 0.0),  # invalid
    (0, 1): (1, 0.0),  # zero disparity: infinitely far
    (1, 1): (129, 0.0),  # d = 0.5 px: 800 m, beyond 1/256 m's range -> missing
    (2, 2): (1025, 100.0),  # d = 4 px
}
CS_BACKGROUND_DEPTH_M = 40.0


def _png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def frame_rgb(seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB test colours, different per frame."""
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def make_cityscapes(root: Path) -> Path:
    """A Cityscapes download: 3 train + 1 val labelled frames, a test frame and a train_extra frame."""
    all_frames = {**CITYSCAPES_FRAMES, **CITYSCAPES_LEFT_OUT}
    for split, ids in all_frames.items():
        for index, frame_id in enumerate(ids):
            city = frame_id.split("_")[0]
            _png(
                root / "leftImg8bit" / split / city / f"{frame_id}_leftImg8bit.png",
                frame_rgb(index)[..., ::-1],
            )
            if split == "train_extra":
                continue  # gtCoarse only
            label = np.full((H, W), 7, np.uint8)
            for (r, c), (raw, _, _) in CS_LABEL_PIXELS.items():
                label[r, c] = raw
            if split == "test":
                label[:] = 0  # the public test labels are empty
            gt = root / "gtFine" / split / city
            _png(gt / f"{frame_id}_gtFine_labelIds.png", label)
            _png(gt / f"{frame_id}_gtFine_color.png", np.zeros((H, W, 3), np.uint8))
            disparity = np.full((H, W), 2561, np.uint16)
            for (r, c), (raw, _) in CS_DISPARITY_PIXELS.items():
                disparity[r, c] = raw
            _png(root / "disparity" / split / city / f"{frame_id}_disparity.png", disparity)
            camera = {
                "extrinsic": {
                    "baseline": CS_BASELINE_M,
                    "pitch": 0.04,
                    "roll": 0.0,
                    "x": 1.7,
                    "y": 0.1,
                    "yaw": 0.0,
                    "z": 1.2,
                },
                "intrinsic": {"fx": CS_FX, "fy": CS_FX, "u0": CS_CENTRE[0], "v0": CS_CENTRE[1]},
            }
            cam = root / "camera" / split / city / f"{frame_id}_camera.json"
            cam.parent.mkdir(parents=True, exist_ok=True)
            cam.write_text(json.dumps(camera))
    return root
