"""A user's own label space: a YAML class file usable wherever a built-in dataset name is.

    name: orchard              # optional; default: the file's stem
    void: 0                    # the label id(s) meaning "unlabelled" (an int or a list); required
    void_colour: [0, 0, 0]     # optional: how void is drawn; default black
    depth_sensor: indoor       # optional: range its depth must fit (data.depth_sensor auto); default any
    classes:                   # in fusionseg id order 1, 2, ...
      - {id: 1, name: trunk, colour: [120, 80, 40]}    # colour (or color): R, G, B; optional
      - {id: 2, name: leaf}

`id` is the value in the user's label files. Training, evaluation and prediction
(`--set data.dataset=path/to/classes.yaml`) read those files directly, so there the ids must be
1, 2, ... in the listed order (void is id 0, or 255 through `data.ignore_index`); `fusionseg
prepare-dataset path/to/classes.yaml --root DIR` renumbers any ids (1..65535) to that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionseg.data.catalog import DatasetInfo, indexed_palette
from fusionseg.errors import ConfigError

__all__ = ["CLASS_FILE_SUFFIXES", "ClassFile", "dump_class_file", "is_class_file", "load_class_file"]

CLASS_FILE_SUFFIXES = (".yaml", ".yml")
MAX_RAW_ID = 65535  # 16-bit label files


@dataclass(frozen=True)
class ClassFile:
    """A parsed class file.

    Attributes:
        path: The file.
        info: Label space with fusionseg ids: 0 = void, then the classes in listed order.
        raw_ids: The label-file id of each class, in fusionseg id order (info.classes[1:]).
        void_ids: Label-file ids meaning void.
        depth_scale: Unit of the depth files (`prepare-dataset` of a custom dataset), or None.
    """

    path: Path
    info: DatasetInfo
    raw_ids: tuple[int, ...]
    void_ids: tuple[int, ...]
    depth_scale: str | None = None

    @property
    def contiguous(self) -> bool:
        """True when the label files already hold fusionseg ids (1..N in order)."""
        return self.raw_ids == tuple(range(1, len(self.raw_ids) + 1))


def is_class_file(name: str) -> bool:
    """True for a `data.dataset` value naming a class file rather than a built-in dataset."""
    return str(name).lower().endswith(CLASS_FILE_SUFFIXES)


def _raw_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RAW_ID:
        raise ConfigError(f"{where}: ids must be integers in 0..{MAX_RAW_ID}, got {value!r}")
    return value


def _colour(value: Any, where: str) -> tuple[int, int, int]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    if not ok or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
        raise ConfigError(f"{where}: colour must be [R, G, B] integers in 0..255, got {value!r}")
    return (value[0], value[1], value[2])


def load_class_file(path: str | Path) -> ClassFile:
    """Read and check a class file (format in the module docstring).

    Raises:
        ConfigError: naming the file: unreadable or not YAML, no `void`, two classes (or a class and
            void) with one id, more than 255 classes, a bad name, id or colour.
    """
    import yaml

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read class file ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty `classes` list")
    known = ("name", "void", "void_colour", "classes", "depth_scale", "depth_sensor")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(known)})")
    if "void" not in data:
        raise ConfigError(f"{path}: no `void`: name the label id(s) meaning unlabelled (fusionseg's id 0)")
    voids = data["void"] if isinstance(data["void"], list) else [data["void"]]
    void_ids = tuple(_raw_id(v, f"{path}: void") for v in voids)
    void_colour = _colour(data["void_colour"], f"{path}: void_colour") if "void_colour" in data else (0, 0, 0)
    names, colours, raw_ids = ["void"], [void_colour], []
    owner = {v: "void" for v in void_ids}
    for index, entry in enumerate(data["classes"]):
        where = f"{path}: classes[{index}]"
        if not isinstance(entry, dict) or not {"id", "name"} <= set(entry):
            raise ConfigError(f"{where}: expected {{id: N, name: TEXT[, colour: [R, G, B]]}}, got {entry!r}")
        raw = _raw_id(entry["id"], where)
        if raw in owner:
            raise ConfigError(f"{where}: id {raw} is already used by {owner[raw]!r}")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: name must be non-empty text, got {name!r}")
        owner[raw] = name
        raw_ids.append(raw)
        names.append(name)
        colour = entry.get("colour", entry.get("color"))
        colours.append(_colour(colour, where) if colour is not None else indexed_palette(index + 2)[-1])
    if len(names) > 256:
        raise ConfigError(f"{path}: {len(names) - 1} classes; 8-bit labels hold at most 255")
    sensor = data.get("depth_sensor", "any")
    if sensor not in ("any", "indoor", "outdoor"):  # data.io.DEPTH_SENSORS
        raise ConfigError(f"{path}: depth_sensor must be any, indoor or outdoor, got {sensor!r}")
    name = str(data.get("name") or path.stem)
    info = DatasetInfo(name=name, classes=tuple(names), palette=tuple(colours), depth_sensor=sensor)
    scale = data.get("depth_scale")
    return ClassFile(path, info, tuple(raw_ids), void_ids, str(scale) if scale is not None else None)


def dump_class_file(info: DatasetInfo) -> str:
    """YAML text of a class file describing `info` with fusionseg ids (void 0, classes 1..N).

    `load_class_file` reads it back to an equal `DatasetInfo` (name, classes, palette, sensor);
    prepare-dataset writes it as ``OUT/classes.yaml``, so ``--set data.dataset=OUT/classes.yaml``
    trains on its output.
    """
    import yaml

    classes = [
        {"id": class_id, "name": name, "colour": list(colour)}
        for class_id, (name, colour) in enumerate(zip(info.classes, info.palette))
        if class_id > 0
    ]
    data = {"name": info.name, "void": 0, "void_colour": list(info.palette[0])}
    data |= {"depth_sensor": info.depth_sensor, "classes": classes}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    return f"# fusionseg class file: label ids as written by prepare-dataset (0 = void)\n{text}"
