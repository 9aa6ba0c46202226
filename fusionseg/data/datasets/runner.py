"""`prepare_dataset`: an official download -> fusionseg lists, labels, depth and meta.json (issue 15).

The job, like prepare-depth's (`fusionseg.data.prepare`): the reader lists the frames of the official
splits; a process pool writes each frame (`writer.write_frame`: atomic files, finished frames skipped
on a rerun, a bad frame a failure naming its file while the batch carries on); this process then
writes one list per split and ``meta.json``. With `modalities` the prepare-depth pipeline then runs on
the prepared depth with each frame's own intrinsics (``OUT/modalities/``) and its columns are added to
the lists.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionseg.data.catalog import DatasetInfo
from fusionseg.data.datasets.base import SPLITS, DatasetReader, FrameRef
from fusionseg.data.datasets.record import META_KIND, META_NAME, write_meta, write_split_lists
from fusionseg.data.datasets.writer import FrameOutcome, WriteContext, write_frame
from fusionseg.errors import ConfigError, DataError

__all__ = ["DatasetSummary", "prepare_dataset", "resolve_reader"]

MAX_IN_FLIGHT_PER_WORKER = 4
DATASET_STAGE = "prepare-dataset"  # the progress stages: this one, then chain.MODALITIES_STAGE


@dataclass
class DatasetSummary:
    """Outcome of a run (what the CLI prints; `to_dict` is its --json form)."""

    dataset: str
    num_classes: int
    out_dir: Path
    meta_path: Path
    lists: list[Path]
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[FrameOutcome] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    modalities: Any = None  # the PrepareSummary of the `modalities` step, if any
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no frame failed (in either step)."""
        return self.failed == 0 and (self.modalities is None or self.modalities.ok)

    def count(self, outcomes: list[FrameOutcome]) -> None:
        """Add the frames' outcomes to the counts (and the failures to `failures`)."""
        for outcome in outcomes:
            setattr(self, outcome.status, getattr(self, outcome.status) + 1)
            if outcome.status == "failed":
                self.failures.append(outcome)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "dataset": self.dataset,
            "num_classes": self.num_classes,
            "out_dir": str(self.out_dir),
            "meta": str(self.meta_path),
            "lists": [str(p) for p in self.lists],
            "splits": self.splits,
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": [{"id": f.frame_id, "split": f.split, "message": f.message} for f in self.failures],
            "modalities": self.modalities.to_dict() if self.modalities is not None else None,
            "seconds": round(self.seconds, 3),
        }


def resolve_reader(name: str) -> DatasetReader:
    """The reader of a dataset name (`READERS`), or of a custom class file (a .yaml/.yml path).

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    from fusionseg.data.datasets import READERS

    if name in READERS:
        return READERS[name]
    if name.endswith((".yaml", ".yml")):
        from fusionseg.data.datasets.custom import CustomReader

        return CustomReader(name)
    raise ConfigError(f"dataset: unknown dataset {name!r} (known: {', '.join(READERS)}, or a classes .yaml)")


def prepare_dataset(
    name: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    num_classes: int | None = None,
    modalities: tuple[str, ...] = (),
    workers: int = 0,
    overwrite: bool = False,
    frame_step: int | None = None,
    on_plan: Callable[[str, int], None] | None = None,
    on_result: Callable[[str, Any], None] | None = None,
) -> DatasetSummary:
    """Prepare an official download for fusionseg (see the module docstring).

    Args:
        name: Dataset (`READERS` key, e.g. "cityscapes") or the path of a custom classes .yaml.
        root: The download, laid out as its distributors ship it.
        out_dir: Output folder (created).
        num_classes: Label space, one of the reader's `class_choices` (default: the first).
        modalities: prepare-depth products to add: "hha", "jet", "normals", "evi", "ndvi".
        workers: Worker processes (0 = all cores, 1 = this process).
        overwrite: Rewrite finished frames, and allow an output folder made with other settings.
        frame_step: Keep every Nth labelled frame, for video datasets (ScanNet; default: the
            reader's own, 100 for ScanNet, the 2D benchmark's 25k-frame set).
        on_plan: Called with a stage ("prepare-dataset", then "modalities") and its number of frames
            before the stage writes anything (progress bars).
        on_result: Called in this process with the stage and each frame's result as it finishes (a
            `FrameOutcome`, or prepare-depth's `FrameResult`; both have a `status`).

    Returns:
        The summary; frames that failed are listed in it (the run carries on past them).

    Raises:
        ConfigError: unknown dataset, class count or modality; an output folder of another run.
        DataError: the download lacks a file or folder of the official layout, or has no frames.
    """
    reader = resolve_reader(name)
    if frame_step is not None:
        reader = _with_frame_step(reader, frame_step)
    num_classes = _check_options(reader, num_classes, modalities)
    root, out_dir = Path(root).expanduser().absolute(), Path(out_dir).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist")
    if root == out_dir or out_dir in root.parents:
        raise ConfigError(
            f"`out_dir` {out_dir}: holds the download {root}; write the prepared data elsewhere"
        )
    info = reader.label_space(num_classes)
    reader.check_layout(root)
    frames = _list_frames(reader, root, num_classes)
    if on_plan is not None:
        on_plan(DATASET_STAGE, len(frames))
    ctx = WriteContext(
        reader=reader,
        root=root,
        out_dir=out_dir,
        num_classes=num_classes,
        class_count=info.num_classes,
        depth_scale_m=_settings(reader, num_classes, info)["depth_scale_m"],
        overwrite=overwrite,
    )
    report = None if on_result is None else functools.partial(on_result, DATASET_STAGE)
    summary = _write_dataset(ctx, info, frames, workers, report)
    if modalities:
        from fusionseg.data.datasets.chain import add_modalities

        summary.modalities = add_modalities(
            summary,
            info,
            modalities,
            workers=workers,
            overwrite=overwrite,
            on_plan=on_plan,
            on_result=on_result,
        )
    return summary


def _write_dataset(
    ctx: WriteContext,
    info: DatasetInfo,
    frames: list[FrameRef],
    workers: int,
    on_result: Callable[[FrameOutcome], None] | None,
) -> DatasetSummary:
    """Holding the output folder's lock: check an earlier run, write the frames, the lists, meta.json."""
    from fusionseg.fsutil import OutputLock, ensure_writable_dir, remove_stale_temps

    out_dir, reader = ctx.out_dir, ctx.reader
    ensure_writable_dir(out_dir)
    with OutputLock(out_dir, purpose="prepare-dataset"):
        remove_stale_temps(out_dir, recursive=True)
        settings = _settings(reader, ctx.num_classes, info)
        _check_previous_run(out_dir, settings, ctx.overwrite)
        write_meta(out_dir, settings, info, None, 0.0, root=ctx.root)
        start = time.perf_counter()
        outcomes = _run_frames(frames, ctx, workers, on_result)
        lists, counts = write_split_lists(out_dir, frames, outcomes)
        seconds = time.perf_counter() - start
        meta_path = write_meta(out_dir, settings, info, outcomes, seconds, root=ctx.root, lists=lists)
    summary = DatasetSummary(
        reader.name, ctx.num_classes, out_dir, meta_path, lists, len(frames), splits=counts
    )
    summary.seconds = seconds
    summary.count([outcomes[ref.frame_id] for ref in frames])
    return summary


def _with_frame_step(reader: DatasetReader, frame_step: int) -> DatasetReader:
    """A copy of a frame-subsampling reader (one with a `frame_step` field) with another step."""
    if not hasattr(reader, "frame_step"):
        raise ConfigError(f"frame_step: {reader.name} has no frame subsampling (scannet has)")
    if frame_step < 1:
        raise ConfigError(f"frame_step: must be at least 1, got {frame_step}")
    return dataclasses.replace(reader, frame_step=frame_step)  # type: ignore[type-var]


def _check_options(reader: DatasetReader, num_classes: int | None, modalities: tuple[str, ...]) -> int:
    """The class count to use (the reader's default for None); ConfigError for bad options."""
    from fusionseg.data.prepare.options import DEPTH_PRODUCTS, PRODUCTS

    num_classes = reader.class_choices[0] if num_classes is None else num_classes
    if num_classes not in reader.class_choices:
        choices = ", ".join(map(str, reader.class_choices))
        raise ConfigError(f"num_classes: {reader.name} offers {choices} classes, got {num_classes}")

    allowed = [p for p in PRODUCTS if p != "depth_filled"]
    unknown = [m for m in modalities if m not in allowed]
    if unknown:
        raise ConfigError(f"modalities: {', '.join(unknown)} not one of {', '.join(allowed)}")
    needs_depth = [m for m in modalities if m in DEPTH_PRODUCTS]
    if needs_depth and reader.depth_unit() is None:
        raise ConfigError(f"modalities: {', '.join(needs_depth)} need depth, and {reader.name} has none")
    return num_classes


def _list_frames(reader: DatasetReader, root: Path, num_classes: int) -> list[FrameRef]:
    frames = reader.list_frames(root, num_classes)
    if not frames:
        raise DataError(f"{root}: no labelled frames found in the official {reader.name} layout")
    seen: dict[str, FrameRef] = {}
    for ref in frames:
        if ref.split not in SPLITS:
            raise DataError(f"{root}: frame {ref.frame_id!r} has split {ref.split!r}, not one of {SPLITS}")
        if ref.frame_id in seen or not ref.frame_id or "/" in ref.frame_id or ref.frame_id.startswith("."):
            raise DataError(f"{root}: frame id {ref.frame_id!r} is repeated or cannot name a file")
        seen[ref.frame_id] = ref
    return frames


def _settings(reader: DatasetReader, num_classes: int, info: DatasetInfo) -> dict[str, Any]:
    """What makes the outputs what they are: a rerun into the same folder must match it."""
    from fusionseg.data.io import parse_depth_scale

    unit = reader.depth_unit()
    return {
        "dataset": reader.name,
        "num_classes": num_classes,
        "label_space": info.name,
        "depth_scale": unit,
        "depth_scale_m": parse_depth_scale(unit) if unit is not None else None,
    }


def _check_previous_run(out_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    meta_path = out_dir / META_NAME
    if not meta_path.is_file():
        return
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        old = None
    if not isinstance(old, dict) or old.get("kind") != META_KIND:
        raise ConfigError(
            f"`out_dir` {out_dir}: holds a {META_NAME} that prepare-dataset did not write; "
            "choose another `out_dir`"
        )
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
    if changed and not overwrite:
        raise ConfigError(
            f"`out_dir` {out_dir}: holds a dataset prepared with other settings ({', '.join(changed)}); "
            "use another `out_dir` or pass `overwrite`"
        )


def _run_frames(
    frames: list[FrameRef],
    ctx: WriteContext,
    workers: int,
    on_result: Callable[[FrameOutcome], None] | None,
) -> dict[str, FrameOutcome]:
    """Every frame's outcome by id, written here (one worker) or in the data-job pool."""
    from fusionseg.data.pool import run_in_pool

    outcomes: dict[str, FrameOutcome] = {}

    def finish(outcome: FrameOutcome) -> None:
        outcomes[outcome.frame_id] = outcome
        if on_result is not None:
            on_result(outcome)

    def failed(ref: FrameRef, message: str) -> None:
        finish(FrameOutcome(ref.frame_id, ref.split, "failed", message))

    count = max(1, min(workers or os.cpu_count() or 1, len(frames)))
    if count == 1:
        for ref in frames:
            try:
                finish(write_frame(ref, ctx))
            except Exception as exc:  # noqa: BLE001 - as in the pool: the frame fails, the batch goes on
                failed(ref, f"{type(exc).__name__}: {exc}")
        return outcomes
    run_in_pool(
        functools.partial(write_frame, ctx=ctx),
        frames,
        workers=count,
        on_result=lambda ref, outcome: finish(outcome),
        on_error=lambda ref, exc: failed(ref, f"{type(exc).__name__}: {exc}"),
        on_broken=lambda refs: [
            failed(r, "not processed (a worker process died; rerun to resume)") for r in refs
        ],
        max_in_flight=MAX_IN_FLIGHT_PER_WORKER * count,
    )
    for ref in frames:  # a pool that stopped early (workers dying at start-up) leaves frames unreported
        if ref.frame_id not in outcomes:
            failed(ref, "not processed (the worker pool stopped; rerun to resume)")
    return outcomes
