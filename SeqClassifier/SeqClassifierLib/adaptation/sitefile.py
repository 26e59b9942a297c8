"""The site files: a site memory on disk, beside the label store, tied to one model.

``labels.json`` (the label store) gets two neighbours::

    labels.site.json   {"schema": "seqclassifier-site", "version": 1,
                        "model": {"name": ..., "weights_sha256": ...},
                        "layout": {"image": [4, 128], "meta": [4, 64], ...},
                        "vectors_sha256": "...", "updated_at": "...",
                        "series": [{"series_uid", "label", "confirmed_by", "confirmed_at",
                                    "patient_id", "study_uid", "description", "source"}, ...]}
    labels.site.npy    float32 [N, row width]: row i is series i's features (numpy format, no pickles)

Both are written atomically (temporary file + ``os.replace``), the ``.npy``
first; the JSON names the SHA-256 of the ``.npy`` so a pair from two different
writes is caught.  Deleting them is safe: the classifier is back to the
shipped model's rows.  Errors are one line: :class:`SiteModelMismatch` for a
site of another model (refused), :class:`SiteFileError` for a damaged file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from SeqClassifierLib.adaptation.memory import PLACES, SiteMemory, row_width
from SeqClassifierLib.atomic import atomic_write_bytes, atomic_write_text

SCHEMA = "seqclassifier-site"
VERSION = 1
PathLike = Union[str, os.PathLike]
#: Site JSON files larger than this are refused as damaged.
MAX_JSON_BYTES = 64 * 1024 * 1024


class SiteFileError(ValueError):
    """A site file that cannot be used (damaged, wrong schema); the message is one line."""


class SiteModelMismatch(SiteFileError):
    """The site file was made with another model."""


def site_paths(anchor: PathLike) -> Tuple[Path, Path]:
    """(``<stem>.site.json``, ``<stem>.site.npy``) beside ``anchor`` (a label store or a labels CSV),
    or ``anchor`` itself and its ``.npy`` when it already names a ``.site.json`` file."""
    p = Path(os.path.abspath(os.fspath(anchor)))
    if p.name.endswith(".site.json"):
        return p, p.with_name(p.name[:-len(".json")] + ".npy")
    stem = p.name[:-len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + ".site.json"), p.with_name(stem + ".site.npy")


def model_identity(card: Mapping[str, Any]) -> Dict[str, str]:
    """What ties a site to a model: the card's name@version and its weights' SHA-256 (``card``: the
    card's JSON, or a typed :class:`~SeqClassifierLib.model.card.ModelCard`)."""
    card = getattr(card, "raw", card)
    name = str(card.get("name") or "")
    if card.get("version"):
        name += f"@{card['version']}"
    return {"name": name, "weights_sha256": str(card.get("weights_sha256") or "").lower()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def save(memory: SiteMemory, anchor: PathLike, identity: Mapping[str, str]) -> Tuple[Path, Path]:
    """Write the memory beside ``anchor`` (atomically, ``.npy`` first).  Returns the two paths."""
    json_path, npy_path = site_paths(anchor)
    data = _npy_bytes(memory.vectors)
    doc = {
        "schema": SCHEMA,
        "version": VERSION,
        "model": dict(identity),
        "layout": {p: list(v) for p, v in memory.layout.items()},
        "vectors_file": npy_path.name,
        "vectors_sha256": hashlib.sha256(data).hexdigest(),
        "updated_at": _now(),
        "series": [dict(e) for e in memory.entries],
    }
    atomic_write_bytes(npy_path, data)
    atomic_write_text(json_path, json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    return json_path, npy_path


def delete(anchor: PathLike) -> int:
    """Remove the site files of ``anchor``; returns how many were there."""
    n = 0
    for p in site_paths(anchor):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


def exists(anchor: PathLike) -> bool:
    return site_paths(anchor)[0].is_file()


def _fail(path: Path, reason: str) -> SiteFileError:
    return SiteFileError(f"site file {path}: {reason}; not used (the shipped model's answers are given)")


def read(anchor: PathLike, identity: Optional[Mapping[str, str]] = None) -> Optional[SiteMemory]:
    """The memory beside ``anchor``; None when there is none.

    :class:`SiteModelMismatch` when it was made with a model other than ``identity``'s,
    :class:`SiteFileError` when it is damaged.
    """
    json_path, npy_path = site_paths(anchor)
    try:
        size = json_path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(json_path, f"cannot read ({exc.strerror or exc})") from None
    if size > MAX_JSON_BYTES:
        raise _fail(json_path, f"larger than {MAX_JSON_BYTES // (1024 * 1024)} MB")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(json_path, f"invalid JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise _fail(json_path, "not a SeqClassifier site file")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise _fail(json_path, f"version {doc.get('version')!r} is not one this SeqClassifier reads")
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    if identity is not None:
        want = str(identity.get("weights_sha256") or "")
        have = str(model.get("weights_sha256") or "")
        if not have or have != want:
            raise SiteModelMismatch(
                f"site file {json_path} was made with model {model.get('name') or '?'} (weights {have[:12] or '?'}), "
                f"not with {identity.get('name') or 'this model'} (weights {want[:12]}): refused; "
                "delete it or rebuild it with `seqclassifier adapt`")
    try:
        layout = {str(p): (int(v[0]), int(v[1])) for p, v in doc["layout"].items()}
        if any(p not in PLACES for p in layout):
            raise ValueError("unknown place")
        series = list(doc["series"])
        if not all(isinstance(e, dict) and isinstance(e.get("series_uid"), str) for e in series):
            raise ValueError("series entries")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _fail(json_path, f"wrong layout or series list ({exc})") from None
    try:
        raw = npy_path.read_bytes()
    except OSError as exc:
        raise _fail(npy_path, f"cannot read ({exc.strerror or exc})") from None
    if hashlib.sha256(raw).hexdigest() != doc.get("vectors_sha256"):
        raise _fail(npy_path, f"does not match {json_path.name} (SHA-256 differs)")
    try:
        vectors = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(npy_path, f"not a numpy array ({exc})") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape != (len(series), row_width(layout)):
        raise _fail(npy_path, f"array {vectors.dtype} {vectors.shape} does not fit {len(series)} series")
    memory = SiteMemory(layout)
    try:
        if len(series):
            memory.add_many(series, vectors)
    except ValueError as exc:
        raise _fail(json_path, str(exc)) from None
    return memory
