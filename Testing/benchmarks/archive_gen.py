"""Synthetic archives made from real ProstateX files, for the archive benchmark and tests.

Real ProstateX DICOM files are re-written with pydicom under new patient,
study, series and instance UIDs (deterministic, from the copy's number), so
an archive of any size can be made from the two shared studies:

* :func:`one_file_series` -- ``n`` series of one file each (one real file header
  per series, cycling over the smallest file of every real series), laid out
  ``ROOT/P<patient>/<study>/<series>/IM0.dcm`` with ``series_per_study`` series a study;
* :func:`big_studies` -- studies of ``files_per_study`` files: the real series of
  one study copied again and again under new series UIDs into the same study
  folder (``ROOT/P<k>/<study>/<series copy>/...``).

Archives go to a scratch folder (``$TMPDIR``), never into the shared data or
the repository; a ``.complete`` marker with the parameters lets a second
call reuse the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import pydicom


def uid(*parts: object) -> str:
    """A deterministic UID under the 2.25 (UUID-derived) root."""
    digest = hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


def _series_dirs(source: Path) -> list[Path]:
    return sorted({p.parent for p in source.rglob("*.dcm")})


def _smallest_files(source: Path) -> list[Path]:
    """The smallest file of every real series under ``source``."""
    return [min(d.glob("*.dcm"), key=lambda p: (p.stat().st_size, p.name)) for d in _series_dirs(source)]


def _complete(root: Path, params: dict) -> bool:
    marker = root / ".complete"
    try:
        return json.loads(marker.read_text()) == params
    except (OSError, ValueError):
        return False


def _start(root: Path, params: dict, source: Path) -> None:
    root = root.resolve()
    if root == source.resolve() or source.resolve() in root.parents:
        raise ValueError(f"refusing to write the archive inside the source data {source}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)


def _rewrite(ds: pydicom.Dataset, path: Path, patient: str, study: str, series: str, sop: str,
             number: int) -> None:
    ds.PatientID = patient
    ds.PatientName = patient
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = sop
    ds.SeriesNumber = number
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path))  # as read: preamble and file meta kept (pydicom 2.4 and 3)


def one_file_series(root: os.PathLike, n: int, source: os.PathLike, series_per_study: int = 10,
                    progress: Optional[callable] = None) -> Path:
    """An archive of ``n`` one-file series (see the module doc); returns ``root``."""
    root, source = Path(root), Path(source)
    params = {"kind": "one_file_series", "n": n, "series_per_study": series_per_study, "version": 1}
    if _complete(root, params):
        return root
    _start(root, params, source)
    templates = [pydicom.dcmread(str(p)) for p in _smallest_files(source)]
    for i in range(n):
        s = i // series_per_study
        patient = f"ARCH{s:07d}"
        ds = templates[i % len(templates)]
        _rewrite(ds, root / f"P{s:07d}" / f"study{s:07d}" / f"{i % series_per_study + 1:03d}" / "IM0.dcm",
                 patient, uid("study", s), uid("series", i), uid("sop", i), i % series_per_study + 1)
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, n)
    (root / ".complete").write_text(json.dumps(params))
    return root


def big_studies(root: os.PathLike, n_studies: int, files_per_study: int, source: os.PathLike,
                progress: Optional[callable] = None) -> Path:
    """``n_studies`` studies of ``files_per_study`` files each, from the real series of ``source``."""
    root, source = Path(root), Path(source)
    params = {"kind": "big_studies", "n": n_studies, "files": files_per_study, "version": 1}
    if _complete(root, params):
        return root
    _start(root, params, source)
    series = [sorted(d.glob("*.dcm")) for d in _series_dirs(source)]
    written = 0
    for st in range(n_studies):
        left, copy = files_per_study, 0
        while left > 0:
            files = series[copy % len(series)][:left]
            series_uid = uid("big-series", st, copy)
            for j, f in enumerate(files):
                ds = pydicom.dcmread(str(f))
                _rewrite(ds, root / f"P{st:04d}" / f"study{st:04d}" / f"{copy:05d}" / f"IM{j:04d}.dcm",
                         f"BIG{st:04d}", uid("big-study", st), series_uid, uid("big-sop", st, copy, j), copy + 1)
                written += 1
                if progress is not None and written % 1000 == 0:
                    progress(written, n_studies * files_per_study)
            left -= len(files)
            copy += 1
    (root / ".complete").write_text(json.dumps(params))
    return root
