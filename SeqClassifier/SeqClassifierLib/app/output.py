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
from SeqClassifierLib.records import Prediction, ResultRow, SeriesRecord, SkippedFile

#: Every field of a result row, in output order.
ROW_FIELDS = ResultRow.FIELDS
FORMATS = ("table", "csv", "json", "jsonl")


def make_row(record: SeriesRecord, prediction: Prediction, group: str = "") -> ResultRow:
    """The output row of one series."""
    return ResultRow.from_series(record, prediction, group=group)


def format_table(rows: Sequence[ResultRow], untrained: bool = False) -> str:
    """A fixed-width table for people; long UIDs are shortened to their tail."""
    cols = [("patient", 14), ("study", 10), ("#", 4), ("series UID", 14), ("description", 30),
            ("files", 5), ("plane", 8), ("label", 6), ("conf", 5)] + [(c, 5) for c in CLASS_NAMES] + [("review", 6)]
    out = io.StringIO()
    if untrained:
        out.write("MODEL: UNTRAINED - no trained model is installed; labels are NOT predicted.\n")
    out.write(" ".join(name.ljust(w) for name, w in cols).rstrip() + "\n")

    def tail(s: str, w: int) -> str:
        return s if len(s) <= w else "…" + s[-(w - 1):]

    for row in rows:
        r = row.to_dict()
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


def format_csv(rows: Sequence[ResultRow]) -> str:
    """CSV with one probability column per class (``p_T2w`` ...)."""
    out = io.StringIO()
    fields = [f for f in ROW_FIELDS if f != "probabilities"] + [f"p_{c}" for c in CLASS_NAMES]
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in rows:
        r = row.to_dict()
        flat = {k: v for k, v in r.items() if k in fields}
        flat["b_values"] = " ".join(f"{b:g}" for b in r["b_values"])
        flat["review_reasons"] = "; ".join(r["review_reasons"])
        for c in CLASS_NAMES:
            flat[f"p_{c}"] = (r["probabilities"] or {}).get(c)
        w.writerow(flat)
    return out.getvalue()


def format_json(rows: Sequence[ResultRow], skipped: Iterable[SkippedFile], model: dict[str, Any]) -> str:
    """One JSON document: ``{"model": ..., "series": [rows], "skipped": [...]}``."""
    doc = {
        "model": model,
        "series": [r.to_dict() for r in rows],
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def format_jsonl(rows: Sequence[ResultRow], skipped: Iterable[SkippedFile]) -> str:
    """JSON lines: one ``series`` event per row and one ``skipped`` event per file."""
    lines = [json.dumps({"type": "series", "row": r.to_dict()}, ensure_ascii=False) for r in rows]
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
