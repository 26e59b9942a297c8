"""The model inputs of many series at once: worker processes where they pay, else threads.

:func:`prepare_many` returns ``prepare_input(record, context, ...)`` for each
series, in order and with the same bits as one call after another.

Why processes: :func:`~.prepared.prepare_input` is numpy work on small arrays
with Python in between, so it holds the GIL most of the time.  Worker threads
run it only a little faster than one thread, and threads running beside the
model make the model's own thread wait for the GIL between its operations
(95 series of the 2,000-file benchmark set on 2 vCPUs: 4 threads 1.33x one
thread, 2 processes 1.51x, ``Testing/benchmarks/bench_prepare.py``; processes
scale with real cores, threads do not).  So the classifier prepares a window
of series with all cores first, then runs the model on it
(:meth:`~SeqClassifierLib.model.classifier.Classifier.classify`).

Processes are used (this process counts as one) when the start method is
cheap enough for the number of series (:data:`MIN_SERIES`), never unasked
inside the Slicer application itself (its classification runs in a child
process, where they are used), never in a daemonic process (a dask worker:
Python refuses it children), and ``SEQCLASSIFIER_WORKERS`` caps them as it
caps discovery's readers.  A worker that dies (a crash in a native pixel
decoder, killed for memory) costs nothing but time: what it had not returned
is prepared in this process, as it was before processes were used.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Optional, Sequence

from SeqClassifierLib.inputs.prepared import PreparedInput, prepare_input
from SeqClassifierLib.inputs.study import SeriesContext
from SeqClassifierLib.lifetime import raise_if_terminated
from SeqClassifierLib.parallel import available_cpus, ordered_map, plan_workers, start_method
from SeqClassifierLib.records import SeriesRecord

__all__ = ["MIN_SERIES", "Spec", "plan_processes", "prepare_many", "spec_of"]

log = logging.getLogger(__name__)

#: What :func:`~.prepared.prepare_input` needs besides the series: (input size, mean, std, uses image).
Spec = tuple


def spec_of(card: Any) -> Spec:
    """The :data:`Spec` of a typed model card (:class:`~SeqClassifierLib.model.card.ModelCard`)."""
    pre = card.preprocessing
    return (int(pre.input_size), tuple(pre.mean), tuple(pre.std), bool(card.uses_image))

#: Fewest series for which worker processes pay off, by start method (prepare_input ~8 ms a
#: series; a forked worker starts in ~10 ms, forkserver ~230 ms the first time, spawn ~300 ms).
MIN_SERIES = {"fork": 40, "forkserver": 160, "spawn": 256}

#: Series per task sent to a worker (few: the results come back in order).
_MAX_CHUNK = 16


def plan_processes(n_series: int, processes: Optional[int] = None) -> tuple[int, str]:
    """(number of processes including this one, start method) to prepare ``n_series``; 1: this process
    only (:func:`~SeqClassifierLib.parallel.plan_workers` with :data:`MIN_SERIES`, a process per 2 series)."""
    method = start_method()
    return plan_workers(n_series, processes, method, MIN_SERIES, 2), method


#: (items, spec) of the run in progress, set before ``fork`` workers start: they inherit it, so a
#: task is two indices instead of pickled series records (whose headers cost more to send than to use).
_FORKED: Optional[tuple] = None


def _prepare_chunk(task: tuple) -> list:
    """Worker entry point: the unstandardised inputs (a third of the bytes of the standardised ones
    to send back) of ``(items, spec)``, or of ``items[lo:hi]`` of :data:`_FORKED` for ``(lo, hi)``."""
    if isinstance(task[0], int):
        items, spec = _FORKED[0][task[0]:task[1]], _FORKED[1]
    else:
        items, spec = task
    size, mean, std, uses_image, thumbnail_size = spec
    return [prepare_input(r, c, size=size, mean=mean, std=std, uses_image=uses_image, standardize_image=False,
                          thumbnail_size=thumbnail_size) for r, c in items]


def prepare_many(records: Sequence[SeriesRecord], contexts: dict, spec: Spec, *,
                 processes: Optional[int] = None, threads: int = 1,
                 thumbnail_size: Optional[int] = None, standardize: bool = True) -> list[PreparedInput]:
    """The standardised :class:`~.prepared.PreparedInput` of each record, in order (``standardize=False``:
    as ``prepare_input(..., standardize_image=False)`` makes them, to send to another process).

    ``contexts``: ``{record.key: SeriesContext}`` (:func:`~.study.study_contexts` of the whole run);
    ``spec``: :data:`Spec`; ``processes``: see :func:`plan_processes`; ``threads``: worker threads
    where no processes are used (1: this thread only); ``thumbnail_size``: each input's thumbnail too.
    """
    size, mean, std, uses_image = spec
    spec = (size, mean, std, uses_image, thumbnail_size)
    items: list[tuple[SeriesRecord, Optional[SeriesContext]]] = [(r, contexts.get(r.key)) for r in records]
    n, method = plan_processes(len(items), processes)
    raw: Optional[list] = None
    if n > 1:
        global _FORKED
        step = max(1, min(_MAX_CHUNK, len(items) // (n * 4) or 1))
        bounds = [(i, min(i + step, len(items))) for i in range(0, len(items), step)]
        chunks = bounds if method == "fork" else [(items[lo:hi], spec) for lo, hi in bounds]
        _FORKED = (items, spec) if method == "fork" else None
        try:
            parts = ordered_map(_prepare_chunk, chunks, n, method, lambda i: raise_if_terminated(),
                                preload=[__name__])
            raw = [p for part in parts for p in part]
        except BrokenProcessPool as exc:  # (after a SIGTERM ordered_map raises Terminated: no retry)
            log.warning("a process preparing model inputs ended unexpectedly (%s); preparing them here", exc)
        finally:
            _FORKED = None
    if raw is None:
        # no more threads than CPUs: the work holds the GIL most of the time, and threads beyond the
        # cores only wait for it (ProstateX's 18 series on 2 vCPUs: 60-64 ms in 2 threads, 68-73 in 4)
        threads = min(threads, available_cpus())
        if threads > 1 and len(items) > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                raw = [p for part in pool.map(_prepare_chunk, [([it], spec) for it in items]) for p in part]
        else:
            raw = _prepare_chunk((items, spec))
    return [p.standardized(mean, std) for p in raw] if standardize else raw
