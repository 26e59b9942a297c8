"""Worker processes die with their parent; SIGTERM ends a run the way Ctrl-C does.

Discovery reads headers in worker processes (:mod:`.dicom.discovery`).  A
worker blocked on its task queue does not notice that the parent is gone (it
holds copies of the queue's pipes), so a parent killed early would leave it
running -- with the run's stdout and stderr still open, and a caller that
reads them to the end waiting forever.  Three guards:

* :func:`worker_init` (the pool's initializer): on Linux the kernel sends the
  worker SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); everywhere a
  daemon thread ends it once it is re-parented (its parent died); and a worker
  whose parent died before it started ends at once.
* :func:`terminate_pool`: on any exception (Ctrl-C, SIGTERM, a bug) the parent
  kills its workers instead of leaving them to finish the queue.
* :func:`terminate_as_interrupt`: while a command runs, SIGTERM is noted and
  the next step of discovery or of the model raises :class:`Terminated` (a
  ``KeyboardInterrupt``, :func:`raise_if_terminated`), so the same clean-up
  runs as for Ctrl-C (workers terminated, no partial output file) and the
  command exits with :data:`EXIT_TERMINATED`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator, Optional

#: Exit status of a command ended by SIGTERM (128 + 15, as a shell reports it).
EXIT_TERMINATED = 128 + signal.SIGTERM
#: How often a worker checks that its parent is alive (seconds).
PARENT_POLL_S = 0.25

_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run ends like an interrupted one."""


def _die_with_parent_linux() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # no prctl (not glibc / musl): the watchdog thread alone
        pass


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != ppid:
            os._exit(1)  # re-parented: the parent is gone; nothing of ours left to clean


def worker_init(parent_pid: Optional[int] = None, watch: bool = True) -> None:
    """Initializer of every worker process: die with the parent (see the module docstring).

    ``parent_pid``: the pid of the process that starts the pool, when it is the
    worker's own parent (the ``fork`` start method); a worker that finds another
    parent was orphaned before it began and ends at once.
    """
    if sys.platform.startswith("linux"):
        _die_with_parent_linux()
    ppid = os.getppid()
    if parent_pid is not None and ppid != parent_pid:
        os._exit(1)
    # the parent's SIGTERM/SIGINT handlers are not the worker's: it ends on either, without a traceback
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_DFL)
    if watch:  # watch=False (Linux, where PDEATHSIG does it): no thread, so the worker may fork in turn
        threading.Thread(target=_watch_parent, args=(ppid,), name="parent-watch", daemon=True).start()


def terminate_pool(pool: Any) -> None:
    """End a :class:`concurrent.futures.ProcessPoolExecutor` now: its processes are killed, not drained."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()


#: Set by the SIGTERM handler while :func:`terminate_as_interrupt` is active.
_terminated = threading.Event()


def _note_terminated(signum: int, frame: Any) -> None:
    # Only noted: an exception raised from a signal handler lands wherever the main thread is, and
    # there Python may print and ignore it (inside an at-fork hook while a worker process starts,
    # a finaliser, a weakref callback).  The loops raise it at their next step instead.
    _terminated.set()


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` if SIGTERM arrived (under :func:`terminate_as_interrupt`); else nothing.

    Called at every progress step of discovery (each file, or each chunk a
    worker returns) and before each batch of the model, so that a run ends
    within one step of SIGTERM.
    """
    if _terminated.is_set():
        raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM makes the next :func:`raise_if_terminated` (and the end of the block) raise
    :class:`Terminated`.  Only in the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _terminated.clear()
    try:
        old = signal.signal(signal.SIGTERM, _note_terminated)
    except (ValueError, OSError):  # not allowed here (an embedding interpreter)
        yield
        return
    try:
        yield
        raise_if_terminated()  # the command finished, but SIGTERM came: it still ends as terminated
    finally:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, old)
        _terminated.clear()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """While inside: Ctrl-C (SIGINT) is noted, not raised; :class:`KeyboardInterrupt` comes when the block
    ends.  For ``import torch`` and loading a model: a KeyboardInterrupt that reaches torch's C++ start-up
    aborts the whole process (``terminate called after throwing ... KeyboardInterrupt``), and one raised
    in its optional imports may be swallowed there.  Only in the main thread and only when SIGINT has
    Python's own handler; elsewhere nothing changes."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    noted = threading.Event()
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: noted.set())
    except (ValueError, OSError):  # not allowed here (an embedding interpreter)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if noted.is_set():
        raise KeyboardInterrupt
