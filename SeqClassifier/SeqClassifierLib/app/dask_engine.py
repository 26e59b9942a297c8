"""The Dask engine of ``classify --engine dask [--scheduler ADDRESS]``.

Partitions (:func:`SeqClassifierLib.app.stream.plan_partitions`: study folders,
or the studies of a Slicer database) are sent to the workers of a Dask
cluster; each worker runs discovery, features and the model on its partition
(:func:`SeqClassifierLib.app.stream.classify_partition`, exactly what the local
engine runs) and sends back a :class:`~SeqClassifierLib.app.stream.PartitionResult`
in the same row schema.  Results come back as they finish and are streamed
into the JSON-lines file by the caller.

The model is loaded once per worker process: :func:`worker_classifier` keeps
it in a module-level cache keyed by (model path, SHA-256 of its files, device,
precision, batch size), and checks that the worker's copy of the file has the
hash the client computed.  ``device="auto"`` uses the worker's GPU where it
has one.

Without ``scheduler`` a ``distributed.LocalCluster`` is started on this
machine (``n_workers`` processes, one thread each); with an address
(``tcp://host:8786``) the run uses that cluster, which may be a
dask-jobqueue ``SLURMCluster`` or a Dask Kubernetes operator cluster.
Workers must be able to import this package and read the input paths (and
the ``--model`` file) under the same names as the client.

Dask is an optional dependency (``pip install "seqclassifier[dask]"``); this
module imports it only inside the functions that need it, and nothing in
the library imports this module.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

from SeqClassifierLib.app.stream import Partition, PartitionResult, classify_partition
from SeqClassifierLib.model.classifier import Classifier, default_model_path
from SeqClassifierLib.records import SeriesKey

#: Workers of the LocalCluster started when no scheduler address is given.
LOCAL_WORKERS = 2
#: Partitions in flight per worker thread (one running, one queued).
IN_FLIGHT_PER_THREAD = 2

_MODELS: dict[tuple, Classifier] = {}
_MODELS_LOCK = threading.Lock()


class DaskUnavailable(RuntimeError):
    """Dask (``distributed``) is not installed."""


def model_files(path: Optional[os.PathLike]) -> list[Path]:
    """The files of a checkpoint: its ``.json`` card and ``.safetensors`` weights (those present)."""
    if path is None:
        return []
    p = Path(path)
    return [f for f in (p.with_suffix(".json"), p.with_suffix(".safetensors")) if f.is_file()]


def model_hash(path: Optional[os.PathLike]) -> str:
    """SHA-256 over the checkpoint's files ("" when there is no model: untrained)."""
    files = model_files(path)
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def model_spec(model: Optional[os.PathLike], device: str = "auto", precision: str = "auto",
               batch_size: int = 64) -> dict[str, Any]:
    """What a worker needs to load the same model as the client (sent with every partition)."""
    path = Path(model).resolve() if model is not None else default_model_path()
    return {"path": str(path) if path is not None else None, "explicit": model is not None,
            "sha256": model_hash(path), "device": device, "precision": precision, "batch_size": batch_size}


def worker_classifier(spec: Mapping[str, Any]) -> Classifier:
    """The worker's classifier for ``spec``, loaded on first use and kept for the worker's life."""
    key = (spec["path"], spec["sha256"], spec["device"], spec["precision"], spec["batch_size"])
    with _MODELS_LOCK:
        clf = _MODELS.get(key)
        if clf is None:
            path = spec["path"]
            if not spec["explicit"]:  # the shipped model: this worker's own installed copy
                local = default_model_path()
                path = str(local) if local is not None else None
            if (model_hash(path) if path else "") != spec["sha256"]:
                raise RuntimeError(f"model {path or '(none installed)'} on this worker differs from the "
                                   "client's (SHA-256 mismatch); give every worker the same model file")
            clf = Classifier(path, device=spec["device"], batch_size=spec["batch_size"],
                             precision=spec["precision"])
            _MODELS[key] = clf
        return clf


def run_partition(part: Partition, spec: Mapping[str, Any], done: Optional[Mapping[SeriesKey, str]] = None) -> PartitionResult:
    """Worker task: one partition through discovery, features and the model."""
    return classify_partition(part, worker_classifier(spec), done=done, workers=1)


def _distributed():
    # dask is optional: imported only when the Dask engine is used
    try:
        import distributed
    except ImportError as exc:
        raise DaskUnavailable('the Dask engine needs dask: pip install "dask[distributed]" '
                              '(or "seqclassifier[dask]")') from exc
    return distributed


def dask_results(parts: Iterable[Partition], spec: Mapping[str, Any], *,
                 done: Optional[Mapping[SeriesKey, str]] = None, scheduler: Optional[str] = None,
                 n_workers: int = LOCAL_WORKERS, log=None) -> Iterator[PartitionResult]:
    """Results of ``parts`` computed on a Dask cluster, yielded as they finish.

    ``scheduler``: address of a running scheduler; None starts a LocalCluster
    of ``n_workers`` processes with one thread each, closed at the end.
    """
    distributed = _distributed()
    cluster = None
    if scheduler:
        client = distributed.Client(scheduler)
    else:
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        threads = max(1, sum(client.nthreads().values()))
        if log is not None:
            log(f"dask: {len(client.nthreads())} workers, {threads} threads at {client.scheduler.address}")
        done_ref = client.scatter(dict(done), broadcast=True) if done else None
        window = IN_FLIGHT_PER_THREAD * threads
        todo = iter(parts)
        running = distributed.as_completed()
        for part in todo:
            running.add(client.submit(run_partition, part, spec, done_ref, pure=False))
            if running.count() >= window:
                break
        for fut in running:
            result = fut.result()
            fut.release()
            nxt = next(todo, None)
            if nxt is not None:
                running.add(client.submit(run_partition, nxt, spec, done_ref, pure=False))
            yield result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
