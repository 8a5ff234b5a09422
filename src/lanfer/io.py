"""Files written whole or not at all: the one atomic writer every lanfer file goes through.

A reader (a resumed run, a cache lookup, another process) must never see half a file, and an interrupted
or failed write must never destroy the previous good one. So every writer writes a temporary file in the
target's folder (same file system, so the rename is atomic), flushes it to disk, and renames it over the
target; on any failure the temporary file is removed and the target is left as it was.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write_fn(tmp)`` writes a temporary file, which then replaces ``path``.

    Args:
        path: the file to write; its folder is created if needed.
        write_fn: writes the whole content to the path it is given (an existing empty file in the same
            folder, named ``<name>.<random>.tmp``), by name or by opening it: ``save_file(t, str(tmp))``,
            ``torch.save(obj, tmp)``, ``tmp.write_text(s)``. A writer that appends its own extension to a
            name (``np.save``) must be given the opened file instead (``with open(tmp, "wb") as f:
            np.save(f, a)``).
    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    The temporary file is fsynced before the rename, so after a crash ``path`` holds either the old content
    or the complete new one. If ``write_fn`` (or anything after it) raises, the temporary file is removed,
    ``path`` is untouched, and the exception propagates. The file gets the permissions a plain ``open(path,
    "w")`` would give it: an existing file's mode is kept, a new one gets 0666 less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write_fn(tmp)
        # mkstemp makes the file 0600: a shipped model or a results table would be unreadable to the user's
        # group, unlike every other file they write
        os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask can only set and return)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync(path: Path) -> None:
    """Flush a written file's data to the disk (the OS may otherwise reorder it after the rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
