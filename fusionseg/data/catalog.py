"""Built-in dataset definitions: class names (id 0 = void), colour palettes and default settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fusionseg.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset's label space.

    Attributes:
        name: Key used in configs (`data.dataset`).
        classes: Class names indexed by label id; index 0 is void (ignored in loss and mIoU).
        palette: RGB colour per class id, same length as `classes`.
        depth_sensor: The range sensor of its depth (`data.io.DEPTH_SENSORS` key) that
            `data.depth_sensor: auto` checks frames against; "any" for mixed or synthetic depth.
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    depth_sensor: str = "any"

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


def indexed_palette(num_colours: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours from the bits of the class id (the PASCAL VOC colour-map scheme); id 0 black.

    Used for datasets without customary colours. Bit k of the id goes to bit 7 - k // 3 of channel
    k % 3 (red, green, blue), so ids below 256 get unique colours.
    """
    colours = []
    for class_id in range(num_colours):
        rgb = [0, 0, 0]
        bits = class_id
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        colours.append((rgb[0], rgb[1], rgb[2]))
    return tuple(colours)


# Cityscapes official colours (cityscapesScripts), id 0 = void black (adapnetpp.md §12 class order).
_CS = {
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "building": (70, 70, 70),
    "wall": (102, 102, 156),
    "fence": (190, 153, 153),
    "pole": (153, 153, 153),
    "traffic light": (250, 170, 30),
    "traffic sign": (220, 220, 0),
    "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152),
    "sky": (70, 130, 180),
    "person": (220, 20, 60),
    "rider": (255, 0, 0),
    "car": (0, 0, 142),
    "truck": (0, 0, 70),
    "bus": (0, 60, 100),
    "train": (0, 80, 100),
    "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32),
}
_VOID = (0, 0, 0)

CITYSCAPES19 = DatasetInfo(
    name="cityscapes19",
    classes=(
        "void",
        "Road",
        "Sidewalk",
        "Building",
        "Wall",
        "Fence",
        "Pole",
        "Traffic Light",
        "Traffic Sign",
        "Vegetation",
        "Terrain",
        "Sky",
        "Person",
        "Rider",
        "Car",
        "Truck",
        "Bus",
        "Train",
        "Motorcycle",
        "Bicycle",
    ),
    palette=(_VOID, *_CS.values()),
    depth_sensor="outdoor",  # depth from the stereo rig's disparity
)

# Void + 11 (adapnetpp.md §12). Merged classes take the colour of their main member: Car/Truck/Bus the
# car colour, Rider/Bicycle/Motorcycle the rider colour, Pedestrians the person colour.
_CITYSCAPES11_CLASSES = (
    "void",
    "Sky",
    "Building",
    "Road",
    "Sidewalk",
    "Fence",
    "Vegetation",
    "Pole",
    "Car/Truck/Bus",
    "Traffic Sign",
    "Pedestrians",
    "Rider/Bicycle/Motorcycle",
)
_CITYSCAPES11_PALETTE = (
    _VOID,
    _CS["sky"],
    _CS["building"],
    _CS["road"],
    _CS["sidewalk"],
    _CS["fence"],
    _CS["vegetation"],
    _CS["pole"],
    _CS["car"],
    _CS["traffic sign"],
    _CS["person"],
    _CS["rider"],
)
CITYSCAPES11 = DatasetInfo(
    name="cityscapes11", classes=_CITYSCAPES11_CLASSES, palette=_CITYSCAPES11_PALETTE, depth_sensor="outdoor"
)
SYNTHIA = DatasetInfo(name="synthia", classes=_CITYSCAPES11_CLASSES, palette=_CITYSCAPES11_PALETTE)

# SUN RGB-D void + 37 (the NYU-40 ids 1..37). No customary palette: bit-pattern colours.
_SUNRGBD_CLASSES = (
    "void",
    "Wall",
    "Floor",
    "Cabinet",
    "Bed",
    "Chair",
    "Sofa",
    "Table",
    "Door",
    "Window",
    "Bookshelf",
    "Picture",
    "Counter",
    "Blinds",
    "Desk",
    "Shelves",
    "Curtain",
    "Dresser",
    "Pillow",
    "Mirror",
    "Floor Mat",
    "Clothes",
    "Ceiling",
    "Books",
    "Fridge",
    "TV",
    "Paper",
    "Towel",
    "Shower Curtain",
    "Box",
    "Whiteboard",
    "Person",
    "Night Stand",
    "Toilet",
    "Sink",
    "Lamp",
    "Bathtub",
    "Bag",
)
SUNRGBD = DatasetInfo(
    name="sunrgbd",
    classes=_SUNRGBD_CLASSES,
    palette=indexed_palette(len(_SUNRGBD_CLASSES)),
    depth_sensor="indoor",  # Kinect v1/v2, Xtion, RealSense
)

# ScanNet v2 void + 20, colours of the ScanNet benchmark's NYU-40 palette.
SCANNET = DatasetInfo(
    name="scannet",
    classes=(
        "void",
        "Wall",
        "Floor",
        "Cabinet",
        "Bed",
        "Chair",
        "Sofa",
        "Table",
        "Door",
        "Window",
        "Bookshelf",
        "Picture",
        "Counter",
        "Desk",
        "Curtain",
        "Refrigerator",
        "Shower Curtain",
        "Toilet",
        "Sink",
        "Bathtub",
        "Other Furniture",
    ),
    palette=(
        _VOID,
        (174, 199, 232),
        (152, 223, 138),
        (31, 119, 180),
        (255, 187, 120),
        (188, 189, 34),
        (140, 86, 75),
        (255, 152, 150),
        (214, 39, 40),
        (197, 176, 213),
        (148, 103, 189),
        (196, 156, 148),
        (23, 190, 207),
        (247, 182, 210),
        (219, 219, 141),
        (255, 127, 14),
        (158, 218, 229),
        (44, 160, 44),
        (112, 128, 144),
        (227, 119, 194),
        (82, 84, 163),
    ),
    depth_sensor="indoor",  # Structure sensor
)

# Freiburg Forest: colours of the dataset's ground-truth images, so a rendered prediction looks like
# the ground truth and converts back with FREIBURG_FOREST_COLOUR_TO_ID. Obstacles are black there, so
# void is drawn white (a colour the conversion maps to void).
FREIBURG_FOREST = DatasetInfo(
    name="freiburg_forest",
    classes=("void", "Trail", "Grass", "Vegetation", "Sky", "Obstacles"),
    palette=((255, 255, 255), (170, 170, 170), (0, 255, 0), (102, 102, 51), (0, 120, 255), (0, 0, 0)),
)

# Freiburg Forest colour ground truth (R, G, B) -> id [maintainer, adapnetpp.md §12]; other colours -> 0.
FREIBURG_FOREST_COLOUR_TO_ID: dict[tuple[int, int, int], int] = {
    (170, 170, 170): 1,
    (0, 255, 0): 2,
    (102, 102, 51): 3,
    (0, 60, 0): 3,
    (0, 120, 255): 4,
    (0, 0, 0): 5,
}

# NYU Depth v2, void + 13 (ankurhanda/nyuv2-meta-data class13 maps; /work/shared/data/nyuv2-hha-ref).
_NYUV2_13_CLASSES = (
    "void",
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
NYUV2_13 = DatasetInfo(
    name="nyuv2_13",
    classes=_NYUV2_13_CLASSES,
    palette=indexed_palette(len(_NYUV2_13_CLASSES)),
    depth_sensor="indoor",  # Kinect v1
)

# NYU Depth v2, void + the 40 classes of Gupta et al. (classMapping40.mat `className`; ids 1..37 are the
# SUN RGB-D 37, whose names are reused).
_NYUV2_40_CLASSES = (*_SUNRGBD_CLASSES, "Other Structure", "Other Furniture", "Other Prop")
NYUV2_40 = DatasetInfo(
    name="nyuv2_40",
    classes=_NYUV2_40_CLASSES,
    palette=indexed_palette(len(_NYUV2_40_CLASSES)),
    depth_sensor="indoor",  # Kinect v1
)


def colour_label_to_ids(
    rgb: NDArray[np.uint8], mapping: Mapping[tuple[int, int, int], int], *, default: int = 0
) -> NDArray[np.uint8]:
    """Convert colour-coded ground truth to class ids.

    Args:
        rgb: (H, W, 3) uint8 in R, G, B order (reverse OpenCV's B, G, R first).
        mapping: (R, G, B) -> class id in 0..255, e.g. `FREIBURG_FOREST_COLOUR_TO_ID`.
        default: Id of colours not in `mapping` (0 = void).

    Returns:
        (H, W) uint8 class ids.

    Raises:
        ValueError: `rgb` not (H, W, 3) uint8, or an id outside 0..255.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    ids = [default, *mapping.values()]
    if not all(0 <= int(i) <= 255 for i in ids):
        raise ValueError(f"mapping: class ids must be in 0..255, got {sorted(set(ids))}")
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    out = np.full(rgb.shape[:2], default, dtype=np.uint8)
    for (r, g, b), class_id in mapping.items():
        out[packed == ((int(r) << 16) | (int(g) << 8) | int(b))] = class_id
    return out


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        SYNTHETIC,
        CITYSCAPES11,
        CITYSCAPES19,
        SYNTHIA,
        SUNRGBD,
        SCANNET,
        FREIBURG_FOREST,
        NYUV2_13,
        NYUV2_40,
    )
}


def get_dataset_info(name: str) -> DatasetInfo:
    """Look up a built-in dataset definition, or read a user's class file (a .yaml/.yml path).

    A class file (`fusionseg.data.classfile`) must list ids 1, 2, ... in order here: label files are
    read as they are (`prepare-dataset` renumbers other ids).

    Raises:
        ConfigError: unknown name (the message lists the known ones), or a bad class file.
    """
    from fusionseg.data.classfile import is_class_file, load_class_file

    if is_class_file(name):
        class_file = load_class_file(name)
        if not class_file.contiguous:
            raise ConfigError(
                f"{name}: label ids {list(class_file.raw_ids)} are not 1..{len(class_file.raw_ids)} in "
                "order; renumber the labels with `fusionseg prepare-dataset` on this class file"
            )
        return class_file.info
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))}, or a class file .yaml)"
        ) from None
