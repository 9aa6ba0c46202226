"""Input discovery: the frames of a list file, a dataset root (lists or per-modality folders) or a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fusionseg.data.listfile import read_header, read_list
from fusionseg.data.prepare.options import FOLDER_LIST_NAME, META_NAME, Frames, PrepareOptions
from fusionseg.data.prepare.tasks import ListPlan
from fusionseg.errors import DataError


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read dataset metadata ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: dataset metadata must be a JSON object")
    return data


def _has_samples(path: Path) -> bool:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return True  # let read_list report it
    return any(line.strip() and not line.strip().startswith("#") for line in lines)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_id(frame_id: str, source: Path) -> str:
    parts = Path(frame_id).parts
    if not frame_id or Path(frame_id).is_absolute() or ".." in parts:
        raise DataError(f"{source}: frame id {frame_id!r} cannot name an output file")
    return Path(frame_id).as_posix()


def _frames_from_list(path: Path) -> tuple[tuple[str, ...], Frames]:
    columns = read_header(path)
    if columns is not None and not _has_samples(path):
        return columns, []  # an empty split (e.g. val.txt of a tiny dataset) stays empty
    # missing files become per-frame failures later, not one error for the whole list
    listing = read_list(path, allow_absolute=True, check_files=False)
    frames = [
        (_check_id(s.id, path), {c: Path(p).absolute() for c, p in s.files.items()}) for s in listing.samples
    ]
    return tuple(listing.columns), frames


def _frames_from_folder(
    folder: Path, out_dir: Path, options: PrepareOptions
) -> tuple[tuple[str, ...], Frames]:
    """Frames of a folder: one sub-folder per modality (matched by file stem) or depth files by pattern."""
    column_dir = folder / options.depth_column
    if column_dir.is_dir() and not _inside(column_dir, out_dir):
        depth_files = _glob_files(column_dir, options.pattern, out_dir)
        ids = [f.relative_to(column_dir).with_suffix("").as_posix() for f in depth_files]
        columns = [options.depth_column]
        found: dict[str, dict[str, Path]] = {i: {options.depth_column: f} for i, f in zip(ids, depth_files)}
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p != column_dir):
            if sub.name.startswith(".") or _inside(sub, out_dir) or _inside(out_dir, sub):
                continue
            by_id = {
                f.relative_to(sub).with_suffix("").as_posix(): f for f in _glob_files(sub, "**/*", out_dir)
            }
            if ids and all(i in by_id for i in ids):  # a modality column only if every frame has it
                columns.append(sub.name)
                for i in ids:
                    found[i][sub.name] = by_id[i]
        return tuple(columns), [(i, found[i]) for i in ids]
    files = _glob_files(folder, options.pattern, out_dir)
    frames = [(f.relative_to(folder).with_suffix("").as_posix(), {options.depth_column: f}) for f in files]
    return (options.depth_column,), frames


def _glob_files(folder: Path, pattern: str, out_dir: Path) -> list[Path]:
    return sorted(
        p.absolute()
        for p in folder.glob(pattern)
        if p.is_file() and not p.name.startswith(".") and not _inside(p, out_dir)
    )


def _collect_sources(
    input_path: Path, out_dir: Path, options: PrepareOptions
) -> tuple[list[ListPlan], dict[str, Any], Path]:
    """One `ListPlan` per input list (or one for a folder), plus the dataset's meta.json content."""
    sources: list[ListPlan] = []
    if input_path.is_file():
        columns, frames = _frames_from_list(input_path)
        sources.append(ListPlan(out_dir / input_path.name, columns, tuple(frames)))
        meta_path = input_path.parent / META_NAME
    else:
        meta_path = input_path / META_NAME
        lists = [p for p in sorted(input_path.glob("*.txt")) if read_header(p) is not None]
        for lst in lists:
            columns, frames = _frames_from_list(lst)
            sources.append(ListPlan(out_dir / lst.name, columns, tuple(frames)))
        if not lists:
            columns, frames = _frames_from_folder(input_path, out_dir, options)
            sources.append(ListPlan(out_dir / FOLDER_LIST_NAME, columns, tuple(frames)))
    if not any(src.frames for src in sources):
        hint = "" if input_path.is_file() else f" (pattern {options.pattern!r})"
        raise DataError(f"{input_path}: no frames found{hint}")
    meta = _read_meta(meta_path) if meta_path.is_file() else {}
    return sources, meta, meta_path
