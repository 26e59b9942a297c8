"""An exclusive inter-process file lock (POSIX ``flock``, Windows ``msvcrt.locking``), released when the
file is closed, also if the process dies; the label store takes it."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator, Tuple, Type, Union

PathLike = Union[str, "os.PathLike[str]"]


def _platform_lock() -> Tuple[Callable[[int], bool], Callable[[int], None]]:
    """(try to lock ``fd`` once: True when had, release ``fd``) of this platform."""
    if os.name == "nt":
        import msvcrt

        def try_lock(fd: int) -> bool:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the first byte
                return True
            except OSError:
                return False

        def unlock(fd: int) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            with contextlib.suppress(OSError):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

        return try_lock, unlock
    import fcntl

    def try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    return try_lock, lambda fd: fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(lock_path: PathLike, timeout: float = 30.0, poll: float = 0.05, *,
              timeout_error: Type[Exception] = TimeoutError, open_error: Type[Exception] = OSError) -> Iterator[None]:
    """Exclusive inter-process lock on ``lock_path`` (created if missing); ``timeout_error`` when it is
    not had within ``timeout`` seconds, ``open_error`` when the lock file cannot be opened.

    POSIX: ``fcntl.flock``; Windows: ``msvcrt.locking`` on the first byte.
    The lock is released when the file is closed, also if the process dies.
    """
    lock_path = str(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise open_error(f"cannot open the lock file {lock_path}: {exc.strerror or exc}") from None
    try_lock, unlock = _platform_lock()
    deadline = time.monotonic() + timeout
    try:
        while not try_lock(fd):
            if time.monotonic() > deadline:
                raise timeout_error(f"could not lock {lock_path} within {timeout:.0f} s")
            time.sleep(poll)
        try:
            yield
        finally:
            unlock(fd)
    finally:
        os.close(fd)
