"""`fusionseg import-deepscene`: a DeepScene TF1 checkpoint as a fusionseg checkpoint (issue 16).

The TF bundle is read without TensorFlow (`tfimport.bundle`), every model tensor is mapped onto the
fusionseg model (`tfimport.mapping`), and the result is written as an ordinary fusionseg checkpoint
(kind "expert"), so `evaluate`, `predict`, `export` and `train-fusion` take it like a trained one.
What a TF checkpoint does not store comes from the arguments (deepscene-tf.md §1): the class list
(`dataset`), the input modality and the eASPP rates (3/6/12; 6/12/18 for the Cityscapes-19 zoo
models). The model is built with TF `SAME` padding on its stride-2 layers (`model.padding=tf_same`,
deepscene-tf.md §4), which the converted weights need to give the original's outputs.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fusionseg.config import config_from_dict, config_to_dict
from fusionseg.data.modality_specs import modality_channels
from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.registry import model_kind
from fusionseg.tfimport.bundle import TFCheckpoint, model_tensors, resolve_prefix
from fusionseg.tfimport.mapping import adapnetpp_mapping, apply_mapping
from fusionseg.tfimport.zoo import zoo_model
from fusionseg.workflows.run_meta import checkpoint_meta

IMPORT_MODELS = ("adapnetpp",)  # SSMA and CMoDE: mappings tested, converter to follow (issue 16)
TF_INPUT_SIZE = (384, 768)  # the zoo models' training size (deepscene-tf.md §1)


@dataclass(frozen=True)
class ImportReport:
    """What `import_deepscene` wrote."""

    source: Path
    out: Path
    model: str
    dataset: str
    modalities: tuple[str, ...]
    tensors: int
    elements: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": str(self.source),
            "out": str(self.out),
            "model": self.model,
            "dataset": self.dataset,
            "modalities": list(self.modalities),
            "tensors": self.tensors,
            "elements": self.elements,
        }


def import_deepscene(
    checkpoint: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    model: str = "adapnetpp",
    modality: str | None = None,
    easpp_rates: Sequence[int] | None = None,
    zoo: str | None = None,
) -> ImportReport:
    """Convert a DeepScene TF1 AdapNet++ checkpoint into a fusionseg checkpoint.

    Args:
        checkpoint: The TF checkpoint: its prefix (`.../model.ckpt-1`), its `.index` file, its folder,
            or a zoo zip holding one checkpoint.
        out: The fusionseg `.pt` file to write (with its sha256 sidecar).
        dataset: Built-in dataset whose classes the model predicts (`fusionseg.data.catalog`, e.g.
            "cityscapes11" for the 12-class models); its class count must be the checkpoint's.
        model: "adapnetpp".
        modality: The expert's input modality ("rgb", "jet", "hha", "evi", ...: 3-channel 8-bit images
            in `cv2.imread` order, deepscene-tf.md §2); default "rgb".
        easpp_rates: The eASPP atrous rates the model was trained with (default 3, 6, 12).
        zoo: A `tfimport.zoo.ZOO` name; it supplies dataset, modality and rates not given, and its
            entry (published mIoU, input recipe) is recorded in the checkpoint as `zoo`.

    Returns:
        An `ImportReport`.

    Raises:
        ConfigError: unknown model or dataset, or a class count that does not fit.
        CheckpointError: unreadable checkpoint, or a tensor whose name or shape does not fit (named).
    """
    entry = zoo_model(zoo) if zoo is not None else None
    dataset = dataset or (entry.dataset if entry else None)
    if dataset is None:
        raise ConfigError("dataset: give the dataset whose classes the model predicts (or a `zoo` name)")
    modality = modality or (entry.modality if entry else "rgb")
    easpp_rates = tuple(easpp_rates or (entry.easpp_rates if entry else (3, 6, 12)))
    if model not in IMPORT_MODELS:
        raise ConfigError(f"model: {model!r} cannot be imported yet (importable: {', '.join(IMPORT_MODELS)})")
    with _unpacked(Path(checkpoint)) as where:
        reader = TFCheckpoint(resolve_prefix(where))
        tensors = {name: reader.read(info.key) for name, info in model_tensors(reader).items()}
    classes = _class_count(tensors)
    _check_dataset(dataset, classes, Path(checkpoint))
    values = {
        "data": {"dataset": dataset, "modalities": [modality], "height_px": TF_INPUT_SIZE[0],
                 "width_px": TF_INPUT_SIZE[1]},
        "model": {"num_classes": classes, "easpp_rates": list(easpp_rates), "padding": "tf_same"},
    }  # fmt: skip
    cfg = config_from_dict(values)
    kind = model_kind(model)
    channels = {modality: modality_channels(modality)}
    meta = checkpoint_meta(cfg, kind=kind.checkpoint_kind, in_channels=channels)
    with torch.device("meta"):
        net = kind.build(cfg, channels)
    state = apply_mapping(adapnetpp_mapping(net), tensors, net)
    source = Path(checkpoint)
    payload = checkpoint_header(
        **meta,
        modality=modality,
        step=0,
        model=state,
        config=config_to_dict(cfg),
        imported_from={"format": "deepscene-tf1", "path": str(source.resolve()), "tensors": len(tensors)},
        **({"zoo": entry.to_dict()} if entry else {}),
    )
    out = save_checkpoint(out, payload)
    elements = sum(int(t.size) for t in tensors.values())
    return ImportReport(source, Path(out), model, cfg.data.dataset, (modality,), len(tensors), elements)


# the files of a TF1 checkpoint; anything else in a zip is left alone
_CHECKPOINT_FILE = re.compile(r"(\.index|\.data-\d{5}-of-\d{5}|^checkpoint)$")


@contextlib.contextmanager
def _unpacked(path: Path) -> Iterator[Path]:
    """`path` itself, or for a `.zip` a temporary folder holding its checkpoint files (by base name:
    no member can write outside the folder)."""
    if path.suffix.lower() != ".zip":
        yield path
        return
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable zip ({exc})") from None
    with archive, tempfile.TemporaryDirectory(prefix="fusionseg-import-") as tmp:
        members = [
            m for m in archive.infolist() if not m.is_dir() and _CHECKPOINT_FILE.search(Path(m.filename).name)
        ]
        if not members:
            raise CheckpointError(f"{path}: the zip holds no TensorFlow checkpoint files (*.index, *.data-*)")
        for member in members:
            with archive.open(member) as src, open(Path(tmp) / Path(member.filename).name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        yield Path(tmp)


def _check_dataset(dataset: str, classes: int, prefix: Path) -> None:
    """ConfigError unless the built-in `dataset` has the checkpoint's class count (void included)."""
    from fusionseg.data.catalog import DATASETS, get_dataset_info

    have = get_dataset_info(dataset).num_classes
    if have != classes:
        fitting = [name for name, info in DATASETS.items() if info.num_classes == classes]
        raise ConfigError(
            f"dataset: {dataset!r} has {have} classes (void included), the checkpoint {prefix} predicts "
            f"{classes}" + (f"; datasets with {classes}: {', '.join(fitting)}" if fitting else "")
        )


def _class_count(tensors: dict[str, Any]) -> int:
    """C of the checkpoint: the output channels of the classifier `conv78` (deepscene-tf.md §6)."""
    for name, value in tensors.items():
        if name.endswith("conv78/weights"):
            return int(value.shape[-1])
    raise CheckpointError(
        "checkpoint: no classifier tensor .../conv78/weights (is this an AdapNet++ checkpoint?)"
    )
