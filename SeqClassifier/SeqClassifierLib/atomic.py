"""Writing an output file: atomically where that is possible, and never replacing what is not a file.

The one rule for a target path (:func:`write_plan`), used by every writer of
SeqClassifier (``--out``, the header cache, the label store, exports):

=========================  ===============================================================
target                     what happens
=========================  ===============================================================
missing, or regular file   atomic: temporary file in the same folder, flush, fsync, chmod,
                           rename over the target, fsync the folder.  A reader sees the old
                           content or the new, never a torn file; on any error (or Ctrl-C)
                           the temporary file is removed and the target is untouched.
symbolic link              followed: the rule is applied to what it points to, and the link
                           itself stays (``--out latest.json`` -> ``runs/7.json`` rewrites
                           ``runs/7.json`` atomically).  A dangling link is refused.
character device, FIFO     written in place (``/dev/null``, ``/dev/stdout``, a pipe from
                           ``>(cmd)``), never replaced by a regular file.  A FIFO nobody
                           reads is refused instead of blocking.
folder, socket, block      refused with :class:`TargetError` (one line naming the path
device, anything else      and its kind).
=========================  ===============================================================

The temporary file gets the mode a plain ``open(path, "w")`` would
(``0o666`` less the umask; mkstemp would leave ``0o600``).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

ATOMIC = "atomic"
IN_PLACE = "in place"


class TargetError(OSError):
    """The target cannot be written under the rule above.

    ``strerror`` is the reason alone (``it is a folder, not a file``),
    ``filename`` the path; ``str()`` gives ``cannot write PATH: reason``.
    """

    def __init__(self, err: int, reason: str, path: PathLike):
        super().__init__(err, reason, os.fspath(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


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


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def write_plan(path: PathLike) -> tuple[str, Path]:
    """(``"atomic"`` or ``"in place"``, the path to write) for ``path``, or :class:`TargetError`.

    See the module docstring for the rule.  Symbolic links are followed
    (with :func:`os.stat`, so ``/dev/fd/N`` of a pipe works too).
    """
    path = Path(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise TargetError(errno.ENOENT, f"a symbolic link to a missing file ({os.readlink(path)}); "
                                            "not followed", path) from None
        return ATOMIC, path
    except OSError as exc:
        raise TargetError(exc.errno or errno.EIO, exc.strerror or str(exc), path) from None
    if stat.S_ISREG(st.st_mode):
        return ATOMIC, Path(os.path.realpath(path)) if os.path.islink(path) else path
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return IN_PLACE, path
    raise TargetError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                      f"it is {_kind(st.st_mode)}, not a file", path)


def _write_in_place(path: Path, data: bytes) -> None:
    """Write to a character device or FIFO without creating, truncating or replacing anything."""
    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise TargetError(errno.ENXIO, "a named pipe (FIFO) that nobody reads", path) from None
        raise
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[str], None], mode: Optional[int] = None) -> None:
    """Create or replace the regular file ``path`` atomically; ``write(tmp_path)`` writes the content.

    Only for a missing path or a regular file (see :func:`write_plan`); a
    symbolic link is resolved to its target first.
    """
    how, path = write_plan(path)
    if how != ATOMIC:
        raise TargetError(errno.EINVAL, "not a regular file: cannot be replaced atomically", path)
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


def write_bytes(path: PathLike, data: bytes, mode: Optional[int] = None) -> str:
    """Write ``data`` to ``path`` under the rule of this module.  Returns how (``atomic`` / ``in place``)."""
    how, target = write_plan(path)
    if how == IN_PLACE:
        _write_in_place(target, data)
        return how

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
    atomic_write(target, write, mode)
    return how


def atomic_write_bytes(path: PathLike, data: bytes, mode: Optional[int] = None) -> None:
    """Write ``data`` to ``path`` (atomically when it is a regular file or new; see the module rule)."""
    write_bytes(path, data, mode)


def atomic_write_text(path: PathLike, text: str, mode: Optional[int] = None) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` under the module rule.

    Text that cannot be encoded (lone surrogates from undecodable file names)
    is written with ``\\xHH`` escapes instead of failing; callers escape it
    first (:func:`SeqClassifierLib.app.output.safe_text`), this is the last guard.
    """
    write_bytes(path, text.encode("utf-8", errors="backslashreplace"), mode)
