"""The last header's layout, replayed on the next file instead of walking it element by element.

The files of one series lay their headers out alike: the same elements in the
same order, with the same tags, VRs and almost always the same lengths (on the
shared ProstateX series, 150 elements a file, of which the Instance Number, the
Image Position, the Slice Location and the window values change from file to
file, and only some of those in length).  The top-level walk of
:mod:`.fast_header` (``_walk_top``) costs about 1 µs an element in Python.

While walking, the walker records every byte that steered it:
each header it read (tag, VR, length), each byte it peeked at (the implicit-VR
test of a sequence item, the item test of an undefined length), and the header
it stopped at (the pixel data).  :func:`replay` then checks the next file
against that record, in the order the walk read it, at the positions the walk
would reach:

* a byte range that is equal is what the walk would read there, so it would
  take the same turn and reach the next position, shifted by what changed
  before;
* a top-level element of defined length whose header differs in its length
  alone (same tag, VR and reserved bytes) is skipped or kept by its new length,
  as the walk would; every later position moves by the difference;
* anything else (another tag or VR, a length in a sequence, an undefined
  length, a value or header past the bytes read, a file too short for the
  stop header) ends the replay: :func:`replay` returns None and the file is
  walked, exactly as before, and its record kept for the files after it.

So a replayed file gives the kept raw values and the stop position the walk
gives, byte for byte (``Testing/Python/dicom/test_header_layout.py`` checks
every file of the shared data both ways, and files changed in each of those
ways).  Decoding and every check after the walk are unchanged.
"""

from __future__ import annotations

import struct
from typing import Optional

import numpy as np

__all__ = ["CHECK", "LEAF", "POISON", "STOP", "Layout", "finished", "replay"]

#: Kinds of a record entry ``(position, bytes, kind, tag, vr, length, header length, length offset)``.
CHECK = 0  # bytes the walk read that must be equal
LEAF = 1  # a top-level element header of defined length: equal, or another length alone
STOP = 2  # the header the walk stopped at (pixel data)
POISON = 3  # a read the record cannot stand for (bytes cut short by the end of the file): no layout

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<L").unpack_from
_SPAN = np.arange(12)


class Layout:
    """A finished record: the data set's start position, the entries and the ``wanted`` set it was
    walked for, and whether the data set is in implicit VR.  ``volatile``: the entries (indices of
    top-level elements) whose length was seen to change from file to file; ``_arrays``: the entries as
    arrays for the one-pass check (:func:`_check_all`), made at the first replay."""

    __slots__ = ("start", "entries", "wanted", "implicit", "volatile", "_arrays")

    def __init__(self, start: int, entries: list, wanted: frozenset, implicit: bool):
        self.start = start
        self.entries = entries
        self.wanted = wanted
        self.implicit = implicit
        self.volatile: tuple = ()
        self._arrays = None

    def arrays(self) -> tuple:
        """(positions, each entry's first 8 bytes as a little-endian uint64 and the mask of those it
        has, its bytes 8-11 as a uint32 and their mask, the wanted entries as (index, tag, VR, length,
        header length), the stop entry's index)."""
        if self._arrays is None:
            entries = self.entries
            n = len(entries)
            padded = np.frombuffer(b"".join(e[1].ljust(12, b"\0") for e in entries), np.uint8).reshape(n, 12)
            sizes = np.array([len(e[1]) for e in entries])
            present = np.where(_SPAN < sizes[:, None], 0xFF, 0).astype(np.uint8)
            lo, hi = padded[:, :8].copy().view("<u8")[:, 0], padded[:, 8:].copy().view("<u4")[:, 0]
            lo_mask, hi_mask = present[:, :8].copy().view("<u8")[:, 0], present[:, 8:].copy().view("<u4")[:, 0]
            wanted = [(i, e[3], e[4], e[5], e[6]) for i, e in enumerate(entries) if e[3] is not None]
            self._arrays = (np.array([e[0] for e in entries], np.int64), lo, lo_mask, hi, hi_mask, wanted, n - 1)
        return self._arrays


def finished(record: list, start: int, wanted: frozenset, implicit: bool) -> Optional[Layout]:
    """The :class:`Layout` of a walk that stopped at the pixel data; None for one that ran to the end
    of the file (nothing to stop at: every such file is walked)."""
    if not record or record[-1][2] != STOP or any(e[2] == POISON for e in record):
        return None
    return Layout(start, record, wanted, implicit)


def _new_length(buf: bytes, p: int, head: bytes, hlen: int, lenoff: int) -> Optional[int]:
    """The defined length of the top-level element header at ``p`` that differs from ``head`` in its length
    alone (tag, VR and reserved bytes equal); None for another header, an undefined length or one past
    the bytes read."""
    h = buf[p:p + hlen]
    if len(h) != hlen or not h.startswith(head[:lenoff]):
        return None
    new = (_U16 if hlen - lenoff == 2 else _U32)(h, lenoff)[0]
    return None if new == 0xFFFFFFFF else new


def _check_all(buf: bytes, size: int, delta: int, layout: Layout) -> Optional[tuple[dict, int]]:
    """:func:`replay` in one pass: the lengths of the volatile entries are read first (they give the
    position of every later entry), then every other byte range is compared at once; None where any
    differs (the entry-by-entry replay then finds out how)."""
    pos, lo, lo_mask, hi, hi_mask, wanted, stop = layout.arrays()
    entries = layout.entries
    lengths = {}
    volatile = layout.volatile
    if volatile:
        shift = np.full(len(entries), delta, np.int64)
        for i in volatile:
            p, head, _, _, _, vlen, hlen, lenoff = entries[i]
            new = _new_length(buf, p + delta, head, hlen, lenoff)
            if new is None:
                return None
            lengths[i] = new
            delta += new - vlen
            shift[i + 1:] = delta
        at = pos + shift
    else:
        at = pos + delta
    n = len(buf)
    if int(at[-1]) + 12 > min(n, size):  # the stop header is the last entry and the furthest one
        return None
    # every 8 (4) bytes from every offset of buf as one little-endian integer: one look-up an entry
    lo_at = np.ndarray((n - 7,), "<u8", buf, 0, (1,))[at]
    hi_at = np.ndarray((n - 3,), "<u4", buf, 0, (1,))[at + 8]
    bad = ((lo_at ^ lo) & lo_mask) | ((hi_at ^ hi) & hi_mask)
    if volatile:
        bad[list(volatile)] = 0  # their tag, VR and reserved bytes were compared above
    if bad.any():
        return None
    at = at.tolist()
    kept = {}
    for i, tag, vr, vlen, hlen in wanted:
        p = at[i] + hlen
        kept[tag] = (vr, buf[p:p + lengths.get(i, vlen)])
    return kept, at[stop]


def replay(buf: bytes, size: int, start: int, layout: Layout) -> Optional[tuple[dict, int]]:
    """(kept raw values by tag, stop position) of a file whose first ``len(buf)`` bytes are ``buf``
    (its data set starting at ``start``, ``size`` bytes in all) -- exactly what the walk would return
    -- or None where the file does not follow ``layout`` (module docstring)."""
    delta = start - layout.start
    fast = _check_all(buf, size, delta, layout)
    if fast is not None:
        return fast
    kept: dict = {}
    changed = []
    same = buf.startswith  # buf[p:p + len(head)] == head, without a copy
    for i, (pos, head, kind, tag, vr, vlen, hlen, lenoff) in enumerate(layout.entries):
        p = pos + delta
        if same(head, p):
            if tag is not None:  # a wanted top-level element
                kept[tag] = (vr, buf[p + hlen:p + hlen + vlen])
            elif kind == STOP:
                # every value kept ends before the stop header, which is in buf: none was cut short
                if p + 12 > size:
                    return None
                if changed:  # checked at once from the next file on
                    layout.volatile = tuple(sorted(set(layout.volatile) | set(changed)))
                return kept, p
            continue
        new = _new_length(buf, p, head, hlen, lenoff) if kind == LEAF else None
        if new is None:
            return None
        if tag is not None:
            kept[tag] = (vr, buf[p + hlen:p + hlen + new])
        delta += new - vlen
        changed.append(i)
    return None
