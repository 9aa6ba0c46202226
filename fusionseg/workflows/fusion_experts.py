"""The experts of a fused model: loading them from unimodal checkpoints, and their provenance.

Every fusion checkpoint records the expert checkpoints (path and sha256) its model was built from;
a run is only continued with the same experts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from fusionseg.config import RunConfig
from fusionseg.engine.checkpoint import as_plain, load_checkpoint, load_model_state
from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.fsutil import sha256_file
from fusionseg.fusion.fused import CMoDEModel, ExpertEnsemble
from fusionseg.models.adapnet import trunk_state_dict
from fusionseg.workflows.run_meta import EXPERT_KIND

ARCHITECTURE_KEYS = ("dilations", "easpp_rates", "padding")  # model keys that change an expert's computation
# keys added after checkpoints were first written: a saved config without one was built with this value
ARCHITECTURE_DEFAULTS = {"padding": "symmetric"}


@dataclass(frozen=True)
class ExpertSource:
    """Where an expert's weights came from; stored in every fusion checkpoint.

    Attributes:
        modality: The expert's modality.
        path: Absolute path of the unimodal checkpoint.
        sha256: Hex digest of that file.
        step: Training step of the checkpoint (None if not recorded).
    """

    modality: str
    path: str
    sha256: str
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        return dataclasses.asdict(self)


def check_expert_payload(
    payload: Mapping[str, Any],
    *,
    modality: str,
    cfg: RunConfig,
    in_channels: int,
    class_names: Sequence[str] | None,
    source: str,
) -> None:
    """Refuse a unimodal checkpoint that does not fit the expert slot it was given for.

    Args:
        payload: The loaded checkpoint.
        modality: Name the checkpoint was given for (`--experts NAME=CKPT`).
        cfg: The fusion run's config (`model.num_classes`, architecture keys, `data.normalization`).
        in_channels: Input channels of that modality.
        class_names: The dataset's class names, compared when the checkpoint records its own.
        source: File name for messages.

    Raises:
        CheckpointError: naming the mismatch (kind, modality, class count, class names, input channels,
            architecture key or normalisation).
    """
    kind = payload.get("kind")
    if kind != EXPERT_KIND:
        raise CheckpointError(
            f"{source}: a {kind!r} checkpoint, not a unimodal expert (train one per modality with "
            "fusionseg train-unimodal)"
        )
    have_modalities = list(payload.get("modalities") or [])
    if have_modalities != [modality]:
        raise CheckpointError(
            f"{source}: modality mismatch: the checkpoint is an expert for "
            f"{', '.join(map(repr, have_modalities)) or 'no modality'}, but it was given for {modality!r}"
        )
    have_classes = payload.get("num_classes")
    if have_classes != cfg.model.num_classes:
        raise CheckpointError(
            f"{source}: class count mismatch: the expert has {have_classes} classes, the fusion run "
            f"needs model.num_classes={cfg.model.num_classes}"
        )
    names = payload.get("class_names")
    if class_names is not None and names is not None and list(names) != list(class_names):
        raise CheckpointError(
            f"{source}: class names mismatch: the expert has {list(names)}, the dataset {list(class_names)}"
        )
    have_channels = (payload.get("in_channels") or {}).get(modality)
    if have_channels != in_channels:
        raise CheckpointError(
            f"{source}: input channel mismatch for {modality!r}: the expert reads {have_channels}, "
            f"the data gives {in_channels}"
        )
    model_cfg = (payload.get("config") or {}).get("model") or {}
    for key in ARCHITECTURE_KEYS:
        have, want = model_cfg.get(key, ARCHITECTURE_DEFAULTS.get(key)), getattr(cfg.model, key)
        if have is not None and as_plain(have) != as_plain(want):
            raise CheckpointError(
                f"{source}: architecture mismatch: the expert was built with model.{key}={as_plain(have)!r}, "
                f"the fusion run uses {as_plain(want)!r}"
            )
    have_norm = (payload.get("normalization") or {}).get(modality)
    want_norm = cfg.data.normalization.get(modality)
    if "normalization" in payload and as_plain(have_norm) != as_plain(want_norm):
        raise CheckpointError(
            f"{source}: normalisation mismatch for {modality!r}: the expert was trained with "
            f"{as_plain(have_norm)!r}, the fusion run uses "
            f"data.normalization.{modality}={as_plain(want_norm)!r}"
        )


def expert_weights(model: ExpertEnsemble, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The part of a unimodal `AdapNetPP` state dict an expert slot of `model` takes.

    SSMA experts are trunks: the `trunk.` entries, prefix removed (decoder and aux heads are not used,
    §A.2). CMoDE experts are complete networks: the whole state dict (§B.1).
    """
    return dict(state) if isinstance(model, CMoDEModel) else trunk_state_dict(state)


def load_experts(
    model: ExpertEnsemble,
    paths: Mapping[str, str | Path],
    *,
    cfg: RunConfig,
    in_channels: Mapping[str, int],
    class_names: Sequence[str] | None = None,
) -> list[ExpertSource]:
    """Load every expert of `model` from its unimodal checkpoint, after validating it.

    Args:
        model: The fused model; its expert `experts.<m>` receives checkpoint `paths[m]`.
        paths: Modality -> unimodal checkpoint; must name exactly the model's modalities.
        cfg: The fusion run's config.
        in_channels: Modality -> input channels.
        class_names: The dataset's class names (checked against the checkpoints').

    Returns:
        Provenance of each expert, in modality order.

    Raises:
        CheckpointError: a missing, corrupt or mismatched checkpoint (the message names the file and
            the mismatch: modality, class count, architecture key or weight key).
        ConfigError: experts given for other modalities than the model's.
    """
    given, wanted = list(paths), list(model.modalities)
    if sorted(given) != sorted(wanted):
        raise ConfigError(
            f"fusion.experts: experts given for {given or 'no modality'}, the model fuses {wanted} "
            "(pass one `experts` entry NAME=CKPT per modality)"
        )
    sources = []
    for modality in model.modalities:
        path = Path(paths[modality])
        source = f"{path} (expert {modality!r})"
        payload = load_checkpoint(path, map_location="cpu")
        check_expert_payload(
            payload,
            modality=modality,
            cfg=cfg,
            in_channels=in_channels[modality],
            class_names=class_names,
            source=source,
        )
        state = expert_weights(model, payload["model"])
        try:
            load_model_state(model.experts[modality], state, source=source)
        except CheckpointError as exc:
            raise CheckpointError(f"architecture mismatch: {exc}") from None
        step = payload.get("step")
        sources.append(
            ExpertSource(
                modality, str(path.resolve()), sha256_file(path), int(step) if step is not None else None
            )
        )
    return sources


def check_provenance(
    recorded: Sequence[ExpertSource], experts: Mapping[str, str | Path], *, source: str
) -> None:
    """Refuse to continue a fusion run that was built from other expert checkpoints.

    Raises:
        CheckpointError: a modality whose given checkpoint's sha256 differs from the recorded one.
    """
    by_modality = {e.modality: e for e in recorded}
    for modality, path in experts.items():
        known = by_modality.get(modality)
        if known is None or sha256_file(path) != known.sha256:
            raise CheckpointError(
                f"{source}: this run was built from another {modality!r} expert "
                f"({known.path if known else 'none'}), not {path}; use another output folder"
            )
