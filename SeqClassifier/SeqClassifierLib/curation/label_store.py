"""The label store: what the classifier said and what the radiologist confirmed.

One JSON file in a user-visible location (never inside a DICOM input
folder), one entry per series, each series known by its
:class:`~SeqClassifierLib.records.SeriesKey` (PatientID, StudyInstanceUID,
SeriesInstanceUID: a UID repeated under another patient never shares a
label)::

    {
      "schema": "seqclassifier-labels",
      "version": 2,
      "series": [
        {
          "patient_id": "P1", "study_uid": "...", "series_uid": "...",
          "predicted_label": "T2w" | null,   # null: untrained model, no label invented
          "confidence": 0.97 | null,
          "probabilities": {"T2w": 0.97, ...},
          "needs_review": false,
          "model": "seqclassifier-v1",       # model that made the prediction
          "predicted_at": "2026-01-01T12:00:00+00:00",
          "note": "",
          "confirmed_label": "T2w" | null,    # set by a person; never overwritten by a new prediction
          "confirmed_by": "jdoe" | null,
          "confirmed_at": "..." | null,
          "series_dir": "/data/P1/S4",         # for export in the training format
          "description": "t2_tse_tra", "series_number": 4, "plane": "axial"
        }
      ]
    }

Version 1 stores (``"series"``: an object keyed by SeriesInstanceUID) are read
as they are, each entry under (its ``patient_id``, its ``study_uid``, the UID),
and written as version 2 on the next change.  A series known by its UID only
(``patient_id`` and ``study_uid`` empty: a label confirmed from a training CSV)
stands for that UID under any patient and study
(:func:`SeqClassifierLib.records.lookup`).  Methods take a ``SeriesKey``; a
bare UID is accepted when the store holds at most one series of that UID
(else :class:`LabelStoreError`: give the key).

Location: ``$SEQCLASSIFIER_HOME/labels.json`` when that variable is set, else
the platform's user data folder (``$XDG_DATA_HOME`` or
``~/.local/share/SeqClassifier`` on Linux, ``%APPDATA%\\SeqClassifier`` on
Windows, ``~/Library/Application Support/SeqClassifier`` on macOS).

Concurrency and safety:

* every change takes an exclusive lock (``labels.json.lock`` beside the
  store; ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), re-reads
  the file, applies the change and writes it back (merge-on-write), so
  several processes (Slicer, command line, a second Slicer) never lose each
  other's updates;
* writes are atomic: a temporary file in the same folder is written, flushed
  and fsynced, then renamed over the store with :func:`os.replace`, then the
  folder is fsynced: a reader sees the old or the new content, never a mix;
* the store never lies in a source: :func:`SeqClassifierLib.safe_paths.check_writable`
  decides, for the ``sources`` given to the store (the command line's
  inputs, a Slicer database and its file list) and for the folder of every
  series recorded; a store path that is a folder (or not a regular file) is a
  one-line :class:`LabelStoreError`, nothing is moved or created;
* every value read is checked by type and range (labels known, confidence
  and probabilities finite numbers in [0, 1], texts are text, series numbers
  integers); the file is read only up to :data:`MAX_STORE_BYTES`, and JSON
  nested deeper than Python can parse counts as damaged;
* a damaged store (invalid JSON, wrong schema) is moved aside to
  ``labels.json.corrupt-<timestamp>`` and reported: with ``on_corrupt="raise"``
  as :class:`CorruptLabelStoreError`, with ``"warn"`` (default) as a
  :class:`LabelStoreWarning` (``warnings.warn`` and :attr:`LabelStore.warnings`)
  while the operation goes on with an empty store.  Nothing is silently lost.

Exports: :meth:`LabelStore.export_csv` writes exactly the training format
``series_dir,SeriesInstanceUID,label,SeriesDescription,note`` (label =
confirmed label when set, else the prediction); :meth:`LabelStore.export_json`
writes the whole store.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as _dt
import getpass
import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import math
import stat

from SeqClassifierLib.curation.file_lock import file_lock
from SeqClassifierLib.atomic import atomic_write_text, fsync_dir as _fsync_dir
from SeqClassifierLib.config import HOME_ENV, label_store_dir, user_data_dir  # noqa: F401  (user_data_dir: API)
from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.records import ResultRow, SeriesKey, lookup
from SeqClassifierLib.safe_paths import Sources, UnsafeTargetError, check_writable

SCHEMA = "seqclassifier-labels"
SCHEMA_VERSION = 2
STORE_FILENAME = "labels.json"
#: Header of the training CSV (same as ``shared/data/*/labels.csv``).
CSV_FIELDS = ("series_dir", "SeriesInstanceUID", "label", "SeriesDescription", "note")

PathLike = Union[str, os.PathLike]
#: A store larger than this is refused as damaged (about 200,000 series at ~1 KB each).
MAX_STORE_BYTES = 256 * 1024 * 1024
_TEXT_FIELDS = ("model", "predicted_at", "note", "confirmed_by", "confirmed_at", "series_dir", "description",
                "patient_id", "study_uid", "plane", "group")


class LabelStoreError(Exception):
    """Base class of label store errors."""


class CorruptLabelStoreError(LabelStoreError):
    """The store file was damaged; it has been moved aside to :attr:`moved_to`."""

    def __init__(self, path: str, moved_to: Optional[str], reason: str):
        self.path = path
        self.moved_to = moved_to
        self.reason = reason
        where = f"; moved aside to {moved_to}" if moved_to else ""
        super().__init__(f"label store {path} is damaged ({reason}){where}")


class LabelStoreWriteError(LabelStoreError, OSError):
    """The store could not be written (full disk, read-only folder); the old store is untouched."""


class LabelStoreWarning(UserWarning):
    """A damaged store was moved aside and an empty store started."""


class LockTimeout(LabelStoreError, TimeoutError):
    """The store lock could not be taken in time."""


def default_store_path() -> Path:
    """``$SEQCLASSIFIER_HOME/labels.json`` or ``<user data dir>/labels.json``."""
    return label_store_dir() / STORE_FILENAME


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _label_value(label: Any) -> Optional[str]:
    if label is None or label == "":
        return None
    if isinstance(label, SequenceLabel):
        return label.value
    return SequenceLabel.parse(str(label)).value


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers, services)
        return "unknown"


@dataclass
class LabelEntry:
    """What the store knows about one series."""

    series_uid: str
    predicted_label: Optional[str] = None
    confidence: Optional[float] = None
    probabilities: dict[str, float] = field(default_factory=dict)
    needs_review: bool = False
    review_reasons: list[str] = field(default_factory=list)
    group: str = ""
    model: str = ""
    predicted_at: Optional[str] = None
    note: str = ""
    confirmed_label: Optional[str] = None
    confirmed_by: Optional[str] = None
    confirmed_at: Optional[str] = None
    series_dir: str = ""
    description: str = ""
    patient_id: str = ""
    study_uid: str = ""
    series_number: Optional[int] = None
    plane: str = ""

    @property
    def key(self) -> SeriesKey:
        """The series' identity (patient, study, series UID)."""
        return SeriesKey(self.patient_id or "", self.study_uid or "", self.series_uid)

    @property
    def label(self) -> Optional[str]:
        """The label to use: the confirmed one when set, else the prediction (may be None)."""
        return self.confirmed_label or self.predicted_label

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_label is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, uid: str, data: Mapping[str, Any]) -> "LabelEntry":
        """An entry from its JSON form; every field checked by type and range (ValueError naming it)."""
        if not isinstance(uid, str) or not uid or len(uid) > 1024:
            raise ValueError(f"series key {str(uid)[:80]!r} is not a SeriesInstanceUID")
        if not isinstance(data, Mapping):
            raise ValueError(f"entry {uid!r} is not an object")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["series_uid"] = uid
        for key in ("predicted_label", "confirmed_label"):
            if kwargs.get(key) is not None:
                if not isinstance(kwargs[key], str):
                    raise ValueError(f"entry {uid!r}: {key} is not text")
                kwargs[key] = _label_value(kwargs[key])  # raises ValueError on an unknown label
        for key in _TEXT_FIELDS:
            v = kwargs.get(key)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"entry {uid!r}: {key} is not text")
        for key in ("model", "note", "series_dir", "description", "patient_id", "study_uid", "plane", "group"):
            if kwargs.get(key) is None and key in kwargs:
                kwargs[key] = ""
        probs = kwargs.get("probabilities") or {}
        if not isinstance(probs, Mapping):
            raise ValueError(f"entry {uid!r}: probabilities is not an object")
        kwargs["probabilities"] = {str(k): _unit(v, uid, f"probability of {k}") for k, v in probs.items()}
        if kwargs.get("confidence") is not None:
            kwargs["confidence"] = _unit(kwargs["confidence"], uid, "confidence")
        if kwargs.get("series_number") is not None:
            n = kwargs["series_number"]
            if isinstance(n, bool) or not isinstance(n, int) or abs(n) > 2 ** 31:
                raise ValueError(f"entry {uid!r}: series_number is not a 32-bit integer")
        if not isinstance(kwargs.get("needs_review", False), bool):
            raise ValueError(f"entry {uid!r}: needs_review is not true/false")
        reasons = kwargs.get("review_reasons") or []
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ValueError(f"entry {uid!r}: review_reasons is not a list of texts")
        kwargs["review_reasons"] = list(reasons)
        return cls(**kwargs)


def _unit(value: Any, uid: str, what: str) -> Optional[float]:
    """A probability-like number: finite, in [0, 1] (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"entry {uid!r}: {what} is not a number")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"entry {uid!r}: {what} {value!r} is not in [0, 1]")
    return v


def _validate(data: Any) -> dict[SeriesKey, LabelEntry]:
    """Parsed JSON -> entries; ValueError with the reason when the schema is wrong."""
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"bad version {version!r}")
    if version > SCHEMA_VERSION:
        raise ValueError(f"version {version} is newer than this SeqClassifier understands ({SCHEMA_VERSION})")
    series = data.get("series")
    if version == 1:  # keyed by SeriesInstanceUID: each entry under its own patient and study
        if not isinstance(series, dict):
            raise ValueError("'series' is not an object")
        entries = [LabelEntry.from_dict(uid, entry) for uid, entry in series.items()]
    else:
        if not isinstance(series, list):
            raise ValueError("'series' is not a list")
        entries = []
        for entry in series:
            if not isinstance(entry, Mapping):
                raise ValueError("an entry of 'series' is not an object")
            entries.append(LabelEntry.from_dict(entry.get("series_uid"), entry))
    out: dict[SeriesKey, LabelEntry] = {}
    for e in entries:
        if e.key in out:
            raise ValueError(f"series {e.key.short()} is listed twice")
        out[e.key] = e
    return out


def _serialise(entries: Mapping[SeriesKey, LabelEntry]) -> str:
    doc = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "updated_at": _now(),
        "series": [entries[key].to_dict() for key in sorted(entries)],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _folder_of(files: Sequence[str]) -> str:
    if not files:
        return ""
    folders = {os.path.dirname(os.path.abspath(f)) for f in files}
    return folders.pop() if len(folders) == 1 else os.path.commonpath(sorted(folders))


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class LabelStore:
    """A JSON label store shared safely between processes.

    ``path``: the store file (default :func:`default_store_path`).
    ``on_corrupt``: ``"warn"`` (move aside, warn, go on empty) or ``"raise"``
    (move aside, raise :class:`CorruptLabelStoreError`).
    """

    def __init__(self, path: Optional[PathLike] = None, *, on_corrupt: str = "warn",
                 lock_timeout: float = 30.0, sources: Optional[Sources] = None):
        if on_corrupt not in ("warn", "raise"):
            raise ValueError("on_corrupt must be 'warn' or 'raise'")
        self.path = Path(path).expanduser() if path else default_store_path()
        self.path = Path(os.path.abspath(self.path))
        #: Sources of the run; the store (and its lock, temp and quarantine files beside it) never lies in one.
        self.sources = sources if sources is not None else Sources()
        self._check_location([])
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.on_corrupt = on_corrupt
        self.lock_timeout = lock_timeout
        #: Damage reports (:class:`CorruptLabelStoreError`) since the last :meth:`pop_warnings`.
        self.warnings: list[CorruptLabelStoreError] = []

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    # -- low level -----------------------------------------------------------------------------
    def _ensure_folder(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabelStoreError(f"label store {self.path}: cannot create its folder: "
                                  f"{exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_folder()
        with file_lock(self.lock_path, timeout=self.lock_timeout, timeout_error=LockTimeout,
                       open_error=LabelStoreError):
            yield

    def _read_raw(self) -> tuple[Optional[dict[SeriesKey, LabelEntry]], Optional[str]]:
        """(entries, None) when readable, (None, reason) when damaged; missing file -> ({}, None)."""
        self._check_kind()
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_STORE_BYTES + 1)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise LabelStoreError(f"label store {self.path}: cannot read: {exc.strerror or exc}") from None
        if len(raw) > MAX_STORE_BYTES:
            return None, f"larger than {MAX_STORE_BYTES // (1024 * 1024)} MB"
        if not raw.strip():
            return None, "empty file"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return None, f"invalid JSON: {exc}"
        except RecursionError:
            return None, "invalid JSON: nested too deeply"
        try:
            return _validate(data), None
        except (ValueError, TypeError, OverflowError) as exc:
            return None, f"wrong schema: {exc}"
        except RecursionError:
            return None, "wrong schema: nested too deeply"

    def _check_kind(self) -> None:
        """The store path is a regular file or missing; anything else is a one-line error (nothing moved)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if os.path.islink(self.path):
                raise LabelStoreError(f"label store {self.path} is a symbolic link to a missing file") from None
            return
        except OSError as exc:
            raise LabelStoreError(f"label store {self.path}: cannot open: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            raise LabelStoreError(f"label store {self.path} is a folder, not a file; "
                                  f"give a file path (e.g. {self.path / STORE_FILENAME})")
        if not stat.S_ISREG(st.st_mode):
            raise LabelStoreError(f"label store {self.path} is not a regular file; not read")

    def _quarantine(self, reason: str) -> dict[SeriesKey, LabelEntry]:
        """Called under the lock: move the damaged file aside and report it."""
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        moved_to: Optional[str]
        try:
            os.replace(self.path, target)
            _fsync_dir(self.path.parent)
            moved_to = str(target)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LabelStoreError(f"label store {self.path} is damaged ({reason}) and cannot be moved aside: "
                                  f"{exc.strerror or exc}") from None
        error = CorruptLabelStoreError(str(self.path), moved_to, reason)
        self.warnings.append(error)
        if self.on_corrupt == "raise":
            raise error
        warnings.warn(str(error), LabelStoreWarning, stacklevel=4)
        return {}

    def _load_locked(self) -> dict[SeriesKey, LabelEntry]:
        entries, reason = self._read_raw()
        if entries is None:
            return self._quarantine(reason or "unreadable")
        return entries

    #: Temporary files of writers that died mid-write are removed after this long.
    STALE_TEMP_SECONDS = 600

    def _remove_stale_temps(self) -> None:
        """Delete ``.labels.json.*.tmp`` left by killed writers (called under the lock)."""
        now = time.time()
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                if now - tmp.stat().st_mtime > self.STALE_TEMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass

    def _update(self, change: Callable[[dict[SeriesKey, LabelEntry]], Any]) -> Any:
        """Merge-on-write: lock, re-read, apply ``change`` in place, write atomically."""
        with self._locked():
            entries = self._load_locked()
            result = change(entries)
            try:
                atomic_write_text(self.path, _serialise(entries))
            except OSError as exc:  # full disk, read-only folder ...: the old store is untouched
                raise LabelStoreWriteError(f"label store {self.path}: cannot write: {exc.strerror or exc}") from None
            self._remove_stale_temps()
            return result

    def load(self) -> dict[SeriesKey, LabelEntry]:
        """All entries by :class:`~SeqClassifierLib.records.SeriesKey` (a damaged store is moved aside and reported)."""
        entries, reason = self._read_raw()
        if entries is not None:
            return entries
        with self._locked():  # re-check under the lock: a writer may just have fixed it
            return self._load_locked()

    def pop_warnings(self) -> list[CorruptLabelStoreError]:
        """Damage reports collected so far (and forget them)."""
        out, self.warnings = self.warnings, []
        return out

    # -- queries ---------------------------------------------------------------------------------
    def get(self, key: Union[SeriesKey, str]) -> Optional[LabelEntry]:
        """The entry of a series (a key, or a UID the store holds once), or None."""
        entries = self.load()
        return lookup(entries, _resolve(entries, key))

    def all(self) -> list[LabelEntry]:
        """Every entry, sorted by patient, study, series number, UID."""
        entries = list(self.load().values())
        entries.sort(key=lambda e: (e.patient_id, e.study_uid,
                                    e.series_number if e.series_number is not None else 1 << 30,
                                    e.series_uid))
        return entries

    def confirmed_labels(self) -> dict[SeriesKey, SequenceLabel]:
        """SeriesKey -> confirmed label, for series a person confirmed (look up with
        :func:`~SeqClassifierLib.records.lookup`: a key without patient and study stands for its UID)."""
        return {key: SequenceLabel(e.confirmed_label) for key, e in self.load().items()
                if e.confirmed_label is not None}

    def labels(self) -> dict[SeriesKey, SequenceLabel]:
        """SeriesKey -> label to use (confirmed, else predicted), where there is one."""
        return {key: SequenceLabel(e.label) for key, e in self.load().items() if e.label is not None}

    def __len__(self) -> int:
        return len(self.load())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (SeriesKey, str)):
            return False
        return self.get(key) is not None

    # -- changes ---------------------------------------------------------------------------------
    def _check_location(self, folders: Iterable[str]) -> None:
        """The one source check (:mod:`SeqClassifierLib.safe_paths`) for the store's folder.

        The folder is checked (not only the file): the lock, temporary and
        quarantine files lie beside the store.
        """
        sources = Sources()
        sources.folders.update(self.sources.folders)
        sources.files.update(self.sources.files)
        for folder in folders:
            if folder:
                sources.add_folder(folder, f"the DICOM input folder {folder}")
        try:
            check_writable(self.path.parent, sources, f"the label store {self.path} (its folder)")
            check_writable(self.path, sources, "the label store")
        except UnsafeTargetError as exc:
            raise LabelStoreError(f"{exc} (set {HOME_ENV} elsewhere)") from None

    def record_predictions(self, rows: Sequence[ResultRow], model: Optional[str] = None) -> int:
        """Store the predictions of these result rows; confirmed labels are kept.

        Returns the number of series stored.  ``model`` overrides the model name
        recorded with each prediction.
        """
        items = [_item_from_row(r) for r in rows]
        self._check_location(item["series_dir"] for item in items)
        now = _now()

        def change(entries: dict[SeriesKey, LabelEntry]) -> int:
            for item in items:
                key = item["key"]
                entry = entries.get(key) or _new_entry(key)
                entry.predicted_label = item["predicted_label"]
                entry.confidence = item["confidence"]
                entry.probabilities = item["probabilities"]
                entry.needs_review = item["needs_review"]
                entry.review_reasons = item["review_reasons"]
                entry.group = item["group"]
                entry.model = model if model is not None else item["model"]
                entry.note = item["note"]
                entry.predicted_at = now
                for name in ("series_dir", "description", "series_number", "plane"):
                    value = item[name]
                    if value not in (None, ""):
                        setattr(entry, name, value)
                entries[key] = entry
            return len(items)

        return self._update(change)

    def confirm(self, key: Union[SeriesKey, str], label: Union[SequenceLabel, str, None],
                user: Optional[str] = None, **info: Any) -> LabelEntry:
        """Record a person's label for a series (``label=None`` withdraws the confirmation).

        ``key``: the series' :class:`~SeqClassifierLib.records.SeriesKey`, or its UID (then
        ``info``'s ``patient_id`` and ``study_uid`` complete the key; without them, the one series
        of that UID in the store, else the UID alone).  The series need not have a prediction;
        ``info`` may give ``series_dir``, ``description``, ``patient_id``, ``study_uid``,
        ``series_number``, ``plane``.
        """
        value = _label_value(label)
        who = user or _current_user()
        unknown = set(info) - {"series_dir", "description", "patient_id", "study_uid", "series_number", "plane"}
        if unknown:
            raise TypeError(f"unknown series info: {', '.join(sorted(unknown))}")
        if info.get("series_dir"):
            self._check_location([info["series_dir"]])

        def change(entries: dict[SeriesKey, LabelEntry]) -> LabelEntry:
            k = _resolve(entries, key, info.get("patient_id"), info.get("study_uid"))
            entry = entries.get(k) or _new_entry(k)
            entry.confirmed_label = value
            entry.confirmed_by = who if value is not None else None
            entry.confirmed_at = _now() if value is not None else None
            for name, v in info.items():
                if v not in (None, "") and name not in ("patient_id", "study_uid"):  # those are the key's
                    setattr(entry, name, v)
            entries[k] = entry
            return dataclasses.replace(entry)

        return self._update(change)

    def confirm_many(self, labels: Mapping[Union[SeriesKey, str], Union[SequenceLabel, str]],
                     user: Optional[str] = None) -> int:
        """Confirm several series (keys, or UIDs as in :meth:`confirm`) in one locked write.
        Returns how many were confirmed."""
        values = [(key, _label_value(label)) for key, label in labels.items()]
        who = user or _current_user()
        now = _now()

        def change(entries: dict[SeriesKey, LabelEntry]) -> int:
            for key, value in values:
                k = _resolve(entries, key)
                entry = entries.get(k) or _new_entry(k)
                entry.confirmed_label = value
                entry.confirmed_by = who if value is not None else None
                entry.confirmed_at = now if value is not None else None
                entries[k] = entry
            return len(values)

        return self._update(change)

    def remove(self, key: Union[SeriesKey, str]) -> bool:
        """Forget a series (a key, or a UID the store holds once).  Returns whether it was there."""
        return self._update(lambda entries: entries.pop(_resolve(entries, key), None) is not None)

    # -- export ----------------------------------------------------------------------------------
    def csv_text(self, confirmed_only: bool = False, relative_to: Optional[PathLike] = None) -> str:
        """The store in the training CSV format (see :data:`CSV_FIELDS`).

        ``label`` is the confirmed label when set, else the prediction; series
        without any label are left out.  ``confirmed_only`` keeps confirmed
        series only.  ``relative_to``: write ``series_dir`` relative to this
        folder (with ``/``) when the series lies inside it, as the shared
        ``labels.csv`` files do.
        """
        root = Path(os.path.abspath(relative_to)) if relative_to else None
        buf = io.StringIO()
        writer = csv.writer(buf)  # default dialect: minimal quoting, CRLF (as the shared labels.csv)
        writer.writerow(CSV_FIELDS)
        for e in self.all():
            label = e.confirmed_label if confirmed_only else e.label
            if label is None:
                continue
            series_dir = e.series_dir
            if root is not None and series_dir:
                p = Path(os.path.abspath(series_dir))
                if _is_inside(p, root):
                    series_dir = p.relative_to(root).as_posix() or "."
            writer.writerow([series_dir, e.series_uid, label, e.description, e.note])
        return buf.getvalue()

    def export_csv(self, path: PathLike, confirmed_only: bool = False,
                   relative_to: Optional[PathLike] = None) -> int:
        """Write :meth:`csv_text` to ``path`` atomically.  Returns the number of rows."""
        text = self.csv_text(confirmed_only=confirmed_only, relative_to=relative_to)
        atomic_write_text(path, text)
        return max(0, len(text.splitlines()) - 1)

    def export_json(self, path: PathLike, confirmed_only: bool = False) -> int:
        """Write the store (or its confirmed series) as JSON to ``path`` atomically."""
        entries = {e.key: e for e in self.all() if not confirmed_only or e.is_confirmed}
        atomic_write_text(path, _serialise(entries))
        return len(entries)


def _enum_value(v: Any) -> Any:
    return getattr(v, "value", v)


def _item_from_row(row: ResultRow) -> dict[str, Any]:
    if not isinstance(row, ResultRow):
        raise TypeError(f"record_predictions takes ResultRow objects, not {type(row).__name__}")
    return {
        "key": row.key,
        "predicted_label": row.label,
        "confidence": row.confidence,
        "probabilities": {k: float(v) for k, v in (row.probabilities or {}).items() if v is not None},
        "needs_review": bool(row.needs_review),
        "review_reasons": list(row.review_reasons),
        "group": row.group,
        "model": row.model,
        "note": row.note,
        "series_dir": row.folder or _folder_of(row.files),
        "description": row.description,
        "series_number": row.series_number,
        "plane": row.plane,
    }


def _new_entry(key: SeriesKey) -> LabelEntry:
    return LabelEntry(series_uid=key.series_uid, patient_id=key.patient_id, study_uid=key.study_uid)


def _resolve(entries: Mapping[SeriesKey, LabelEntry], key: Union[SeriesKey, str],
             patient_id: Optional[str] = None, study_uid: Optional[str] = None) -> SeriesKey:
    """The key a method means: a SeriesKey as it is; a bare UID with ``patient_id`` / ``study_uid``
    completed by them, else the store's one series of that UID, else the UID alone
    (:meth:`SeriesKey.of_uid`).  Several series of that UID: LabelStoreError (give the key)."""
    if isinstance(key, SeriesKey):
        return key
    if isinstance(key, tuple):
        return SeriesKey.coerce(key)
    if not isinstance(key, str):
        raise TypeError(f"a series key or SeriesInstanceUID, not {type(key).__name__}")
    if patient_id or study_uid:
        return SeriesKey(patient_id or "", study_uid or "", key)
    matches = [k for k in entries if k.series_uid == key]
    if len(matches) > 1:
        raise LabelStoreError(f"SeriesInstanceUID {key} is in the label store under "
                              f"{len(matches)} patients/studies; give its SeriesKey (patient, study, UID)")
    return matches[0] if matches else SeriesKey.of_uid(key)
