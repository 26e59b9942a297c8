"""Label-store writes that never wait for the store's lock on Slicer's GUI thread (plain Python).

The label store locks its file for every write and waits up to ``lock_timeout`` (30 s) when
another process (a second Slicer, ``seqclassifier`` on the command line) holds it.  On the GUI
thread that would freeze Slicer, so :class:`StoreWrites` with ``wait=False`` tries the lock
once (``lock_timeout`` 0): when it is busy the write is queued, what it will write is kept as a
provisional entry (the panel shows it at once), and :meth:`StoreWrites.flush` (called from a
QTimer by the panel) retries the queue in order.  With ``wait=True`` (scripts) it writes as the
store always did.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Mapping, Optional

from SeqClassifierLib.curation.label_store import LabelEntry, LockTimeout
from SeqClassifierLib.records import SeriesKey


class StoreWrites:
    """Writes to ``store_of()`` (the session's current store), in order, queued while it is locked."""

    def __init__(self, store_of: Callable[[], Any], wait: bool = True):
        self.store_of = store_of
        self.wait = wait
        #: (description, write) not yet done, oldest first.
        self.pending: list[tuple[str, Callable[[], Any]]] = []
        #: SeriesKey -> the entry the queued writes will leave in the store.
        self.provisional: dict[SeriesKey, LabelEntry] = {}

    @contextlib.contextmanager
    def _no_wait(self) -> Iterator[None]:
        store = self.store_of()
        if self.wait:
            yield
            return
        old = store.lock_timeout
        store.lock_timeout = 0.0  # one try, never a wait
        try:
            yield
        finally:
            store.lock_timeout = old

    def submit(self, what: str, write: Callable[[], Any],
               provisional: Optional[Callable[[], Mapping[SeriesKey, LabelEntry]]] = None) -> tuple[bool, Any]:
        """Do ``write`` now (returns (True, its result)) or queue it while the store is locked
        (returns (False, None)); ``provisional()``: the entries it will write, shown meanwhile
        (computed only when the write has to wait)."""
        if not self.pending:
            try:
                with self._no_wait():
                    return True, write()
            except LockTimeout:
                pass
        self.provisional.update(provisional() if provisional is not None else {})
        self.pending.append((what, write))
        return False, None

    def flush(self) -> int:
        """Retry the queued writes in order (each one try); returns how many are still waiting.
        A write that fails otherwise than on the lock is dropped and its error raised."""
        while self.pending:
            what, write = self.pending[0]
            try:
                with self._no_wait():
                    write()
            except LockTimeout:
                return len(self.pending)
            except Exception:
                self.pending.pop(0)
                if not self.pending:
                    self.provisional.clear()
                raise
            self.pending.pop(0)
        self.provisional.clear()
        return 0

    def entries(self) -> dict[SeriesKey, LabelEntry]:
        """The store's entries with the queued writes' entries over them (read without the lock)."""
        entries = dict(self.store_of().load())
        entries.update(self.provisional)
        return entries

    def waiting_text(self) -> str:
        n = len(self.pending)
        if not n:
            return ""
        return (f"The label store is locked by another program: {n} change{'s' if n != 1 else ''} "
                f"({self.pending[0][0]}{', ...' if n > 1 else ''}) will be saved as soon as it is free.")


def confirmed_entry(current: Optional[LabelEntry], key: SeriesKey, value: Optional[str], who: str, when: str,
                    **info: Any) -> LabelEntry:
    """The entry ``LabelStore.confirm`` will write (for showing it while the write waits)."""
    entry = dataclasses.replace(current) if current is not None else \
        LabelEntry(series_uid=key.series_uid, patient_id=key.patient_id, study_uid=key.study_uid)
    entry.confirmed_label = value
    entry.confirmed_by = who if value is not None else None
    entry.confirmed_at = when if value is not None else None
    for key, v in info.items():
        if v not in (None, ""):
            setattr(entry, key, v)
    return entry
