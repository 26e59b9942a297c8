"""Confirmations in, site memory out: from a label store or a ``SeriesInstanceUID,label`` CSV.

* :func:`load_confirmations` reads the confirmed entries of a label store
  (``confirmed_by`` as the store recorded it) or the rows of a labels CSV (the
  ``/work/shared/data/*/labels.csv`` format; ``?`` and empty labels are left
  out; who confirmed: a ``confirmed_by`` column, else the login name);
* :func:`sync` makes a memory agree with them (a withdrawn confirmation is
  forgotten, a changed one relabelled): cheap, no model run;
* :func:`add_rows` adds the confirmed series whose feature rows are at hand
  (from a classification with a recording hook, or the recent-rows file);
* :func:`confirm_into_site` is the incremental step after one confirmation
  (the Slicer panel): the series' row from the recent-rows file of the last
  classification joins the site file; no model is loaded.

The recent-rows file (``<store>.recent.json`` / ``.npy``, same format as a
site file, label = the prediction) holds the rows of the last
:data:`RECENT_MAX` series classified with ``--adapt`` a label store; it is
never used to classify.
"""

from __future__ import annotations

import csv
import getpass
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

import numpy as np

from SeqClassifierLib.adaptation import sitefile
from SeqClassifierLib.adaptation.memory import SiteMemory
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel

PathLike = Union[str, os.PathLike]
#: Rows kept in the recent-rows file.
RECENT_MAX = 5000
_INFO = ("confirmed_by", "confirmed_at", "patient_id", "study_uid", "description", "series_dir")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def is_store(path: PathLike) -> bool:
    """A label store (JSON) rather than a labels CSV."""
    return str(path).lower().endswith(".json")


def load_confirmations(path: PathLike) -> Dict[str, Dict[str, Any]]:
    """series UID -> {label, confirmed_by, confirmed_at, patient_id, study_uid, description, series_dir}.

    ValueError (one line, naming the file) when the file cannot be used.
    """
    if is_store(path):
        if not os.path.exists(path):
            return {}  # a store nobody confirmed anything in yet
        store = LabelStore(path, on_corrupt="raise")
        out = {}
        for e in store.load().values():  # by SeriesKey; the site keys by UID and keeps patient and study
            if e.confirmed_label is None:
                continue
            out[e.series_uid] = {"label": e.confirmed_label, "confirmed_by": e.confirmed_by or "unknown",
                        "confirmed_at": e.confirmed_at or "", "patient_id": e.patient_id,
                        "study_uid": e.study_uid, "description": e.description, "series_dir": e.series_dir}
        return out
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            fields = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"labels CSV {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if rows and not {"SeriesInstanceUID", "label"} <= fields:
        raise ValueError(f"labels CSV {path}: needs the columns SeriesInstanceUID and label")
    who = _user()
    base = os.path.dirname(os.path.abspath(path))
    out = {}
    for r in rows:
        uid, raw = (r.get("SeriesInstanceUID") or "").strip(), (r.get("label") or "").strip()
        if not uid or not raw:
            continue
        try:
            label = SequenceLabel.parse(raw).value
        except ValueError:
            continue  # "?" (uncertain) and unknown labels are not confirmations
        if label not in CLASS_NAMES:
            continue
        series_dir = (r.get("series_dir") or "").strip()
        out[uid] = {"label": label, "confirmed_by": (r.get("confirmed_by") or "").strip() or who,
                    "confirmed_at": "", "patient_id": "", "study_uid": "",
                    "description": (r.get("SeriesDescription") or "").strip(),
                    "series_dir": os.path.join(base, series_dir) if series_dir else ""}
    return out


def sync(memory: SiteMemory, confirmations: Mapping[str, Mapping[str, Any]]) -> Tuple[int, int]:
    """Forget series no longer confirmed, relabel changed ones.  Returns (removed, relabelled).

    Series imported from another reader's export (``imported_from``) stay unless ``confirmations``
    names them with another label.
    """
    gone = [e["series_uid"] for e in memory.entries
            if e["series_uid"] not in confirmations and not e.get("imported_from")]
    removed = memory.remove(gone)
    relabelled = 0
    for e in list(memory.entries):
        c = confirmations.get(e["series_uid"])
        if c is None:
            continue
        if c["label"] != e["label"] or c.get("confirmed_by") != e.get("confirmed_by"):
            relabelled += c["label"] != e["label"]
            memory.relabel(e["series_uid"], c["label"], **{k: c.get(k) for k in _INFO})
    return removed, relabelled


def entry_of(uid: str, info: Mapping[str, Any], source: str = "") -> Dict[str, Any]:
    e = {"series_uid": uid, "label": info["label"]}
    e.update({k: info.get(k) or "" for k in _INFO})
    if source:
        e["source"] = source
    return e


def add_rows(memory: SiteMemory, confirmations: Mapping[str, Mapping[str, Any]],
             rows: Mapping[str, np.ndarray], source: str = "") -> int:
    """Add the confirmed series that have a feature row and are not in the memory yet."""
    new = [(uid, rows[uid]) for uid in confirmations if uid in rows and uid not in memory
           and np.asarray(rows[uid]).shape == (memory.vectors.shape[1],)]
    if new:
        memory.add_many([entry_of(uid, confirmations[uid], source) for uid, _ in new],
                        np.stack([r for _, r in new]))
    return len(new)


def recent_path(store: PathLike) -> Path:
    p = Path(os.path.abspath(os.fspath(store)))
    stem = p.name[:-len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + ".recent.site.json")


def save_recent(store: PathLike, layout, identity: Mapping[str, str], shipped: Mapping[str, Any],
                rows: Mapping[str, np.ndarray]) -> int:
    """Merge this run's rows into the recent-rows file (newest last, at most :data:`RECENT_MAX`)."""
    anchor = recent_path(store)
    try:
        recent = sitefile.read(anchor, identity)
    except sitefile.SiteFileError:  # another model's or damaged: this run's rows replace it
        recent = None
    if recent is None or recent.layout != dict(layout):
        recent = SiteMemory(layout)
    items = [(uid, r) for uid, r in rows.items() if getattr(shipped.get(uid), "label", None) is not None]
    if not items:
        return 0
    recent.remove([uid for uid, _ in items])  # re-added at the end: newest last
    recent.add_many([{"series_uid": uid, "label": shipped[uid].label.value} for uid, _ in items],
                    np.stack([r for _, r in items]))
    if len(recent) > RECENT_MAX:
        recent.remove([e["series_uid"] for e in recent.entries[:len(recent) - RECENT_MAX]])
    sitefile.save(recent, anchor, identity)
    return len(items)


def _identity_of(anchor: PathLike) -> Optional[Dict[str, str]]:
    try:
        doc = json.loads(sitefile.site_paths(anchor)[0].read_text(encoding="utf-8"))
        model = doc.get("model") or {}
        return {"name": str(model.get("name") or ""), "weights_sha256": str(model.get("weights_sha256") or "")}
    except (OSError, ValueError, AttributeError):
        return None


def confirm_into_site(store: PathLike, uids: Iterable[str]) -> Tuple[int, str]:
    """After confirmations in ``store``: bring its site file up to date without loading a model.

    Withdrawn / changed confirmations are applied, and the confirmed series among ``uids`` whose
    rows the recent-rows file holds are added.  Returns (series in the site, one line of what
    happened; empty when there was nothing to do).
    """
    identity = _identity_of(recent_path(store)) or _identity_of(store)
    if identity is None:
        return 0, ""
    try:
        confirmations = load_confirmations(store)
        memory = sitefile.read(store, identity)
        recent = sitefile.read(recent_path(store), identity)
    except (ValueError, OSError) as exc:
        return 0, str(exc)
    if memory is None:
        if recent is None:
            return 0, ""
        memory = SiteMemory(recent.layout)
    removed, relabelled = sync(memory, confirmations)
    rows = {}
    if recent is not None and recent.layout == memory.layout:
        wanted = set(uids)
        rows = {e["series_uid"]: recent.vectors[i] for i, e in enumerate(recent.entries) if e["series_uid"] in wanted}
    added = add_rows(memory, confirmations, rows, source="panel")
    if not (removed or relabelled or added):
        return len(memory), ""
    if len(memory):
        sitefile.save(memory, store, identity)
    else:
        sitefile.delete(store)
    return len(memory), f"site memory: {len(memory)} confirmed series (+{added}, -{removed}, {relabelled} relabelled)"


def summary(memory: SiteMemory, identity: Mapping[str, str]) -> Dict[str, Any]:
    """What the site memory holds: series per label, per reader, the model."""
    per_label = {c: 0 for c in CLASS_NAMES}
    per_user: Dict[str, int] = {}
    for e in memory.entries:
        per_label[e["label"]] += 1
        who = e.get("confirmed_by") or "unknown"
        per_user[who] = per_user.get(who, 0) + 1
    return {"n_series": len(memory), "per_label": per_label, "confirmed_by": dict(sorted(per_user.items())),
            "model": dict(identity), "layout": {p: list(v) for p, v in memory.layout.items()}}
