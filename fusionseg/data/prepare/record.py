"""What a job leaves besides images: the new list files, meta.json and the summary."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fusionseg import __version__
from fusionseg.data.listfile import read_header, write_list
from fusionseg.data.prepare.options import META_KIND, META_NAME, PRODUCTS
from fusionseg.data.prepare.plan import _parameters
from fusionseg.data.prepare.tasks import FrameResult, PreparePlan, PrepareSummary
from fusionseg.fsutil import atomic_write_text


def write_meta(plan: PreparePlan, results: dict[str, FrameResult] | None, seconds: float) -> Path:
    counts = {"done": 0, "skipped": 0, "failed": 0}
    frames: dict[str, Any] = {}
    for frame_id, res in (results or {}).items():
        counts[res.status] += 1
        entry: dict[str, Any] = {"status": res.status}
        if res.message:
            entry["message"] = res.message
        frames[frame_id] = entry
    meta = {
        "kind": META_KIND,
        "fusionseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "state": "running" if results is None else "finished",
        "input": str(plan.input),
        "parameters": _parameters(plan),
        "depth_scale_source": plan.depth_scale_source,
        "intrinsics": plan.intrinsics.as_dict() if plan.intrinsics is not None else None,
        "intrinsics_convention": "0-based pixel centres (OpenCV)",
        "intrinsics_source": plan.intrinsics_source,
        "outputs": {
            p: {"folder": p, "format": "uint16 PNG" if p == "depth_filled" else "uint8 BGR PNG"}
            for p in plan.options.products
        },
        "lists": [lp.path.name for lp in plan.lists],
        "summary": {"total": len(plan.tasks), **counts, "seconds": round(seconds, 3)},
        "frames": frames,
    }
    path = plan.out_dir / META_NAME
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")
    return path


def write_lists(plan: PreparePlan, results: dict[str, FrameResult]) -> list[Path]:
    products = plan.options.products
    outputs = {task.id: task.outputs for task in plan.tasks}
    written = []
    for lp in plan.lists:
        ids = [
            frame_id
            for frame_id, _ in lp.frames
            if (res := results.get(frame_id)) is not None and res.status != "failed"
        ]  # a list never names a file that was not written
        # a rerun with fewer products keeps the columns an earlier run wrote, where every file is there
        previous = set(read_header(lp.path) or ()) if lp.path.is_file() else set()
        kept = {
            p
            for p in PRODUCTS
            if p in previous
            and p not in products
            and p not in lp.input_columns
            and all((plan.out_dir / p / f"{i}.png").is_file() for i in ids)
        }
        columns = list(lp.input_columns) + [
            p for p in PRODUCTS if (p in products or p in kept) and p not in lp.input_columns
        ]
        rows = []
        for frame_id, files in lp.frames:
            if frame_id not in ids:
                continue
            paths = {**files, **outputs[frame_id], **{p: plan.out_dir / p / f"{frame_id}.png" for p in kept}}
            rows.append({c: paths[c] for c in columns})
        # outputs are below the list (relative paths); input files outside `out_dir` are written as
        # absolute paths, since list readers refuse `..` (read with data.allow_absolute_paths=true)
        write_list(lp.path, columns, rows, allow_absolute=True)
        written.append(lp.path)
    return written


def summarise(
    plan: PreparePlan, results: dict[str, FrameResult], lists: list[Path], meta_path: Path, seconds: float
) -> PrepareSummary:
    """Count the results of a run (in plan order) into its summary."""
    summary = PrepareSummary(
        out_dir=plan.out_dir,
        meta_path=meta_path,
        lists=lists,
        products=plan.options.products,
        total=len(plan.tasks),
        seconds=seconds,
    )
    for res in results.values():
        if res.status == "done":
            summary.done += 1
        elif res.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed += 1
            summary.failures.append(res)
    return summary
