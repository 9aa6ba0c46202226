"""What every training workflow's checkpoints record besides weights and loop state.

One builder for the fixed metadata fields (kind, modalities, in_channels, num_classes, class_names,
palette, normalization, modality_kind, input_size, dataset, input_recipes) and one check that the
configured class count is the dataset's; `train_expert` and `train_fusion` add their own fields
(modality, experts, stage, init_from).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fusionseg.config import RunConfig
from fusionseg.errors import ConfigError
from fusionseg.registry import model_kind

EXPERT_KIND = model_kind("adapnetpp").checkpoint_kind  # "expert": checkpoints of train-unimodal


def check_num_classes(cfg: RunConfig, *, source: str | None = None) -> Any:
    """The dataset's `DatasetInfo`, after checking that `model.num_classes` is its class count.

    Args:
        cfg: The run config (`data.dataset`, `model.num_classes`).
        source: What fixed the class count when it is not the user's config, e.g. "the checkpoint
            model.ckpt-1" (`import-deepscene`): the message then blames `dataset`, names the source and
            lists the built-in datasets with that many classes.

    Raises:
        ConfigError: the counts differ (void included).
    """
    from fusionseg.data.catalog import DATASETS, get_dataset_info

    info = get_dataset_info(cfg.data.dataset)
    classes = cfg.model.num_classes
    if classes == info.num_classes:
        return info
    if source is None:
        raise ConfigError(
            f"model.num_classes is {classes} but dataset {info.name!r} has {info.num_classes} classes "
            "(void included)"
        )
    fitting = [name for name, other in DATASETS.items() if other.num_classes == classes]
    raise ConfigError(
        f"dataset: {info.name!r} has {info.num_classes} classes (void included), {source} predicts "
        f"{classes}" + (f"; datasets with {classes}: {', '.join(fitting)}" if fitting else "")
    )


def checkpoint_meta(
    cfg: RunConfig,
    *,
    kind: str,
    in_channels: Mapping[str, int],
    normalized: Sequence[str] | None = None,
    recipes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fixed metadata of a run's checkpoints.

    Args:
        cfg: The run config (dataset, data size, normalisation).
        kind: Checkpoint kind ("expert", "ssma", "cmode").
        in_channels: Modality -> input channels of the model, in the model's order.
        normalized: Modalities whose `data.normalization` entries are recorded (default every entry).
        recipes: Modality -> `data.recipe.InputRecipe`, how each input is made from raw data; default
            those of the training data (`data.recipe.recipes_for_data`: its prepare-depth meta.json).

    Returns:
        kind, num_classes, modalities, in_channels, class_names, palette (RGB per id), normalization
        (modality -> [mean, std]), modality_kind, input_size [H, W], dataset, input_recipes (modality ->
        recipe dict, for the modalities whose making is known).

    Raises:
        ConfigError: `model.num_classes` differs from the dataset's class count.
    """
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.data.recipe import recipes_for_data

    info = check_num_classes(cfg)
    norms = cfg.data.normalization
    chosen = list(norms) if normalized is None else [m for m in normalized if norms.get(m)]
    modalities = list(in_channels)
    if recipes is None:
        recipes = recipes_for_data(cfg.data.root, modalities)
    return {
        "kind": kind,
        "num_classes": info.num_classes,
        "modalities": modalities,
        "in_channels": {m: int(c) for m, c in in_channels.items()},
        "class_names": list(info.classes),
        "palette": [list(c) for c in info.palette],
        "normalization": {m: [list(norms[m][0]), list(norms[m][1])] for m in chosen},
        "modality_kind": {m: get_modality(m).kind for m in modalities},
        "input_size": [cfg.data.height_px, cfg.data.width_px],
        "dataset": info.name,
        "input_recipes": {m: recipes[m].to_dict() for m in modalities if m in recipes},
    }
