"""`--modalities`: the prepare-depth pipeline on a prepared dataset, its columns added to the lists.

prepare-depth reads the prepared lists (depth in the unit meta.json names, each frame's intrinsics from
its `intrinsics` column) and writes ``OUT/modalities/<product>/<id>.png`` with its own lists and
meta.json there; the products are then added to ``OUT/<split>.txt`` before `label`. Frames a product
failed for leave the lists (a list never names a file that was not written) and are reported.

Settings follow `reference/modalities.md` and `reference/adapnetpp.md` §12: ip_basic completion
("fast", §1.4) before JET/HHA for every dataset except SUN RGB-D; JET maps 0-7 m indoors (§2.2) and,
our choice for street scenes where 7 m would saturate nearly every pixel, 0-80 m outdoors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fusionseg.data.catalog import DatasetInfo
from fusionseg.data.prepare.options import DEPTH_PRODUCTS, PRODUCTS

__all__ = ["MODALITIES_FOLDER", "add_modalities"]

MODALITIES_FOLDER = "modalities"
MODALITIES_STAGE = "modalities"  # progress stage name
# adapnetpp.md §12: SUN RGB-D's depth was used as it is; NYU v2's labelled `depths` are the toolbox's
# in-painted depth, hole-free already (completion would only blur it; the paper did not use NYU)
NO_COMPLETION = frozenset({"sunrgbd", "nyuv2"})
JET_MAX_DEPTH_M = {"indoor": 7.0}  # §2.2; other sensors: OUTDOOR_JET_MAX_DEPTH_M
OUTDOOR_JET_MAX_DEPTH_M = 80.0


def add_modalities(
    summary: Any,
    info: DatasetInfo,
    modalities: tuple[str, ...],
    *,
    workers: int,
    overwrite: bool,
    on_plan: Callable[[str, int], None] | None = None,
    on_result: Callable[[str, Any], None] | None = None,
) -> Any:
    """Run prepare-depth on `summary.out_dir` and add its products to the split lists.

    Args:
        summary: The `DatasetSummary` of the dataset step (its lists are rewritten).
        info: The label space (its `depth_sensor` picks the JET range).
        modalities: prepare-depth products ("hha", "jet", "evi", ...).
        workers, overwrite: As for the dataset step.
        on_plan, on_result: Progress callbacks as for `prepare_dataset`, called with `MODALITIES_STAGE`.

    Returns:
        prepare-depth's `PrepareSummary`.

    Raises:
        ConfigError: a product the prepared data cannot give (no depth for JET, no nir for EVI, no
            intrinsics for HHA), from prepare-depth.
    """
    from fusionseg.data.prepare import PrepareOptions, prepare_depth

    wanted = set(modalities)
    uses_depth = bool(wanted & DEPTH_PRODUCTS)
    options = PrepareOptions(
        complete="fast" if uses_depth and summary.dataset not in NO_COMPLETION else "none",
        hha="hha" in wanted,
        jet="jet" in wanted,
        jet_max_depth_m=JET_MAX_DEPTH_M.get(info.depth_sensor, OUTDOOR_JET_MAX_DEPTH_M),
        normals="normals" in wanted,
        evi="evi" in wanted,
        ndvi="ndvi" in wanted,
        workers=workers,
        overwrite=overwrite,
    )
    depth_summary = prepare_depth(
        summary.out_dir,
        summary.out_dir / MODALITIES_FOLDER,
        options,
        on_plan=None if on_plan is None else lambda plan: on_plan(MODALITIES_STAGE, len(plan.tasks)),
        on_result=None if on_result is None else functools.partial(on_result, MODALITIES_STAGE),
    )
    _extend_lists(summary, options.products, {f.id for f in depth_summary.failures})
    return depth_summary


def _extend_lists(summary: Any, products: tuple[str, ...], failed: set[str]) -> None:
    """Add `products` to every split list (before label); frames a product failed for leave it."""
    from fusionseg.data.datasets.record import list_columns
    from fusionseg.data.listfile import read_list, write_list

    folder = summary.out_dir / MODALITIES_FOLDER
    ordered = tuple(p for p in PRODUCTS if p in products)
    for path in summary.lists:
        listing = read_list(path)
        rows = []
        for sample in listing.samples:
            if sample.id in failed:
                continue
            rows.append({**sample.files, **{p: folder / p / f"{sample.id}.png" for p in ordered}})
        base = [c for c in listing.columns if c not in ordered]
        write_list(path, list_columns(base, ordered), rows)
