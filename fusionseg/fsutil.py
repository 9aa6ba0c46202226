"""Crash-safe file writing (stdlib only): write a temp file in the same folder, fsync, rename.

A reader never sees a half-written file: after a crash the destination holds either the old content or
the new one, and at most a stray `*.tmp-*` file is left behind (ignored by every reader).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

from fusionseg.errors import DataError

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Temp files of `atomic_write_bytes` are ".<name>.tmp-<random>" beside their destination.
_TEMP_INFIX = ".tmp-"
_TEMP_RE = re.compile(r"^\..+" + re.escape(_TEMP_INFIX) + r"[^/]+$")
_HASH_CHUNK = 1 << 20  # bytes read at a time by `sha256_file`


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process die when `parent_pid`, the process that started it, dies.

    Called in a process pool's initializer: a killed parent otherwise leaves its workers writing into
    an output folder whose lock the next run takes over as stale. On Linux the kernel sends SIGKILL
    to the worker when its parent exits (prctl PR_SET_PDEATHSIG); a worker whose parent is already
    gone exits at once. Elsewhere it does nothing.
    """
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (not atomic for other threads changing it)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (same-directory temp file, fsync, `os.replace`).

    Raises:
        DataError: the folder cannot be created or written (message names the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TEMP_INFIX}", dir=path.parent)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask), so
            # that datasets, checkpoints and exports are readable by whom the user's umask allows
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
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


def remove_stale_temps(folder: str | Path, *, recursive: bool = False) -> int:
    """Delete the temp files a killed `atomic_write_bytes` left in `folder`.

    Only names of the form `.<name>.tmp-<random>` are touched, never a complete file. Call it only while
    holding the folder's `OutputLock`: another writer's temp file in flight would look the same.

    Args:
        folder: Where to look; a missing folder has nothing to remove.
        recursive: Also look in every sub-folder.

    Returns:
        How many files were removed.
    """
    folder = Path(folder)
    try:
        entries = list(folder.rglob(f".*{_TEMP_INFIX}*") if recursive else folder.iterdir())
    except OSError:
        return 0
    removed = 0
    for path in entries:
        if _TEMP_RE.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (memory stays flat for large checkpoints)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


class OutputLock:
    """Exclusive lock on an output folder: a second run writing there refuses with a clear message.

    The lock is a file `<folder>/.fusionseg.lock` created with O_EXCL and holding the owner's pid and
    host. A lock left by a process that no longer exists on this host (a crash, SIGKILL) is stale and
    is taken over. Use as a context manager.

    Raises:
        DataError: on entry, when another live process holds the lock (message names folder and pid).
    """

    NAME = ".fusionseg.lock"

    def __init__(self, folder: str | Path, *, purpose: str = "run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.purpose = purpose
        self._held = False

    def _owner(self) -> tuple[int, str, str] | None:
        try:
            pid_text, host, purpose = (self.path.read_text(encoding="utf-8").split("\n") + ["", ""])[:3]
            return int(pid_text), host, purpose
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self) -> OutputLock:
        import socket

        ensure_writable_dir(self.folder)
        host = socket.gethostname()
        text = f"{os.getpid()}\n{host}\n{self.purpose}"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner[1] == host and not self._alive(owner[0]):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                if owner is None:
                    # being written right now, or garbage: treat an unreadable lock as held
                    raise DataError(
                        f"{self.folder}: locked by another fusionseg process ({self.path} exists); "
                        "if no other run uses this folder, delete that file"
                    ) from None
                pid, owner_host, purpose = owner
                raise DataError(
                    f"{self.folder}: another fusionseg {purpose or 'run'} (pid {pid} on {owner_host}) is "
                    "writing to this folder; wait for it or choose another output folder"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            self._held = True
            return self
        raise DataError(f"{self.folder}: could not take the output lock {self.path}")

    def release(self) -> None:
        if self._held:
            owner = self._owner()
            if owner is not None and owner[0] == os.getpid():
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
