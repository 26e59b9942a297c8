"""Fast header reader for the common case: little-endian, classic single-frame MR.

:func:`read_file_header_fast` returns exactly the :class:`~.header.FileHeader`
that :func:`~.pydicom_reader.read_file_header_pydicom` returns, at a fraction of
the cost, or raises :class:`FastPathUnsupported` so that the caller falls back
to pydicom.  Nothing here ever changes a result: every case this module is not
certain to read the way pydicom does is a fall-back.

How it works
------------
The file is read in two reads: its first 132 bytes (a file that has neither
'DICM' at byte 128 nor the start of a bare data set is refused there, by the
test of :func:`.pydicom_reader.not_dicom_reason`), then the rest of its first
:data:`CHUNK` bytes (extended, or re-positioned past large skipped values such
as Siemens CSA headers, only when needed).  The element walk mirrors what
``pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=HEADER_TAGS)``
does, step by step:

* preamble + 'DICM' (or, like the pydicom path's ``force=True`` retry, a bare
  data set that starts with a group 0x0002/0x0008 element), file meta in
  explicit VR little endian, transfer syntax from the meta (or guessed the
  way pydicom guesses when it is absent);
* top-level elements: values of :data:`~.tags.HEADER_TAGS` (and
  SpecificCharacterSet) are kept, everything else is skipped by its length;
  undefined-length sequences are walked item by item exactly as pydicom walks
  them (its implicit-VR detection per item included); the walk stops at
  (7FE0,0010) / (7FE0,0009) / (7FE0,0008) like ``stop_before_pixels``;
* the kept values are decoded the way pydicom's converters decode them for
  the VR pydicom would use (explicit VR as written, UN and implicit VR
  resolved through pydicom's own public/private dictionaries with the
  private creator read from the file), into plain Python values (str, float,
  int, bytes or lists of them) that the shared value helpers of
  :mod:`.values` (``_text``, ``_float``, ``_floats``, ``_int``) and the
  decoders of :mod:`.vendors` turn into the same results as pydicom's types
  (the decoding itself is :mod:`.fast_decode`);
* the result goes through the *same* code as the pydicom path
  (:func:`.header.header_from_dataset`): same checks, same
  :class:`~.header.UnusableFile` reasons, same pixel-data length check.

Falls back (raises :class:`FastPathUnsupported`) for: big endian, deflated,
private or unknown transfer syntaxes; enhanced / legacy-converted multi-frame
objects (functional groups); command-set elements; an explicit-VR data set
that switches to implicit VR (or the reverse) outside a sequence item; an
unknown VR; an undefined-length element that is not a sequence; a value or
item that runs past the end of the file; a public attribute whose explicit VR
differs from the dictionary's; text that is not plain ASCII (unless the
character set is the default or ISO_IR 100, read as Latin-1); ESC in text;
a DS/IS value that is not a plain decimal/integer; a numeric value whose
length is not a multiple of its size; a person name with '='; a private
creator with '\\'; any non-default pydicom configuration or hook that changes
how values are read; and any other exception.  Empty, unreadable and
non-DICOM files also fall back, so their reasons come from the pydicom path.

:func:`walk_file` with ``want_pixels`` also returns the raw pixel data value
of a native little-endian file, for :func:`.pixels.read_native_frame`.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Optional

import pydicom
import pydicom.config
import pydicom.tag
import pydicom.uid
import pydicom.valuerep
import pydicom.values
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from SeqClassifierLib.dicom import pydicom_compat
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.fast_decode import (CHARSET, NUMBER_SIZE, FastPathUnsupported, decode_all, decode_changed,
                                                decode_value)
from SeqClassifierLib.dicom.header import FileHeader, header_from_dataset
from SeqClassifierLib.dicom.header_layout import CHECK, LEAF, POISON, STOP, finished, follow, kept_layouts
from SeqClassifierLib.dicom.pydicom_reader import SNIFF_BYTES, _starts_like_dataset
from SeqClassifierLib.dicom.values import ValueDataset, _text

__all__ = ["CHUNK", "FastPathUnsupported", "ParsedHeader", "FileMeta", "parse_header", "read_file_header_fast",
           "walk_file", "sop_class_of", "WANTED", "WANTED_WITH_PIXELS"]

#: Bytes read at once from the start of a file (most classic MR headers fit).
CHUNK = 16 * 1024


# ----------------------------------------------------------------------------
# Constants mirroring pydicom's reader
# ----------------------------------------------------------------------------

_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_PIXEL_STOP = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_MEDIA_SOP_CLASS = 0x00020002
_TRANSFER_SYNTAX = 0x00020010

_WANTED = frozenset(int(t) for t in T.HEADER_TAGS) | {CHARSET}
_FUNCTIONAL_GROUPS = frozenset({int(T.SHARED_FUNCTIONAL_GROUPS), int(T.PER_FRAME_FUNCTIONAL_GROUPS)})
_IMPLICIT_LE = pydicom.uid.ImplicitVRLittleEndian
#: Transfer syntaxes whose data set pydicom reads as explicit VR little endian
#: (the native one and every encapsulated/compressed one it knows).
_EXPLICIT_LE_SYNTAXES = frozenset(
    str(u) for u in pydicom.uid.AllTransferSyntaxes
    if str(u) not in {pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian,
                      pydicom.uid.DeflatedExplicitVRLittleEndian}
)

_EXPLICIT_HEAD = struct.Struct("<HH2sH").unpack_from
_IMPLICIT_HEAD = struct.Struct("<HHL").unpack_from
_UINT32 = struct.Struct("<L").unpack_from
_TAG = struct.Struct("<HH").unpack_from

#: Explicit VR -> 1 if its length field is 32-bit (after 2 reserved bytes), else 0.
_VR_KIND = {pydicom_compat.vr_text(vr).encode("ascii"): int(vr in EXPLICIT_VR_LENGTH_32)
            for vr in pydicom.valuerep.VR if len(pydicom_compat.vr_text(vr)) == 2}

def _config_is_default() -> bool:
    """Whether pydicom is configured as the fast path assumes (its defaults)."""
    c = pydicom.config
    return (
        not c.datetime_conversion
        and not c.use_DS_numpy
        and not c.use_IS_numpy
        and not c.use_DS_decimal
        and not c.use_none_as_empty_text_VR_value
        and c.replace_un_with_known_vr
        and c.settings.infer_sq_for_un_vr
        and c.assume_implicit_vr_switch
        and c.data_element_callback is None
        and c.settings.reading_validation_mode != c.RAISE
        and not c.convert_wrong_length_to_UN
        and pydicom_compat.element_hooks_are_default()
        and not pydicom_compat.private_transfer_syntaxes()
    )

# ----------------------------------------------------------------------------
# The byte source: a window on the file, refilled on demand
# ----------------------------------------------------------------------------

class _Source:
    __slots__ = ("fh", "buf", "base", "size")

    def __init__(self, fh: Any, size: int, first: bytes = b""):
        self.fh = fh
        self.size = size
        self.buf = first + fh.read(CHUNK - len(first))  # ``first``: the bytes already read from 0
        self.base = 0

    def window(self, pos: int, n: int) -> int:
        """Make ``[pos, pos + n)`` available in ``buf``; return its offset there."""
        if pos + n > self.size:
            raise FastPathUnsupported("element runs past the end of the file")
        off = pos - self.base
        if off >= 0 and off + n <= len(self.buf):
            return off
        self.fh.seek(pos)
        self.buf = self.fh.read(max(n, CHUNK))
        self.base = pos
        if len(self.buf) < n:
            raise FastPathUnsupported("file shorter than its size")
        return 0

    def peek(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (fewer at the end of the file), like ``fp.read(n)``."""
        n = max(0, min(n, self.size - pos))
        off = self.window(pos, n)
        return self.buf[off:off + n]

    def value(self, pos: int, n: int) -> bytes:
        off = self.window(pos, n)
        return self.buf[off:off + n]


def _looks_implicit(vr: bytes) -> bool:
    """pydicom's test (``_is_implicit_vr``): a VR must be two capital letters."""
    return not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)


# ----------------------------------------------------------------------------
# Sequences of undefined length (walked like pydicom's read_sequence)
# ----------------------------------------------------------------------------

def _undefined_length_is_sequence(src: _Source, pos: int, tag: int, vr: Optional[bytes],
                                  rec: Optional[list] = None) -> bool:
    """Whether pydicom parses an undefined-length element as a sequence (``rec``: the walk's record,
    :mod:`.header_layout`)."""
    if vr == b"SQ" or vr == b"UN":  # UN of undefined length is a sequence (PS3.5 6.2.2)
        return True
    if vr is None:  # implicit VR
        try:
            return pydicom_compat.dictionary_vr(tag) == "SQ"
        except KeyError:
            head = src.peek(pos, 4)
            if len(head) < 4:
                raise FastPathUnsupported("undefined length at the end of the file")
            if rec is not None:
                rec.append((pos, head, CHECK, None, None, 0, 0, 0))
            group, elem = _TAG(head)
            return (group << 16 | elem) == _ITEM
    return False


def _skip_sequence(src: _Source, pos: int, implicit: bool, depth: int, rec: Optional[list] = None) -> int:
    """Walk an undefined-length sequence starting at ``pos``; return the position after it."""
    if depth > 32:
        raise FastPathUnsupported("sequences nested too deep")
    while True:
        off = src.window(pos, 8)
        group, elem, length = _IMPLICIT_HEAD(src.buf, off)
        if rec is not None:
            rec.append((pos, src.buf[off:off + 8], CHECK, None, None, 0, 0, 0))
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_DELIM:
            return pos
        if tag != _ITEM:
            raise FastPathUnsupported("sequence item without an item tag")
        pos = _walk_item(src, pos, implicit, None if length == 0xFFFFFFFF else length, depth + 1, rec)


def _walk_item(src: _Source, pos: int, implicit: bool, length: Optional[int], depth: int,
               rec: Optional[list] = None) -> int:
    """Walk one sequence item (like pydicom's read_dataset for an item); return the end position."""
    start = pos
    if not implicit:
        # pydicom: an item of an explicit-VR data set may be in implicit VR.
        head = src.peek(pos, 6)
        if rec is not None:
            rec.append((pos, head, CHECK if len(head) == 6 else POISON, None, None, 0, 0, 0))
        if len(head) >= 6 and _looks_implicit(head[4:6]):
            implicit = True
    size = src.size
    buf, base = src.buf, src.base
    blen = len(buf)
    while length is None or pos - start < length:
        off = pos - base
        if off < 0 or off + 12 > blen:
            if pos + 8 > size:
                raise FastPathUnsupported("sequence item runs past the end of the file")
            off = src.window(pos, min(12, size - pos))
            buf, base = src.buf, src.base
            blen = len(buf)
        if rec is not None:  # every header's first 8 bytes (a long explicit one's length: below)
            rec.append((pos, buf[off:off + 8], CHECK, None, None, 0, 0, 0))
        if implicit:
            group, elem, vlen = _IMPLICIT_HEAD(buf, off)
            vr = None
            tag = group << 16 | elem
            if tag == _ITEM_DELIM:
                return pos + 8
            pos += 8
        else:
            group, elem, vr, vlen = _EXPLICIT_HEAD(buf, off)
            tag = group << 16 | elem
            if tag == _ITEM_DELIM:
                if vr != b"\0\0":
                    raise FastPathUnsupported("item delimiter with a non-zero length")
                return pos + 8
            kind = _VR_KIND.get(vr)
            if kind is None:
                raise FastPathUnsupported("unknown or implicit VR inside an explicit item")
            if kind:
                if pos + 12 > size:
                    raise FastPathUnsupported("element header runs past the end of the file")
                vlen = _UINT32(buf, off + 8)[0]
                if rec is not None:
                    rec.append((pos + 8, buf[off + 8:off + 12], CHECK, None, None, 0, 0, 0))
                pos += 12
            else:
                pos += 8
        if vlen == 0xFFFFFFFF:
            if not _undefined_length_is_sequence(src, pos, tag, vr, rec):
                raise FastPathUnsupported("undefined-length element that is not a sequence")
            pos = _skip_sequence(src, pos, implicit, depth, rec)
            buf, base = src.buf, src.base
            blen = len(buf)
        else:
            pos += vlen
            if pos > size:
                raise FastPathUnsupported("element runs past the end of the file")
    return pos


# ----------------------------------------------------------------------------
# File meta and the top-level walk
# ----------------------------------------------------------------------------

def _read_meta(src: _Source, pos: int) -> tuple[int, dict[int, bytes]]:
    """File meta group (explicit VR LE); returns the position after it and its values."""
    meta: dict[int, bytes] = {}
    head = src.peek(pos, 6)
    if len(head) >= 6 and _looks_implicit(head[4:6]):
        if _TAG(head)[0] == 0x0002:
            raise FastPathUnsupported("file meta in implicit VR")
        return pos, meta
    while True:
        if pos + 8 > src.size:
            raise FastPathUnsupported("file ends inside the file meta")
        off = src.window(pos, 8)
        group, elem, vr, vlen = _EXPLICIT_HEAD(src.buf, off)
        if group != 0x0002:
            if pos + 12 > src.size:
                raise FastPathUnsupported("file ends after the file meta")
            return pos, meta
        kind = _VR_KIND.get(vr)
        if kind is None:
            raise FastPathUnsupported("unknown VR in the file meta")
        hlen = 8
        if kind:
            off = src.window(pos + 8, 4)
            vlen = _UINT32(src.buf, off)[0]
            hlen = 12
        if vlen == 0xFFFFFFFF:
            raise FastPathUnsupported("undefined length in the file meta")
        if vr in NUMBER_SIZE and vlen % NUMBER_SIZE[vr]:
            raise FastPathUnsupported("file meta number of odd length")  # pydicom raises on access
        tag = group << 16 | elem
        if tag == _MEDIA_SOP_CLASS or tag == _TRANSFER_SYNTAX:
            meta[tag] = src.value(pos + hlen, vlen)
        pos += hlen + vlen


def _swap(tag: int) -> int:
    """A tag as ``<L`` reads its 4 bytes: element in the high half, group in the low half."""
    return (tag & 0xFFFF) << 16 | tag >> 16


_WANTED_SW = frozenset(_swap(t) for t in _WANTED)
_PIXEL_STOP_SW = frozenset(_swap(t) for t in _PIXEL_STOP)
#: Tags the top-level walk must look at before anything else (pixel data, item delimiter).
_SPECIAL_SW = _PIXEL_STOP_SW | {_swap(_ITEM_DELIM)}
_PIXEL_WANTED_SW = _WANTED_SW | frozenset(_swap(int(t)) for t in T.PIXEL_TAGS)
#: What :func:`walk_file` keeps: the header tags; with the Image Pixel attributes too.
WANTED = _WANTED_SW
WANTED_WITH_PIXELS = _PIXEL_WANTED_SW
_EXPLICIT_HEAD_SW = struct.Struct("<L2sH").unpack_from
_IMPLICIT_HEAD_SW = struct.Struct("<LL").unpack_from


def _walk_top(src: _Source, pos: int, implicit: bool, wanted: frozenset = _WANTED_SW,
              rec: Optional[list] = None) -> tuple[dict[int, tuple[Optional[bytes], bytes]], int]:
    """Top-level walk to the pixel data: (kept raw values by tag, position where reading stopped).

    Mirrors pydicom's ``data_element_generator`` with ``specific_tags`` and
    ``stop_when=_at_pixel_data``: wanted values are kept, all other values
    skipped by length, undefined-length sequences walked.  Tags are compared
    in their on-disk (swapped) form to save work per element.  ``rec``: a
    list that receives every byte range the walk was steered by
    (:mod:`.header_layout`, which replays it on the next file).
    """
    kept: dict[int, tuple[Optional[bytes], bytes]] = {}
    size = src.size
    special = _SPECIAL_SW
    kinds = _VR_KIND
    head = _IMPLICIT_HEAD_SW if implicit else _EXPLICIT_HEAD_SW
    u32 = _UINT32
    buf = src.buf
    base = src.base
    blen = len(buf)
    while True:
        off = pos - base
        if off < 0 or off + 12 > blen:
            if pos + 8 > size:
                return kept, size  # pydicom's read(8) comes back short: end of data set at EOF
            off = src.window(pos, min(12, size - pos))
            buf, base = src.buf, src.base
            blen = len(buf)
        if implicit:
            tw, vlen = head(buf, off)
            vr = None
            vpos = pos + 8
        else:
            tw, vr, vlen = head(buf, off)
            kind = kinds.get(vr)
            if kind is None:
                if tw in special:  # stop_when comes before any use of the length
                    if tw in _PIXEL_STOP_SW:
                        if rec is not None:
                            rec.append((pos, buf[off:off + 6], STOP, None, None, 0, 0, 0))
                        return kept, pos
                raise FastPathUnsupported("unknown VR or a switch to implicit VR")
            if kind:
                if pos + 12 > size:
                    raise FastPathUnsupported("element header runs past the end of the file")
                vlen = u32(buf, off + 8)[0]
                vpos = pos + 12
            else:
                vpos = pos + 8
        if tw in special:
            if tw in _PIXEL_STOP_SW:
                if rec is not None:
                    rec.append((pos, buf[off:off + (4 if implicit else 6)], STOP, None, None, 0, 0, 0))
                return kept, pos
            raise FastPathUnsupported("item delimiter at top level")
        if vlen == 0xFFFFFFFF:
            tag = _swap(tw)
            if tw in wanted or not _undefined_length_is_sequence(src, vpos, tag, vr, rec):
                raise FastPathUnsupported("undefined-length element")
            if rec is not None:
                rec.append((pos, buf[off:off + vpos - pos], CHECK, None, None, 0, 0, 0))
            pos = _skip_sequence(src, vpos, implicit, 0, rec)
            buf, base = src.buf, src.base
            blen = len(buf)
            continue
        if rec is not None:
            # a top-level element of defined length: the next file may have another length here
            hl = vpos - pos
            rec.append((pos, buf[off:off + hl], LEAF, _swap(tw) if tw in wanted else None, vr, vlen, hl,
                        4 if implicit else hl - (4 if hl == 12 else 2)))
        pos = vpos + vlen
        if pos > size:
            raise FastPathUnsupported("element runs past the end of the file")
        if tw in wanted:
            tag = _swap(tw)
            if tag in _FUNCTIONAL_GROUPS:
                raise FastPathUnsupported("enhanced multi-frame (functional groups)")
            if vpos >= base and pos - base <= blen:
                kept[tag] = (vr, buf[vpos - base:pos - base])
            else:
                kept[tag] = (vr, src.value(vpos, vlen))
                buf, base = src.buf, src.base
                blen = len(buf)


# ----------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------

class ParsedHeader:
    """What the walk found: decoded values, file size, where reading stopped and the bytes there."""

    __slots__ = ("dataset", "size", "pixel_offset", "pixel_head")

    def __init__(self, dataset: Any, size: int, pixel_offset: int, pixel_head: bytes):
        self.dataset = dataset
        self.size = size
        self.pixel_offset = pixel_offset
        self.pixel_head = pixel_head


class FileMeta:
    """Stands in for pydicom's FileMetaDataset (only what the reader reads of it)."""

    def __init__(self, sop_class: Any):
        if sop_class is not None:
            self.MediaStorageSOPClassUID = sop_class


#: The layouts of the last headers walked to their pixel data (:mod:`.header_layout`), the last used
#: first, replayed on the next file; one tuple for the process (a reader reads one folder after another).
#: The tuple is replaced, never changed: a thread reads it once per file.
_LAST_LAYOUT: list = [None]


def _decode_after(layout: Any, kept: dict, fresh: frozenset) -> Optional[dict]:
    """The values of a file replayed by runs, from those of the layout's walked file (decoded once) and
    the ``fresh`` ones; None: decode all."""
    before = layout.cache.get("values")
    if before is None:
        try:
            before = decode_all(layout.base_kept)
        except FastPathUnsupported:
            before = False
        layout.cache["values"] = before
    return decode_changed(before, kept, fresh) if before is not False else None


def walk_file(path: str, size: Optional[int], wanted: frozenset, want_pixels: bool, same: Optional[list] = None):
    """Open, walk and decode: (values, meta, size, stop position, bytes there, pixel value or None).

    ``wanted``: :data:`WANTED` or :data:`WANTED_WITH_PIXELS`; ``want_pixels``: also
    return the raw (7FE0,0010) value of a native little-endian file.  ``same``: a list that receives,
    for a file replayed by runs, ``(cache, fresh)``: its layout's cache of results for the walked file
    (:attr:`.header_layout.Layout.cache`) and the tags whose values differ from that file's.
    """
    if not _config_is_default():
        raise FastPathUnsupported("pydicom configuration differs from the defaults")
    try:
        fh = open(path, "rb", buffering=0)
    except OSError:
        raise FastPathUnsupported("cannot open") from None
    try:
        if size is None:
            size = os.fstat(fh.fileno()).st_size
        if size < 256:
            raise FastPathUnsupported("tiny file")
        # The first bytes decide, before more is read, with the test of not_dicom_reason (which
        # discovery asks only when this path gives up): 'DICM' at 128, or the start of a bare data set
        # (the pydicom path retries those with force=True).  A huge file of anything else costs 132 bytes.
        head = fh.read(SNIFF_BYTES)
        if head[128:132] == b"DICM":
            pos = 132
        elif _starts_like_dataset(head):
            pos = 0
        else:
            raise FastPathUnsupported("no DICM marker")
        src = _Source(fh, size, head)
        pos, meta = _read_meta(src, pos)
        first = src.peek(pos, 6)
        if len(first) < 6:
            raise FastPathUnsupported("no data set")
        if _TAG(first)[0] == 0x0000:
            raise FastPathUnsupported("command set elements")
        if _TRANSFER_SYNTAX in meta:
            ts = meta[_TRANSFER_SYNTAX].decode("latin-1").rstrip("\0 ").rstrip(" \x00")
            if ts == _IMPLICIT_LE:
                implicit = True
            elif ts in _EXPLICIT_LE_SYNTAXES:
                implicit = False
            else:
                raise FastPathUnsupported(f"transfer syntax {ts!r}")
        else:
            # pydicom guesses: a known VR after the first tag means explicit VR
            # (big endian when the group reads >= 1024).
            ts = None
            implicit = first[4:6].decode("latin-1") not in pydicom.values.converters
            if not implicit and _TAG(first)[0] >= 1024:
                raise FastPathUnsupported("big endian")
        if _looks_implicit(first[4:6]) != implicit:
            raise FastPathUnsupported("data set VR encoding differs from the transfer syntax")
        if want_pixels:
            # one file of a series (the centre slice), after one of another: no layout to follow, and
            # the layout of the headers read one after another is kept for the next of them
            kept, stop = _walk_top(src, pos, implicit, wanted)
        else:
            layouts = _LAST_LAYOUT[0] or ()
            got = layout = None
            if layouts and src.base == 0:
                # the layouts of the last files walked (.header_layout)
                got, layout = follow(src.buf, size, pos, layouts, wanted, implicit)
            fresh = None
            if got is None:
                rec: list = []
                kept, stop = _walk_top(src, pos, implicit, wanted, rec)
                layout = finished(rec, pos, wanted, implicit, src.buf if src.base == 0 else None, kept)
            else:
                kept, stop, fresh = got
            if layout is not None and (not layouts or layouts[0] is not layout):
                _LAST_LAYOUT[0] = kept_layouts(layouts, layout)
        pixel_head = src.peek(stop, 12)
        values = None
        if not want_pixels and fresh is not None:
            values = _decode_after(layout, kept, fresh)
            if values is not None and same is not None:
                same.append((layout.cache, fresh))
        if values is None:
            values = decode_all(kept)
        pixels = None
        if want_pixels:
            pixels = _native_pixel_value(src, stop, pixel_head, implicit, ts)
    except FastPathUnsupported:
        raise
    except Exception as exc:  # any doubt: let pydicom decide
        raise FastPathUnsupported(f"{type(exc).__name__}: {exc}") from None
    finally:
        fh.close()
    return values, meta, size, stop, pixel_head, pixels


def sop_class_of(values: dict, meta: dict) -> tuple[Any, str]:
    """(MediaStorageSOPClassUID of the meta or None, the SOP class in effect); enhanced ones fall back."""
    sop_class = decode_value(b"UI", meta[_MEDIA_SOP_CLASS], True) if _MEDIA_SOP_CLASS in meta else None
    sop = _text(values.get(T.SOP_CLASS_UID)) or _text(sop_class)
    if sop in T.ENHANCED_SOP_CLASSES:
        raise FastPathUnsupported("enhanced multi-frame SOP class")
    return sop_class, sop


def parse_header(path: str, size: Optional[int] = None) -> ParsedHeader:
    """Walk ``path``'s header; raise :class:`FastPathUnsupported` for anything unusual."""
    same: list = []
    values, meta, size, stop, pixel_head, _ = walk_file(path, size, _WANTED_SW, False, same)
    sop_class, _ = sop_class_of(values, meta)
    return ParsedHeader(ValueDataset(values, FileMeta(sop_class), same[0] if same else None), size, stop,
                        pixel_head)


def read_file_header_fast(path: Any, size: Optional[int] = None) -> FileHeader:
    """The :class:`~.header.FileHeader` of ``path`` read without pydicom.

    Raises :class:`FastPathUnsupported` when the file needs the pydicom path,
    and :class:`~.header.UnusableFile` (with the pydicom path's exact
    reason) for a well-formed file that is not a usable MR image.
    """
    path = os.fspath(path)
    parsed = parse_header(path, size)
    return header_from_dataset(path, parsed.dataset, parsed.size, parsed.pixel_offset, parsed.pixel_head)


# ----------------------------------------------------------------------------
# Pixel data of native (uncompressed) single-frame images
# ----------------------------------------------------------------------------

_NATIVE_SYNTAXES = frozenset({pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian})


def _native_pixel_value(src: _Source, stop: int, head: bytes, implicit: bool, ts: Optional[str]) -> bytes:
    """The whole (7FE0,0010) value of a native little-endian file."""
    if ts not in _NATIVE_SYNTAXES:
        raise FastPathUnsupported("pixel data not native little endian")
    if len(head) < 12 or head[:4] != b"\xe0\x7f\x10\x00":
        raise FastPathUnsupported("no pixel data")
    if implicit:
        length, start = _UINT32(head, 4)[0], stop + 8
    else:
        if _VR_KIND.get(head[4:6]) != 1:
            raise FastPathUnsupported("pixel data with an unusual VR")
        length, start = _UINT32(head, 8)[0], stop + 12
    if length == 0xFFFFFFFF or start + length > src.size:
        raise FastPathUnsupported("pixel data of undefined length or cut short")
    src.fh.seek(start)
    data = src.fh.read(length)
    if len(data) != length:
        raise FastPathUnsupported("pixel data cut short")
    return data
