"""The process pool of the data jobs (make-synthetic, prepare-depth): its worker set-up and its loop."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def init_worker(parent_pid: int) -> None:
    """Pool initializer: die with the parent that started the pool, and use one OpenCV thread.

    Args:
        parent_pid: `os.getpid()` of the process that creates the pool (passed as `initargs`).

    A killed parent otherwise leaves its workers writing into an output folder whose lock the next
    run takes over as stale (`fsutil.die_with_parent`). One OpenCV thread per worker: the pool
    already uses every core.
    """
    import cv2

    from fusionseg.fsutil import die_with_parent

    die_with_parent(parent_pid)
    cv2.setNumThreads(1)


@contextmanager
def single_threaded() -> Iterator[None]:
    """OpenCV and torch on one thread in this process for the block; the caller's settings return.

    What `--workers 1` means for the data jobs: one process on one thread, the unit the scaling
    figures of benchmarks/RESULTS.md are counted in (a pool worker gets the same from `init_worker`).
    numpy's BLAS threads cannot be changed once numpy is loaded: set OMP_NUM_THREADS=1 for those.
    """
    import cv2
    import torch

    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)


def run_in_pool(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int,
    on_result: Callable[[T, R], None],
    on_error: Callable[[T, Exception], None] | None = None,
    on_broken: Callable[[list[T]], None] | None = None,
    on_wait: Callable[[int], None] | None = None,
    max_in_flight: int | None = None,
) -> None:
    """Run `fn(task)` for every task in a pool of spawned processes, handling results in this process.

    Spawn, not fork: workers never inherit the parent's threads (torch/OpenMP state) and behave alike
    everywhere; every worker runs `init_worker` first, so it dies with this process. Tasks are
    submitted in order, at most `max_in_flight` at a time; results are handled as they finish.

    Args:
        fn: A picklable (module-level) function; `functools.partial` adds fixed arguments.
        tasks: Picklable task arguments.
        workers: Worker processes.
        on_result: Called with (task, result) as each task finishes.
        on_error: Called with (task, exception) when `fn` or `on_result` raised; None re-raises it
            (what is still pending is cancelled).
        on_broken: Called once with the tasks in flight and those not yet submitted when a worker
            died (killed, out of memory), after which the loop stops; None re-raises
            `BrokenProcessPool`.
        on_wait: Called after each batch of finished tasks with how many have finished so far.
        max_in_flight: Tasks submitted but not finished at most (default: all at once).
    """
    import multiprocessing

    queue = list(reversed(tasks))
    limit = max_in_flight or max(1, len(tasks))
    in_flight: dict[Future[R], T] = {}
    finished_count = 0
    context = multiprocessing.get_context("spawn")
    pool_args = {"initializer": init_worker, "initargs": (os.getpid(),)}
    with ProcessPoolExecutor(workers, mp_context=context, **pool_args) as pool:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.pop()
                    in_flight[pool.submit(fn, task)] = task
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    _deliver(in_flight.pop(future), future, on_result, on_error)
                    finished_count += 1
                if on_wait is not None:
                    on_wait(finished_count)
        except BrokenProcessPool:
            if on_broken is None:
                _cancel(in_flight)
                raise
            on_broken([*in_flight.values(), *reversed(queue)])
        except BaseException:
            _cancel(in_flight)
            raise


def _deliver(
    task: T,
    future: Future[R],
    on_result: Callable[[T, R], None],
    on_error: Callable[[T, Exception], None] | None,
) -> None:
    """Hand a finished task's result (or its error) to the callbacks; a dead pool always propagates."""
    try:
        on_result(task, future.result())  # re-raises a worker's error here
    except BrokenProcessPool:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result; the job decides
        if on_error is None:
            raise
        on_error(task, exc)


def _cancel(in_flight: dict[Future[R], T]) -> None:
    for future in in_flight:
        future.cancel()
