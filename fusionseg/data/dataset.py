"""Segmentation samples as dicts of tensors: modality readers, `SegmentationDataset`, `build_dataset`.

Network-side conventions (adapnetpp.md §1, modalities.md header): 8-bit modalities are fed in OpenCV's
channel order (B, G, R for colour files) as float 0-255 without mean subtraction; the first layer of
the network is a learnable BatchNorm. Depth columns are read as float metres. Label id 0 is void.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from fusionseg.config import DataConfig
from fusionseg.data import io
from fusionseg.data.listfile import LABEL_COLUMN, ListFile, read_list, scan_folder_layout
from fusionseg.data.modality_specs import get_modality
from fusionseg.data.normalization import Normalization, check_normalization, normalize_input
from fusionseg.data.transforms import NEAREST, PairedTransform, resize
from fusionseg.errors import ConfigError, DataError

# Pixel values listed per offending label id before an error message summarises.
MAX_LISTED_IDS = 10


def read_modality(
    name: str, path: str | Path, *, depth_scale_m: float | str, depth_sensor: str = "any"
) -> NDArray[np.float32]:
    """Read one modality file as the network sees it.

    Args:
        name: Modality key (see `MODALITIES`).
        path: The file.
        depth_scale_m: Metres per stored unit of depth files (number or `io.DEPTH_UNITS` name).
        depth_sensor: Range that depth must fit (`io.DEPTH_SENSORS` key, or "off"): a frame read in
            the wrong unit is refused, naming the file and the units that would fit. All-missing
            frames (a sensor that returned nothing) are accepted.

    Returns:
        (H, W, C) float32: 0-255 in B, G, R order for colour modalities, 0-255 for NIR, metres for depth
        (0 = missing).

    Raises:
        ConfigError: unknown modality. DataError: unreadable or wrong-format file (names it).
    """
    spec = get_modality(name)
    if spec.kind == "colour":
        return io.read_image(path).astype(np.float32)
    if spec.kind == "gray":
        return io.read_gray(path).astype(np.float32)[:, :, None]
    # depth in metres; the unit is declared by the config and checked against the sensor's range
    depth = io.read_depth(path, depth_scale_m=depth_scale_m, sensor=depth_sensor, allow_empty=True)
    return depth[:, :, None]


class SegmentationDataset(Dataset):
    """Samples of a list as dicts of tensors, optionally augmented.

    `dataset[i]` (or `dataset[(i, epoch)]`) returns
    `{"inputs": {modality: (C, H, W) float32}, "label": (H, W) int64, "id": str, "files": {column: str}}`.

    Augmentation is reproducible: sample `i` in epoch `e` draws its parameters from a generator seeded
    with `(seed, e, i)`, so results do not depend on the number of DataLoader workers or on resuming.
    The epoch comes from `set_epoch` or, with persistent workers, from index tuples `(i, epoch)`.
    """

    def __init__(
        self,
        list_file: ListFile,
        *,
        modalities: Sequence[str],
        size: tuple[int, int] | None,
        num_classes: int,
        transform: PairedTransform | None = None,
        normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
        depth_scale_m: float | str = 1e-3,
        ignore_index: int | None = 255,
        seed: int = 0,
        depth_sensor: str = "any",
    ) -> None:
        """Check the arguments against the list.

        Args:
            list_file: Samples; must have a column per modality and a `label` column.
            modalities: Modalities to load, in order.
            size: (H, W) pixels every sample is resized to when `transform` is None (None = keep the
                file size). With a transform, its `size_hw` decides.
            num_classes: Classes including void (0); label ids must be below it.
            transform: Paired augmentation for training; None for validation and testing.
            normalization: Modality -> ((mean...), (std...)) per channel, applied after the transform;
                modalities not listed are fed unnormalised (0-255 or metres).
            depth_scale_m: Metres per stored unit of depth columns.
            depth_sensor: Range each depth frame must fit (`io.DEPTH_SENSORS` key, or "off").
            ignore_index: Label id read as void (0), e.g. 255; None if there is none.
            seed: Base seed of the augmentation (>= 0).

        Raises:
            ConfigError: unknown modality or bad normalisation. DataError: the list lacks a column.
        """
        if not modalities:
            raise ConfigError("data.modalities: at least one modality is needed")
        self.specs = {name: get_modality(name) for name in modalities}
        list_file.require_columns([*modalities, LABEL_COLUMN])
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2 (void + 1), got {num_classes}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive values, got {size}")
        self.list_file = list_file
        self.modalities = tuple(modalities)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.num_classes = int(num_classes)
        self.transform = transform
        self.normalization: Normalization = check_normalization(normalization, self.modalities)
        self.depth_scale_m = io.parse_depth_scale(depth_scale_m)
        if depth_sensor not in io.DEPTH_SENSOR_CHOICES:
            raise ConfigError(
                f"data.depth_sensor: {depth_sensor!r} is not one of {', '.join(io.DEPTH_SENSOR_CHOICES)}"
            )
        self.depth_sensor = depth_sensor
        self.ignore_index = ignore_index
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.list_file.samples)

    @property
    def channels(self) -> dict[str, int]:
        """Modality -> input channels."""
        return {name: spec.channels for name, spec in self.specs.items()}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws `dataset[i]` uses."""
        self.epoch = int(epoch)

    def generator(self, index: int, epoch: int) -> np.random.Generator:
        """The augmentation generator of sample `index` in `epoch`."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))

    def read_arrays(self, index: int) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.integer]]:
        """Read one sample at file size, checked, before any resizing or augmentation.

        Returns:
            Modality -> (H, W, C) float32, and the (H, W) uint8/uint16 label with `ignore_index` set to 0.

        Raises:
            DataError: unreadable file, sizes that differ between the files (naming them), or label ids
                >= num_classes (naming the file and the ids).
        """
        sample = self.list_file.samples[index]
        inputs = {
            name: read_modality(
                name, sample.files[name], depth_scale_m=self.depth_scale_m, depth_sensor=self.depth_sensor
            )
            for name in self.modalities
        }
        label_path = sample.files[LABEL_COLUMN]
        label = io.read_label(label_path)
        sizes = {name: array.shape[:2] for name, array in inputs.items()}
        sizes[LABEL_COLUMN] = label.shape
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{name} {sample.files[name]} {h}x{w}" for name, (h, w) in sizes.items())
            raise DataError(f"sample {sample.id}: files differ in size (HxW): {listed}")
        return inputs, self._check_label(label, label_path)

    def _check_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        if int(label.max()) >= self.num_classes:
            ids = np.unique(label)
            bad = [int(v) for v in ids if v >= self.num_classes and v != self.ignore_index]
            if bad:
                shown = ", ".join(map(str, bad[:MAX_LISTED_IDS])) + (
                    " ..." if len(bad) > MAX_LISTED_IDS else ""
                )
                raise DataError(
                    f"{path}: label ids {shown} out of range for {self.num_classes} classes "
                    f"(0..{self.num_classes - 1}"
                    + (f", {self.ignore_index} = void" if self.ignore_index is not None else "")
                    + ")"
                )
        if self.ignore_index is not None and 0 < self.ignore_index <= np.iinfo(label.dtype).max:
            label = np.where(label == self.ignore_index, 0, label).astype(label.dtype)
        return label

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, self.epoch)
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        index %= len(self)
        sample = self.list_file.samples[index]
        inputs, label = self.read_arrays(index)
        if self.transform is not None:
            inputs, label = self.transform(inputs, label, self.generator(index, int(epoch)))
        elif self.size is not None:
            inputs = {
                name: resize(array, self.size, interpolation=self.specs[name].interpolation)
                for name, array in inputs.items()
            }
            label = resize(label, self.size, interpolation=NEAREST)
        tensors = {}
        for name, array in inputs.items():
            if name in self.normalization:
                array = normalize_input(array, *self.normalization[name])
            chw = np.ascontiguousarray(array.transpose(2, 0, 1), np.float32)  # (H, W, C) -> (C, H, W)
            tensors[name] = torch.from_numpy(chw)
        return {
            "inputs": tensors,
            "label": torch.from_numpy(label.astype(np.int64)),  # (H, W)
            "id": sample.id,
            "files": {column: str(path) for column, path in sample.files.items()},
        }


def build_transform(cfg: DataConfig, modalities: Sequence[str]) -> PairedTransform:
    """The training augmentation of a data config (adapnetpp.md §8)."""
    return PairedTransform(
        size_hw=(cfg.height_px, cfg.width_px),
        scale_range=(cfg.scale_min, cfg.scale_max),
        flip=cfg.flip,
        max_rotation_deg=cfg.rotation_deg,
        brightness=cfg.brightness,
        contrast_range=(cfg.contrast_min, cfg.contrast_max),
        photometric=frozenset({"rgb"}) & frozenset(modalities),
        nearest=frozenset(m for m in modalities if get_modality(m).interpolation == NEAREST),
    )


def load_samples(cfg: DataConfig, split: str, columns: Sequence[str]) -> ListFile:
    """The list of a split: `cfg.root / cfg.<split>_list`, or the folder layout `cfg.root/<split>/`."""
    if cfg.layout == "folders":
        return scan_folder_layout(cfg.root, split, columns)
    list_name = {"train": cfg.train_list, "val": cfg.val_list}[split]
    return read_list(
        Path(cfg.root) / list_name,
        columns=cfg.list_columns or columns,
        allow_absolute=cfg.allow_absolute_paths,
    )


def build_dataset(
    cfg: DataConfig,
    split: Literal["train", "val"],
    *,
    modalities: Sequence[str] | None = None,
    num_classes: int,
    seed: int = 0,
) -> SegmentationDataset:
    """The dataset of one split as the config describes it.

    Args:
        cfg: Data section of the run config.
        split: "train" (augmented when `cfg.augment`) or "val" (resized to the configured size).
        modalities: Modalities to load; defaults to `cfg.modalities`.
        num_classes: Classes including void.
        seed: Augmentation seed (usually `train.seed`).

    Raises:
        ConfigError: unknown split or modality. DataError: unreadable list or missing files.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
    modalities = tuple(cfg.modalities if modalities is None else modalities)
    for name in modalities:
        get_modality(name)
    list_file = load_samples(cfg, split, [*modalities, LABEL_COLUMN])
    augment = split == "train" and cfg.augment
    return SegmentationDataset(
        list_file,
        modalities=modalities,
        size=(cfg.height_px, cfg.width_px),
        num_classes=num_classes,
        transform=build_transform(cfg, modalities) if augment else None,
        normalization=cfg.normalization,
        depth_scale_m=cfg.depth_scale_m,
        ignore_index=cfg.ignore_index,
        seed=seed,
        depth_sensor=resolve_depth_sensor(cfg),
    )


def resolve_depth_sensor(cfg: DataConfig) -> str:
    """`data.depth_sensor`, with "auto" replaced by the built-in dataset's sensor ("any" otherwise)."""
    if cfg.depth_sensor != "auto":
        return cfg.depth_sensor
    from fusionseg.data.catalog import get_dataset_info

    try:
        return get_dataset_info(cfg.dataset).depth_sensor
    except ConfigError:
        return "any"
