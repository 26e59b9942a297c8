"""``labels.csv`` beside the studies: recognising our own, refusing foreign folders, writing rows atomically."""

from __future__ import annotations

import csv
import os
from typing import Optional

from SeqClassifierLib.synth.base import LABELS_COLUMNS, LABELS_COLUMNS_V1, LABELS_CSV, _NOTE_PREFIX, SynthSeries

def _read_own_labels(outdir: str) -> Optional[list[dict[str, str]]]:
    """Rows of ``outdir/labels.csv`` if it was written by this generator, else None."""
    path = os.path.join(outdir, LABELS_CSV)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            columns = tuple(h.strip() for h in header) if header is not None else ()
            if columns not in (LABELS_COLUMNS, LABELS_COLUMNS_V1):
                return None
            rows = []
            for rec in reader:
                if not rec:
                    continue
                if len(rec) != len(columns) or not rec[4].startswith(_NOTE_PREFIX):
                    return None
                rows.append({c: "" for c in LABELS_COLUMNS} | dict(zip(columns, rec)))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _check_outdir(outdir: str) -> list[dict[str, str]]:
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise ValueError(f"output path {outdir!r} exists and is not a folder")
    if not os.path.isdir(outdir) or not os.listdir(outdir):
        return []
    rows = _read_own_labels(outdir)
    if rows is None:
        raise ValueError(
            f"refusing to write synthetic studies into {outdir!r}: the folder is not empty and "
            f"holds no {LABELS_CSV} made by the synthetic generator; choose an empty or new folder"
        )
    return rows


def _write_labels(outdir: str, old: list[dict[str, str]], new: list[SynthSeries],
                  notes: dict[str, str]) -> None:
    rows: dict[str, dict[str, str]] = {r["series_dir"]: r for r in old}
    for s in new:
        rows[s.series_dir] = {
            "series_dir": s.series_dir, "SeriesInstanceUID": s.series_uid, "label": s.label.value,
            "SeriesDescription": s.description, "note": notes[s.series_uid], "family": s.family,
        }
    tmp = os.path.join(outdir, LABELS_CSV + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LABELS_COLUMNS)
        for r in rows.values():
            w.writerow([r[c] for c in LABELS_COLUMNS])
    os.replace(tmp, os.path.join(outdir, LABELS_CSV))
