"""Result rows and their formats: table, CSV, JSON and JSON lines -- the one output contract.

One row per series with the fields the command line documents (see
:data:`ROW_FIELDS`).  Files are written with :mod:`SeqClassifierLib.atomic`
(atomic for regular files; devices and pipes in place).

Every JSON and JSON-lines output (``classify --format json/jsonl``, the
thumbnail events of :mod:`.thumbnails`, the streamed archive file of
:mod:`.stream`, progress events) is made here: :func:`series_event`,
:func:`skipped_event`, :func:`summary_event`, :func:`model_info`, written by
:func:`json_text` / :func:`event_line` under one rule, :func:`safe_value` with
``keep_paths=True``.

Text safety (table, CSV, JSON text fields, and every message on stderr): header
text is written through :func:`safe_text`, one documented escape:

* a byte of a file name that is not UTF-8 (Python's surrogate escape
  ``U+DC80..U+DCFF``) is written as ``\\xHH``, the byte in hex;
* newline, carriage return and tab as ``\\n``, ``\\r``, ``\\t``; every other
  control character (C0, DEL, C1: ESC sequences never reach a terminal) as
  ``\\xHH``; other lone surrogates, bidirectional overrides / isolates, the
  line and paragraph separators, zero-width marks and the BOM as ``\\uXXXX``;
* everything else (any printable Unicode, backslashes included) is kept, so the
  escape is for reading: a name that itself contains ``\\x41`` reads like an
  escaped byte.

File names in JSON are lossless (table, CSV and stderr escape them with
:func:`safe_text`): the values of :data:`PATH_KEYS` (``path``, ``folder``,
``files``) are the names exactly as the operating system gave them, so a
program can open the file a row names.  The characters a terminal would
act on (controls, bidirectional marks, line separators) are written as JSON
escapes (``\\n``, ``\\u001b``, ``\\u202e``), which every JSON reader decodes back
to the same character.  A byte of a file name that is not UTF-8 is written as
the JSON escape of Python's surrogate escape, ``\\udcHH`` for byte ``HH``
(``\\udcff`` for ``0xff``): in Python, ``os.fsencode(name)`` (or just
``open(name)``) gives back the original bytes; elsewhere, a code unit
``0xDC80``-``0xDCFF`` stands for the byte ``unit - 0xDC00``.

CSV cells that start with ``= + - @`` get a leading ``'`` (:func:`csv_cell`)
so that spreadsheets show them as text instead of running a formula; numbers
are left alone.  Non-finite numbers (NaN, infinity) are written as empty /
``null`` (JSON has no NaN).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.records import Prediction, ResultRow, SeriesKey, SeriesRecord, SkippedFile

#: Every field of a result row, in output order.
ROW_FIELDS = ResultRow.FIELDS
FORMATS = ("table", "csv", "json", "jsonl")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_FORMULA_START = ("=", "+", "-", "@")


def _escape(m: "re.Match[str]") -> str:
    c = m.group(0)
    if c in _NAMED:
        return _NAMED[c]
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's stand-in for the undecodable byte o - 0xDC00
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def safe_text(value: Any) -> str:
    """``value`` as text that is valid UTF-8 and harmless on a terminal (see the module docstring)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)


def csv_cell(value: Any) -> Any:
    """A CSV cell: text made safe and never read as a formula; numbers and None unchanged."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    text = safe_text(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


#: Keys whose values are file names (a text or a list of texts): lossless in JSON (module docstring).
PATH_KEYS = frozenset({"path", "folder", "files"})


def safe_value(value: Any, keep_paths: bool = False, _path: bool = False) -> Any:
    """JSON-ready copy of ``value``: every string (keys too) through :func:`safe_text`, NaN/inf -> None.

    ``keep_paths`` (the JSON outputs): the values of :data:`PATH_KEYS` are kept as they are
    (:func:`json_text` writes their unsafe characters as JSON escapes, losslessly).
    """
    if isinstance(value, str):
        return value if _path else safe_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {safe_text(k): safe_value(v, keep_paths, keep_paths and k in PATH_KEYS) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_value(v, keep_paths, _path) for v in value]
    return value


#: What json.dumps(ensure_ascii=False) leaves raw but a terminal acts on (C0 it escapes itself).
_JSON_RAW_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def json_text(value: Any, indent: Optional[int] = None) -> str:
    """``value`` as JSON under the one rule of every JSON output: :func:`safe_value` (``keep_paths``),
    then the characters a terminal acts on as JSON ``\\uXXXX`` escapes (valid UTF-8, same value)."""
    text = json.dumps(safe_value(value, keep_paths=True), indent=indent, ensure_ascii=False, allow_nan=False)
    return _JSON_RAW_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def event_line(event: dict[str, Any]) -> str:
    """One JSON-lines event (ends with a newline)."""
    return json_text(event) + "\n"


def _row_dict(row: Union[ResultRow, dict]) -> dict[str, Any]:
    return row.to_dict() if isinstance(row, ResultRow) else dict(row)


def series_event(row: Union[ResultRow, dict], **extra: Any) -> dict[str, Any]:
    """``{"type": "series", "row": {...}}`` plus ``extra`` (``stamp``, ``thumbnail``)."""
    return {"type": "series", "row": _row_dict(row), **extra}


def skipped_event(path: str, reason: str) -> dict[str, Any]:
    """``{"type": "skipped", "path": ..., "reason": ...}``."""
    return {"type": "skipped", "path": path, "reason": reason}


def summary_event(n_series: int, n_skipped: int, n_files: int, model: dict[str, Any],
                  exit_code: int) -> dict[str, Any]:
    """The last event of a JSON-lines output."""
    return {"type": "summary", "n_series": n_series, "n_skipped": n_skipped, "n_files": n_files,
            "model": model, "exit_code": exit_code}


def model_info(classifier: Any = None, **fields: Any) -> dict[str, Any]:
    """The ``model`` object of the JSON / JSON-lines outputs: of a classifier, or ``fields``
    (``name``, ``trained``, ``path``, ``device``, ``precision``) for a model not loaded here."""
    if classifier is not None:
        fields = dict(name=classifier.model_name, trained=classifier.is_trained,
                      path=str(classifier.model_path) if classifier.model_path else None,
                      device=classifier.device, precision=classifier.precision)
    return {k: fields.get(k) for k in ("name", "trained", "path", "device", "precision")}


def written_key(key: SeriesKey) -> SeriesKey:
    """The key as a JSON output writes it (its texts through :func:`safe_text`): how a series
    read back from a written file is matched (the streamed file's resume)."""
    return SeriesKey(*(safe_text(v) for v in key))


def make_row(record: SeriesRecord, prediction: Prediction, group: str = "") -> ResultRow:
    """The output row of one series."""
    return ResultRow.from_series(record, prediction, group=group)


def format_table(rows: Sequence[ResultRow], untrained: bool = False) -> str:
    """A fixed-width table for people; long UIDs are shortened to their tail."""
    cols = [("patient", 14), ("study", 10), ("#", 4), ("series UID", 14), ("description", 30),
            ("files", 5), ("plane", 8), ("label", 6), ("conf", 5)] + [(c, 5) for c in CLASS_NAMES] + [
            ("review", 6), ("group", 26), ("why review", 0)]
    out = io.StringIO()
    if untrained:
        out.write("MODEL: UNTRAINED - no trained model is installed; labels are NOT predicted.\n")
    out.write(" ".join(name.ljust(w) for name, w in cols).rstrip() + "\n")

    def tail(s: str, w: int) -> str:
        return s if len(s) <= w else "…" + s[-(w - 1):]

    for row in rows:
        r = safe_value(row.to_dict())
        probs = r["probabilities"] or {}
        cells = [
            tail(r["patient_id"] or "-", 14), tail(r["study_uid"] or "-", 10),
            str(r["series_number"] if r["series_number"] is not None else "-"),
            tail(r["series_uid"] or "-", 14), (r["description"] or "(none)")[:30], str(r["n_files"]), r["plane"],
            r["label"] or "-", f"{r['confidence']:.2f}" if r["confidence"] is not None else "-",
        ] + [f"{probs[c]:.2f}" if probs.get(c) is not None else "-" for c in CLASS_NAMES] + [
            "yes" if r["needs_review"] else "no", (r["group"] or "-")[:26], "; ".join(r["review_reasons"])]
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
        flat["review_reasons"] = "; ".join(str(x) for x in r["review_reasons"])
        for c in CLASS_NAMES:
            flat[f"p_{c}"] = (r["probabilities"] or {}).get(c)
        w.writerow({k: csv_cell(v) for k, v in flat.items()})
    return out.getvalue()


def format_json(rows: Sequence[ResultRow], skipped: Iterable[SkippedFile], model: dict[str, Any]) -> str:
    """One JSON document: ``{"model": ..., "series": [rows], "skipped": [...]}``."""
    doc = {
        "model": model,
        "series": [r.to_dict() for r in rows],
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
    return json_text(doc, indent=2) + "\n"


def format_jsonl(rows: Sequence[ResultRow], skipped: Iterable[SkippedFile],
                 extras: Optional[Callable[[ResultRow], dict[str, Any]]] = None) -> str:
    """JSON lines: one ``series`` event per row (with ``extras(row)``, e.g. a thumbnail) and one
    ``skipped`` event per file."""
    lines = [event_line(series_event(r, **(extras(r) if extras else {}))) for r in rows]
    lines += [event_line(skipped_event(s.path, s.reason)) for s in skipped]
    return "".join(lines)
