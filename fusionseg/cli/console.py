"""Rich consoles: progress and messages go to stderr, results to stdout."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

out = Console(soft_wrap=True)
err = Console(stderr=True)


def progress(description_width: int = 24) -> Progress:
    """A progress bar on stderr with count, rate-friendly columns and ETA."""
    return Progress(
        TextColumn(f"[bold]{{task.description:<{description_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (no rich markup)."""
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))
