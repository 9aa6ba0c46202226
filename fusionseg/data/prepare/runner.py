"""The job runner: plan, skip what a previous run finished, process frames (here or in a pool), record."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

from fusionseg.data.pool import run_in_pool, single_threaded
from fusionseg.data.prepare.frame import _Context, _HHAJob, process_frame
from fusionseg.data.prepare.options import PrepareOptions
from fusionseg.data.prepare.plan import plan_prepare
from fusionseg.data.prepare.record import summarise, write_lists, write_meta
from fusionseg.data.prepare.resume import output_intact
from fusionseg.data.prepare.tasks import FrameResult, FrameTask, PreparePlan, PrepareSummary
from fusionseg.data.prepare.torch_hha import HHA_BATCH, _TorchHHA, check_torch_device
from fusionseg.fsutil import OutputLock, remove_stale_temps
from fusionseg.modalities.intrinsics import Intrinsics

MAX_IN_FLIGHT_PER_WORKER = 4  # tasks queued in the pool per worker process


def run_prepare(
    plan: PreparePlan, *, on_result: Callable[[FrameResult], None] | None = None
) -> PrepareSummary:
    """Process every frame of `plan` and write the new list files and meta.json.

    Args:
        plan: From `plan_prepare`.
        on_result: Called in this process once per frame as it finishes (progress display).

    Returns:
        Counts of done / skipped / failed frames and the failures with their messages.

    Raises:
        ConfigError: a torch back-end (HHA, completion) asked for an unavailable device.
        DataError: another live process is writing to `plan.out_dir` (its lock file names it).
    """
    # one job per output folder: a second one refuses before it writes anything (fsutil.OutputLock);
    # the lock of a killed job is stale and taken over
    with OutputLock(plan.out_dir, purpose="prepare-depth"):
        remove_stale_temps(plan.out_dir)  # list / meta.json writes a kill cut short
        return _run_locked(plan, on_result)


def _run_locked(plan: PreparePlan, on_result: Callable[[FrameResult], None] | None) -> PrepareSummary:
    """`run_prepare` once the output folder's lock is held."""
    opts = plan.options
    start = time.perf_counter()
    ctx = _Context(
        options=opts,
        depth_scale_m=plan.depth_scale_m,
        filled_scale_m=plan.filled_scale_m,
        intrinsics=plan.intrinsics,
        hha_on_main=opts.hha_backend == "torch" and "hha" in opts.products,
        one_based_files=plan.per_frame_one_based,
    )
    collector = _Collector(on_result, _TorchHHA(opts.device) if ctx.hha_on_main else None)
    for product in opts.products:  # image writes a kill cut short
        remove_stale_temps(plan.out_dir / product, recursive=True)
    write_meta(plan, None, 0.0)

    todo = []
    for task in plan.tasks:
        if not opts.overwrite and all(output_intact(out, p) for p, out in task.outputs.items()):
            collector.report(FrameResult(task.id, "skipped", file=str(task.primary or "")))
        else:
            todo.append(task)
    workers = max(1, min(opts.workers or os.cpu_count() or 1, len(todo)))
    if opts.completion_backend == "torch" and opts.complete != "none":
        check_torch_device(opts.device)
        workers = 1  # the device does the parallel work; no CUDA context per worker process
    if workers == 1:
        _run_here(todo, ctx, collector.finish)
    else:
        _run_pool(todo, ctx, workers, collector.finish)
    collector.flush_hha()

    ordered = {t.id: collector.results[t.id] for t in plan.tasks if t.id in collector.results}
    seconds = time.perf_counter() - start
    lists = write_lists(plan, ordered)
    return summarise(plan, ordered, lists, write_meta(plan, ordered, seconds), seconds)


Finish = Callable[[FrameResult, list[_HHAJob]], None]


class _Collector:
    """Frame results as they come, in this process; HHA left to the torch back-end waits for a batch."""

    def __init__(self, on_result: Callable[[FrameResult], None] | None, hha: _TorchHHA | None) -> None:
        self.results: dict[str, FrameResult] = {}
        self.on_result = on_result
        self.hha = hha
        self.pending_hha: dict[str, tuple[FrameResult, list[_HHAJob]]] = {}

    def report(self, res: FrameResult) -> None:
        self.results[res.id] = res
        if self.on_result is not None:
            self.on_result(res)

    def finish(self, res: FrameResult, deferred: list[_HHAJob]) -> None:
        """A processed frame: reported now, or once its deferred HHA is written."""
        if deferred and self.hha is not None:
            self.pending_hha[res.id] = (res, deferred)
            if len(self.pending_hha) >= HHA_BATCH:
                self.flush_hha()
        else:
            self.report(res)

    def flush_hha(self) -> None:
        if self.hha is not None and self.pending_hha:
            for done_res in self.hha.flush(self.pending_hha):
                self.report(done_res)


def _run_here(todo: list[FrameTask], ctx: _Context, finish: Finish) -> None:
    """One process on one thread (OpenCV and torch), as in each pool worker; the caller's settings
    are restored after."""
    with single_threaded():
        for task in todo:
            finish(*process_frame(task, ctx))


def _run_pool(todo: list[FrameTask], ctx: _Context, workers: int, finish: Finish) -> None:
    """Frames in the data-job pool, at most `MAX_IN_FLIGHT_PER_WORKER` per worker in flight.

    A frame whose result cannot come back (e.g. unpicklable) fails alone; when a worker dies (killed,
    out of memory) the frames in flight or queued are reported as not processed and the run stops.
    """

    def failed(task: FrameTask, message: str) -> None:
        finish(FrameResult(task.id, "failed", f"{task.primary}: {message}", str(task.primary or "")), [])

    def broken(tasks: list[FrameTask]) -> None:
        for task in tasks:
            failed(task, "not processed (a worker process died; rerun to resume)")

    run_in_pool(
        functools.partial(process_frame, ctx=ctx),
        todo,
        workers=workers,
        on_result=lambda task, result: finish(*result),
        on_error=lambda task, exc: failed(task, f"{type(exc).__name__}: {exc}"),
        on_broken=broken,
        max_in_flight=MAX_IN_FLIGHT_PER_WORKER * workers,
    )


def prepare_depth(
    input_path: str | Path,
    out_dir: str | Path,
    options: PrepareOptions,
    *,
    depth_scale: str | float | None = None,
    intrinsics: str | Path | Intrinsics | None = None,
    intrinsics_one_based: bool = False,
    on_plan: Callable[[PreparePlan], None] | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
) -> PrepareSummary:
    """Plan and run a preparation job (see `plan_prepare` and `run_prepare` for the arguments).

    Args:
        on_plan: Called with the plan before any frame is processed (e.g. to size a progress bar).
    """
    plan = plan_prepare(
        input_path,
        out_dir,
        options,
        depth_scale=depth_scale,
        intrinsics=intrinsics,
        intrinsics_one_based=intrinsics_one_based,
    )
    if on_plan is not None:
        on_plan(plan)
    return run_prepare(plan, on_result=on_result)
