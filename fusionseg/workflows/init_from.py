"""`train.init_from`: start a training run from the weights of a checkpoint (fine-tuning).

An imported DeepScene model (`import-deepscene`), a published or an earlier run's checkpoint is
fine-tuned by training a new run from its weights: `train-unimodal` takes an expert checkpoint,
`train-fusion` an SSMA or CMoDE checkpoint of its scheme (its experts and fusion head then come from
it, and `fusion.experts` stays empty). Only the weights are taken: the optimiser, schedule and step
start afresh, as in any new run, and the run records where it started (`init_from` with the file's
sha256).

The weights are refused, in one line naming the key, when they belong to another model: another kind,
class count, modality or channel count, or an architecture setting that changes the function without
changing the parameters (TF `SAME` padding, eASPP rates, dilations, the CMoDE gate grid): loading
those silently would train a different network than the one the weights came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from fusionseg.config import RunConfig
from fusionseg.errors import CheckpointError, ConfigError

# settings whose value changes what the same weights compute, by config section
FUNCTION_KEYS = {
    "model": ("padding", "easpp_rates", "dilations"),
    "fusion": ("ssma_reduction_easpp", "ssma_reduction_skip", "cmode_gate", "cmode_pool_hw"),
}


def _check_architecture(saved: Mapping[str, Any], cfg: RunConfig, *, fused: bool, source: str) -> None:
    from fusionseg.config import config_to_dict

    run = config_to_dict(cfg)
    for section, keys in FUNCTION_KEYS.items():
        if section == "fusion" and not fused:
            continue
        theirs, ours = saved.get(section) or {}, run[section]
        for key in keys:
            if key in theirs and _plain(theirs[key]) != _plain(ours[key]):
                raise CheckpointError(
                    f"{source}: its {section}.{key} is {theirs[key]!r} but this run's is {ours[key]!r}; "
                    f"the weights compute another function otherwise (--set {section}.{key}=...)"
                )


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def load_init_weights(
    model: nn.Module,
    cfg: RunConfig,
    *,
    kind: str,
    modalities: Sequence[str],
    in_channels: Mapping[str, int],
) -> dict[str, str]:
    """Load `cfg.train.init_from`'s weights into `model` after checking they belong to it.

    Args:
        model: The freshly built model of this run.
        cfg: The run config (`train.init_from`, the architecture settings to match).
        kind: The checkpoint kind this run writes ("expert", "ssma", "cmode").
        modalities: The run's modalities, in model order.
        in_channels: Modality -> input channels.

    Returns:
        {"path": ..., "sha256": ...}, recorded in the run's checkpoints as `init_from`.

    Raises:
        CheckpointError: unreadable file, or weights of another model (one line naming the key).
    """
    from fusionseg.engine.checkpoint import check_compatible, load_checkpoint, load_model_state
    from fusionseg.fsutil import sha256_file

    path = Path(cfg.train.init_from).expanduser()
    source = f"`init_from` {path}"
    payload = load_checkpoint(path, map_location="cpu")
    expected = {
        "kind": kind,
        "num_classes": cfg.model.num_classes,
        "modalities": list(modalities),
        "in_channels": dict(in_channels),
    }
    check_compatible(payload, expected, source=source)
    _check_architecture(payload.get("config") or {}, cfg, fused=kind != "expert", source=source)
    load_model_state(model, payload["model"], source=source)
    return {"path": str(path.resolve()), "sha256": sha256_file(path)}


def init_run_config(
    init_from: str | Path,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The config of a run fine-tuning `init_from`: the checkpoint's saved data, model, fusion and train
    sections (so the architecture matches the weights), then the YAML file and the `--set` overrides
    (e.g. `data.root`), with `train.init_from` set, `fusion.experts` empty and `data.modalities` the
    checkpoint's.

    Raises:
        CheckpointError: unreadable checkpoint, or a saved config this fusionseg cannot read.
        ConfigError: bad file, key or value.
    """
    from fusionseg.config import config_from_dict, config_to_dict, load_config, strip_retired_keys
    from fusionseg.engine.checkpoint import load_checkpoint

    path = Path(init_from).expanduser()
    payload = load_checkpoint(path, map_location="cpu")
    saved = strip_retired_keys(payload.get("config") or {})
    base = {
        k: dict(saved[k]) for k in ("data", "model", "fusion", "train") if isinstance(saved.get(k), Mapping)
    }
    base.get("train", {}).pop("out_dir", None)
    base.get("fusion", {}).pop("experts", None)
    try:
        config_from_dict(base)
    except ConfigError as exc:  # a saved config this version cannot read is the checkpoint's problem
        raise CheckpointError(f"{path}: the saved config does not fit this fusionseg ({exc})") from None
    values = config_to_dict(load_config(config_path, overrides, base=base))
    values["train"]["init_from"] = str(path)
    values["fusion"]["experts"] = {}
    values["data"]["modalities"] = list(payload["modalities"])
    if payload.get("kind") in ("ssma", "cmode"):
        values["fusion"]["scheme"] = payload["kind"]
    return config_from_dict(values)
