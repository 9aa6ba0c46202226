"""Typed run configuration: frozen dataclasses, YAML files holding only differences, `--set` overrides.

A run is described by one `RunConfig`. Defaults live in code; a YAML file in `configs/` lists only what
differs; `--set train.lr=5e-4` overrides single values. Unknown keys and wrong types raise `ConfigError`
naming the dotted path. `dump_config` writes the fully resolved config next to every run.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from fusionseg.errors import ConfigError

# ----------------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Procedural multimodal scene generator (`fusionseg make-synthetic`)."""

    num_frames: int = 200
    height_px: int = 384
    width_px: int = 768
    seed: int = 0
    val_fraction: float = 0.2
    outdoor_fraction: float = 0.5  # share of outdoor-like layouts (the rest indoor-like)
    dark_fraction: float = 0.15  # frames with degraded (dark) RGB, depth intact
    fog_fraction: float = 0.15  # frames with foggy RGB, depth intact
    camouflage_fraction: float = 0.5  # share of objects textured like their background
    sparse_rows: int = 64  # LiDAR-like scan lines in depth_sparse (at most height_px // 3 are used)
    sparse_density: float = 0.04  # share of pixels with a LiDAR-like return (before sky and misses)
    raw_max_range_m: float = 10.0  # depth_raw: no returns beyond this range
    raw_noise_per_m: float = 0.0015  # depth_raw: noise sigma = raw_noise_per_m * z^2 (1.5 mm at 1 m)
    hfov_deg: float = 70.0  # horizontal field of view of the pinhole camera
    workers: int = 0  # 0 = all cores


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the dataset lives and how samples are read and augmented."""

    root: str = "data/synthetic"
    dataset: str = "synthetic"  # built-in definition: class names, palette, void id
    layout: Literal["list", "folders"] = "list"  # list files, or <root>/<split>/<modality>/<id>.png
    train_list: str = "train.txt"  # relative to root (layout "list")
    val_list: str = "val.txt"
    list_columns: tuple[str, ...] = ()  # column names of lists without a '# columns:' header
    modalities: tuple[str, ...] = ("rgb",)
    height_px: int = 384
    width_px: int = 768
    depth_scale_m: float = 0.001  # metres per stored unit for 16-bit depth columns (mm)
    # range every depth frame must fit, to catch a wrong depth_scale_m (data.io.DEPTH_SENSORS):
    # "auto" = the dataset's sensor (indoor for NYU/SUN RGB-D/ScanNet, outdoor for Cityscapes, else
    # any), "any", "indoor", "outdoor", or "off" for sensors outside those ranges
    depth_sensor: Literal["auto", "any", "indoor", "outdoor", "off"] = "auto"
    ignore_index: int | None = 255  # label id read as void (0); None = no such id
    # modality -> ((mean per channel), (std per channel)), applied after augmentation; default none
    # (adapnetpp.md §1: 0-255 input, the first layer is a learnable BN)
    normalization: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    # augmentation (paper §8 of adapnetpp.md: flip, scale, crop; photometric only on RGB)
    augment: bool = True
    scale_min: float = 0.5
    scale_max: float = 2.0
    flip: bool = True
    rotation_deg: float = 0.0  # +- degrees; 0 = off (optional in §8)
    brightness: float = 40.0  # +- grey levels, RGB only
    contrast_min: float = 0.5
    contrast_max: float = 1.5
    num_workers: int = 0
    allow_absolute_paths: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The AdapNet++ expert (adapnetpp.md)."""

    num_classes: int = 12
    dilations: Literal["released", "may2019"] = "released"  # adapnetpp.md §3.3
    easpp_rates: tuple[int, int, int] = (3, 6, 12)
    aux: bool = True
    aux_weights: tuple[float, float] = (0.6, 0.5)  # adapnetpp.md §7
    dropout: float = 0.7  # drop probability, block-4 unit-3 (adapnetpp.md §3.1)
    # stride-2 layers (stem conv and pool, conv2 of block-2/3 unit 1): "symmetric" (PyTorch, the default)
    # or "tf_same" (TF `SAME`, asymmetric; for TF-trained / converted DeepScene weights), deepscene-tf.md §4
    padding: Literal["symmetric", "tf_same"] = "symmetric"
    init: str = ""  # optional local torchvision/timm ResNet-50 state dict (adapnetpp.md §9)
    init_flip_channels: bool = False  # §9 optional mode: RGB-trained stem filters reordered for BGR input
    channels_last: bool = False


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """Fusion of trained experts (ssma-cmode.md)."""

    scheme: Literal["ssma", "cmode"] = "ssma"
    experts: dict[str, str] = field(default_factory=dict)  # modality -> expert checkpoint path
    ssma_reduction_easpp: int = 16  # η at the deepest (eASPP) tap, §A.1
    ssma_reduction_skip: int = 6  # η at the skip taps, §A.1
    aux: bool = False  # SSMA aux heads on up1/up2 (§A.4 [spec] option, default off)
    aux_weights: tuple[float, float] = (0.6, 0.5)
    cmode_gate: Literal["reference", "light"] = "reference"  # §B.3
    cmode_pool_hw: tuple[int, int] = (24, 48)  # reference-mode flatten grid (stride-16 grid of 384x768)
    # stage 2 (§A.5, §A.6 [spec]): frozen experts incl. BN, fresh fusion head, one lr with poly decay
    freeze_experts: bool = True  # false: experts train too (BN batch statistics, dropout on)
    lr: float = 1e-3
    iterations: int = 0  # 0 = train.iterations
    time_budget_s: float = -1.0  # stage 2 and 3 wall-clock budget each (< 0: train.time_budget_s)
    # stage 3 (optional, §A.6 [spec]): fine-tuning of selected parameter groups
    finetune: bool = False
    finetune_lr: float = 1e-5
    finetune_lr_end: float = 1e-6  # poly floor of stage 3 (stage 2 uses train.lr_end)
    finetune_iterations: int = 0  # 0 = train.iterations
    # groups trained in stage 3: "all", "experts", "experts.<modality>", "fusion" (SSMA blocks, or the
    # CMoDE gates and final conv), "decoder" (SSMA); the rest stays frozen
    finetune_groups: tuple[str, ...] = ("all",)
    finetune_group_lrs: dict[str, float] = field(default_factory=dict)  # group -> lr (overrides)
    # train-pipeline (all stages from one config, run folders under train.out_dir):
    # prepare-depth products made first (e.g. [jet] or [hha]; () = none), from data.root into
    # <out_dir>/prepared, which then becomes data.root; completion and JET range of that step
    pipeline_prepare: tuple[Literal["hha", "jet", "normals", "evi", "ndvi"], ...] = ()
    pipeline_prepare_complete: Literal["none", "fast", "multiscale"] = "fast"
    pipeline_jet_max_depth_m: float = 7.0
    # fusion schemes trained after the experts, and whether every model is evaluated on the val list
    pipeline_schemes: tuple[Literal["ssma", "cmode"], ...] = ("ssma",)
    pipeline_evaluate: bool = True
    # robustness columns of the pipeline's results table: every model is evaluated again on the val list
    # under each condition "NAME=KIND[,NAME=KIND...]", KIND one of zero (modality dropped), noise, dark,
    # fog (engine.robustness; seeded by pipeline_robustness_seed); conditions naming a modality outside
    # data.modalities are skipped
    pipeline_robustness: tuple[str, ...] = ("rgb=zero", "depth=zero", "rgb=dark", "rgb=fog", "depth=noise")
    pipeline_robustness_seed: int = 0
    pipeline_report_frames: int = 4  # val frames in <out_dir>/eval/predictions.png (0 = no picture)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimiser, schedule and run bookkeeping (adapnetpp.md §8)."""

    out_dir: str = "runs/default"
    seed: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    iterations: int = 150_000
    lr: float = 1e-3
    lr_end: float = 1e-4
    poly_power: float = 0.9
    adam_eps: float = 1e-8
    amp: Literal["off", "bf16", "fp16"] = "off"
    device: str = "auto"
    val_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3
    log_every: int = 20
    on_nonfinite: Literal["skip", "stop"] = "stop"
    compile: bool = False
    adam_betas: tuple[float, float] = (0.9, 0.999)  # adapnetpp.md §8 (TF defaults)
    deterministic: bool = False  # torch deterministic algorithms (warn-only) and no cuDNN autotuning
    val_batch_size: int = 0  # 0 = batch_size
    # a fusionseg checkpoint whose weights start this run (fine-tuning an imported or earlier model):
    # an expert for train-unimodal, an SSMA/CMoDE of the scheme for train-fusion (workflows/init_from.py)
    init_from: str = ""
    # > 0: size the run to this many seconds of wall clock on this machine: after its first
    # `budget_calibration_steps` steps the trainer measures the time per step and fixes the run's
    # steps (at most `iterations`, validation included) so that it ends within the budget; the
    # number chosen is recorded in the checkpoints and kept on resume (Trainer, docs/training.md)
    time_budget_s: float = 0.0
    budget_calibration_steps: int = 4  # first step = warm-up, the others are timed
    budget_min_iterations: int = 1  # never fewer steps than this, whatever the budget
    tensorboard: bool = True  # also log to TensorBoard when the tensorboard package is installed
    # multi-process training under torchrun (docs/deployment.md); batch_size is per process
    sync_bn: bool = True  # BN statistics over the global batch (SyncBatchNorm) when world size > 1
    ddp_backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    ddp_find_unused: bool = True  # DDP tolerates trainable parameters without a gradient in a step
    # a run folder resumed (or a finished pipeline stage reused) with a config that differs from the
    # one it was started with is refused, naming the keys; true accepts it and records the change in
    # <run>/config-changes.txt (RESUME_MUTABLE_KEYS may always change)
    allow_config_change: bool = False


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one run needs; saved as `config.yaml` beside the run's outputs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------

_NONE_TYPE = type(None)
# decimal numbers in scientific notation that YAML 1.1 leaves as strings (5e-4, 1E3, .5e-2)
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


# Values in error messages are abbreviated: a YAML alias bomb (a few lines of nested anchors) is a
# tiny object whose full repr would take gigabytes.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 80, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def _brief(value: Any) -> str:
    """`repr(value)`, cut short for deep or long values."""
    return _REPR.repr(value)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp` and convert YAML forms (lists) to the schema's."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {_brief(value)}")
        return _build(tp, value, path)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {_brief(value)} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and _NONE_TYPE in args:
            return None
        errors = []
        for arg in args:
            if arg is _NONE_TYPE:
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {_brief(value)} does not fit {tp}")
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {_brief(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}: {_brief(list(value))}")
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {_brief(value)}")
        return {
            _coerce(k, key_tp, f"{path}.{k}"): _coerce(v, val_tp, f"{path}.{k}") for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads `5e-4` and `1e-3`, without a dot, as strings
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {_brief(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {_brief(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {type(value).__name__} {_brief(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {_brief(value)}")
        return value
    raise ConfigError(f"{path}: unsupported schema type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, values: Mapping[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{dotted}' (valid: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn `a.b.c=value` into `{"a": {"b": {"c": value}}}`; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc  # a ReaderError (control character) has none
        raise ConfigError(f"override {text!r}: value is not valid YAML ({problem})") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


# Keys that earlier fusionseg versions wrote into saved configs (checkpoints, config.yaml) and that no
# longer exist. `strip_retired_keys` drops them from a saved config so old checkpoints keep loading; a
# user's YAML or --set naming one is refused like any unknown key.
RETIRED_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("name",),  # "adapnetpp", the only value it ever took; nothing read it
}


def strip_retired_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a saved config's nested values without the `RETIRED_KEYS`."""
    out = dict(values)
    for section, keys in RETIRED_KEYS.items():
        if isinstance(out.get(section), Mapping):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    return out


def saved_config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """`config_from_dict` for a config saved by any fusionseg version (retired keys dropped)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config must be a mapping of sections, got {type(values).__name__}")
    return config_from_dict(strip_retired_keys(values))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where, without PyYAML's multi-line snippet."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = f"{problem}{where}"
    if "tag" in str(problem):
        text += "; configs are plain YAML (no tags such as !!python/...)"
    return " ".join(text.split())


def config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Build a `RunConfig` from nested plain values (as read from YAML); raises `ConfigError`."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config must be a mapping of sections, got {type(values).__name__}")
    return _build(RunConfig, values, "")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path}: a config file must hold a mapping of sections")
    return dict(values)


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve a run config: code defaults <- `base` <- YAML file <- `--set` overrides.

    Args:
        path: Optional YAML file holding only differences from the defaults.
        overrides: `section.key=value` strings, applied in order.
        base: Plain values applied before the file (e.g. from CLI options).

    Raises:
        ConfigError: unknown key, wrong type or unreadable file (the message names the key or file).
    """
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        try:
            values = _merge(values, read_yaml(path))
            config_from_dict(values)
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    for text in overrides:
        values = _merge(values, parse_override(text))
    return config_from_dict(values)


# Keys a run may change when it is resumed: where and how it reports, how far it goes, the machine it
# runs on. Everything else (data, model, optimiser, schedule shape) decides what the weights are.
RESUME_MUTABLE_KEYS = frozenset(
    {
        "data.num_workers",
        "train.out_dir",
        "train.device",
        "train.iterations",
        "train.log_every",
        "train.val_every",
        "train.ckpt_every",
        "train.keep_last",
        "train.val_batch_size",
        "train.tensorboard",
        "train.compile",
        "train.on_nonfinite",
        "train.ddp_backend",
        "train.allow_config_change",
        "train.time_budget_s",
        "train.budget_calibration_steps",
        "train.budget_min_iterations",
        "fusion.iterations",
        "fusion.finetune_iterations",
        "fusion.time_budget_s",
        # the experts are checked by their bytes instead (stages.check_provenance: sha256 per expert),
        # which also catches a file replaced under the same path
        "fusion.experts",
    }
    | {f"fusion.{f.name}" for f in dataclasses.fields(FusionConfig) if f.name.startswith("pipeline_")}
    | {f"synthetic.{f.name}" for f in dataclasses.fields(SyntheticConfig)}
)


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """'key: old -> new' for every leaf that differs between two plain config dicts (dotted keys).

    Keys in `RESUME_MUTABLE_KEYS` are left out; so are keys absent from `saved` that hold their
    default in `current` (a config saved before the key existed).
    """
    changes = []
    for key in sorted(set(saved) | set(current)):
        dotted = f"{prefix}{key}"
        if dotted in RESUME_MUTABLE_KEYS:
            continue
        old, new = saved.get(key, _MISSING), current.get(key, _MISSING)
        if isinstance(old, Mapping) and isinstance(new, Mapping) and dotted.count(".") == 0:
            changes += config_changes(old, new, prefix=f"{dotted}.")
        elif old is _MISSING:
            if not _is_default(dotted, new):
                changes.append(f"{dotted}: (not set) -> {_brief(new)}")
        elif new is _MISSING:
            changes.append(f"{dotted}: {_brief(old)} -> (removed)")
        elif _plain_equal(old, new) is False:
            changes.append(f"{dotted}: {_brief(old)} -> {_brief(new)}")
    return changes


_MISSING = object()


def _plain_equal(a: Any, b: Any) -> bool:
    """Equality of plain config values, tuples and lists alike, ints and floats alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_plain_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_plain_equal(a[k], b[k]) for k in a)
    return a == b


def _is_default(dotted: str, value: Any) -> bool:
    section, _, name = dotted.partition(".")
    defaults = _default_values().get(section, {})
    return name in defaults and _plain_equal(defaults[name], value)


@functools.cache
def _default_values() -> dict[str, Any]:
    """`config_to_dict(RunConfig())`, made once (read only)."""
    return config_to_dict(RunConfig())


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a config dataclass, ready for YAML/JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


def dump_config(cfg: RunConfig, path: str | Path) -> Path:
    """Write the fully resolved config as YAML (atomically); returns the path."""
    from fusionseg.fsutil import atomic_write_text

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    return atomic_write_text(Path(path), text)
