"""Ordered work in worker processes plus this one: header reading and model-input preparation.

:func:`ordered_map` runs ``func(chunk)`` for every chunk, in ``n - 1`` worker
processes and this process, and returns the results in the chunks' order, as a
serial loop would.  Discovery reads headers with it
(:mod:`SeqClassifierLib.dicom.discovery`) and the classifier prepares the
series' model inputs with it (:mod:`SeqClassifierLib.inputs.prepare_pool`):
both are pure-Python and numpy work that holds the GIL most of the time, so
threads do not run it side by side.

:func:`start_method` picks ``fork`` on Linux while no other Python thread runs
(fast: ~10 ms a worker), else ``forkserver`` where it exists, else ``spawn``.
The workers die with this process whatever ends it (:mod:`.lifetime`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Mapping, Optional, Sequence

from SeqClassifierLib.config import workers_override
from SeqClassifierLib.lifetime import raise_if_terminated, terminate_pool, worker_init

__all__ = ["available_cpus", "may_start_processes", "plan_workers", "start_method", "ordered_map"]


def may_start_processes() -> bool:
    """False in a daemonic process (a dask worker, a multiprocessing pool's worker): Python refuses
    to let those have children, so their work is done in-process."""
    return not mp.current_process().daemon


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def start_method() -> str:
    """``fork`` on Linux while no other Python thread runs (fast, safe enough for this
    pure-Python and numpy work); else ``forkserver`` where available; else ``spawn``."""
    methods = mp.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1:
        return "fork"
    if "forkserver" in methods and sys.platform != "darwin":
        return "forkserver"
    return "spawn"


def plan_workers(n_items: int, asked: Optional[int], method: str, fewest: Mapping[str, int], per_worker: int,
                 parallel_from: Optional[int] = None) -> int:
    """How many processes (this one included) share ``n_items`` of work started with ``method``.

    ``asked``: a number asked for, used as it is but for the caps (64, and one process per
    ``per_worker`` items); None: automatic -- ``SEQCLASSIFIER_WORKERS`` first, else this process only
    below ``fewest[method]`` items (or ``parallel_from``, when larger) and inside the Slicer application
    itself (forking a GUI or spawning its launcher is not safe; its PythonSlicer children may), else
    the CPUs, at most 8.  Always 1 in a daemonic process (:func:`may_start_processes`)."""
    if asked is None:
        asked = workers_override()
    if not may_start_processes():
        return 1
    if asked is None:
        if "slicer" in sys.modules or n_items < max(fewest.get(method, 10 ** 9), parallel_from or 0):
            return 1
        asked = min(available_cpus(), 8)
    return max(1, min(int(asked), 64, n_items // per_worker))


def ordered_map(func: Callable[[Any], Any], chunks: Sequence[Any], n: int, method: str,
                report: Optional[Callable[[int], None]] = None, preload: Sequence[str] = ()) -> list:
    """``[func(c) for c in chunks]`` computed by ``n - 1`` worker processes and this one.

    ``func`` must be a module-level function (it is pickled by reference);
    ``report(i)`` is called in this process as chunk ``i`` is done (in any
    order; it may raise to stop the run: the workers are then killed, as on
    any exception or Ctrl-C); ``preload``: modules the ``forkserver`` imports
    once.  Raises :class:`concurrent.futures.process.BrokenProcessPool` when a
    worker dies (a crash in a native decoder, killed for memory), and
    :class:`~.lifetime.Terminated` instead of whatever ended the run once SIGTERM
    was noted (it kills the workers of the process group too).
    """
    out: list = [None] * len(chunks)
    ctx = mp.get_context(method)
    if method == "forkserver" and preload:
        ctx.set_forkserver_preload(list(preload))
    pool = ProcessPoolExecutor(max_workers=max(1, n - 1), mp_context=ctx, initializer=worker_init,
                               initargs=(os.getpid() if method == "fork" else None,))
    pending: dict[Any, int] = {}
    next_chunk = 0
    try:
        while next_chunk < len(chunks) or pending:
            # Keep every worker two chunks ahead; this process does the next one itself.
            while next_chunk < len(chunks) and len(pending) < 2 * (n - 1):
                pending[pool.submit(func, chunks[next_chunk])] = next_chunk
                next_chunk += 1
            if next_chunk < len(chunks):
                out[next_chunk] = func(chunks[next_chunk])
                if report is not None:
                    report(next_chunk)
                next_chunk += 1
                done = [f for f in pending if f.done()]
            else:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                out[i] = fut.result()
                if report is not None:
                    report(i)
    except BaseException:
        terminate_pool(pool)  # Ctrl-C, SIGTERM or a bug: the workers are killed, not left to drain the queue
        raise_if_terminated()  # workers killed by a SIGTERM to the process group: the run was terminated
        raise
    pool.shutdown(wait=True)
    return out
