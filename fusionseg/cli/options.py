"""Options shared by several verbs and their translation into a `RunConfig`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from fusionseg.config import RunConfig, load_config


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


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--json`: print the result as one JSON object on stdout instead of rich tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def resolve_config(
    config_path: Path | None, overrides: tuple[str, ...], base: Mapping[str, Any] | None = None
) -> RunConfig:
    """Defaults <- CLI-option values (`base`) <- YAML file <- `--set` overrides."""
    return load_config(config_path, overrides, base=base)


def checkpoint_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the required `--checkpoint FILE` (an expert or fused-model checkpoint written by fusionseg)."""
    return click.option(
        "--checkpoint",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Expert or fused-model checkpoint (.pt) written by fusionseg.",
    )(func)
