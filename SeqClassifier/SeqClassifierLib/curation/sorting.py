"""Copy (or link) chosen series into a tidy folder tree, by label.

:func:`sort_series` writes::

    DEST/
      <patient>/                              PatientID (or "unknown-patient")
        <study>/                              <StudyDate or "nodate">_<8 hex of sha1(StudyInstanceUID)>
          <label>_<plane>_<series number>/    e.g. T2w_axial_4, DWI_axial_7, ADC_axial_8
            <original file names>

* ``label`` is the confirmed label from ``labels``
  (:class:`~SeqClassifierLib.records.SeriesKey` -> label, e.g.
  :meth:`~.label_store.LabelStore.confirmed_labels`; a key without patient and
  study, or a bare UID, stands for that UID under any patient) when given for
  that series, else the predicted label; series without any label go to
  ``unlabeled_<plane>_<number>``.
* ``plane`` is axial/sagittal/coronal/unknown; a missing series number
  becomes ``x<6 hex of the series UID hash>``; two series that would get the
  same folder are told apart with ``_2``, ``_3`` ...
* every folder name is made safe: only ``A-Z a-z 0-9 . _ -`` (others become
  ``_``), no leading dot, no Windows reserved names (``CON``, ``NUL``,
  ``COM1`` ...), at most 64 characters.
* files keep their base names (``name_2.ext`` if two files of a series share
  one).

Sources are only read (``link=True``: absolute symbolic links instead of
copies).  A copy is written to a temporary name beside its target
(``.<name>.<random>.sorttmp``), fsynced, given the source's times and mode
(as :func:`shutil.copy2`), then linked to its final name (``os.link``: fails
instead of overwriting; ``os.replace`` where the file system has no hard
links) and the folder fsynced: a full disk or a crash never leaves a
truncated file under a final name.  Temporary files left by a killed run are
removed by the next run into the same folder.

Where writing is allowed is decided by the one source check,
:func:`SeqClassifierLib.safe_paths.check_writable`: ``DEST`` inside a source
folder (or containing one) is refused, and so is every series folder that
resolves into a source (a symbolic link inside ``DEST``), as is any target
that would be a source file; ``DEST`` (or a folder on the way) that is a
file is refused in one line.  An existing different target file is never
overwritten (it is reported as a conflict), an identical one (same size and
modification time) is skipped.  A source file that cannot be read is listed
in :attr:`SortSummary.failed` and the sort goes on; a destination that cannot
be written (full disk, read-only) stops the sort with :class:`SortError`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

from SeqClassifierLib.labels import Plane, SequenceLabel
from SeqClassifierLib.atomic import fsync_dir
from SeqClassifierLib.records import ResultRow, SeriesKey, lookup
from SeqClassifierLib.safe_paths import Sources, UnsafeTargetError, check_writable

PathLike = Union[str, os.PathLike]
UNLABELED = "unlabeled"
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
TEMP_SUFFIX = ".sorttmp"
#: Temporary copies older than this (seconds) are from a killed run and are removed.
STALE_TEMP_SECONDS = 600
_CHUNK = 1 << 20


class SortError(ValueError):
    """The sort cannot be done safely (e.g. destination inside a source folder)."""


def safe_name(text: Any, fallback: str = "unknown", max_len: int = 64) -> str:
    """A folder name that is valid and harmless on every platform."""
    s = _UNSAFE.sub("_", str(text if text is not None else ""))
    s = re.sub(r"\.{2,}", "_", s)  # no ".." anywhere
    s = re.sub(r"_+", "_", s).strip("._ ")
    if not s:
        s = fallback
    if s.split(".")[0].upper() in _RESERVED:
        s = "_" + s
    if len(s) > max_len:
        digest = hashlib.sha1(s.encode("utf-8")).hexdigest()[:6]
        s = s[: max_len - 7].rstrip("._-") + "_" + digest
    return s


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def study_folder_name(study_date: str, study_uid: str) -> str:
    date = re.sub(r"[^0-9]", "", study_date or "") or "nodate"
    return safe_name(f"{date}_{_short_hash(study_uid or '', 8)}")


def series_folder_name(label: Optional[str], plane: Optional[str], series_number: Optional[int],
                       series_uid: str) -> str:
    number = str(series_number) if series_number is not None else "x" + _short_hash(series_uid, 6)
    return safe_name(f"{label or UNLABELED}_{plane or Plane.UNKNOWN.value}_{number}")


@dataclass
class SortedSeries:
    series_uid: str
    label: Optional[str]
    plane: str
    folder: str
    n_files: int
    source_folder: str


@dataclass
class SortSummary:
    """What :func:`sort_series` did."""

    dest: str
    link: bool
    series: list[SortedSeries] = field(default_factory=list)
    n_files: int = 0
    n_existing: int = 0
    #: (series_uid, reason) of series left out (filtered out or without files).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: target paths that exist with different content and were not overwritten.
    conflicts: list[str] = field(default_factory=list)
    #: (source file, reason) of files that could not be read; the sort went on without them.
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_series(self) -> int:
        return len(self.series)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_series"] = self.n_series
        return d


@dataclass
class _Item:
    series_uid: str
    files: list[str]
    label: Optional[str]
    plane: str
    series_number: Optional[int]
    patient_id: str
    study_uid: str
    study_date: str


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def _label_text(label: Any) -> Optional[str]:
    if label is None or label == "":
        return None
    return SequenceLabel.parse(str(_value(label))).value


def _items(rows: Iterable[ResultRow]) -> list[_Item]:
    out = []
    for row in rows:
        if not isinstance(row, ResultRow):
            raise TypeError(f"sort_series takes ResultRow objects, not {type(row).__name__}")
        out.append(_Item(
            series_uid=row.series_uid, files=list(row.files), label=_label_text(row.label),
            plane=row.plane or "unknown", series_number=row.series_number, patient_id=row.patient_id,
            study_uid=row.study_uid, study_date=row.study_date))
    return out


def _norm_set(values: Any, parse) -> Optional[set[str]]:
    if values is None:
        return None
    if isinstance(values, (str, SequenceLabel, Plane)):
        values = [values]
    out = set()
    for v in values:
        for part in str(_value(v)).split(","):
            if part.strip():
                out.add(parse(part.strip()))
    return out


def _parse_plane(text: str) -> str:
    key = text.strip().lower()
    for p in Plane:
        if p.value == key:
            return p.value
    raise ValueError(f"unknown plane {text!r}; expected axial, sagittal, coronal or unknown")


def _real(p: PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(p)))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _same_file_content(a: str, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), b.stat()
    except OSError:
        return False
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


class _SourceUnreadable(OSError):
    """Reading the source failed (not the destination): the file is skipped, the sort goes on."""


def _copy_file(src: str, target: Path) -> None:
    """Copy ``src`` to ``target`` through a temporary file: fsync, times and mode, then link / rename.

    Raises :class:`_SourceUnreadable` when the source cannot be read,
    ``FileExistsError`` when ``target`` appeared meanwhile, other ``OSError``
    for the destination; the temporary file never remains.
    """
    try:
        fin = open(src, "rb")
    except OSError as exc:
        raise _SourceUnreadable(exc.errno, exc.strerror or str(exc)) from None
    with fin:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=str(target.parent))
        try:
            with os.fdopen(fd, "wb") as fout:
                while True:
                    try:
                        chunk = fin.read(_CHUNK)
                    except OSError as exc:
                        raise _SourceUnreadable(exc.errno, exc.strerror or str(exc)) from None
                    if not chunk:
                        break
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            shutil.copystat(src, tmp)
            try:
                os.link(tmp, target)  # never overwrites
            except FileExistsError:
                raise
            except OSError:  # no hard links here (FAT, some network shares): rename, after a last check
                if os.path.lexists(target):
                    raise FileExistsError(f"{target} exists") from None
                os.replace(tmp, target)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _remove_stale_temps(folder: Path) -> None:
    now = time.time()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        p = folder / name
        try:
            if now - os.lstat(p).st_mtime > STALE_TEMP_SECONDS:
                os.unlink(p)
        except OSError:
            pass


def _protected(items: list["_Item"], sources: Optional[Iterable[PathLike]],
               protected: Optional[Sources]) -> Sources:
    """Every source of this sort: the series' folders, ``sources`` and the caller's :class:`Sources`."""
    out = Sources()
    folders = {os.path.dirname(os.path.abspath(f)) for it in items for f in it.files}
    for folder in sorted(folders):
        out.add_folder(folder, f"the source folder {_real(folder)}")
    for s in sources or []:
        folder = s if os.path.isdir(s) else os.path.dirname(os.path.abspath(s))
        out.add_folder(folder, f"the source folder {_real(folder)}")
    if protected is not None:
        for k, v in protected.folders.items():
            out.folders.setdefault(k, v)
        for k, v in protected.files.items():
            out.files.setdefault(k, v)
    return out


def _check_dest(dest: PathLike) -> None:
    """DEST and the folders above it are folders (or missing): else one line."""
    p = Path(os.path.abspath(dest))
    for q in [p, *p.parents]:
        if os.path.lexists(q):
            if not os.path.isdir(q):
                raise SortError(f"destination {dest}: {q} is a file, not a folder")
            return


def sort_series(rows: Iterable[ResultRow], dest: PathLike, only: Any = None, plane: Any = None,
                link: bool = False, labels: Optional[Mapping[Any, Any]] = None, *,
                sources: Optional[Iterable[PathLike]] = None, protected: Optional[Sources] = None,
                dry_run: bool = False) -> SortSummary:
    """Copy (``link=True``: symlink) the chosen series into ``DEST/<patient>/<study>/<label>_<plane>_<n>/``.

    ``rows``: the classifier's :class:`~SeqClassifierLib.records.ResultRow` objects (with ``files``).
    ``only``: labels to keep (``"T2w,DWI"``, a list, or SequenceLabels); None keeps all.
    ``plane``: plane(s) to keep; None keeps all.
    ``labels``: SeriesKey (or bare UID) -> label overriding the prediction (confirmed labels);
    a label given for another patient's or study's series of the same UID is never used.
    ``sources``: extra input folders (e.g. the command line's SRC) that DEST must not be inside.
    ``protected``: every source of the run (:class:`~SeqClassifierLib.safe_paths.Sources`: inputs,
    a Slicer database and its file list); nothing is written into any of them.
    ``dry_run``: plan and report, write nothing.
    See the module docstring for the tree and the safety rules.  Raises
    :class:`SortError` when DEST is inside a source folder.
    """
    items = _items(rows)
    only_set = _norm_set(only, lambda s: SequenceLabel.parse(s).value)
    plane_set = _norm_set(plane, _parse_plane)
    override = {SeriesKey.coerce(k): _label_text(v) for k, v in (labels or {}).items()}
    dest_real = _real(dest)
    summary = SortSummary(dest=str(dest_real), link=bool(link))

    # Safety first: DEST must not be inside a source folder, nor contain one.
    guard = _protected(items, sources, protected)
    try:
        check_writable(dest, guard, "destination", folder=True)
    except UnsafeTargetError as exc:
        raise SortError(f"{exc}; choose a separate destination folder outside the DICOM input") from None
    _check_dest(dest)
    source_files = {_real(f) for it in items for f in it.files}

    chosen: list[tuple[_Item, Optional[str]]] = []
    for it in items:
        key = SeriesKey(it.patient_id or "", it.study_uid or "", it.series_uid)
        label = lookup(override, key, it.label)
        if only_set is not None and (label is None or label not in only_set):
            summary.skipped.append((it.series_uid, f"label {label or UNLABELED} not selected"))
            continue
        if plane_set is not None and it.plane not in plane_set:
            summary.skipped.append((it.series_uid, f"plane {it.plane} not selected"))
            continue
        if not it.files:
            summary.skipped.append((it.series_uid, "no files"))
            continue
        chosen.append((it, label))

    used: set[Path] = set()
    for it, label in chosen:
        study = study_folder_name(it.study_date, it.study_uid)
        base = dest_real / safe_name(it.patient_id, "unknown-patient") / study
        name = series_folder_name(label, it.plane, it.series_number, it.series_uid)
        folder = base / name
        n = 1
        while folder in used:
            n += 1
            folder = base / safe_name(f"{name}_{n}")
        used.add(folder)
        names: set[str] = set()
        targets = []
        for f in it.files:
            stem, ext = os.path.splitext(os.path.basename(f))
            fname, k = stem + ext, 1
            while fname in names:
                k += 1
                fname = f"{stem}_{k}{ext}"
            names.add(fname)
            target = folder / fname
            if _real(target) in source_files:
                raise SortError(f"target {target} would overwrite the source file itself")
            targets.append((f, target))
        try:  # a symbolic link inside DEST must not lead the copies into a source (checked before mkdir)
            check_writable(folder, guard, "series folder", folder=True)
        except UnsafeTargetError as exc:
            raise SortError(str(exc)) from None
        if not dry_run:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                check_writable(folder, guard, "series folder", folder=True)  # and after: no race into a source
            except UnsafeTargetError as exc:
                raise SortError(str(exc)) from None
            except OSError as exc:
                raise SortError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
            _remove_stale_temps(folder)
        for src, target in targets:
            if target.exists() or target.is_symlink():
                if link and target.is_symlink() and os.path.realpath(target) == os.path.realpath(src):
                    summary.n_existing += 1
                elif not link and not target.is_symlink() and _same_file_content(src, target):
                    summary.n_existing += 1
                else:
                    summary.conflicts.append(str(target))
                continue
            if not dry_run:
                if link:
                    try:
                        os.symlink(os.path.abspath(src), target)
                    except OSError as exc:
                        raise SortError(f"cannot create symbolic link {target}: {exc} "
                                        "(on Windows this needs Developer Mode or administrator rights; "
                                        "sort without --link to copy)") from exc
                else:
                    try:
                        _copy_file(src, target)
                    except _SourceUnreadable as exc:
                        summary.failed.append((src, f"cannot read: {exc.strerror or exc}"))
                        continue
                    except FileExistsError:
                        summary.conflicts.append(str(target))
                        continue
                    except OSError as exc:
                        raise SortError(f"cannot copy {src} to {target}: {exc.strerror or exc} "
                                        f"({summary.n_files} files copied so far; no partial file left)") from None
            summary.n_files += 1
        if not dry_run and not link:
            fsync_dir(folder)
        summary.series.append(SortedSeries(
            series_uid=it.series_uid, label=label, plane=it.plane,
            folder=str(folder.relative_to(dest_real)), n_files=len(targets),
            source_folder=os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in it.files])))
    return summary
