"""Planning a job: units and intrinsics (never guessed), one task per frame, checks against earlier runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fusionseg.data.prepare.discover import _collect_sources
from fusionseg.data.prepare.intrinsics import _intrinsics_from_mapping, resolve_intrinsics
from fusionseg.data.prepare.options import (
    _OUTPUT_PARAMETERS,
    DEPTH_PRODUCTS,
    GEOMETRY_PRODUCTS,
    INTRINSICS_COLUMNS,
    META_KIND,
    META_NAME,
    NIR_COLUMN,
    RGB_COLUMN,
    SPECTRAL_PRODUCTS,
    PrepareOptions,
)
from fusionseg.data.prepare.tasks import FrameTask, ListPlan, PreparePlan
from fusionseg.errors import ConfigError, DataError
from fusionseg.fsutil import ensure_writable_dir
from fusionseg.modalities.intrinsics import Intrinsics


def _filled_scale(depth_scale_m: float) -> float:
    """Unit of the completed 16-bit depth: the input's when it is fine enough, else millimetres."""
    return depth_scale_m if depth_scale_m <= 0.01 else 1e-3


def plan_prepare(
    input_path: str | Path,
    out_dir: str | Path,
    options: PrepareOptions,
    *,
    depth_scale: str | float | None = None,
    intrinsics: str | Path | Intrinsics | None = None,
    intrinsics_one_based: bool = False,
) -> PreparePlan:
    """Find the frames, resolve units and intrinsics, and name every output.

    Args:
        input_path: A list file (``# columns:`` header), a dataset root (list files and/or one folder per
            modality, optional meta.json) or a folder of depth files matched by `options.pattern`.
        out_dir: Output folder (created).
        options: What to compute.
        depth_scale: Metres per stored depth unit or a unit name ("mm", "1e-4m", "kitti", ...);
            defaults to the dataset's meta.json "depth_scale_m". Required for depth products.
        intrinsics: "fx,fy,cx,cy", an intrinsics file or `Intrinsics`; defaults to meta.json
            "intrinsics" or a per-frame `intrinsics`/`calib` column. Required for HHA and normals.
        intrinsics_one_based: The given intrinsics, or else the per-frame intrinsics files, use 1-based
            pixel centres (NYU/MATLAB, SUN RGB-D's K): 1 is subtracted from cx and cy.

    Returns:
        The plan.

    Raises:
        ConfigError: missing depth scale or intrinsics, a missing column, or outputs in `out_dir`
            made with different parameters (unless `options.overwrite`).
        DataError: an unreadable input, duplicate frame ids, or an output folder that is not writable.
    """
    input_path = Path(input_path).expanduser()
    out_dir = Path(out_dir).expanduser().absolute()
    if not input_path.exists():
        raise DataError(f"{input_path}: input does not exist")
    # absolute like the files found under it (a relative folder with `..` made relative_to fail)
    input_path = input_path.absolute()
    products = options.products
    sources, meta, meta_path = _collect_sources(input_path, out_dir, options)
    _check_no_clobber(out_dir, [src.path for src in sources], input_path)
    for src in sources:
        _check_columns(src, products, options, input_path)
    depth_scale_m, scale_source = _resolve_depth_scale(depth_scale, meta, meta_path, products, input_path)
    intr, intr_source = resolve_intrinsics(intrinsics, one_based=intrinsics_one_based), "--intrinsics"
    if intr is None and isinstance(meta.get("intrinsics"), dict):
        intr, intr_source = _intrinsics_from_mapping(meta, str(meta_path)), str(meta_path)
    if intr is None:
        per_frame = all(any(c in src.input_columns for c in INTRINSICS_COLUMNS) for src in sources)
        intr_source = "per-frame column" if per_frame else "none"
        if not per_frame and any(p in GEOMETRY_PRODUCTS for p in products):
            raise ConfigError(
                f"{input_path}: `hha` and `normals` need camera intrinsics: pass `intrinsics` fx,fy,cx,cy "
                "(0-based pixels; add `intrinsics_one_based` for MATLAB/NYU values) or a JSON / "
                "3x3-matrix file"
            )
    tasks, list_plans = _build_tasks(sources, out_dir, options, input_path)
    ensure_writable_dir(out_dir)
    plan = PreparePlan(
        input=input_path.absolute(),
        out_dir=out_dir,
        options=options,
        depth_scale_m=depth_scale_m,
        depth_scale_source=scale_source,
        filled_scale_m=_filled_scale(depth_scale_m) if depth_scale_m is not None else None,
        intrinsics=intr,
        intrinsics_source=intr_source,
        tasks=tasks,
        lists=list_plans,
        per_frame_one_based=intrinsics_one_based and intr_source == "per-frame column",
    )
    _check_previous_run(plan)
    return plan


def _check_columns(src: ListPlan, products: Sequence[str], options: PrepareOptions, input_path: Path) -> None:
    needed = []
    if any(p in DEPTH_PRODUCTS for p in products):
        needed.append(options.depth_column)
    if any(p in SPECTRAL_PRODUCTS for p in products):
        needed += [NIR_COLUMN, RGB_COLUMN]
    missing = [c for c in needed if c not in src.input_columns]
    if missing:
        raise ConfigError(
            f"{input_path}: no {', '.join(repr(c) for c in missing)} column for {src.path.name} "
            f"(columns: {', '.join(src.input_columns)}); pick the depth with `depth_column`"
        )


def _resolve_depth_scale(
    depth_scale: str | float | None,
    meta: dict[str, Any],
    meta_path: Path,
    products: Sequence[str],
    input_path: Path,
) -> tuple[float | None, str]:
    """Metres per stored depth unit and where it came from; never guessed."""
    from fusionseg.data.io import parse_depth_scale

    if not any(p in DEPTH_PRODUCTS for p in products):
        return None, "not needed"
    if depth_scale is not None:
        return parse_depth_scale(depth_scale), "--depth-scale"
    if "depth_scale_m" in meta:
        return parse_depth_scale(meta["depth_scale_m"]), str(meta_path)
    raise ConfigError(
        f"{input_path}: the depth unit is unknown (it is never guessed); pass `depth_scale` with a "
        "unit name (mm, 0.1mm, 1e-4m, kitti, 1/256, cm, m) or a number of metres per stored unit"
    )


def _build_tasks(
    sources: list[ListPlan], out_dir: Path, options: PrepareOptions, input_path: Path
) -> tuple[tuple[FrameTask, ...], tuple[ListPlan, ...]]:
    """One task per distinct frame; an id two lists use for different files gets the list's name."""
    products = options.products
    tasks: dict[str, FrameTask] = {}
    list_plans = []
    for src in sources:
        named = []
        for frame_id, files in src.frames:
            task = _make_task(frame_id, files, out_dir, products, options)
            if frame_id in tasks and tasks[frame_id] != task:
                frame_id = f"{src.path.stem}/{frame_id}"  # e.g. val/000001
                task = _make_task(frame_id, files, out_dir, products, options)
                if frame_id in tasks and tasks[frame_id] != task:
                    raise DataError(f"{input_path}: frame id {frame_id!r} names two different sets of files")
            tasks[frame_id] = task
            named.append((frame_id, files))
        list_plans.append(ListPlan(src.path, src.input_columns, tuple(named)))
    return tuple(tasks.values()), tuple(list_plans)


def _check_no_clobber(out_dir: Path, new_lists: list[Path], input_path: Path) -> None:
    """Refuse an --out whose list files or meta.json would replace the input's own."""
    inputs = [input_path] if input_path.is_file() else list(input_path.glob("*.txt"))
    resolved = {p.resolve() for p in inputs}
    for new in new_lists:
        if new.resolve() in resolved:
            raise ConfigError(
                f"`out_dir` {out_dir}: writing {new.name} there would replace the input list; "
                "choose another `out_dir`"
            )
    meta = out_dir / META_NAME
    if meta.is_file():
        try:
            kind = json.loads(meta.read_text(encoding="utf-8")).get("kind")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            kind = None
        if kind != META_KIND:
            raise ConfigError(
                f"`out_dir` {out_dir}: holds a {META_NAME} that prepare-depth did not write (a dataset's "
                "own?); choose another `out_dir`"
            )


def _make_task(
    frame_id: str, files: dict[str, Path], out_dir: Path, products: Sequence[str], options: PrepareOptions
) -> FrameTask:
    intr_file = next((files[c] for c in INTRINSICS_COLUMNS if c in files), None)
    return FrameTask(
        id=frame_id,
        depth=files.get(options.depth_column) if any(p in DEPTH_PRODUCTS for p in products) else None,
        rgb=files.get(RGB_COLUMN),
        nir=files.get(NIR_COLUMN),
        intrinsics_file=intr_file,
        outputs={p: out_dir / p / f"{frame_id}.png" for p in products},
    )


def _parameters(plan: PreparePlan) -> dict[str, Any]:
    params = asdict(plan.options)
    params["products"] = list(plan.options.products)
    params["depth_scale_m"] = plan.depth_scale_m
    params["depth_filled_scale_m"] = plan.filled_scale_m
    params["per_frame_intrinsics_one_based"] = plan.per_frame_one_based
    return params


def _check_previous_run(plan: PreparePlan) -> None:
    """Refuse to mix outputs made with different output-changing parameters in one folder."""
    meta_path = plan.out_dir / META_NAME
    if plan.options.overwrite or not meta_path.is_file():
        return
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # unreadable old meta: nothing to compare (it is rewritten below)
    old_params = old.get("parameters", {}) if isinstance(old, dict) else {}
    new_params = _parameters(plan)
    keys = [*_OUTPUT_PARAMETERS, "depth_scale_m"]
    changed = [k for k in keys if k in old_params and old_params[k] != new_params[k]]
    old_intr = old.get("intrinsics") if isinstance(old, dict) else None
    new_intr = plan.intrinsics.as_dict() if plan.intrinsics is not None else None
    if "intrinsics" in old and old_intr != new_intr:
        changed.append("intrinsics")
    if changed:
        details = ", ".join(
            f"{k}: {old_intr if k == 'intrinsics' else old_params[k]!r} -> "
            f"{new_intr if k == 'intrinsics' else new_params[k]!r}"
            for k in changed
        )
        raise ConfigError(
            f"{plan.out_dir}: holds outputs made with different parameters ({details}); "
            "use another `out_dir` or pass `overwrite`"
        )
