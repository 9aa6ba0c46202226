"""Atomic writes and the output-folder lock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fusionseg.errors import DataError
from fusionseg.fsutil import (
    OutputLock,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    ensure_writable_dir,
    remove_stale_temps,
    sha256_bytes,
    sha256_file,
)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path) -> None:
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_unwritable_destination_names_the_path(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="file/out.txt: cannot write"):
        atomic_write_text(blocker / "out.txt", "x")
    with pytest.raises(DataError, match="output folder is not writable"):
        ensure_writable_dir(blocker / "dir")


def test_second_lock_on_same_folder_is_refused(tmp_path) -> None:
    with OutputLock(tmp_path, purpose="training"):
        code = (
            "import sys; from fusionseg.fsutil import OutputLock\n"
            f"try:\n    OutputLock({str(tmp_path)!r}).acquire()\n"
            "except Exception as e:\n    print(e); sys.exit(3)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 3
        assert "another fusionseg training" in result.stdout and str(os.getpid()) in result.stdout
    assert not (tmp_path / OutputLock.NAME).exists()
    with OutputLock(tmp_path):  # free again after release
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    (tmp_path / OutputLock.NAME).write_text(f"{dead.stdout.strip()}\n{socket.gethostname()}\nrun")
    with OutputLock(tmp_path) as lock:
        assert lock.path.read_text().startswith(str(os.getpid()))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_of_the_umask(tmp_path, umask, mode) -> None:
    """Not mkstemp's 0600: another user or a web server reads what the user's umask allows."""
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        path = atomic_write_text(tmp_path / "out" / "a.txt", "x")
        again = atomic_write_bytes(path, b"y")  # replacing keeps the rule
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == mode and (again.stat().st_mode & 0o777) == mode
    assert (path.parent.stat().st_mode & 0o777) == 0o777 & ~umask  # the folder it made, too


def test_sha256_of_bytes_and_of_a_file_streamed_in_chunks(tmp_path) -> None:
    import hashlib

    data = os.urandom(3 << 20)  # more than one chunk
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == sha256_bytes(data) == hashlib.sha256(data).hexdigest()


def test_stale_temps_removed_are_only_atomic_write_leftovers(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".a.png.tmp-x1y2", tmp_path / "sub" / ".b.txt.tmp-abcd1234"]
    kept = [tmp_path / "a.png", tmp_path / "..tmp-x", tmp_path / ".tmp-x", tmp_path / "sub" / "c.tmp-1"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 1  # this folder only
    assert not stale[0].exists() and stale[1].exists()
    assert remove_stale_temps(tmp_path, recursive=True) == 1
    assert not stale[1].exists() and all(p.exists() for p in kept)
    assert remove_stale_temps(tmp_path / "missing", recursive=True) == 0
