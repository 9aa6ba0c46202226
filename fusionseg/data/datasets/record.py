"""What prepare-dataset leaves besides the frames: one list per split and ``meta.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fusionseg import __version__
from fusionseg.data.catalog import DatasetInfo
from fusionseg.data.datasets.base import SPLITS, FrameRef
from fusionseg.data.datasets.writer import FrameOutcome

__all__ = ["META_KIND", "META_NAME", "list_columns", "write_meta", "write_split_lists"]

META_KIND = "fusionseg prepare-dataset"  # marks our meta.json apart from prepare-depth's
META_NAME = "meta.json"
CLASS_FILE_NAME = "classes.yaml"  # the output's label space as a class file (data.dataset=OUT/classes.yaml)
# list columns around the extra modalities, in list order; `label` is always last
_FIRST, _LAST = ("rgb",), ("depth", "intrinsics", "label")


def list_columns(columns: set[str] | Sequence[str], products: Sequence[str] = ()) -> list[str]:
    """List order: rgb, extra modalities (sorted), depth, prepare-depth products, intrinsics, label."""
    extras = sorted(c for c in columns if c not in (*_FIRST, *_LAST, *products))
    ordered = [*_FIRST, *extras, "depth", *products, "intrinsics", "label"]
    return [c for c in ordered if c in columns or c in products]


def write_split_lists(
    out_dir: Path, frames: Sequence[FrameRef], outcomes: dict[str, FrameOutcome]
) -> tuple[list[Path], dict[str, int]]:
    """``OUT/<split>.txt`` for every split with frames; frames missing a column the others have fail.

    Returns:
        The lists written and the number of frames in each.
    """
    from fusionseg.data.listfile import write_list

    written, counts = [], {}
    for split in SPLITS:
        refs = [r for r in frames if r.split == split]
        if not refs:
            continue
        ok = [outcomes[r.frame_id] for r in refs if outcomes[r.frame_id].status != "failed"]
        columns = set().union(*(o.files for o in ok)) if ok else {"rgb", "label"}
        for outcome in ok:
            if missing := sorted(columns - set(outcome.files)):
                outcomes[outcome.frame_id] = FrameOutcome(
                    outcome.frame_id,
                    split,
                    "failed",
                    f"{outcome.frame_id}: has no {', '.join(missing)} "
                    "while other frames of its split have (left out of the list)",
                )
        rows = [
            {c: out_dir / rel for c, rel in outcomes[r.frame_id].files.items()}
            for r in refs
            if outcomes[r.frame_id].status != "failed"
        ]
        path = write_list(out_dir / f"{split}.txt", list_columns(columns), rows)
        written.append(path)
        counts[split] = len(rows)
    return written, counts


def write_meta(
    out_dir: Path,
    settings: dict[str, Any],
    info: DatasetInfo,
    outcomes: dict[str, FrameOutcome] | None,
    seconds: float,
    *,
    root: Path,
    lists: Sequence[Path] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``OUT/meta.json``: settings, label space, units, per-frame intrinsics and statuses.

    The top-level `depth_scale_m` is what prepare-depth reads as the depth unit; per-frame intrinsics
    are under `frame_intrinsics` (a top-level `intrinsics` would mean one camera for every frame).
    """
    from fusionseg.data.classfile import dump_class_file
    from fusionseg.fsutil import atomic_write_text

    counts = {"done": 0, "skipped": 0, "failed": 0}
    frames: dict[str, Any] = {}
    for frame_id, outcome in (outcomes or {}).items():
        counts[outcome.status] += 1
        frames[frame_id] = {"split": outcome.split, "status": outcome.status}
        if outcome.message:
            frames[frame_id]["message"] = outcome.message
    meta = {
        "kind": META_KIND,
        "fusionseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "state": "running" if outcomes is None else "finished",
        "root": str(root),
        **{k: v for k, v in settings.items() if v is not None},  # no depth: no unit for prepare-depth
        "classes": list(info.classes),
        "palette": [list(c) for c in info.palette],
        "void_id": 0,
        "formats": {
            "rgb": "uint8 PNG, colours as downloaded (B, G, R in the file as OpenCV writes)",
            "label": "uint8 one-channel PNG, class ids, 0 = void",
            "depth": f"uint16 PNG in units of {settings.get('depth_scale')} (0 = missing)",
        },
        "intrinsics_convention": "0-based pixel centres (OpenCV), at each frame's size",
        "frame_intrinsics": {
            frame_id: o.intrinsics for frame_id, o in (outcomes or {}).items() if o.intrinsics is not None
        },
        "lists": [p.name for p in lists],
        "summary": {"total": len(outcomes or {}), **counts, "seconds": round(seconds, 3)},
        "frames": frames,
        **(extra or {}),
    }
    path = out_dir / META_NAME
    atomic_write_text(path, json.dumps(meta, indent=1) + "\n")
    atomic_write_text(out_dir / CLASS_FILE_NAME, dump_class_file(info))
    return path
