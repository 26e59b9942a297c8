"""Atomic file writes: a reader sees the old content or the new, never a torn file.

Write to a temporary file in the target's folder, flush and fsync it, give it
the mode a plain ``open(path, "w")`` would (``0o666`` less the umask; mkstemp
would leave ``0o600``), rename it over the target, then fsync the folder so
the rename itself survives a crash.  If anything fails (or Ctrl-C arrives)
the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: PathLike) -> None:
    """fsync a folder (POSIX; Windows cannot open folders and NTFS journals renames)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[str], None], mode: Optional[int] = None) -> None:
    """Create ``path`` atomically; ``write(tmp_path)`` writes the content to the temporary path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: PathLike, data: bytes, mode: Optional[int] = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write(path, write, mode)


def atomic_write_text(path: PathLike, text: str, mode: Optional[int] = None) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)
