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


# --- SYNTHIA-RAND-CITYSCAPES (its README: RGB/, GT/LABELS/ 16-bit ids in R, Depth/Depth/ cm) ----------

SYNTHIA_IDS = ["0000000", "0000001", "0000009"]  # the last one is val (number ends in 9)
# (row, col) -> SYNTHIA class id, 11-class id; background: road 3 -> 3
SYNTHIA_LABEL_PIXELS = {
    (1, 1): (1, 1),  # sky
    (2, 2): (21, 2),  # wall -> Building
    (3, 3): (22, 3),  # lane marking -> Road
    (4, 4): (12, 11),  # motorcycle -> Rider/Bicycle/Motorcycle
    (5, 5): (19, 8),  # bus
    (6, 6): (13, 0),  # parking-slot -> void
    (7, 7): (15, 9),  # traffic light -> Traffic Sign
    (8, 8): (0, 0),  # void
}
# (row, col) -> depth in cm; background 1234 cm
SYNTHIA_DEPTH_PIXELS = {(0, 0): 0, (1, 2): 65535, (2, 3): 5}


def make_synthia(root: Path) -> Path:
    """A SYNTHIA-RAND-CITYSCAPES download with 3 frames (3-channel 16-bit labels and depth)."""
    base = root / "RAND_CITYSCAPES"
    for index, frame_id in enumerate(SYNTHIA_IDS):
        _png(base / "RGB" / f"{frame_id}.png", frame_rgb(10 + index)[..., ::-1])
        labels = np.zeros((H, W, 3), np.uint16)  # B, G, R as OpenCV writes
        labels[..., 2] = 3
        labels[..., 1] = 500 + index  # instance ids in G, never read as classes
        for (r, c), (raw, _) in SYNTHIA_LABEL_PIXELS.items():
            labels[r, c, 2] = raw
        _png(base / "GT" / "LABELS" / f"{frame_id}.png", labels)
        depth = np.full((H, W), 1234, np.uint16)
        for (r, c), cm in SYNTHIA_DEPTH_PIXELS.items():
            depth[r, c] = cm
        _png(base / "Depth" / "Depth" / f"{frame_id}.png", np.dstack([depth * 0, depth * 0, depth]))
    return root


# --- Freiburg Forest (its README: train/ test/ with rgb/ GT_color/ nir/ ...) ----------------------

FOREST_FRAMES = {"train": ["b1-09517", "b12-1234"], "test": ["b200-456"]}
# (row, col) -> GT colour (R, G, B), id
FOREST_LABEL_PIXELS = {
    (1, 1): ((170, 170, 170), 1),
    (2, 2): ((0, 255, 0), 2),
    (3, 3): ((102, 102, 51), 3),
    (4, 4): ((0, 60, 0), 3),
    (5, 5): ((0, 120, 255), 4),
    (6, 6): ((0, 0, 0), 5),
    (7, 7): ((255, 255, 255), 0),
}


def forest_nir(seed: int) -> np.ndarray:
    """(H, W) uint8 test NIR values, different per frame."""
    return np.random.default_rng(100 + seed).integers(0, 256, (H, W), dtype=np.uint8)


def forest_seed(split: str, index: int) -> int:
    """Seed of a Forest fixture frame's colours and NIR."""
    return index + (0 if split == "train" else 50)


def make_forest(root: Path) -> Path:
    """A Freiburg Forest download: 2 train + 1 test frames, and a train view without GT (left out)."""
    views = {
        split: [*keys, *(["b99-777"] if split == "train" else [])] for split, keys in FOREST_FRAMES.items()
    }
    for split, keys in views.items():
        for index, key in enumerate(keys):
            seed = forest_seed(split, index)
            # the download's rgb/ holds JPEGs; PNG here so colours can be compared exactly
            _png(root / split / "rgb" / f"{key}_Clipped.png", frame_rgb(seed)[..., ::-1])
            nir = np.zeros((H, W, 3), np.uint8)
            nir[..., 0] = forest_nir(seed)  # blue: NIR
            nir[..., 2] = 200  # red: mostly red light
            _png(root / split / "nir" / f"{key}.png", nir)
            _png(root / split / "depth_gray" / f"{key}.png", np.zeros((H, W), np.uint8))
            if key == "b99-777":
                continue
            gt = np.full((H, W, 3), 170, np.uint8)
            for (r, c), (colour, _) in FOREST_LABEL_PIXELS.items():
                gt[r, c] = colour
            _png(root / split / "GT_color" / f"{key}_mask.png", gt[..., ::-1])
    return root
