"""Header cache: file headers already read, reused while the file is unchanged.

:class:`HeaderCache` maps a file's absolute path and stat (size, mtime,
inode, ctime) to what reading it gave (a :class:`~.header.FileHeader` or
the reason it is unusable).  :func:`.discovery.discover_series` takes one;
:meth:`HeaderCache.persistent` keeps it as JSON in the user's cache folder
(:func:`.config.header_cache_file`), never in an input folder.
"""

from __future__ import annotations

import json
import math
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


_TEXT_FIELDS = ("series_uid", "study_uid", "patient_id", "patient_name", "study_date", "description",
                "protocol_name", "manufacturer", "sop_class_uid", "modality", "sop_instance_uid")
_OPTIONAL_INT_FIELDS = ("series_number", "instance_number", "acquisition_number")
_FIELDS = frozenset(_TEXT_FIELDS + _OPTIONAL_INT_FIELDS + ("mosaic_tiles", "header", "frames"))


class DamagedEntry(ValueError):
    """A cache entry that is not what :func:`_header_to_json` writes (the message says what is wrong)."""


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)


def _numbers(v: Any, n: int, what: str) -> Optional[tuple[float, ...]]:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != n or not all(_is_number(x) for x in v):
        raise DamagedEntry(f"{what} is not {n} numbers")
    return tuple(v)


def _optional(v: Any, test: Any, what: str) -> Any:
    if v is not None and not test(v):
        raise DamagedEntry(f"{what} has the wrong type ({type(v).__name__})")
    return v


def _header_value_ok(v: Any) -> bool:
    if isinstance(v, list):
        return all(isinstance(x, str) or _is_number(x) for x in v)
    return isinstance(v, str) or _is_number(v)


def _frame_from_json(fr: Any) -> FileFrame:
    if not isinstance(fr, list) or len(fr) != 7 or not _is_int(fr[0]):
        raise DamagedEntry("a frame is not [index, position, orientation, b, time, trigger, stack]")
    return FileFrame(fr[0], _numbers(fr[1], 3, "a frame position"), _numbers(fr[2], 6, "a frame orientation"),
                     _optional(fr[3], _is_number, "a frame b-value"), _optional(fr[4], _is_int, "a frame time point"),
                     _optional(fr[5], _is_number, "a frame trigger time"),
                     _optional(fr[6], _is_int, "a frame stack position"))


def _header_from_json(path: str, d: Any) -> FileHeader:
    """The :class:`FileHeader` of a cache entry, every field checked by type (:class:`DamagedEntry`)."""
    if not isinstance(d, dict):
        raise DamagedEntry(f"entry is a {type(d).__name__}, not an object")
    if set(d) != _FIELDS:
        wrong = sorted(_FIELDS - set(d)) or sorted(set(d) - _FIELDS)
        raise DamagedEntry(f"entry {'lacks' if _FIELDS - set(d) else 'has unknown'} {', '.join(map(str, wrong[:3]))}")
    for key in _TEXT_FIELDS:
        if not isinstance(d[key], str):
            raise DamagedEntry(f"{key} is not text")
    for key in _OPTIONAL_INT_FIELDS:
        _optional(d[key], _is_int, key)
    if not _is_int(d["mosaic_tiles"]) or d["mosaic_tiles"] < 0:
        raise DamagedEntry("mosaic_tiles is not a count")
    header = d["header"]
    if not isinstance(header, dict) or not all(_header_value_ok(v) for v in header.values()):
        raise DamagedEntry("header is not an object of text, numbers and lists of them")
    if not isinstance(d["frames"], list) or not d["frames"]:
        raise DamagedEntry("frames is not a non-empty list")
    frames = [_frame_from_json(fr) for fr in d["frames"]]
    fields_ = {k: v for k, v in d.items() if k != "frames"}
    fields_["header"] = {k: list(v) if isinstance(v, list) else v for k, v in header.items()}
    return FileHeader(path=path, frames=frames, **fields_)


def _stat_key_ok(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_int(x) for x in v)


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
        #: Why the persisted file was ignored by the last :meth:`load` (None: used, or absent).
        self.problem: Optional[str] = None
        #: Entries found damaged at lookup since the last :meth:`pop_warnings` (ignored, read again).
        self.damaged = 0
        self._first_damage = ""

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
        value = entry[1]
        if isinstance(value, str):
            self.hits += 1
            return value, st
        if not isinstance(value, FileHeader):  # loaded from JSON: checked and converted once
            try:
                value = _header_from_json(path, value)
            except DamagedEntry as exc:  # the file is read again and the entry replaced
                del self._entries[os.path.abspath(path)]
                self.changed = True
                self.damaged += 1
                self._first_damage = self._first_damage or f"{path}: {exc}"
                self.misses += 1
                return None, st
            self._entries[os.path.abspath(path)] = (entry[0], value)
        self.hits += 1
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
        """Read the persisted cache (if any); False when absent, from another version or damaged.

        A file that cannot be read, is not JSON, or is JSON of another shape
        (a list, ``null``, entries of the wrong type, nesting too deep for the
        parser...) is ignored -- the cache starts empty and the next
        :meth:`save` rewrites it -- and :attr:`problem` says why in one line
        (:meth:`pop_warnings`).  Never raises for the file's content.
        Each entry's header is checked by type when it is first looked up.
        """
        self.problem = None
        if self.path is None or not self.path.is_file():
            return False
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            return self._ignore(f"cannot read it ({exc.strerror or exc})")
        except RecursionError:
            return self._ignore("nested too deeply to be a header cache")
        except MemoryError:
            return self._ignore("too large to load")
        except (ValueError, OverflowError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge numbers
            return self._ignore(f"not JSON ({type(exc).__name__})")
        if not isinstance(data, dict):
            return self._ignore(f"a JSON {type(data).__name__}, not a header cache object")
        stamp = data.get("stamp")
        if not isinstance(stamp, str):
            return self._ignore("no version stamp")
        if stamp != self._stamp():
            self._entries.clear()
            return False  # written by another version: silently rebuilt
        entries = data.get("entries")
        if not isinstance(entries, dict):
            return self._ignore("entries is not an object")
        loaded: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
        for key, item in entries.items():
            if (not isinstance(item, list) or len(item) != 2 or not _stat_key_ok(item[0])
                    or not isinstance(item[1], (str, dict))):
                return self._ignore(f"an entry of the wrong shape ({key[:200]!r})")
            loaded[key] = (tuple(item[0]), item[1])  # type: ignore[assignment]
        self._entries.update(loaded)
        return True

    def _ignore(self, why: str) -> bool:
        self._entries.clear()
        self.changed = True  # the damaged file is replaced on the next save
        self.problem = f"header cache {self.path} ignored and rebuilt: {why}"
        return False

    def pop_warnings(self) -> list[str]:
        """One line per problem met since the last call (a damaged file, damaged entries); clears them."""
        out = [self.problem] if self.problem else []
        if self.damaged:
            out.append(f"header cache {self.path}: {self.damaged} damaged "
                       f"entr{'y' if self.damaged == 1 else 'ies'} ignored and read again "
                       f"(first: {self._first_damage})")
        self.problem, self.damaged, self._first_damage = None, 0, ""
        return out

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
