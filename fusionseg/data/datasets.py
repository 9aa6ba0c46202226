"""Built-in dataset definitions: class names (id 0 = void), colour palettes and default settings."""

from __future__ import annotations

from dataclasses import dataclass

from fusionseg.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset's label space.

    Attributes:
        name: Key used in configs (`data.dataset`).
        classes: Class names indexed by label id; index 0 is void (ignored in loss and mIoU).
        palette: RGB colour per class id, same length as `classes`.
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.palette):
            raise ValueError(f"{self.name}: {len(self.classes)} classes but {len(self.palette)} colours")

    @property
    def num_classes(self) -> int:
        """Number of classes including void."""
        return len(self.classes)


# Synthetic multimodal scenes (fusionseg.data.synthetic). Ids are stable: the generator writes them.
SYNTHETIC = DatasetInfo(
    name="synthetic",
    classes=(
        "void",
        "ground",  # floors indoors, grass/soil outdoors
        "wall",
        "furniture",  # boxes, tables, cabinets (some camouflaged like the wall or floor)
        "vegetation",  # bushes, trees: bright in NIR
        "trail",
        "sky",
        "marking",  # flat posters and ground markings: visible in RGB only
        "obstacle",  # rocks, painted (green) posts: dark in NIR even when green in RGB
    ),
    palette=(
        (0, 0, 0),
        (128, 64, 128),
        (102, 102, 156),
        (190, 153, 153),
        (107, 142, 35),
        (170, 170, 170),
        (70, 130, 180),
        (250, 170, 30),
        (220, 20, 60),
    ),
)

DATASETS: dict[str, DatasetInfo] = {SYNTHETIC.name: SYNTHETIC}


def get_dataset_info(name: str) -> DatasetInfo:
    """Look up a built-in dataset definition.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})") from None
