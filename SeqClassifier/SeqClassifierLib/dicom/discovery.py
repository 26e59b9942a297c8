"""Find MR series on disk: walk folders, read headers only, group into series.

Discovery reads each file's header up to (not including) the pixel data and
keeps only the attributes listed in :mod:`.tags`.  Files are grouped by
(PatientID, StudyInstanceUID, SeriesInstanceUID) -- a UID repeated under
another patient or study stays a series of its own, with a warning -- and a
second file of the same SOPInstanceUID is skipped as a duplicate; each series
gets its 2D images (*frames*) ordered by b-value / temporal position and then
by position along the slice normal.

Handled layouts:

* classic single-frame MR, one file per slice, any number of series per folder;
* enhanced (and legacy converted enhanced) multi-frame MR: per-frame
  positions, b-values (MRDiffusionSequence) and temporal positions
  (FrameContentSequence) come from the functional groups;
* Siemens mosaic: one file holds all slices of a volume as tiles;
* one series holding several b-values or time points.

Everything that cannot be used (not DICOM, empty, truncated, DICOMDIR, non-MR,
missing SeriesInstanceUID, permission denied, ...) is reported as a
:class:`~SeqClassifierLib.records.SkippedFile` with its path and the reason, and the run goes
on.  Nothing is ever written to the input folders.

One file's header is read by :func:`read_file_header` (the fast reader of
:mod:`.fast_header`, else pydicom: :mod:`.pydicom_reader`); many files in
worker processes when that pays off; :class:`~.header_cache.HeaderCache`
skips files already read.
"""
from __future__ import annotations

import functools
import math
import os
import stat
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from SeqClassifierLib.config import WORKERS_ENV, fast_headers_enabled  # noqa: F401  (WORKERS_ENV: API)
from SeqClassifierLib.dicom.fast_header import FastPathUnsupported, read_file_header_fast
from SeqClassifierLib.dicom.header import FileFrame, FileHeader, Outcome, UnusableFile
from SeqClassifierLib.dicom.header_cache import HeaderCache
from SeqClassifierLib.dicom.pydicom_reader import not_dicom_reason, read_file_header_pydicom
from SeqClassifierLib.dicom.values import _int
from SeqClassifierLib.dicom.vendors import PROTOCOL_B_VALUE_SOURCE, protocol_b_values
from SeqClassifierLib.labels import Plane
from SeqClassifierLib.lifetime import raise_if_terminated
from SeqClassifierLib.parallel import ordered_map, plan_workers, start_method
from SeqClassifierLib.records import Discovery, FrameRef, SeriesKey, SeriesRecord, SkippedFile  # noqa: F401  (Discovery, SeriesKey: API)

PathLike = Union[str, os.PathLike]
ProgressFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------

def slice_normal(iop: Optional[Sequence[float]]) -> Optional[tuple[float, float, float]]:
    """Unit normal (row x column) of ImageOrientationPatient, or None if degenerate."""
    if iop is None or len(iop) != 6:
        return None
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if norm < 1e-6:
        return None
    return (n[0] / norm, n[1] / norm, n[2] / norm)


def plane_of(normal: Optional[Sequence[float]]) -> tuple[Plane, Optional[float]]:
    """Nearest anatomical plane of a slice normal and the angle to its axis (degrees).

    A prostate T2w tilted 10-20 degrees is still axial: the plane is the axis
    the normal is closest to, whatever the tilt.
    """
    if normal is None:
        return Plane.UNKNOWN, None
    axis = max(range(3), key=lambda i: abs(normal[i]))
    angle = math.degrees(math.acos(min(1.0, abs(normal[axis]))))
    return (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[axis], angle


# ----------------------------------------------------------------------------
# One file
# ----------------------------------------------------------------------------

#: Use :mod:`.fast_header` before pydicom (set SEQCLASSIFIER_FAST_HEADERS=0 to turn it off).
FAST_HEADERS = fast_headers_enabled()


def read_file_header(path: PathLike, *, fast: Optional[bool] = None) -> FileHeader:
    """Read what discovery needs from one file's header (never its pixel data).

    Tries :func:`.fast_header.read_file_header_fast` first (unless ``fast`` is
    False or :data:`FAST_HEADERS` is off); whatever it is not certain about
    is read by pydicom (:func:`read_file_header_pydicom`).  Both give the same
    result.  Raises :class:`UnusableFile` with a human-readable reason for
    anything that is not a usable MR image.
    """
    path = os.fspath(path)
    if FAST_HEADERS if fast is None else fast:
        try:
            # reads 132 bytes first and goes on only for a file with 'DICM' at byte 128 or one that
            # starts like a data set: exactly those not_dicom_reason lets through, so it is asked after
            return read_file_header_fast(path)
        except FastPathUnsupported:
            pass
    refused = not_dicom_reason(path)  # reads 132 bytes: a huge file of anything else is refused at once
    if refused:
        raise UnusableFile(refused)
    return read_file_header_pydicom(path)


# ----------------------------------------------------------------------------
# Walking folders
# ----------------------------------------------------------------------------

def _special_kind(path: str) -> str:
    """What a path that is neither a regular file nor a folder is, in words."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"not a regular file: {name}; not read"
    return "not a regular file; not read"


#: Pseudo file systems: never walked, whether given, reached through a link or met on the way
#: (reading some of their files blocks, e.g. /proc/kmsg, and /proc/self links back into itself).
#: Not /run: removable media are mounted under /run/media.
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")
#: System folders: a symbolic link into one (or to ``/``) is not followed; given as an input they are read.
SYSTEM_FOLDERS = ("/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/snap", "/usr",
                  "/System", "/Library")


def _under(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _pseudo(real: str) -> bool:
    return os.sep == "/" and any(_under(real, f) for f in PSEUDO_FILESYSTEMS)


def link_refusal(real: str, roots: Sequence[str]) -> Optional[str]:
    """Why a symbolic link to the folder ``real`` (a real path) is not followed; None to follow it.

    Links that stay inside an input folder (``roots``: real paths) are
    followed; a link out of them is followed too (a folder of links to the
    series kept elsewhere), unless it leads to ``/``, into a system folder or
    pseudo file system, or to a folder that contains an input (the walk would
    cover the input again and everything beside it).
    """
    if any(_under(real, r) for r in roots):
        return None
    if os.sep == "/" and (real == "/" or _pseudo(real) or any(_under(real, f) for f in SYSTEM_FOLDERS)):
        return f"symbolic link to {real}, a system folder; not followed"
    if any(_under(r, real) for r in roots):
        return f"symbolic link to {real}, a folder that contains the input; not followed"
    return None


def iter_files(paths: Iterable[PathLike], skipped: list[SkippedFile]) -> Iterator[str]:
    """Yield every regular file under ``paths`` (files or folders), once each.

    The walk is bounded: no real folder is entered twice (symbolic link
    loops, links to a folder already walked: silently), symbolic links to
    folders are followed as :func:`link_refusal` says (a link refused is
    reported in ``skipped`` with the reason), and pseudo file systems
    (:data:`PSEUDO_FILESYSTEMS`) are never read.  Missing paths, unreadable
    folders, broken links and special files (pipes, sockets, devices: opening
    a pipe would block forever) are reported in ``skipped``.
    """
    paths = [os.fspath(p) for p in paths]
    roots = [os.path.realpath(p) for p in paths if os.path.isdir(p)]
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def emit(p: str, real: Optional[str] = None) -> Iterator[str]:
        if real is None:
            real = os.path.realpath(p)
        if _pseudo(real):
            skipped.append(SkippedFile(p, f"{real} is in a system folder; not read"))
        elif real not in seen_files:
            seen_files.add(real)
            yield p

    for root in paths:
        if os.path.isfile(root):
            yield from emit(root)
            continue
        if not os.path.isdir(root):
            skipped.append(SkippedFile(root, _special_kind(root) if os.path.exists(root)
                                       else "no such file or folder"))
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
            except OSError as exc:
                skipped.append(SkippedFile(folder, f"cannot open folder: {exc.strerror or exc}"))
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            # realpath(folder/name) is realpath(folder)/name unless name is a link:
            # one realpath per folder instead of one per file.
            real_folder = os.path.realpath(folder)
            if _pseudo(real_folder):
                skipped.append(SkippedFile(folder, f"{real_folder} is a system folder; not read"))
                continue
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                skipped.append(SkippedFile(folder, f"cannot list folder: {exc.strerror or exc}"))
                continue
            subdirs = []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=True):
                        why = link_refusal(os.path.realpath(entry.path), roots) if entry.is_symlink() else None
                        if why is None:
                            subdirs.append(entry.path)
                        else:
                            skipped.append(SkippedFile(entry.path, why))
                    elif entry.is_file(follow_symlinks=True):
                        yield from emit(entry.path, None if entry.is_symlink()
                                        else os.path.join(real_folder, entry.name))
                    elif entry.is_symlink() and not os.path.exists(entry.path):
                        skipped.append(SkippedFile(entry.path, "broken symbolic link"))
                    else:
                        skipped.append(SkippedFile(entry.path, _special_kind(entry.path)))
                except OSError as exc:
                    skipped.append(SkippedFile(entry.path, f"cannot stat: {exc.strerror or exc}"))
            stack.extend(reversed(subdirs))


# ----------------------------------------------------------------------------
# Grouping into series
# ----------------------------------------------------------------------------

def _majority(values: Iterable[Any]) -> Any:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _round_iop(iop: Optional[tuple[float, ...]]) -> Optional[tuple[float, ...]]:
    return tuple(round(v, 3) for v in iop) if iop is not None else None


def build_series(headers: list[FileHeader]) -> SeriesRecord:
    """Assemble one :class:`SeriesRecord` from the headers of its files."""
    headers = sorted(headers, key=lambda h: (h.acquisition_number or 0, h.instance_number or 0, h.path))
    first = headers[0]
    round_iop = functools.lru_cache(maxsize=None)(_round_iop)  # once per distinct orientation (mostly one)
    iop_key = _majority(round_iop(f.iop) for h in headers for f in h.frames)
    iop = None
    if iop_key is not None:
        iop = next(f.iop for h in headers for f in h.frames if round_iop(f.iop) == iop_key)
    normal = slice_normal(iop)
    plane, obliquity = plane_of(normal)

    # Temporal positions: explicit indices where present; otherwise the number
    # of repeats of the same slice position at the same b-value (4D series
    # without TemporalPositionIdentifier, e.g. many GE DCE exports).
    entries = []  # (header, frame, location)
    for h in headers:
        for f in h.frames:
            loc = None
            if (normal is not None and f.ipp is not None and h.mosaic_tiles == 0
                    and round_iop(f.iop) == iop_key):
                loc = round(sum(p * n for p, n in zip(f.ipp, normal)), 3)
            entries.append((h, f, loc))
    temporal_ids = {f.temporal for _, f, _ in entries if f.temporal is not None}
    b_values = sorted({f.b_value for _, f, _ in entries if f.b_value is not None})
    if len(temporal_ids) > 1:
        n_temporal = len(temporal_ids)
    else:
        repeats = Counter((loc, f.b_value) for _, f, loc in entries if loc is not None)
        n_rep = max(repeats.values()) if repeats else 1
        n_temporal = n_rep if (n_rep > 1 and len(b_values) <= 1) else 1
    declared = _int(first.header.get("NumberOfTemporalPositions"))
    if declared and declared > n_temporal:
        n_temporal = declared

    def order(item: tuple[FileHeader, FileFrame, Optional[float]]) -> tuple:
        h, f, loc = item
        return (
            f.b_value if f.b_value is not None else -1.0,
            f.temporal if f.temporal is not None else 0,
            loc if loc is not None else float(f.stack_position or h.instance_number or 0),
            h.instance_number or 0,
            f.frame,
        )

    entries.sort(key=order)
    frames = [
        FrameRef(
            path=h.path,
            frame=f.frame,
            location=loc,
            b_value=f.b_value,
            temporal_position=f.temporal,
            mosaic_tiles=h.mosaic_tiles,
        )
        for h, f, loc in entries
    ]
    files = list(dict.fromkeys(fr.path for fr in frames))
    header = dict(first.header)
    if not b_values:
        # A Siemens diffusion series stripped of its b-value tags: the protocol still has them.
        b_values = protocol_b_values(first.path, header.get("ImageType", []), first.manufacturer)
        if b_values:
            header["BValueSource"] = PROTOCOL_B_VALUE_SOURCE
    if b_values:
        header["BValues"] = b_values
    return SeriesRecord(
        series_uid=first.series_uid,
        study_uid=first.study_uid,
        patient_id=first.patient_id,
        patient_name=first.patient_name,
        study_date=first.study_date,
        series_number=first.series_number,
        description=first.description,
        protocol_name=first.protocol_name,
        modality=first.modality,
        manufacturer=first.manufacturer,
        sop_class_uid=first.sop_class_uid,
        files=files,
        frames=frames,
        plane=plane,
        normal=normal,
        obliquity_deg=None if obliquity is None else round(obliquity, 2),
        b_values=b_values,
        temporal_positions=n_temporal,
        is_multiframe=any(len(h.frames) > 1 for h in headers),
        is_mosaic=any(h.mosaic_tiles > 0 for h in headers),
        header=header,
    )


def series_key(h: Union[FileHeader, SeriesRecord]) -> SeriesKey:
    """The :class:`~SeqClassifierLib.records.SeriesKey` of a file header or series record: a
    SeriesInstanceUID is unique only within its patient and study (copies and bad anonymisation
    repeat it under other patients / studies)."""
    return SeriesKey(h.patient_id or "", h.study_uid or "", h.series_uid)


def _series_sort_key(s: SeriesRecord) -> tuple:
    return (s.patient_id, s.study_date, s.study_uid,
            s.series_number if s.series_number is not None else 1 << 30, s.series_uid)


def _names(values: Iterable[str]) -> str:
    """``A and B`` / ``A, B and C`` (empty values shown as ``(none)``)."""
    shown = [v or "(none)" for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def repeated_uid_warning(uid: str, keys: Sequence[SeriesKey]) -> str:
    """The warning every record of a SeriesInstanceUID found under several patients or studies gets."""
    patients = sorted({k[0] for k in keys})
    if len(patients) > 1:
        return f"SeriesInstanceUID {uid} repeats under patients {_names(patients)}"
    return f"SeriesInstanceUID {uid} repeats under studies {_names(sorted({k[1] for k in keys}))}"


def drop_duplicate_instances(headers: Iterable[FileHeader],
                             skipped: list[SkippedFile]) -> list[FileHeader]:
    """``headers`` without a second file of the same instance (same SOPInstanceUID in the same series).

    The first file (walk order) is kept; each other one is added to ``skipped``.
    Files without a SOPInstanceUID are all kept.
    """
    first: dict[tuple[SeriesKey, str], str] = {}
    out = []
    for h in headers:
        if h.sop_instance_uid:
            key = (series_key(h), h.sop_instance_uid)
            kept = first.setdefault(key, h.path)
            if kept != h.path:
                skipped.append(SkippedFile(h.path, f"duplicate of {kept} (same SOPInstanceUID)"))
                continue
        out.append(h)
    return out


def group_headers(headers: Iterable[FileHeader]) -> list[SeriesRecord]:
    """Group file headers into ordered series records, one per (patient, study, SeriesInstanceUID).

    The files of two patients (or studies) are never merged, even under one
    SeriesInstanceUID; each such record gets a warning naming them all.
    """
    groups: dict[SeriesKey, list[FileHeader]] = defaultdict(list)
    for h in headers:
        groups[series_key(h)].append(h)
    by_uid: dict[str, list[SeriesKey]] = defaultdict(list)
    for key in groups:
        by_uid[key[2]].append(key)
    records = []
    for key, hs in groups.items():
        record = build_series(hs)
        if len(by_uid[key[2]]) > 1:
            record.warnings.append(repeated_uid_warning(key[2], by_uid[key[2]]))
        records.append(record)
    return sorted(records, key=_series_sort_key)


# ----------------------------------------------------------------------------
# Reading many files: serial or in worker processes, with an optional cache
# ----------------------------------------------------------------------------

def _read_one(path: str) -> Outcome:
    try:
        return read_file_header(path)
    except UnusableFile as exc:
        return str(exc)
    except Exception as exc:  # a reader bug must not stop a run (nor a worker)
        return f"unexpected error while reading the header ({type(exc).__name__}: {exc})"


def _read_chunk(paths: Sequence[str]) -> list[Outcome]:
    """Worker-process entry point: one outcome per path, in order."""
    return [_read_one(p) for p in paths]


#: Minimum number of files to read before worker processes pay off, by start
#: method (measured: fork ~10 ms to start, forkserver ~230 ms the first time in
#: a process and ~15 ms after, spawn ~300 ms).  ``fork``: measured on the 2-vCPU
#: benchmark VM in a process holding torch and the model (its fork costs more),
#: serial against two readers, min of 7, since headers are mostly replayed
#: (:mod:`.header_layout`, ~0.2 ms a file): 303 files 84 / 94 ms, 395 files 84 /
#: 101, 505 files 148 / 143, 752 files 178 / 177, 1,055 files 205-238 / 189-219,
#: 1,504 files 297 / 288, 2,000 files 435-500 / 368-386 (it was 320 when a header
#: cost ~0.5 ms: ProstateX's 377 files 191-225 / 127-157 ms).
PARALLEL_MIN_FILES = {"fork": 640, "forkserver": 4000, "spawn": 10000}


def _plan_workers(n_files: int, workers: Optional[int], parallel_from: Optional[int] = None) -> tuple[int, str]:
    """(number of readers including this process, start method) for ``n_files``
    (:func:`~SeqClassifierLib.parallel.plan_workers` with :data:`PARALLEL_MIN_FILES`, a reader per 64 files)."""
    method = start_method()
    return plan_workers(n_files, workers, method, PARALLEL_MIN_FILES, 64, parallel_from), method


def _read_parallel(files: list[str], n_readers: int, method: str,
                   report: Callable[[int], None]) -> list[Outcome]:
    """Read ``files`` with ``n_readers - 1`` worker processes plus this one; same order as serial."""
    n = len(files)
    chunk = max(32, min(1024, n // (n_readers * 6) or 1))
    bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    out = ordered_map(_read_chunk, [files[lo:hi] for lo, hi in bounds], n_readers, method,
                      lambda i: report(bounds[i][1] - bounds[i][0]), preload=[__name__])
    return [o for part in out for o in part]


def discover_series(
    paths: Union[PathLike, Iterable[PathLike]],
    *,
    progress: Optional[ProgressFn] = None,
    workers: Optional[int] = None,
    cache: Optional[HeaderCache] = None,
    parallel_from: Optional[int] = None,
) -> Discovery:
    """Find every MR series under ``paths`` (folders and/or files).

    ``progress(done, total)`` is called as files are read.  Unusable files end
    up in :attr:`Discovery.skipped` with their reason; nothing raises for bad
    input.

    ``workers``: number of header readers (this process counts as one); None
    picks by file count and platform (:data:`PARALLEL_MIN_FILES`; environment
    variable ``SEQCLASSIFIER_WORKERS`` overrides), 0 or 1 reads in this process
    only.  The result is identical whatever the number of workers.  ``parallel_from``: with
    ``workers=None``, read in this process only below that many files (a caller whose other
    process needs a core meanwhile, :mod:`SeqClassifierLib.app.startup`).

    ``cache``: a :class:`HeaderCache`; files whose path, size and modification
    time (and inode / change time) are unchanged since they were cached are not
    read again.  The caller saves a persistent cache (:meth:`HeaderCache.save`).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    skipped: list[SkippedFile] = []
    files = list(iter_files(paths, skipped))
    total = len(files)
    outcomes: list[Optional[Outcome]] = [None] * total
    stats: list[Optional[os.stat_result]] = [None] * total
    todo = list(range(total))
    if cache is not None:
        todo = []
        for i, path in enumerate(files):
            hit, st = cache.lookup(path)
            stats[i] = st
            if hit is None:
                todo.append(i)
            else:
                outcomes[i] = hit

    done = total - len(todo)
    last = [0]

    def report(n: int) -> None:
        nonlocal done
        raise_if_terminated()
        done += n
        if progress is not None and (done == total or done - last[0] >= 50):
            last[0] = done
            progress(done, total)

    if progress is not None and done and done < total:
        progress(done, total)
        last[0] = done
    todo_paths = [files[i] for i in todo]
    n_readers, method = _plan_workers(len(todo_paths), workers, parallel_from)
    if n_readers > 1:
        read = _read_parallel(todo_paths, n_readers, method, report)
    else:
        read = []
        for path in todo_paths:
            read.append(_read_one(path))
            report(1)
    for i, outcome in zip(todo, read):
        outcomes[i] = outcome
        if cache is not None:
            cache.store(files[i], stats[i], outcome)
    if progress is not None and total and last[0] != total:
        progress(total, total)

    headers: list[FileHeader] = []
    for path, outcome in zip(files, outcomes):
        if isinstance(outcome, FileHeader):
            headers.append(outcome)
        else:
            skipped.append(SkippedFile(path, str(outcome)))
    headers = drop_duplicate_instances(headers, skipped)
    return Discovery(series=group_headers(headers), skipped=skipped, n_files=total)
