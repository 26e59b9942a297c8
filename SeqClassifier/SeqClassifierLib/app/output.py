"""Result rows and their formats: table, CSV, JSON and JSON lines.

One row per series with the fields the command line documents (see
:data:`ROW_FIELDS`).  Writing to a file is atomic: a temporary file in the
same folder is renamed over the target only when complete, so an interrupted
run leaves no partial output.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.records import Prediction, SeriesRecord, SkippedFile

#: Every field of a result row, in output order.
ROW_FIELDS = (
    "patient_id", "study_uid", "study_date", "series_number", "series_uid", "description",
    "n_files", "plane", "label", "confidence", "probabilities", "needs_review",
    "b_values", "manufacturer", "model", "note", "folder",
)
FORMATS = ("table", "csv", "json", "jsonl")


def common_folder(files: Sequence[str]) -> str:
    """The folder that holds every file of a series."""
    if not files:
        return ""
    folders = {os.path.dirname(f) for f in files}
    return folders.pop() if len(folders) == 1 else os.path.commonpath(list(folders))


def make_row(record: SeriesRecord, prediction: Prediction) -> dict[str, Any]:
    """The output row of one series."""
    p = prediction.to_dict()
    return {
        "patient_id": record.patient_id,
        "study_uid": record.study_uid,
        "study_date": record.study_date,
        "series_number": record.series_number,
        "series_uid": record.series_uid,
        "description": record.description,
        "n_files": record.n_files,
        "plane": record.plane.value,
        "label": p["label"],
        "confidence": p["confidence"],
        "probabilities": p["probabilities"] if prediction.probabilities else None,
        "needs_review": p["needs_review"],
        "b_values": list(record.b_values),
        "manufacturer": record.manufacturer,
        "model": p["model"],
        "note": p["note"],
        "folder": common_folder(record.files),
    }


def format_table(rows: Sequence[dict[str, Any]], untrained: bool = False) -> str:
    """A fixed-width table for people; long UIDs are shortened to their tail."""
    cols = [("patient", 14), ("study", 10), ("#", 4), ("series UID", 14), ("description", 30),
            ("files", 5), ("plane", 8), ("label", 6), ("conf", 5)] + [(c, 5) for c in CLASS_NAMES] + [("review", 6)]
    out = io.StringIO()
    if untrained:
        out.write("MODEL: UNTRAINED - no trained model is installed; labels are NOT predicted.\n")
    out.write(" ".join(name.ljust(w) for name, w in cols).rstrip() + "\n")

    def tail(s: str, w: int) -> str:
        return s if len(s) <= w else "…" + s[-(w - 1):]

    for r in rows:
        probs = r["probabilities"] or {}
        cells = [
            tail(r["patient_id"] or "-", 14), tail(r["study_uid"] or "-", 10),
            str(r["series_number"] if r["series_number"] is not None else "-"),
            tail(r["series_uid"], 14), (r["description"] or "(none)")[:30], str(r["n_files"]), r["plane"],
            r["label"] or "-", f"{r['confidence']:.2f}" if r["confidence"] is not None else "-",
        ] + [f"{probs[c]:.2f}" if probs.get(c) is not None else "-" for c in CLASS_NAMES] + [
            "yes" if r["needs_review"] else "no"]
        out.write(" ".join(c.ljust(w) for c, (_, w) in zip(cells, cols)).rstrip() + "\n")
    return out.getvalue()


def format_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with one probability column per class (``p_T2w`` ...)."""
    out = io.StringIO()
    fields = [f for f in ROW_FIELDS if f != "probabilities"] + [f"p_{c}" for c in CLASS_NAMES]
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = {k: v for k, v in r.items() if k != "probabilities"}
        flat["b_values"] = " ".join(f"{b:g}" for b in r["b_values"])
        for c in CLASS_NAMES:
            flat[f"p_{c}"] = (r["probabilities"] or {}).get(c)
        w.writerow(flat)
    return out.getvalue()


def format_json(rows: Sequence[dict[str, Any]], skipped: Iterable[SkippedFile], model: dict[str, Any]) -> str:
    """One JSON document: ``{"model": ..., "series": [rows], "skipped": [...]}``."""
    doc = {
        "model": model,
        "series": list(rows),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def format_jsonl(rows: Sequence[dict[str, Any]], skipped: Iterable[SkippedFile]) -> str:
    """JSON lines: one ``series`` event per row and one ``skipped`` event per file."""
    lines = [json.dumps({"type": "series", "row": r}, ensure_ascii=False) for r in rows]
    lines += [json.dumps({"type": "skipped", "path": s.path, "reason": s.reason}, ensure_ascii=False) for s in skipped]
    return "".join(line + "\n" for line in lines)


def is_inside(path: os.PathLike, folders: Iterable[os.PathLike]) -> Optional[str]:
    """The first of ``folders`` that contains ``path`` (resolved), or None."""
    p = Path(path).resolve()
    for f in folders:
        root = Path(f).resolve()
        if root.is_file():
            root = root.parent
        if p == root or root in p.parents:
            return str(root)
    return None
