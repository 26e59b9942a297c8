"""The review panel and the site memory (SeqClassifierLib.adaptation), without Qt or Slicer.

* every classification of the panel runs with ``--adapt <label store>``: the
  site file beside the store adapts the rows once readers confirmed series, and
  the classifier process keeps each series' feature row (the recent-rows file);
* a confirmation (one row, or "confirm all") moves the confirmed series' rows
  into the site file at once (:func:`after_confirmation`): the next
  classification uses them, no restart, no model loaded in Slicer;
* :func:`status_text` says "Adapted to N confirmed series of this site.";
* :func:`shipped_rows` gives the rows as the shipped model answered (the
  panel's switch), from the ``adapted.shipped`` record each adapted row carries.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Iterable, List, Sequence

from SeqClassifierLib.adaptation import build, sitefile

log = logging.getLogger("SeqClassifier")


def adapt_args(store: Any) -> List[str]:
    """The classifier command line's options for the site memory of ``store``."""
    return ["--adapt", str(store.path)]


def n_confirmed(store: Any) -> int:
    """How many confirmed series the site file beside ``store`` holds (0: none or unreadable)."""
    try:
        doc = json.loads(sitefile.site_paths(store.path)[0].read_text(encoding="utf-8"))
        return len(doc.get("series") or []) if doc.get("schema") == sitefile.SCHEMA else 0
    except (OSError, ValueError, AttributeError):
        return 0


def status_text(store: Any, shipped: bool = False) -> str:
    n = n_confirmed(store)
    if not n:
        return ""
    if shipped:
        return f"Showing the shipped model's answers (the site memory holds {n} confirmed series)."
    return f"Adapted to {n} confirmed series of this site."


def after_confirmation(store: Any, series_uids: Iterable[str]) -> str:
    """Bring the site file up to date after confirmations; one line of what happened ('' if nothing)."""
    try:
        _, line = build.confirm_into_site(store.path, list(series_uids))
    except (OSError, ValueError) as exc:
        line = f"site memory not updated: {exc}"
    if line:
        log.info("SeqClassifier: %s", line)
    return line


def shipped_result(row: Any) -> Any:
    """A :class:`~SeqClassifierLib.records.ResultRow` as the shipped model gave it (itself when not adapted)."""
    adapted = getattr(row, "adapted", None)
    shipped = (adapted or {}).get("shipped") if isinstance(adapted, dict) else None
    if not shipped:
        return row
    return dataclasses.replace(
        row, label=shipped.get("label"), confidence=shipped.get("confidence"),
        probabilities=dict(shipped.get("probabilities") or {}) or None,
        needs_review=bool(shipped.get("needs_review")), review_reasons=list(shipped.get("review_reasons") or []),
        note=shipped.get("note") or "", adapted=None)


def shipped_rows(rows: Sequence[Any]) -> List[Any]:
    """Review rows showing the shipped model's answers (the confirmations stay)."""
    return [dataclasses.replace(r, result=shipped_result(r.result)) for r in rows]
