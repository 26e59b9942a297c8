"""Model inputs prepared in worker processes are those prepared one after another, bit for bit.

Real series (ProstateX and the vendor studies of ``../shared/data``) go through
:func:`prepare_many` with two and three processes, with threads and in this
thread; every field of every :class:`PreparedInput` must be identical.  A
worker that dies (here: one that calls ``os._exit``) leaves the result
unchanged.  The classifier's predictions do not depend on how the inputs were
prepared or on the window size.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest

from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib import parallel
from SeqClassifierLib.inputs import prepare_pool
from SeqClassifierLib.inputs.prepare_pool import MIN_SERIES, plan_processes, prepare_many
from SeqClassifierLib.inputs.prepared import prepare_input
from SeqClassifierLib.inputs.study import study_contexts

SPEC = (128, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True)


@pytest.fixture(scope="module")
def real_records(prostatex, vendors):
    records = discover_series([prostatex, vendors], workers=1).series
    assert len(records) >= 20
    return records


def _one_by_one(records, contexts):
    size, mean, std, uses_image = SPEC
    return [prepare_input(r, contexts.get(r.key), size=size, mean=mean, std=std, uses_image=uses_image)
            for r in records]


def _assert_identical(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.meta.dtype == b.meta.dtype and a.meta.tobytes() == b.meta.tobytes()
        assert (a.image is None) == (b.image is None)
        if a.image is not None:
            assert a.image.shape == b.image.shape == (3, 128, 128)
            assert a.image.tobytes() == b.image.tobytes()
        assert a.image_note == b.image_note
        assert a.quality == b.quality


@pytest.mark.parametrize("processes, method", [(2, "fork"), (3, "fork"), (2, "forkserver")])
def test_processes_give_the_same_bits(real_records, processes, method, monkeypatch):
    import multiprocessing as mp

    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    # fork: the records are inherited and tasks are index ranges; forkserver: the records are sent
    monkeypatch.setattr(prepare_pool, "start_method", lambda: method)
    contexts = study_contexts(real_records)
    expected = _one_by_one(real_records, contexts)
    assert sum(p.image is not None for p in expected) >= 15  # the images are compared, not only metadata
    _assert_identical(prepare_many(real_records, contexts, SPEC, processes=processes), expected)


def test_threads_and_this_thread_give_the_same_bits(real_records):
    contexts = study_contexts(real_records)
    expected = _one_by_one(real_records, contexts)
    _assert_identical(prepare_many(real_records, contexts, SPEC, processes=1, threads=3), expected)
    _assert_identical(prepare_many(real_records, contexts, SPEC, processes=1, threads=1), expected)


@pytest.mark.parametrize("cpus, expected_pool", [(1, None), (2, 2), (8, 4)])
def test_no_more_threads_than_cpus(real_records, monkeypatch, cpus, expected_pool):
    import concurrent.futures

    pools = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers=None, **kw):
            pools.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)

    monkeypatch.setattr(prepare_pool, "available_cpus", lambda: cpus)
    monkeypatch.setattr(prepare_pool, "ThreadPoolExecutor", Recording)
    records = real_records[:6]
    contexts = study_contexts(records)
    _assert_identical(prepare_many(records, contexts, SPEC, processes=1, threads=4), _one_by_one(records, contexts))
    assert pools == ([] if expected_pool is None else [expected_pool])


def _force_fork(monkeypatch):
    """The failure is injected through a forked worker's copy of this module: fork even when another
    test left a thread running (the run would pick forkserver then)."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    monkeypatch.setattr(prepare_pool, "start_method", lambda: "fork")


def test_a_worker_that_dies_costs_only_time(real_records, monkeypatch, caplog):
    _force_fork(monkeypatch)
    contexts = study_contexts(real_records)
    expected = _one_by_one(real_records, contexts)
    parent = os.getpid()
    real = prepare_pool.prepare_input

    def crash_in_worker(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(3)  # like a segfault in a native decoder: no exception, the process is gone
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_pool, "prepare_input", crash_in_worker)
    with caplog.at_level(logging.WARNING, logger=prepare_pool.__name__):
        got = prepare_many(real_records, contexts, SPEC, processes=2)
    _assert_identical(got, expected)
    assert any("ended unexpectedly" in r.getMessage() for r in caplog.records)


def test_plan(monkeypatch):
    monkeypatch.delenv("SEQCLASSIFIER_WORKERS", raising=False)
    monkeypatch.delitem(sys.modules, "slicer", raising=False)  # a stand-in other tests may have left
    n, method = plan_processes(1000)
    cpus = parallel.available_cpus()
    assert n == min(cpus, 8) or n == 1 and cpus == 1
    assert plan_processes(MIN_SERIES[method] - 1) == (1, method)  # too few to pay for a worker
    assert plan_processes(10, processes=3) == (3, method)  # asked for: used
    assert plan_processes(4, processes=8)[0] == 2  # never more than one process for two series
    assert plan_processes(1000, processes=0)[0] == 1
    monkeypatch.setenv("SEQCLASSIFIER_WORKERS", "1")
    assert plan_processes(1000) == (1, method)
    monkeypatch.delenv("SEQCLASSIFIER_WORKERS")
    monkeypatch.setitem(sys.modules, "slicer", object())  # inside the Slicer application: not unasked
    assert plan_processes(1000) == (1, method)
    assert plan_processes(1000, processes=2) == (2, method)


def _plans_in_a_daemon(queue):
    from SeqClassifierLib.dicom.discovery import _plan_workers

    queue.put((plan_processes(1000, processes=4)[0], _plan_workers(100000, 4)[0]))


def test_a_daemonic_process_prepares_and_reads_in_itself():
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a dask worker is a daemonic process: it may not start children
    queue = ctx.Queue()
    proc = ctx.Process(target=_plans_in_a_daemon, args=(queue,), daemon=True)
    proc.start()
    got = queue.get(timeout=120)
    proc.join(60)
    assert got == (1, 1)
    assert plan_processes(1000, processes=4)[0] == 4  # here (not daemonic): as asked


def test_classifier_predictions_do_not_depend_on_how_inputs_were_prepared(real_records):
    from SeqClassifierLib.model.classifier import Classifier

    clf = Classifier(device="cpu", precision="fp32")
    if not clf.is_trained:
        pytest.skip("no shipped model")
    clf.batch_size = 8  # several batches, several windows
    clf.processes, clf.window_batches = 1, 100
    reference = clf.classify(real_records)
    for processes, window in ((2, 1), (3, 2)):
        clf.processes, clf.window_batches = processes, window
        got = clf.classify(real_records)
        assert [p.probabilities for p in got] == [p.probabilities for p in reference]
        assert got == reference  # labels, review flags, reasons, notes: every field
    assert len({p.label for p in reference}) >= 4 and np.isfinite([p.confidence for p in reference]).all()


def test_a_terminated_run_ends_instead_of_preparing_again(real_records, monkeypatch):
    from SeqClassifierLib import lifetime

    _force_fork(monkeypatch)
    parent = os.getpid()
    real = prepare_pool.prepare_input

    def killed_by_sigterm(*args, **kwargs):  # what a SIGTERM to the process group does to a worker
        if os.getpid() != parent:
            os._exit(143)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_pool, "prepare_input", killed_by_sigterm)
    lifetime._terminated.set()  # the command's SIGTERM handler noted it
    try:
        with pytest.raises(lifetime.Terminated):
            prepare_many(real_records, study_contexts(real_records), SPEC, processes=2)
    finally:
        lifetime._terminated.clear()
