"""One classification session of the module, without Qt or Slicer.

:class:`ClassificationSession` runs ``python -m SeqClassifierLib.app.cli classify
... --format jsonl`` through :class:`~SeqClassifierLib.app.background.BackgroundProcess`,
turns its events into :class:`~SeqClassifierSlicer.review.ReviewRow` objects,
records the predictions in the label store when the run completes, and does
the review actions (confirm, presets, export).  The Slicer module's logic
wraps it and adds what needs Slicer (DICOM database, loading, dependency
installation); thumbnails come from the classifier process (``--thumbnails``); the panel polls :meth:`ClassificationSession.poll`
from a QTimer.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from SeqClassifierLib.app import thumbnails
from SeqClassifierLib.app.background import BackgroundProcess, State
from SeqClassifierLib.curation import label_store as _ls
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.records import ResultRow, SeriesKey, lookup

from . import review, site
from .store_writes import StoreWrites, confirmed_entry

#: Return codes of ``seqclassifier classify`` that produced a result (2: some files skipped,
#: 3: no MR series found).
CLASSIFY_SUCCESS_CODES = (0, 2, 3)
#: Beyond this many characters of paths, the classifier gets the series folders instead of
#: the files (command lines are limited, on Windows to 32767 characters) and the result is
#: filtered to the requested series.
MAX_ARGV_CHARS = 24000
CLI_MODULE = "SeqClassifierLib.app.cli"

log = logging.getLogger("SeqClassifier")


class ClassificationFailed(RuntimeError):
    """The classifier process failed; the message holds its stderr tail."""


def _is_empty_path(path: Any) -> bool:
    return path is None or str(path).strip() in ("", ".")


class ClassificationSession:
    """State of the review panel: the running classifier, the rows, the label store.

    ``python``: interpreter for the classifier (default: this one);
    ``env``: its environment (default: this process's, with ``module_dir`` put first on
    ``PYTHONPATH`` so ``SeqClassifierLib`` is found).
    """

    def __init__(self, store: Optional[LabelStore] = None, python: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, module_dir: Optional[str] = None):
        self.store = store if store is not None else LabelStore()
        self.python = python or sys.executable
        self.module_dir = module_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.env = dict(env) if env is not None else None
        #: Classify with the site memory of the label store (SeqClassifierSlicer.site); False: shipped only.
        self.adapt = True
        self.process: Optional[BackgroundProcess] = None
        #: SeriesKey (patient, study, series UID) -> ReviewRow, in display order.  Methods take a
        #: SeriesKey or a UID (:meth:`key_of`).
        self.rows: dict[SeriesKey, review.ReviewRow] = {}
        #: SeriesInstanceUID -> files, when known (from the DICOM database).
        self.series_files: dict[str, list[str]] = {}
        self.model_trained: Optional[bool] = None
        self.model_info: dict = {}
        self.n_skipped = 0
        self.progress_fraction = 0.0
        self.status_text = ""
        #: What the last confirmation did to the site memory (one line, empty when nothing).
        self.site_note = ""
        self._wanted: Optional[set] = None
        self._pending: list[dict] = []
        self._on_event: Optional[Callable[[dict], None]] = None
        #: SeriesKey -> uint8 thumbnail sent by the classifier process (kept across runs).
        self.thumbnails: dict[SeriesKey, Any] = {}
        #: One line about the run's input for the panel (e.g. the study context read).
        self.input_note = ""
        #: Label-store writes; the panel sets ``writes.wait = False`` (GUI thread: never wait
        #: for the lock, retry from a QTimer, see :mod:`.store_writes`).
        self.writes = StoreWrites(lambda: self.store, wait=True)

    # -- running the classifier ------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        env = dict(self.env) if self.env is not None else dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.module_dir, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        return env

    def command(self, paths: Sequence[str], device: str = "auto", model: Any = None,
                slicer_db: Optional[str] = None) -> list[str]:
        argv = [self.python, "-u", "-m", CLI_MODULE, "classify", *[str(p) for p in paths],
                "--format", "jsonl", "--thumbnails", "--device", device or "auto", "--cache"]
        if slicer_db:
            argv += ["--slicer-db", str(slicer_db)]
        if not _is_empty_path(model):
            argv += ["--model", str(model)]
        return argv + (site.adapt_args(self.store) if self.adapt else [])

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.state is State.RUNNING

    def start(self, files: Union[Sequence[str], Mapping[str, Sequence[str]]], device: str = "auto",
              model: Any = None, on_event: Optional[Callable[[dict], None]] = None,
              wanted: Optional[Iterable[str]] = None, slicer_db: Optional[str] = None) -> BackgroundProcess:
        """Start classifying; ``files``: paths (files/folders) or SeriesInstanceUID -> files.

        ``wanted``: the series to show (default: the keys of ``files``, or every series); the
        others in ``files`` are classified as study context only (sibling series of a study).
        ``slicer_db``: a ``ctkDICOM.sql`` whose every series the classifier process reads itself
        (the whole database, without one query per series here).
        """
        if self.is_running:
            raise RuntimeError("a classification is already running")
        wanted = set(wanted) if wanted is not None else None
        if isinstance(files, Mapping):
            wanted = wanted if wanted is not None else set(files)
            self.series_files.update({uid: list(fs) for uid, fs in files.items()})
            paths = [str(f) for fs in files.values() for f in fs]
            are_files = True  # the database lists files: no need to ask the disk
        else:
            paths = [str(f) for f in files]
            are_files = False
        if not paths and not slicer_db:
            raise ValueError("nothing to classify: no files")
        if sum(len(p) + 1 for p in paths) > MAX_ARGV_CHARS:
            paths = sorted({os.path.dirname(p) if are_files or os.path.isfile(p) else p for p in paths})
        argv = self.command(paths, device, model, slicer_db) if slicer_db else self.command(paths, device, model)
        self.rows = {}
        self._pending = []
        self._wanted = wanted
        self.model_trained = None
        self.model_info = {}
        self.n_skipped = 0
        self.progress_fraction = 0.0
        self.status_text = "Starting the classifier..."
        self._on_event = on_event
        log.info("SeqClassifier: %s", " ".join(argv[:7]) + (" ..." if len(argv) > 7 else ""))
        self.process = BackgroundProcess(argv, env=self.environment(),
                                         success_codes=CLASSIFY_SUCCESS_CODES).start()
        return self.process

    def run(self, files: Union[Sequence[str], Mapping[str, Sequence[str]]], device: str = "auto",
            model: Any = None, on_event: Optional[Callable[[dict], None]] = None,
            wanted: Optional[Iterable[str]] = None, slicer_db: Optional[str] = None) -> list[review.ReviewRow]:
        """Classify and wait (scripts, tests); returns the rows or raises :class:`ClassificationFailed`."""
        process = self.start(files, device, model, on_event, wanted, slicer_db)
        process.wait(on_event=self.handle_event)
        self._raise_if_failed()
        return list(self.rows.values())

    def poll(self) -> list[dict]:
        """Handle the events that arrived (never blocks); raises when the classifier failed."""
        if self.process is None:
            return []
        events = self.process.poll()
        for event in events:
            self.handle_event(event)
        if any(e.get("type") == "finished" for e in events):
            self._raise_if_failed()
        return events

    def cancel(self) -> None:
        if self.is_running:
            self.process.cancel()

    def handle_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "progress":
            total = max(1, int(event.get("total") or 1))
            fraction = min(1.0, float(event.get("done") or 0) / total)
            stage = event.get("stage")
            self.progress_fraction = 0.5 * fraction + (0.5 if stage == "classify" else 0.0)
            self.status_text = ("Reading headers" if stage == "discover" else "Classifying") + \
                f" {event.get('done')}/{event.get('total')}"
        elif kind == "series":
            try:
                row = ResultRow.from_dict(event.get("row"))
            except ValueError as exc:
                log.warning("SeqClassifier: a result row was not understood: %s", exc)
                return
            if self._wanted is None or row.series_uid in self._wanted or row.key in self._wanted:
                self._pending.append(row)
                pixels = thumbnails.decode(event.get("thumbnail"))
                if pixels is not None:
                    self.thumbnails[row.key] = pixels
        elif kind == "skipped":
            self.n_skipped += 1
        elif kind == "summary":
            self.model_info = event.get("model") or {}
            if isinstance(self.model_info, dict) and "trained" in self.model_info:
                self.model_trained = bool(self.model_info["trained"])
        elif kind == "log":
            log.info("SeqClassifier: %s", event.get("text"))
        elif kind == "finished":
            self._finish(event)
        if self._on_event is not None:
            self._on_event(event)

    def _finish(self, event: dict) -> None:
        self.progress_fraction = 1.0
        state = event.get("state")
        if state == State.COMPLETED.value:
            if self._pending:
                results = list(self._pending)
                self.writes.submit(f"{len(results)} predictions", lambda: self.store.record_predictions(results))
            if self.model_trained is None and self._pending:
                self.model_trained = any(r.label is not None for r in self._pending)
            entries = self.writes.entries()
            self.rows = {}
            for row in self._pending:
                r = review.ReviewRow.from_result_row(row, lookup(entries, row.key), self.thumbnails.get(row.key))
                self.rows[r.key] = r
            self.status_text = (review.status_text(list(self.rows.values()), self.model_trained, self.n_skipped)
                                if self.rows else "No MR series found in the input.")
        elif state == State.CANCELLED.value:
            self.status_text = "Classification cancelled."
        else:
            self.status_text = "Classification failed."

    def _raise_if_failed(self) -> None:
        if self.process is not None and self.process.state is State.FAILED:
            raise ClassificationFailed(f"the classifier failed: {self.process.message}")

    # -- review ----------------------------------------------------------------------------------
    def key_of(self, series: Union[SeriesKey, str]) -> SeriesKey:
        """A SeriesKey as it is; a UID: the key of the shown row of that UID (the Slicer database
        holds a UID once), else the UID alone (:meth:`SeriesKey.of_uid`).  A UID shown for several
        patients or studies is a ValueError: give the key."""
        if isinstance(series, SeriesKey):
            return series
        matches = [k for k in self.rows if k.series_uid == series]
        if len(matches) > 1:
            raise ValueError(f"SeriesInstanceUID {series} is shown for {len(matches)} patients/studies; "
                             "give its SeriesKey")
        return matches[0] if matches else SeriesKey.of_uid(series)

    def row_of(self, series: Union[SeriesKey, str]) -> Optional[review.ReviewRow]:
        return self.rows.get(self.key_of(series))

    def thumbnail_of(self, series: Union[SeriesKey, str]) -> Any:
        key = self.key_of(series)
        if key.uid_only:  # not shown: the one thumbnail of that UID, if only one
            found = [v for k, v in self.thumbnails.items() if k.series_uid == key.series_uid]
            return found[0] if len(found) == 1 else None
        return self.thumbnails.get(key)

    def show_stored(self, series: Iterable[Union[SeriesKey, str]]) -> list[review.ReviewRow]:
        """Rows for these series (keys, or UIDs: every stored series of the UID) from the label store
        alone (no model run)."""
        entries = self.writes.entries()
        wanted = [SeriesKey.coerce(s) for s in series]
        self.rows = {}
        for key in wanted:
            found = [key] if key in entries else \
                [k for k in entries if k.series_uid == key.series_uid] if key.uid_only else []
            for k in found:
                self.rows[k] = review.ReviewRow.from_store_entry(entries[k])
        for key, row in self.rows.items():
            row.thumbnail = self.thumbnails.get(key)
        self.model_trained = None
        self.n_skipped = 0
        return list(self.rows.values())

    def review_rows(self, only_labels: str = "", shipped: bool = False) -> list[review.ReviewRow]:
        """Rows, optionally only those whose label is in the comma-separated ``only_labels``;
        ``shipped``: as the shipped model answered, without the site memory."""
        rows = site.shipped_rows(list(self.rows.values())) if shipped else list(self.rows.values())
        return [r for r in rows if row_shown(r, only_labels)]

    def model_status_text(self, shipped: bool = False) -> str:
        rows = list(self.rows.values())
        if not rows:
            return "No series to review: classify, or select series classified before."
        text = review.status_text(rows, self.model_trained, self.n_skipped)
        adapted = site.status_text(self.store, shipped) if self.adapt else ""
        return f"{text} {adapted}" if adapted else text

    def preset_selection(self, preset: str) -> set[str]:
        return review.select_preset(list(self.rows.values()), preset)

    def _series_info(self, key: SeriesKey) -> dict:
        row = self.rows.get(key)
        if row is None:
            return {}
        return {"series_dir": row.folder, "description": row.description, "series_number": row.series_number,
                "plane": row.plane}

    def confirm_label(self, series: Union[SeriesKey, str], label: Any, user: Optional[str] = None):
        """Record a person's label (None withdraws the confirmation); returns the store entry
        (the provisional one while the store is locked and the write waits, see ``writes``)."""
        key = self.key_of(series)
        target = key if not key.uid_only else key.series_uid  # a UID not shown: the store resolves it
        info = self._series_info(key)
        who = user or _ls._current_user()
        value = _ls._label_value(label)
        if info.get("series_dir"):
            self.store._check_location([info["series_dir"]])
        when = _ls._now()
        done, entry = self.writes.submit(
            f"{label or 'no label'} for series {key.series_uid}",
            lambda: self.store.confirm(target, value, user=who, **info),
            lambda: {key: confirmed_entry(lookup(self.writes.entries(), key), key, value, who, when, **info)})
        entry = entry if done else self.writes.provisional[key]
        if key in self.rows:
            self.rows[key].apply_entry(entry)
        if done:
            self.site_note = site.after_confirmation(self.store, [key.series_uid])  # the next run learns it
        return entry

    def confirm_all(self, series: Iterable[Union[SeriesKey, str]], user: Optional[str] = None) -> tuple[int, int]:
        """Confirm the shown label (confirmed, else predicted) of each series.

        Returns (number confirmed, number left out because they have no label).
        """
        keys = [self.key_of(s) for s in series]
        labels = {k: self.rows[k].label for k in keys if k in self.rows and self.rows[k].label}
        n = 0
        if labels:
            who, now = user or _ls._current_user(), _ls._now()

            def provisional():
                current = self.writes.entries()
                return {k: confirmed_entry(lookup(current, k), k, _ls._label_value(v), who, now)
                        for k, v in labels.items()}

            done, result = self.writes.submit(f"{len(labels)} confirmations",
                                              lambda: self.store.confirm_many(labels, user=who), provisional)
            n = result if done else len(labels)
        if labels and n:
            self.site_note = site.after_confirmation(self.store, [k.series_uid for k in labels])
        entries = self.writes.entries()
        for key in labels:
            self.rows[key].apply_entry(lookup(entries, key))
        return n, len(keys) - len(labels)

    def export_labels(self, path: str, confirmed_only: bool = False) -> int:
        """CSV in the training format, or JSON when ``path`` ends in ``.json``."""
        if str(path).lower().endswith(".json"):
            return self.store.export_json(path, confirmed_only=confirmed_only)
        return self.store.export_csv(path, confirmed_only=confirmed_only)

    def label_of(self, series: Union[SeriesKey, str]) -> Optional[str]:
        key = self.key_of(series)
        row = self.rows.get(key)
        if row is not None:
            return row.label
        entry = lookup(self.writes.entries(), key)
        return entry.label if entry is not None else None


def row_shown(row: review.ReviewRow, only_labels: str = "") -> bool:
    """Whether the panel shows ``row`` under the label filter ``only_labels`` ("T2w,DWI"; empty: all)."""
    wanted = {s.strip().lower() for s in (only_labels or "").split(",") if s.strip()}
    return not wanted or (row.label or "").lower() in wanted
