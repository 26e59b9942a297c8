"""Classify an archive in partitions and stream the rows to a JSON-lines file, resumably.

An archive (10^4-10^6 series) is not read in one piece.  :func:`plan_partitions`
walks the input folders once (names only, no file is opened) and cuts them
into *units*: whole folder subtrees of at most ``batch_files`` files (a
study folder, a patient folder); a folder holding more files than that below
it is split by its sub-folders (a 20,000-file study into its series folders),
and the files lying directly in one folder always stay together.  So a series
is never cut in two unless its files are spread over several sibling folders
of a folder bigger than ``batch_files``.  Consecutive units are grouped into
partitions of about ``batch_files`` files; the first partitions are smaller
(:data:`FIRST_BATCH_FILES`, doubling) so that the first rows come within
seconds.  A Slicer DICOM database is partitioned by study
(:func:`slicer_db_partitions`).

Each partition goes through :func:`classify_partition`: ``discover_series``
on its paths, then the classifier, then one :class:`~SeqClassifierLib.records.ResultRow`
per series with its *stamp* (a digest of the series' file paths, sizes and
modification times).  Engines run partitions one after the other in this
process (:func:`local_results`) or on a Dask cluster
(:mod:`SeqClassifierLib.app.dask_engine`); both yield the same
:class:`PartitionResult` records.

:class:`JsonlStream` writes every row as soon as its partition is done
(one flushed line each, so the file is valid line by line at any moment);
with ``resume=True`` it first keeps the series rows of an earlier, interrupted
run and :meth:`JsonlStream.is_done` tells which series need no work: same
:class:`~SeqClassifierLib.records.SeriesKey` (patient, study, series UID) and
same stamp.  Every line is written by :mod:`.output`'s event writer, the one
rule of every JSON output.  At the end, rows of series that changed or
disappeared since are dropped, so a resumed run ends with the same lines as an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from SeqClassifierLib.app.output import event_line, model_info, series_event, skipped_event, written_key
from SeqClassifierLib.atomic import atomic_write, fsync_dir
from SeqClassifierLib.records import Discovery, Prediction, ResultRow, SeriesKey, SeriesRecord

#: Partitions hold about this many files; a folder with more below it is split by its sub-folders.
BATCH_FILES = 500
#: Size of the first partition; each next one doubles up to BATCH_FILES (first rows come early).
FIRST_BATCH_FILES = 32


@dataclass
class Partition:
    """Paths (folders and/or files) that :func:`discover_series` reads together."""

    index: int
    paths: list[str]
    n_files: int


@dataclass
class PartitionResult:
    """What one partition gave: rows (dict form) with their stamps, skipped files, counts.

    Plain built-in types only, so it crosses process and machine boundaries unchanged.
    """

    index: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0
    #: Series found but not classified again because the output already had them (resume).
    n_resumed: int = 0
    #: Keys of those series (as written: :func:`~SeqClassifierLib.app.output.written_key`).
    resumed: list[SeriesKey] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------
# Partitions
# ----------------------------------------------------------------------------

def _scan(folder: str) -> tuple[list[str], list[str]]:
    """(non-folder entries, sub-folders) of ``folder``, sorted by name; ([], []) if unreadable."""
    files, dirs = [], []
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return [], []  # discover_series reports the unreadable folder
    for e in entries:
        try:
            (dirs if e.is_dir(follow_symlinks=True) else files).append(e.path)
        except OSError:
            files.append(e.path)
    return files, dirs


def _units(folder: str, max_files: int, seen: set) -> tuple[int, list[tuple[list[str], int]]]:
    """(files below ``folder``, its units): the folder itself when small enough, else its pieces."""
    try:
        st = os.stat(folder)
    except OSError:
        return 0, [([folder], 0)]
    key = (st.st_dev, st.st_ino)
    if key in seen:  # a symbolic-link loop or a folder reached twice
        return 0, []
    seen.add(key)
    files, dirs = _scan(folder)
    total = len(files)
    children = []
    for d in dirs:
        n, units = _units(d, max_files, seen)
        total += n
        children.append(units)
    if total <= max_files:
        return total, [([folder], total)]
    units = [(files, len(files))] if files else []
    for u in children:
        units.extend(u)
    return total, units


def _batched(units: Iterable[tuple[list[str], int]], batch_files: int,
             first: int = FIRST_BATCH_FILES) -> list[Partition]:
    parts: list[Partition] = []
    paths: list[str] = []
    n = 0
    target = max(1, min(first, batch_files))
    for unit_paths, unit_n in units:
        if paths and n + unit_n > target:
            parts.append(Partition(len(parts), paths, n))
            paths, n = [], 0
            target = min(batch_files, target * 2)
        paths.extend(unit_paths)
        n += unit_n
    if paths:
        parts.append(Partition(len(parts), paths, n))
    return parts


def plan_partitions(inputs: Sequence[os.PathLike], *, batch_files: Optional[int] = None,
                    first_batch_files: Optional[int] = None) -> list[Partition]:
    """Cut ``inputs`` (folders and/or files) into partitions, in a stable order.

    Files given one by one form one partition of their own (they may be the
    files of one series).  Paths that do not exist are kept, so that
    discovery reports them.
    """
    batch_files = batch_files or BATCH_FILES
    first_batch_files = first_batch_files or FIRST_BATCH_FILES
    seen: set = set()
    loose: list[str] = []
    units: list[tuple[list[str], int]] = []
    for raw in inputs:
        p = os.fspath(raw)
        if os.path.isdir(p):
            units.extend(_units(p, batch_files, seen)[1])
        else:
            loose.append(p)
    parts = _batched(units, batch_files, first_batch_files)
    if loose:
        parts.append(Partition(len(parts), loose, len(loose)))
    return parts


def slicer_db_partitions(series_files: Mapping[str, list[str]], study_of: Mapping[str, str],
                         batch_files: int = BATCH_FILES, start: int = 0) -> list[Partition]:
    """Partitions of a Slicer DICOM database: the files of whole studies, about ``batch_files`` each."""
    by_study: dict[str, list[str]] = defaultdict(list)
    for uid in sorted(series_files):
        by_study[study_of.get(uid, "") or uid].extend(series_files[uid])
    parts = _batched(((files, len(files)) for _, files in sorted(by_study.items())), batch_files, batch_files)
    for k, p in enumerate(parts):
        p.index = start + k
    return parts


# ----------------------------------------------------------------------------
# One partition
# ----------------------------------------------------------------------------

def series_stamp(files: Iterable[str]) -> str:
    """A digest of the series' files: paths, sizes and modification times (ns)."""
    h = hashlib.sha1()
    for f in sorted(files):
        try:
            st = os.stat(f)
            h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{f}\tmissing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20]


@dataclass
class PartitionRun:
    """One partition discovered and classified, in memory: its discovery, the records classified
    (in discovery order) with their predictions and stamps, and the keys of the series resumed."""

    discovery: Any
    records: list[SeriesRecord]
    predictions: list[Prediction]
    stamps: list[str]
    resumed: list[SeriesKey]

    def rows(self) -> list[ResultRow]:
        return [ResultRow.from_series(r, p) for r, p in zip(self.records, self.predictions)]


def run_partition(part: Partition, classifier: Any, *, done: Optional[Mapping[SeriesKey, str]] = None,
                  cache: Any = None, workers: Optional[int] = None, stamps: bool = True,
                  discover_progress: Optional[Callable[[int, int], None]] = None,
                  classify_progress: Optional[Callable[[int, int], None]] = None,
                  discovery: Optional[Discovery] = None, prepared: Optional[Sequence[Any]] = None) -> PartitionRun:
    """Discover and classify one partition -- the one path of every engine, and of the batch
    ``classify`` (its inputs are one partition).  Series whose (key as written, stamp) is in ``done``
    are not classified; ``stamps=False`` (no resume, no streamed file) skips the stamps.
    ``discovery``: the partition's discovery, already made (the command line reads headers while
    torch imports, :mod:`.startup`); None: discovered here.  ``prepared``: the model inputs of its
    series, in order, made with them (used only when every series is classified)."""
    if discovery is None:
        from SeqClassifierLib.dicom.discovery import discover_series  # pydicom: only where files are read

        discovery = discover_series(part.paths, progress=discover_progress, cache=cache, workers=workers)
    todo, stamp_list, resumed = [], [], []
    for rec in discovery.series:
        stamp = series_stamp(rec.files) if stamps or done is not None else ""
        key = written_key(rec.key)
        if done is not None and done.get(key) == stamp:
            resumed.append(key)
            continue
        todo.append(rec)
        stamp_list.append(stamp)
    extra = {"prepared": prepared} if prepared is not None and len(todo) == len(discovery.series) else {}
    if classify_progress is not None:
        predictions = classifier.classify(todo, progress=classify_progress, **extra)
    else:
        predictions = classifier.classify(todo, **extra) if todo else []
    return PartitionRun(discovery, todo, predictions, stamp_list, resumed)


def classify_partition(part: Partition, classifier: Any, *, done: Optional[Mapping[SeriesKey, str]] = None,
                       cache: Any = None, workers: Optional[int] = None) -> PartitionResult:
    """:func:`run_partition` in the form that crosses process boundaries (rows as dicts)."""
    run = run_partition(part, classifier, done=done, cache=cache, workers=workers)
    discovery = run.discovery
    return PartitionResult(index=part.index, rows=[r.to_dict() for r in run.rows()], stamps=run.stamps,
                           skipped=[(s.path, s.reason) for s in discovery.skipped],
                           n_files=discovery.n_files, n_resumed=len(run.resumed), resumed=run.resumed,
                           model_info=model_info(classifier))


def local_results(parts: Iterable[Partition], classifier: Any, *, done: Optional[Mapping[SeriesKey, str]] = None,
                  cache: Any = None) -> Iterator[PartitionResult]:
    """The local engine: partitions one after the other in this process, in order."""
    for part in parts:
        yield classify_partition(part, classifier, done=done, cache=cache)


# ----------------------------------------------------------------------------
# The JSON-lines file
# ----------------------------------------------------------------------------

def _parse_series_line(line: str) -> Optional[tuple[SeriesKey, str]]:
    """(key, stamp) of a complete, valid ``series`` line with a stamp; None for anything else."""
    if not line.endswith("\n"):
        return None  # the torn last line of a killed run
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "series" or not isinstance(event.get("stamp"), str):
        return None
    try:
        row = ResultRow.from_dict(event.get("row"))
    except ValueError:
        return None
    return row.key, event["stamp"]


class JsonlStream:
    """The streamed ``--format jsonl --out F`` file.

    ``resume=False`` starts ``F`` afresh.  ``resume=True`` keeps the valid
    ``series`` lines of ``F`` (a torn last line, skipped events and the
    summary of the earlier run are dropped: this run writes them again) and
    remembers each series' stamp for :meth:`is_done`.
    """

    def __init__(self, path: os.PathLike, resume: bool = False, fsync_every_s: float = 5.0):
        self.path = os.fspath(path)
        #: Series of the earlier run: key (as written) -> stamp.
        self.done: dict[SeriesKey, str] = {}
        self.seen_done: set[SeriesKey] = set()
        self.replaced: set[SeriesKey] = set()
        self._new = 0
        self.n_skipped = 0
        self.fsync_every_s = fsync_every_s
        self._last_sync = time.monotonic()
        if resume and os.path.isfile(self.path):
            self._keep_done_rows()
        else:
            with open(self.path, "w", encoding="utf-8"):
                pass
        self._fh: Optional[IO[str]] = open(self.path, "a", encoding="utf-8", newline="\n")

    def _keep_done_rows(self) -> None:
        def write(tmp: str) -> None:
            with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as src, \
                    open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as dst:
                for line in src:
                    parsed = _parse_series_line(line)
                    if parsed is None or parsed[0] in self.done:
                        continue
                    self.done[parsed[0]] = parsed[1]
                    dst.write(line)
        atomic_write(self.path, write)

    @property
    def n_series(self) -> int:
        """Series of this run in the file: new rows plus rows kept from the earlier run."""
        return self._new + len(self.seen_done)

    def is_done(self, key: SeriesKey, stamp: str) -> bool:
        return self.done.get(written_key(key)) == stamp

    def write_result(self, result: PartitionResult) -> None:
        """Append a partition's rows and skipped files, one flushed line each."""
        assert self._fh is not None
        self.seen_done.update(SeriesKey(*k) for k in result.resumed)
        for row, stamp in zip(result.rows, result.stamps):
            key = written_key(SeriesKey.of(row))
            if key in self.done:  # changed since the earlier run: its old line goes at close()
                self.replaced.add(key)
                self.seen_done.add(key)
            else:
                self._new += 1
            self._fh.write(event_line(series_event(row, stamp=stamp)))
        for path, reason in result.skipped:
            self._fh.write(event_line(skipped_event(path, reason)))
            self.n_skipped += 1
        self._fh.flush()
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_every_s:
            os.fsync(self._fh.fileno())
            self._last_sync = now

    def stale(self) -> set[SeriesKey]:
        """Keys whose earlier line must go: series changed since, or gone from the inputs."""
        return self.replaced | (set(self.done) - self.seen_done)

    def close(self, summary: Optional[dict[str, Any]] = None) -> None:
        """Drop stale lines of the earlier run (atomic rewrite), then append ``summary``."""
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        stale = self.stale() if summary is not None else set()
        if stale:
            first = set(stale)

            def write(tmp: str) -> None:
                with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as src, \
                        open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as dst:
                    for line in src:
                        parsed = _parse_series_line(line) if first else None
                        if parsed is not None and parsed[0] in first:
                            first.discard(parsed[0])  # the earlier run's line comes first
                            continue
                        dst.write(line)
            atomic_write(self.path, write)
        if summary is not None:
            with open(self.path, "a", encoding="utf-8", newline="\n") as fh:
                fh.write(event_line(summary))
                fh.flush()
                os.fsync(fh.fileno())
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))


# ----------------------------------------------------------------------------
# Progress with ETA
# ----------------------------------------------------------------------------

def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class StreamProgress:
    """``files done/total, series, rate, ETA`` on stderr: redrawn on a terminal, a line every
    ``line_every_s`` seconds otherwise (logs of batch jobs)."""

    def __init__(self, total_files: int, enabled: bool = True, stream: Optional[IO[str]] = None,
                 line_every_s: float = 10.0):
        self.total = total_files
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else line_every_s
        self.start = time.perf_counter()
        self._last = self.start
        self.files = 0
        self.series = 0

    def text(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.files / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.files) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.files / self.total if self.total else 100.0
        return (f"classify: {self.files}/{self.total} files ({pct:.0f}%), {self.series} series, "
                f"{rate:.0f} files/s, elapsed {_duration(elapsed)}, "
                f"ETA {_duration(eta) if eta == eta else '?'}")

    def update(self, result: PartitionResult) -> None:
        self.files += result.n_files
        self.series += len(result.rows) + result.n_resumed
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every or self.files >= self.total):
            self._last = now
            self.stream.write(("\r" + self.text()) if self.tty else (self.text() + "\n"))
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_stream(results: Iterable[PartitionResult], out: JsonlStream,
               progress: Optional[StreamProgress] = None,
               on_result: Optional[Callable[[PartitionResult], None]] = None) -> dict[str, Any]:
    """Write every result as it comes; the counts and model of the run."""
    n_files, model = 0, {}
    for result in results:
        out.write_result(result)
        n_files += result.n_files
        model = model or result.model_info
        if progress is not None:
            progress.update(result)
        if on_result is not None:
            on_result(result)
    return {"n_files": n_files, "model": model}
