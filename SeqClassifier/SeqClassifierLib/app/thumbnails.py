"""Small grey thumbnails of each series' center slice, sent with the JSON-lines results.

``classify --format jsonl --thumbnails`` adds ``"thumbnail"`` to every ``series`` event
(:func:`encode`: ``{"width", "height", "format": "gray8", "data": base64}``), so the
Slicer panel draws its images from the child process's output instead of reading the
DICOM files again in the application's GUI thread.
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from SeqClassifierLib.app.output import format_jsonl
from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.inputs.thumbnail import SIZE, thumbnail_uint8  # noqa: F401  (API)
from SeqClassifierLib.records import ResultRow, SeriesRecord, SkippedFile

FORMAT = "gray8"


def encode(pixels: np.ndarray) -> dict:
    """A uint8 2D array -> the JSON form of a thumbnail."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = pixels.shape
    return {"width": int(w), "height": int(h), "format": FORMAT,
            "data": base64.b64encode(pixels.tobytes()).decode("ascii")}


def decode(data: Any) -> Optional[np.ndarray]:
    """The JSON form -> uint8 (height, width) array; None when it is missing or malformed."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    try:
        w, h = int(data["width"]), int(data["height"])
        raw = base64.b64decode(str(data["data"]), validate=True)
    except (KeyError, TypeError, ValueError):
        return None
    if w <= 0 or h <= 0 or len(raw) != w * h:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w).copy()


def series_thumbnail(record: SeriesRecord, size: int = SIZE) -> Optional[dict]:
    """The encoded thumbnail of one series, or None when its image cannot be read."""
    try:
        return encode(thumbnail_uint8(load_center_slice(record), size))
    except Exception:  # an unreadable image never stops a run: the row just has no picture
        return None


def format_jsonl_with_thumbnails(rows: Sequence[ResultRow], skipped: Iterable[SkippedFile],
                                 records: Sequence[SeriesRecord], made: Optional[Mapping] = None) -> str:
    """:func:`~SeqClassifierLib.app.output.format_jsonl`, each series event with its thumbnail.

    ``made``: thumbnails already made by key (the classifier's, from the slice the model read:
    ``Classifier.thumbnails``); a series not in it has its centre slice read here."""
    by_key = {r.key: r for r in records}
    made = made or {}

    def thumbnail(row: ResultRow) -> dict:
        if made.get(row.key) is not None:
            return {"thumbnail": encode(made[row.key])}
        record = by_key.get(row.key)
        return {"thumbnail": series_thumbnail(record) if record is not None else None}
    return format_jsonl(rows, skipped, extras=thumbnail)
