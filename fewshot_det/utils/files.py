"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

The content goes to a uniquely named temp file in the target's folder (so the final
``os.replace`` stays on one file system and is atomic), is flushed and fsync'ed, then
renamed over the target. Runs that share a folder (seeds in parallel, a benchmark next to
the tool) each write their own temp file. No torch here.
"""
from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temp file beside ``path`` and rename it over ``path``.

    Args:
        path: target file; its folder is created when missing.
        write: writes the whole content into the binary file object it is given.

    Raises:
        Whatever ``write`` or the file system raises; the temp file is removed and
        ``path`` is left as it was.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    data = text.encode(encoding)
    atomic_write_bytes(path, lambda f: f.write(data))


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; not possible on every platform, harmless to skip.
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
