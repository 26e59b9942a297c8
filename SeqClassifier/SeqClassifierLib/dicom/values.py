"""Value helpers: one element value -> text, number, list; never an exception.

A missing or malformed value becomes None (or "" / []), so that bad input is a
missing attribute, not a crash.  The helpers accept pydicom's value types
(str, IS, DSfloat, bytes, MultiValue, PersonName) and the plain Python values
of the fast reader (:class:`ValueDataset`) alike and give the same result for
both.
"""

from __future__ import annotations

import math
from typing import Any, Optional

#: Plausible range of a diffusion b-value in s/mm^2; values outside are malformed.
MAX_B_VALUE = 100_000.0


def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip(" \x00")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value).strip()


def _text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_text(v).upper() for v in value if _text(v)]
    text = _text(value)
    return [t.strip().upper() for t in text.split("\\") if t.strip()]


def _float(value: Any) -> Optional[float]:
    """First numeric value of an element value, or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return _float(value[0]) if len(value) else None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace").strip(" \x00")
    try:
        out = float(value)
    except (TypeError, ValueError):
        text = str(value).strip().split("\\")[0]
        try:
            out = float(text)
        except ValueError:
            return None
    return out if math.isfinite(out) else None


def _floats(value: Any, n: int) -> Optional[tuple[float, ...]]:
    """Exactly ``n`` finite floats, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace").strip(" \x00").split("\\")
    elif isinstance(value, str):
        value = value.split("\\")
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != n or not all(math.isfinite(v) for v in items):
        return None
    return tuple(items)


def _int(value: Any) -> Optional[int]:
    f = _float(value)
    return int(f) if f is not None and abs(f) < 2**62 else None


def _valid_b(b: Optional[float]) -> Optional[float]:
    """A b-value in the plausible range (rounded to 1e-3), else None."""
    if b is None or not (0.0 <= b <= MAX_B_VALUE):
        return None
    return float(round(b, 3))


class _Value:
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


class ValueDataset:
    """Already-decoded header values by tag (what :mod:`.fast_header` produces).

    Offers the small part of pydicom's ``Dataset`` API the reader uses
    (``get``, ``in``, ``file_meta``); values are plain str / int / float /
    bytes or lists of them, which the value helpers here treat exactly like
    pydicom's str / IS / DSfloat / bytes / MultiValue.
    """

    __slots__ = ("values", "file_meta", "same")

    def __init__(self, values: dict, file_meta: Any = None, same: Optional[tuple] = None):
        self.values = values
        self.file_meta = file_meta
        #: None, or (a cache of results for another file, the tags whose values differ from that
        #: file's): a result computed from other tags' values alone may be taken from the cache
        self.same = same

    def get(self, tag: Any, default: Any = None) -> Any:
        if tag in self.values:
            return _Value(self.values[tag])
        return default

    def __contains__(self, tag: Any) -> bool:
        return tag in self.values

    def __getitem__(self, tag: Any) -> Any:
        if tag in self.values:
            return _Value(self.values[tag])
        raise KeyError(tag)


def _elem_value(ds: Any, tag: Any) -> Any:
    """Value of ``tag`` in ``ds`` or None; never raises on malformed elements."""
    if type(ds) is ValueDataset:
        return ds.values.get(tag)
    try:
        elem = ds.get(tag)
        return None if elem is None else elem.value
    except Exception:  # malformed value that pydicom cannot convert
        return None


def _first_item(ds: Any, tag: Any) -> Any:
    seq = _elem_value(ds, tag)
    try:
        return seq[0] if seq else None
    except Exception:
        return None
