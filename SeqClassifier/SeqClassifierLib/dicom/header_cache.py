"""Header cache: file headers already read, reused while the file is unchanged.

:class:`HeaderCache` maps a file's absolute path and stat (size, mtime,
inode, ctime) to what reading it gave (a :class:`~.header.FileHeader` or
the reason it is unusable).  :func:`.discovery.discover_series` takes one;
:meth:`HeaderCache.persistent` keeps it as JSON in the user's cache folder
(:func:`.config.header_cache_file`), never in an input folder.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace as dataclasses_replace
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from SeqClassifierLib import __version__
from SeqClassifierLib.atomic import atomic_write_text
from SeqClassifierLib.config import header_cache_file
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.header import FileFrame, FileHeader, Outcome

PathLike = Union[str, os.PathLike]


def _header_to_json(h: FileHeader) -> dict[str, Any]:
    d = {f: getattr(h, f) for f in (
        "series_uid", "study_uid", "patient_id", "patient_name", "study_date", "series_number",
        "instance_number", "acquisition_number", "description", "protocol_name", "manufacturer",
        "sop_class_uid", "modality", "mosaic_tiles", "header", "sop_instance_uid")}
    d["frames"] = [[f.frame, f.ipp, f.iop, f.b_value, f.temporal, f.trigger_time, f.stack_position]
                   for f in h.frames]
    return d


def _header_from_json(path: str, d: dict[str, Any]) -> FileHeader:
    frames = [FileFrame(fr[0], None if fr[1] is None else tuple(fr[1]), None if fr[2] is None else tuple(fr[2]),
                     fr[3], fr[4], fr[5], fr[6]) for fr in d["frames"]]
    fields_ = {k: v for k, v in d.items() if k != "frames"}
    return FileHeader(path=path, frames=frames, **fields_)


class HeaderCache:
    """Headers already read, keyed by absolute path and checked against the file's stat.

    An entry is used only while the file's size, modification time (ns),
    inode and status-change time are those recorded; anything else is a miss
    and the file is read again.  Files modified in the last
    :attr:`RACY_SECONDS` are not cached (they may still be being written).
    Reasons for unusable files are cached too, except I/O errors ("cannot
    read ...") which may be transient.

    In memory by default; :meth:`load` / :meth:`save` persist it as JSON in
    ``path`` (default :func:`.config.header_cache_file`), written
    atomically, and never inside a folder being read.
    """

    #: Bump when FileHeader, HEADER_TAGS or any value rule changes.
    FORMAT = 2
    RACY_SECONDS = 2.0

    def __init__(self, path: Optional[PathLike] = None, *, max_entries: int = 50_000):
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries  # ~1.2 KB of JSON each: 50,000 files ~ 60 MB on disk
        self.changed = False
        self._entries: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
        self.hits = 0
        self.misses = 0

    @classmethod
    def persistent(cls, path: Optional[PathLike] = None, **kw: Any) -> "HeaderCache":
        """A cache stored at ``path`` (default: the user cache folder), loaded now if it exists."""
        cache = cls(path if path is not None else header_cache_file(), **kw)
        cache.load()
        return cache

    @staticmethod
    def _stamp() -> str:
        return f"{HeaderCache.FORMAT}:{__version__}:{len(T.HEADER_TAGS)}:{sum(int(t) for t in T.HEADER_TAGS)}"

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, int, int, int]:
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def lookup(self, path: PathLike) -> tuple[Optional[Outcome], Optional[os.stat_result]]:
        """(cached outcome or None, the file's stat or None) for ``path``."""
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except OSError:
            self.misses += 1
            return None, None
        entry = self._entries.get(os.path.abspath(path))
        if entry is None or entry[0] != self._key(st):
            self.misses += 1
            return None, st
        self.hits += 1
        value = entry[1]
        if isinstance(value, str):
            return value, st
        if not isinstance(value, FileHeader):  # loaded from JSON: convert once
            value = _header_from_json(path, value)
            self._entries[os.path.abspath(path)] = (entry[0], value)
        return (value if value.path == path else dataclasses_replace(value, path=path)), st

    def store(self, path: PathLike, st: Optional[os.stat_result], outcome: Outcome) -> None:
        """Remember ``outcome`` for ``path`` as it was when ``st`` was taken."""
        if st is None or (isinstance(outcome, str) and outcome.startswith(("cannot read", "unexpected error"))):
            return
        if time.time() - st.st_mtime_ns / 1e9 < self.RACY_SECONDS:
            return
        key = os.path.abspath(os.fspath(path))
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (self._key(st), outcome)
        self.changed = True

    def load(self) -> bool:
        """Read the persisted cache (if any); False when absent, unreadable or from another version."""
        if self.path is None or not self.path.is_file():
            return False
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            if data.get("stamp") != self._stamp():
                return False
            for key, (stat_key, value) in data["entries"].items():
                self._entries[key] = (tuple(stat_key), value)
        except (OSError, ValueError, KeyError, TypeError):
            self._entries.clear()
            return False
        return True

    def save(self, inputs: Iterable[PathLike] = ()) -> Optional[Path]:
        """Write the cache atomically; never into (or under) any of ``inputs``.  Returns its path."""
        if self.path is None:
            return None
        target = Path(os.path.abspath(self.path))
        for root in inputs:
            root_abs = os.path.realpath(os.fspath(root))
            if os.path.isfile(root_abs):
                root_abs = os.path.dirname(root_abs)
            real_parent = os.path.realpath(target.parent)
            if real_parent == root_abs or real_parent.startswith(root_abs.rstrip(os.sep) + os.sep):
                raise ValueError(f"refusing to write the header cache {target} inside the input folder {root}")
        if not self.changed and target.is_file():
            return target  # nothing new since it was loaded or saved: no rewrite
        entries = {}
        for key, (stat_key, value) in self._entries.items():
            if isinstance(value, FileHeader):
                value = _header_to_json(value)
            entries[key] = [list(stat_key), value]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, json.dumps({"stamp": self._stamp(), "entries": entries},
                                             allow_nan=False, separators=(",", ":")))
        self.changed = False
        return target
