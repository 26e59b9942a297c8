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
ways).

Most files go faster still, by runs (:func:`_check_runs`).  After a replay,
the bytes between the entries that differ from the walked file's (the values
that change from file to file: the instance's UID and number, its position, its
times) are noted as gaps (:func:`_learn`), with the values that changed in
length.  The next file is then compared with the walked file run by run, each
run of bytes between two gaps at once: where all are equal, every byte the walk
would read is, and the values it keeps are the walked file's, but for those in
gaps, read from the file (the *fresh* ones).  The readers then decode and
convert only those (:func:`.fast_decode.decode_changed`,
``header._header_values_of``).  The last :data:`KEPT_LAYOUTS` layouts are
kept: the files of a series may alternate between two (:func:`follow`).
"""

from __future__ import annotations

import struct
from typing import Optional

import numpy as np

__all__ = ["CHECK", "KEPT_LAYOUTS", "LEAF", "POISON", "STOP", "Layout", "finished", "follow", "kept_layouts", "replay"]

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

    __slots__ = ("start", "entries", "wanted", "implicit", "volatile", "_arrays", "base", "base_kept", "gaps",
                 "_plan", "_segments", "cache")

    def __init__(self, start: int, entries: list, wanted: frozenset, implicit: bool,
                 base: Optional[bytes] = None, base_kept: Optional[dict] = None):
        self.start = start
        self.entries = entries
        self.wanted = wanted
        self.implicit = implicit
        self.volatile: tuple = ()
        self._arrays = None
        #: the walked file's first bytes (its whole header, which ``entries`` were read from) and the raw
        #: values the walk kept there; None: no replay by runs (:func:`_check_runs`)
        self.base = base
        self.base_kept = base_kept
        #: the byte ranges of the walked file seen to differ in a later file (:func:`_learn`):
        #: base start -> (base end, index of the length-changing entry or None)
        self.gaps: dict = {}
        self._plan = None
        self._segments = None
        #: the readers' results for the walked file that a file replayed by runs shares where none of its
        #: fresh values enter them (:mod:`.fast_header`: the decoded values; :mod:`.header`: the header
        #: values)
        self.cache: dict = {}

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


def finished(record: list, start: int, wanted: frozenset, implicit: bool, base: Optional[bytes] = None,
             base_kept: Optional[dict] = None) -> Optional[Layout]:
    """The :class:`Layout` of a walk that stopped at the pixel data; None for one that ran to the end
    of the file (nothing to stop at: every such file is walked).  ``base``: the file's bytes from its
    start, holding every byte the walk read (else None), and ``base_kept`` what the walk kept there:
    later files are then compared with it run by run (:func:`_check_runs`)."""
    if not record or record[-1][2] != STOP or any(e[2] == POISON for e in record):
        return None
    if base is not None and (base_kept is None or record[-1][0] + 12 > len(base)):
        base = None
    return Layout(start, record, wanted, implicit, base, base_kept if base is not None else None)


def _new_length(buf: bytes, p: int, head: bytes, hlen: int, lenoff: int) -> Optional[int]:
    """The defined length of the top-level element header at ``p`` that differs from ``head`` in its length
    alone (tag, VR and reserved bytes equal); None for another header, an undefined length or one past
    the bytes read."""
    h = buf[p:p + hlen]
    if len(h) != hlen or not h.startswith(head[:lenoff]):
        return None
    new = (_U16 if hlen - lenoff == 2 else _U32)(h, lenoff)[0]
    return None if new == 0xFFFFFFFF else new


def _check_all(buf: bytes, size: int, delta: int, layout: Layout) -> Optional[tuple[dict, int, None]]:
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
    _learn(layout, buf, at)
    return kept, at[stop], None


#: How many layouts are kept, the last used first: the files of one series may alternate between two or
#: three (on ProstateX a private element that some of them carry and others not).
KEPT_LAYOUTS = 4


def follow(buf: bytes, size: int, start: int, layouts: tuple, wanted: frozenset,
           implicit: bool) -> tuple[Optional[tuple[dict, int]], Optional[Layout]]:
    """:func:`replay` with the layouts kept (``layouts``, the last used first): each of those walked for
    ``wanted`` in the same VR encoding by its runs (a mismatch costs one comparison), then the first of
    them in full and the second in one pass (:func:`_check_all`: files alternating between two layouts
    meet the second one's with other values).  (The replay's result or None, the layout that gave it or None.)"""
    fitting = [layout for layout in layouts if layout.wanted is wanted and layout.implicit == implicit]
    for layout in fitting:
        if layout.base is not None:
            got = _check_runs(buf, size, start - layout.start, layout)
            if got is not None:
                return got, layout
    if fitting:
        got = replay(buf, size, start, fitting[0], runs=False)
        if got is not None:
            return got, fitting[0]
    if len(fitting) > 1:
        got = _check_all(buf, size, start - fitting[1].start, fitting[1])
        if got is not None:
            return got, fitting[1]
    return None, None


def kept_layouts(layouts: tuple, first: Layout) -> tuple:
    """``layouts`` with ``first`` (just used or walked) in front, at most :data:`KEPT_LAYOUTS`."""
    if layouts and layouts[0] is first:
        return layouts
    return ((first,) + tuple(layout for layout in layouts if layout is not first))[:KEPT_LAYOUTS]


def replay(buf: bytes, size: int, start: int, layout: Layout, runs: bool = True) -> Optional[tuple]:
    """(kept raw values by tag, stop position, fresh) of a file whose first ``len(buf)`` bytes are
    ``buf`` (its data set starting at ``start``, ``size`` bytes in all) -- the values and the stop the
    walk would return -- or None where the file does not follow ``layout`` (module docstring).
    ``fresh``: where the replay went by runs (:func:`_check_runs`, tried first with ``runs``), the tags
    whose values were read from the file -- all others are the walked file's (``layout.base_kept``),
    the same bytes; else None."""
    delta = start - layout.start
    if runs and layout.base is not None:
        fast = _check_runs(buf, size, delta, layout)
        if fast is not None:
            return fast
    fast = _check_all(buf, size, delta, layout)
    if fast is not None:
        return fast
    kept: dict = {}
    changed = []
    at = []
    same = buf.startswith  # buf[p:p + len(head)] == head, without a copy
    for i, (pos, head, kind, tag, vr, vlen, hlen, lenoff) in enumerate(layout.entries):
        p = pos + delta
        at.append(p)
        if same(head, p):
            if tag is not None:  # a wanted top-level element
                kept[tag] = (vr, buf[p + hlen:p + hlen + vlen])
            elif kind == STOP:
                # every value kept ends before the stop header, which is in buf: none was cut short
                if p + 12 > size:
                    return None
                if changed:  # checked at once from the next file on
                    layout.volatile = tuple(sorted(set(layout.volatile) | set(changed)))
                _learn(layout, buf, at)
                return kept, p, None
            continue
        new = _new_length(buf, p, head, hlen, lenoff) if kind == LEAF else None
        if new is None:
            return None
        if tag is not None:
            kept[tag] = (vr, buf[p + hlen:p + hlen + new])
        delta += new - vlen
        changed.append(i)
    return None


# ----------------------------------------------------------------------------
# Replay by runs: the bytes between the ranges that change, compared whole
# ----------------------------------------------------------------------------

def _segments(layout: Layout) -> tuple:
    """The values between the entries of ``layout`` (the bytes the walk did not read): arrays of their
    start and end in the walked file, of the entry whose bytes end where each starts (its owner) and of
    the entry that follows it; made once a layout."""
    if layout._segments is None:
        entries = layout.entries
        order = sorted(range(len(entries)), key=lambda i: entries[i][0])
        starts, ends, owners, nexts = [], [], [], []
        end, owner = layout.start, None
        for i in order:
            pos, head = entries[i][0], entries[i][1]
            if pos > end and owner is not None:
                starts.append(end)
                ends.append(pos)
                owners.append(owner)
                nexts.append(i)
            if pos + len(head) >= end:
                end, owner = pos + len(head), i
        layout._segments = (np.array(starts, np.int64), np.array(ends, np.int64), np.array(owners, np.int64),
                            np.array(nexts, np.int64), np.array([e[0] for e in entries], np.int64))
    return layout._segments


def _learn(layout: Layout, buf: bytes, at: list) -> None:
    """Note in ``layout.gaps`` the byte ranges of its walked file (``layout.base``) that differ in a file
    that followed the layout with its entries at ``at`` (``buf``: that file's first bytes): the values
    between two entries that hold other bytes, and the values of the elements that changed length.

    Every entry (each byte the walk read) lies outside the gaps, so a file equal to the base outside
    them is walked alike: :func:`_check_runs` compares it run by run."""
    base = layout.base
    if base is None:
        return
    entries = layout.entries
    starts, ends, owners, nexts, positions = _segments(layout)
    if not len(starts):
        return
    at = np.asarray(at, np.int64)
    shift = at[owners] - positions[owners]  # where each value starts in the file, less where in the base
    resized = at[nexts] - (starts + shift) != ends - starts
    gaps = dict(layout.gaps)
    lengths = set(layout.volatile) | {k for _, k in gaps.values() if k is not None}
    for j in np.flatnonzero(resized).tolist():
        k = int(owners[j])
        if entries[k][2] != LEAF:  # a length changed that the replay could not have followed
            layout.base = None
            return
        lengths.add(k)
    for k in lengths:
        p, _, _, _, _, vlen, hlen, lenoff = entries[k]
        gaps[p + lenoff] = (p + hlen + vlen, k)
        gaps.pop(p + hlen, None)  # seen changing before in its bytes alone: the length's gap holds them
    # values of the same length: compared at once for each shift (one more after each changed length)
    held = np.zeros(len(entries), bool)
    held[list(lengths)] = True
    same = ~resized & ~held[owners]
    src, dst = np.frombuffer(base, np.uint8), np.frombuffer(buf, np.uint8)
    for d in np.unique(shift[same]).tolist():
        sel = np.flatnonzero(same & (shift == d))
        lo, hi = int(starts[sel].min()), int(ends[sel].max())
        differ = np.flatnonzero(src[lo:hi] != dst[lo + d:hi + d]) + lo
        if not len(differ):
            continue
        first = np.searchsorted(differ, starts[sel])  # each value's first differing byte, if any
        hit = first < len(differ)
        hit[hit] = differ[first[hit]] < ends[sel][hit]
        for j in sel[hit].tolist():
            gaps.setdefault(int(starts[j]), (int(ends[j]), None))
    if gaps != layout.gaps:
        layout.gaps = gaps
        layout._plan = None


def _plan(layout: Layout) -> tuple:
    """(runs, stop position in the walked file): each run ``(bytes, base position, gap)`` is compared whole at its place in the
    next file; the gap after it is None (the last run, through the stop header) or ``(length position
    or None, value position, base length, length size, tag, VR)`` in base positions."""
    if layout._plan is None:
        base, entries, gaps = layout.base, layout.entries, layout.gaps  # gaps: replaced, never changed
        runs = []
        at = layout.start
        wanted = {e[0] + e[6]: e for e in entries if e[3] is not None}  # value start -> wanted entry
        for start in sorted(gaps):
            end, k = gaps[start]
            if start < at:  # within a gap already (never: learnt gaps do not overlap)
                layout.base = None
                return None
            if k is not None:
                p, _, _, tag, vr, vlen, hlen, lenoff = entries[k]
                gap = (start, p + hlen, vlen, hlen - lenoff, tag, vr)
            else:
                owner = wanted.get(start)
                if owner is not None and owner[0] + owner[6] + owner[5] == end:
                    gap = (None, start, end - start, 0, owner[3], owner[4])  # a wanted value: from the file
                else:
                    gap = (None, start, end - start, 0, None, None)
            runs.append((base[at:start], at, gap))
            at = end
        stop = entries[-1]
        runs.append((base[at:stop[0] + len(stop[1])], at, None))
        layout._plan = (runs, stop[0])
    return layout._plan


def _check_runs(buf: bytes, size: int, delta: int, layout: Layout) -> Optional[tuple[dict, int, frozenset]]:
    """:func:`replay` where the file equals the walked one but in the gaps learnt (:func:`_learn`): each
    run between them is compared whole, the changed lengths read, the wanted values in gaps kept from the
    file where they differ from the walked file's (the fresh ones, the third item) and all others the
    walked file's (the same bytes); None where a run differs."""
    plan = _plan(layout)
    if plan is None:
        return None
    runs, stop = plan
    n = len(buf)
    kept = layout.base_kept.copy()
    fresh = []
    same = buf.startswith
    for run, at, gap in runs:
        if not same(run, at + delta):
            return None
        if gap is None:
            break
        length_at, value_at, vlen, wide, tag, vr = gap
        new = vlen
        if length_at is not None:
            p = length_at + delta
            if p + wide > n:
                return None
            new = (_U16 if wide == 2 else _U32)(buf, p)[0]
            if new == 0xFFFFFFFF:
                return None
        if tag is not None:
            v = value_at + delta
            raw = buf[v:v + new]
            if raw != kept[tag][1]:  # the same bytes as the walked file's: its value is kept
                kept[tag] = (vr, raw)
                fresh.append(tag)
        delta += new - vlen
    stop += delta
    if stop + 12 > min(n, size):
        return None
    return kept, stop, frozenset(fresh)
