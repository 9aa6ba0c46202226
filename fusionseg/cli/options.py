"""Options shared by several verbs and their translation into a `RunConfig`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from fusionseg.config import RunConfig, load_config
from fusionseg.errors import ConfigError


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--config FILE` and repeatable `--set section.key=value` to a command."""
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config value, e.g. --set train.lr=5e-4 (repeatable).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="YAML config holding only differences from the defaults.",
    )(func)
    return func


def _shared_data_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """The given folder, else the shared real-data folder beside the checkout (../shared/data) if any."""
    if value is not None:
        return value
    candidate = Path(__file__).resolve().parents[3] / "shared" / "data"
    return candidate if candidate.is_dir() else None


def shared_data_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--data DIR` (the real benchmark frames; default ../shared/data beside the checkout)."""
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar="FUSIONSEG_SHARED_DATA",
        callback=_shared_data_dir,
        help="Real-data folder with nyuv2-hha-ref/ and kitti-object-lidar3/ (default: ../shared/data beside "
        "the checkout, if present; otherwise synthetic frames).",
    )(func)


def workers_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--workers N` (0 = all cores) to a batch job over frames."""
    return click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Worker processes (0 = all cores).",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--json`: print the result as one JSON object on stdout instead of rich tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def resolve_config(
    config_path: Path | None, overrides: tuple[str, ...], base: Mapping[str, Any] | None = None
) -> RunConfig:
    """Defaults <- CLI-option values (`base`) <- YAML file <- `--set` overrides."""
    return load_config(config_path, overrides, base=base)


def refuse_ignored_overrides(overrides: tuple[str, ...], *, used: tuple[str, ...], verb: str) -> None:
    """Refuse `--set` keys a verb would silently ignore (it reads them from the checkpoint instead).

    Args:
        overrides: The `--set KEY=VALUE` strings.
        used: Dotted prefixes the verb reads from its config ("data." for a whole section).
        verb: Named in the error.

    Raises:
        ConfigError: naming the first ignored key and what the verb uses.
    """
    for text in overrides:
        key = text.partition("=")[0].strip()
        if not any(key == u or (u.endswith(".") and key.startswith(u)) for u in used):
            raise ConfigError(
                f"--set {key}: {verb} takes the model (its class count, architecture, training settings) "
                f"from the checkpoint and would ignore this; it reads only {', '.join(used)}"
            )


# `fusionseg.data.io.DEPTH_SENSOR_CHOICES`, spelled here so that `--help` imports no OpenCV
# (tests/data/test_depth_sensor.py checks the two agree)
DEPTH_SENSOR_NAMES = ("any", "indoor", "outdoor", "off")


def depth_sensor_option(*, auto: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add `--depth-sensor`: the range depth inputs must fit, to catch a wrong `--depth-scale`.

    Args:
        auto: What "auto" means for this verb (then it is a choice and the default); None: the
            default is "any".
    """
    choices = (("auto",) if auto else ()) + DEPTH_SENSOR_NAMES
    text = (
        "Range depth inputs must fit, to catch a wrong --depth-scale: indoor (Kinect, RealSense), "
        "outdoor (LiDAR, stereo), any, or off for unusual sensors"
    )
    return click.option(
        "--depth-sensor",
        type=click.Choice(choices),
        default="auto" if auto else "any",
        show_default=True,
        help=f"{text}; auto = {auto}." if auto else f"{text}.",
    )


def checkpoint_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the required `--checkpoint FILE` (an expert or fused-model checkpoint written by fusionseg)."""
    return click.option(
        "--checkpoint",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Expert or fused-model checkpoint (.pt) written by fusionseg.",
    )(func)


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str, *, multiple_of: int = 16) -> tuple[int, int]:
    """`--size HxW` (e.g. "384x768") -> (height_px, width_px).

    Args:
        text: The option's value.
        multiple_of: Both sides must be positive multiples of this (16 for the networks, whose output
            stride is 16; 1 for any image size).

    Raises:
        ConfigError: malformed value or a side that is not a positive multiple of `multiple_of`.
    """
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"--size {text!r}: expected HEIGHTxWIDTH in pixels, e.g. 384x768")
    h, w = int(match.group(1)), int(match.group(2))
    if h < multiple_of or w < multiple_of or h % multiple_of or w % multiple_of:
        what = "positive integers" if multiple_of == 1 else f"positive multiples of {multiple_of}"
        raise ConfigError(f"--size {text}: height and width must be {what}")
    return h, w
