"""`fusionseg import-deepscene`: a DeepScene TF1 checkpoint as a fusionseg checkpoint (issue 16).

The TF bundle is read without TensorFlow (`tfimport.bundle`), the graph (AdapNet++, SSMA or CMoDE) is
recognised by its scopes (`tfimport.convert_fused`), every model tensor is mapped onto the fusionseg
model built through the registry (`tfimport.mapping`), and the result is written as an ordinary
fusionseg checkpoint with the metadata the training workflows write (kind "expert", "ssma" or
"cmode"), so `evaluate`, `predict`, `export` and `train-fusion` (an expert) take it like a trained one.
What a TF checkpoint does not store comes from the arguments (deepscene-tf.md §1): the class list
(`dataset`), the input modalities (fusion order for SSMA/CMoDE) and the eASPP rates (3/6/12; 6/12/18
for the Cityscapes-19 zoo models). Every expert is built with TF `SAME` padding on its stride-2 layers
(`model.padding=tf_same`, deepscene-tf.md §4), which the converted weights need to give the original's
outputs.
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

from fusionseg.config import RunConfig, config_from_dict, config_to_dict
from fusionseg.data.modality_specs import modality_channels
from fusionseg.data.recipe import InputRecipe, recipes_from_prepare_meta
from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.registry import model_kind
from fusionseg.tfimport.bundle import TFCheckpoint, model_tensors, resolve_prefix
from fusionseg.tfimport.convert_fused import (
    FUSED_MODELS,
    MAPPINGS,
    check_modalities,
    check_model,
    check_model_name,
    detect_model,
    expert_scopes,
    fused_sections,
)
from fusionseg.tfimport.mapping import apply_mapping
from fusionseg.tfimport.zoo import ZooModel, zoo_model
from fusionseg.workflows.run_meta import check_num_classes, checkpoint_meta

IMPORT_MODELS = tuple(MAPPINGS)  # "adapnetpp", "ssma", "cmode"
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


def _recipes(modalities: Sequence[str], entry: ZooModel | None) -> dict[str, InputRecipe]:
    """How the imported model's inputs are made: raw inputs as captured, and the zoo entry's exact
    prepare-depth settings where it has them; nothing is guessed for the rest."""
    recipes = recipes_from_prepare_meta({}, modalities, source="raw inputs")
    for modality, settings in (entry.prepare if entry else {}).items():
        if modality in modalities:
            source = f"zoo {entry.name}"
            recipes[modality] = InputRecipe(modality=modality, product=modality, source=source, **settings)
    return recipes


def import_deepscene(
    checkpoint: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    model: str | None = None,
    modalities: str | Sequence[str] | None = None,
    easpp_rates: Sequence[int] | None = None,
    zoo: str | None = None,
) -> ImportReport:
    """Convert a DeepScene TF1 checkpoint (AdapNet++, SSMA or CMoDE) into a fusionseg checkpoint.

    Args:
        checkpoint: The TF checkpoint: its prefix (`.../model.ckpt-1`), its `.index` file, its folder,
            or a zoo zip holding one checkpoint.
        out: The fusionseg `.pt` file to write (with its sha256 sidecar).
        dataset: Built-in dataset whose classes the model predicts (`fusionseg.data.catalog`, e.g.
            "cityscapes11" for the 12-class models); its class count must be the checkpoint's.
        model: "adapnetpp", "ssma" or "cmode"; default: the graph the checkpoint's scopes show.
        modalities: The inputs ("rgb,hha" or a sequence; 3-channel 8-bit images in `cv2.imread` order,
            deepscene-tf.md §2): one for AdapNet++ (default "rgb"), two in fusion order for SSMA and
            CMoDE (the first is the TF graph's `rgb` expert, the second its `depth` expert, §7).
        easpp_rates: The eASPP atrous rates the model (each expert) was trained with (default 3, 6, 12).
        zoo: A `tfimport.zoo.ZOO` name; it supplies model, dataset, modalities and rates not given, and
            its entry (published mIoU, input recipe) is recorded in the checkpoint as `zoo`.

    Returns:
        An `ImportReport`.

    Raises:
        ConfigError: unknown or mismatching model, unknown dataset, unfit modalities, or a class count
            that does not fit the dataset.
        CheckpointError: unreadable checkpoint, or a tensor whose name or shape does not fit (named).
    """
    entry = zoo_model(zoo) if zoo is not None else None
    dataset = dataset or (entry.dataset if entry else None)
    if dataset is None:
        raise ConfigError("dataset: give the dataset whose classes the model predicts (or a `zoo` name)")
    model = model or (entry.model if entry else None)
    check_model_name(model)  # an unknown name fails before the checkpoint is read
    if isinstance(modalities, str):
        modalities = [m.strip() for m in modalities.split(",") if m.strip()]
    easpp_rates = tuple(easpp_rates or (entry.easpp_rates if entry else (3, 6, 12)))
    source = Path(checkpoint)
    with _unpacked(source) as where:
        reader = TFCheckpoint(resolve_prefix(where))
        tensors = {name: reader.read(info.key) for name, info in model_tensors(reader).items()}
    model = check_model(model, detect_model(list(tensors), source), source)
    chosen = tuple(modalities or (entry.modalities if entry else ("rgb",) if model == "adapnetpp" else ()))
    channels = {m: modality_channels(m) for m in chosen}
    check_modalities(model, chosen, channels)
    cfg = _import_config(model, tensors, dataset, chosen, easpp_rates)
    check_num_classes(cfg, source=f"the checkpoint {source}")
    kind = model_kind(model)
    meta = checkpoint_meta(
        cfg, kind=kind.checkpoint_kind, in_channels=channels, recipes=_recipes(chosen, entry)
    )
    with torch.device("meta"):
        net = kind.build(cfg, channels)
    state = apply_mapping(MAPPINGS[model](net), tensors, net)
    provenance = {"format": "deepscene-tf1", "path": str(source.resolve()), "tensors": len(tensors),
                  "model": model, "expert_scopes": expert_scopes(model, chosen)}  # fmt: skip
    # what train-unimodal / train-fusion record besides the metadata: the modality, or the experts and stage
    extra = {"modality": chosen[0]} if model == "adapnetpp" else {"experts": [], "stage": "imported"}
    payload = checkpoint_header(
        **meta,
        **extra,
        step=0,
        model=state,
        config=config_to_dict(cfg),
        imported_from=provenance,
        **({"zoo": entry.to_dict()} if entry else {}),
    )
    out = save_checkpoint(out, payload)
    elements = sum(int(t.size) for t in tensors.values())
    return ImportReport(source, Path(out), model, cfg.data.dataset, chosen, len(tensors), elements)


def _import_config(
    model: str, tensors: dict[str, Any], dataset: str, modalities: Sequence[str], rates: Sequence[int]
) -> RunConfig:
    """The run config of the converted model: what the checkpoint cannot store comes from the arguments
    (deepscene-tf.md §1); TF `SAME` padding on the stride-2 layers (§4)."""
    values: dict[str, Any] = {
        "data": {"dataset": dataset, "modalities": list(modalities)},
        "model": {"num_classes": _class_count(tensors), "easpp_rates": list(rates), "padding": "tf_same"},
    }
    input_hw = TF_INPUT_SIZE
    if model in FUSED_MODELS:
        values["fusion"], input_hw = fused_sections(model, tensors, TF_INPUT_SIZE)
    values["data"].update(height_px=input_hw[0], width_px=input_hw[1])
    return config_from_dict(values)


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


def _class_count(tensors: dict[str, Any]) -> int:
    """C of the checkpoint: the output channels of the classifier `conv78` (deepscene-tf.md §6)."""
    for name, value in tensors.items():
        if name.endswith("conv78/weights"):
            return int(value.shape[-1])
    raise CheckpointError(
        "checkpoint: no classifier tensor .../conv78/weights (is this a DeepScene checkpoint?)"
    )
