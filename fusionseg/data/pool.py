"""What every process-pool worker of the data jobs (make-synthetic, prepare-depth) does first."""

from __future__ import annotations


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
