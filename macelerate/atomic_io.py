"""Atomic file writes: write beside the target, fsync, then rename, so no reader sees half a file.

A write goes to ``.NAME.XXXXXXXX.tmp`` in the target's folder (``XXXXXXXX``: ``tempfile``'s eight
random characters), is flushed to disk (``fsync``), renamed onto ``NAME`` in one step, and the
folder is fsynced so the rename itself survives a crash. A process killed mid-write leaves its
temporary behind; the next successful write of the same target removes such leftovers: files
named exactly like ours, beside the target, last modified before this write began. Nothing else
in the folder is touched.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_FILE_MODE = 0o644


def _temporary_pattern(name: str) -> re.Pattern[str]:
    """Names :func:`tempfile.mkstemp` gives our temporaries of target ``name``."""
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Flush a folder's entries (the rename); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the data file is synced
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(path: str | Path, *, older_than: float) -> list[Path]:
    """Delete leftovers of killed writes of ``path``: ``.NAME.XXXXXXXX.tmp`` files beside it.

    Args:
        path: the target whose temporaries are looked for.
        older_than: POSIX time (s); only temporaries last modified before it are removed, so a
            write that began later is never disturbed.

    Returns:
        The removed files.
    """
    path = Path(path)
    pattern = _temporary_pattern(path.name)
    removed = []
    for candidate in path.parent.iterdir():
        if not pattern.fullmatch(candidate.name) or candidate.is_symlink():
            continue
        try:
            if candidate.is_file() and candidate.stat().st_mtime < older_than:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # vanished meanwhile, or not ours to delete: leave it
            continue
    return removed


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename.

    The temporary is fsynced before the rename and the folder after it. Once the rename has
    succeeded, temporaries of ``path`` left by earlier killed writes are removed
    (:func:`remove_stale_temporaries`).

    Args:
        path: the destination; its folder is created if needed.
        write: writes the complete file at the temporary path it is given (what it returns is
            ignored).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        write(tmp_path)
        # mkstemp creates 0600 files; give the result the mode an ordinary open() would
        mode = path.stat().st_mode & 0o777 if path.exists() else DEFAULT_FILE_MODE
        os.chmod(tmp_path, mode)
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
        _fsync_directory(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)
    remove_stale_temporaries(path, older_than=started)
    return path
