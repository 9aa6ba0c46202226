"""Crash-safe file writing (stdlib only): write a temp file in the same folder, fsync, rename.

A reader never sees a half-written file: after a crash the destination holds either the old content or
the new one, and at most a stray `*.tmp-*` file is left behind (ignored by every reader).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fusionseg.errors import DataError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (same-directory temp file, fsync, `os.replace`).

    Raises:
        DataError: the folder cannot be created or written (message names the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically; see `atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` if needed and check that files can be created in it.

    Raises:
        DataError: naming the folder, when it cannot be created or is not writable.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    return path
