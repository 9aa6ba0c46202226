"""What `import-deepscene` needs to know about the fused DeepScene graphs (SSMA, CMoDE; issue 16).

Which graph a checkpoint holds is read from its scopes (deepscene-tf.md §6-8): AdapNet++ under
`resnet_v2_50/`, SSMA experts under `rgb/resnet_v2_50/` and `depth/resnet_v2_50/`, CMoDE experts under
`rgb/resnet_v1_50/` and `depth/resnet_v1_50/`. The expert scopes are positional, whatever the inputs
are: `rgb` is modality 1 (the graph's first input, first in every concatenation), `depth` modality 2
(§7; SSMA and CMoDE `evaluate.py` feed their first image to the `rgb` scope). So the user's
`--modalities rgb,hha` order is the fusion order and the mapping (`tfimport.mapping._expert_scopes`)
puts the first modality's expert under `rgb/`.

CMoDE's class gates flatten a fixed grid (§8, ssma-cmode.md §B.3): the rows of `fc512/weights` are
20 · h · w for the stride-16 grid h x w of the training size. fusionseg's reference-mode gates pool to
`fusion.cmode_pool_hw`, so that grid is read from the checkpoint: at the zoo's 384x768 it is 24 x 48
(23,040 rows), an identity pooling there, and any other input size still runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.tfimport.mapping import Rule, adapnetpp_mapping, cmode_mapping, ssma_mapping

MAPPINGS: dict[str, Callable[[nn.Module], list[Rule]]] = {
    "adapnetpp": adapnetpp_mapping,
    "ssma": ssma_mapping,
    "cmode": cmode_mapping,
}
# the scope that marks each graph's tensors (deepscene-tf.md §6-8)
GRAPH_SCOPES: dict[str, str] = {
    "adapnetpp": "resnet_v2_50/",
    "ssma": "rgb/resnet_v2_50/",
    "cmode": "rgb/resnet_v1_50/",
}
FUSED_MODELS = ("ssma", "cmode")
CMODE_GATE_MAPS = 20  # maps of each CMoDE gate conv, the width of the flattened grid (§8)
TF_ASPECT = 2  # W / H of the zoo's training size 384x768 (deepscene-tf.md §1)


def detect_model(names: Sequence[str], source: Path) -> str:
    """The graph ("adapnetpp", "ssma" or "cmode") whose scopes `names` (TF tensor names) use.

    Raises:
        CheckpointError: none of the three graphs' scopes is present.
    """
    for model in ("cmode", "ssma", "adapnetpp"):  # the fused scopes first: they are longer
        if any(name.startswith(GRAPH_SCOPES[model]) for name in names):
            return model
    raise CheckpointError(
        f"{source}: no DeepScene graph scope (resnet_v2_50/, rgb/resnet_v2_50/, rgb/resnet_v1_50/) among "
        f"its {len(names)} tensors"
    )


def check_model_name(model: str | None) -> None:
    """ConfigError unless `model` is None (detect it) or an importable graph."""
    if model is not None and model not in MAPPINGS:
        raise ConfigError(f"model: {model!r} cannot be imported (importable: {', '.join(MAPPINGS)})")


def check_model(model: str | None, found: str, source: Path) -> str:
    """`model` as given (or `found` when None), refused when the checkpoint holds another graph."""
    check_model_name(model)
    if model is not None and model != found:
        raise ConfigError(
            f"model: the checkpoint {source} holds a {found} graph (scope {GRAPH_SCOPES[found]}), not {model}"
        )
    return found


def check_modalities(model: str, modalities: Sequence[str], channels: Mapping[str, int]) -> None:
    """One 3-channel modality for AdapNet++, two distinct ones for a fused graph (ConfigError)."""
    want = 2 if model in FUSED_MODELS else 1
    if len(modalities) != want:
        example = "rgb,hha (the first is the graph's `rgb` expert)" if want == 2 else "rgb"
        raise ConfigError(
            f"modalities: a {model} checkpoint reads {want} input(s), got {list(modalities) or 'none'}; "
            f"e.g. {example}"
        )
    if len(set(modalities)) != len(modalities):
        raise ConfigError(f"modalities: the two inputs must differ, got {list(modalities)}")
    for m in modalities:
        if channels[m] != 3:
            raise ConfigError(
                f"modalities: {m!r} has {channels[m]} channel(s); DeepScene experts read 3-channel 8-bit "
                "images (rgb, jet, hha, evi; deepscene-tf.md §2)"
            )


def cmode_grid(tensors: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """The stride-16 grid (h, w) CMoDE's first gate FC was trained on, for an input of aspect 1:2.

    Raises:
        CheckpointError: `fc512/weights` is absent or its rows are not 20 · h · 2h.
    """
    weights = tensors.get("fc512/weights")
    if weights is None:
        raise CheckpointError("TF checkpoint lacks tensor 'fc512/weights' (the first CMoDE gate FC)")
    rows = int(np.shape(weights)[0])
    cells = rows // CMODE_GATE_MAPS
    h = math.isqrt(cells // TF_ASPECT)
    if h < 1 or rows != CMODE_GATE_MAPS * h * TF_ASPECT * h:
        raise CheckpointError(
            f"TF tensor 'fc512/weights' has {rows} rows, not 20 x h x 2h for a stride-16 grid of a 1:2 "
            "input (23,040 for 384x768)"
        )
    return h, TF_ASPECT * h


def fused_sections(
    model: str, tensors: Mapping[str, np.ndarray], input_hw: tuple[int, int]
) -> tuple[dict[str, Any], tuple[int, int]]:
    """The `fusion` config section of an imported fused model, and its training input size (H, W).

    SSMA: no aux heads (the released graph has none, ssma-cmode.md §A.4). CMoDE: reference-mode gates
    pooled to the checkpoint's grid (`cmode_grid`), whose 16-fold is the input size.
    """
    fusion: dict[str, Any] = {"scheme": model, "aux": False}
    if model == "cmode":
        h, w = cmode_grid(tensors)
        fusion.update(cmode_gate="reference", cmode_pool_hw=[h, w])
        input_hw = (16 * h, 16 * w)
    return fusion, input_hw


def expert_scopes(model: str, modalities: Sequence[str]) -> dict[str, str]:
    """Modality -> the TF scope its expert was read from (recorded as provenance)."""
    if model not in FUSED_MODELS:
        return {modalities[0]: GRAPH_SCOPES[model]}
    tail = GRAPH_SCOPES[model].split("/", 1)[1]
    return {m: f"{scope}/{tail}" for m, scope in zip(modalities, ("rgb", "depth"), strict=True)}
