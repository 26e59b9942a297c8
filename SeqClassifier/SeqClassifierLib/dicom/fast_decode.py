"""Raw element bytes -> plain Python values, exactly as pydicom's converters decode them.

Part of the fast header reader (:mod:`.fast_header` walks the file, this
module decodes what it kept).  Values come out as plain str / int / float /
bytes or lists of them, which the value helpers of :mod:`.values` turn into
the same results as pydicom's types.  Whatever might decode differently from
pydicom raises :class:`FastPathUnsupported` (the caller then uses pydicom).
"""

from __future__ import annotations

import re
import struct
from typing import Any, Optional

import pydicom.tag
import pydicom.valuerep
from pydicom.datadict import dictionary_VR, private_dictionary_VR

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.pydicom_compat import vr_text


class FastPathUnsupported(Exception):
    """The fast reader cannot be sure to read this file as pydicom would; use pydicom."""


#: SpecificCharacterSet: read with the header tags (it decides how text decodes).
CHARSET = 0x00080005

#: The canonical tag objects of :mod:`.tags` by number: values are stored under
#: them so that the reader's lookups (``T.ROWS`` ...) hit by identity.
_CANON = {int(t): t for t in T.HEADER_TAGS}
_CANON[CHARSET] = pydicom.tag.Tag(CHARSET)
for _t in T.PIXEL_TAGS:
    _CANON[int(_t)] = _t
#: Dictionary VR of each public attribute read.
_PUBLIC_VR = {int(t): vr_text(dictionary_VR(t)).encode("ascii") for t in T.HEADER_TAGS if not t.is_private}
_PUBLIC_VR[CHARSET] = b"CS"
_PUBLIC_VR.update({int(t): vr_text(dictionary_VR(t)).encode("ascii") for t in T.PIXEL_TAGS})

# A DS / IS value exactly as Python's float()/int() read each component with
# no surprises (no '_', 'nan', 'inf', tabs, other digits ...).
_DS_ONE = r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *"
_DS_RE = re.compile(f"{_DS_ONE}(?:\\\\{_DS_ONE})*").fullmatch
_IS_ONE = r" *[+-]?[0-9]+ *"
_IS_RE = re.compile(f"{_IS_ONE}(?:\\\\{_IS_ONE})*").fullmatch

#: Character sets whose text pydicom decodes as ISO 8859-1 (Latin-1).
_LATIN1_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100"})
#: VRs whose empty value pydicom gives as '' (else None).
_EMPTY_STR = frozenset(vr_text(v).encode("ascii") for v in pydicom.valuerep.STR_VR) - {b"DS", b"IS"}


def _dec_string(raw: bytes, latin1: bool) -> Any:
    """CS, DA, TM, AS: pydicom's convert_string (always ISO 8859-1)."""
    items = raw.decode("latin-1").rstrip(" \x00").split("\\")
    return items[0] if len(items) == 1 else items


def _dec_ui(raw: bytes, latin1: bool) -> Any:
    items = raw.decode("latin-1").rstrip("\0 ").split("\\")
    return items[0] if len(items) == 1 else items


def _dec_ds(raw: bytes, latin1: bool) -> Any:
    text = raw.decode("latin-1").strip().rstrip(" \x00")
    if not _DS_RE(text):
        raise FastPathUnsupported("unusual DS value")
    if "\\" not in text:
        return float(text)
    return [float(v) for v in text.split("\\")]


def _dec_is(raw: bytes, latin1: bool) -> Any:
    text = raw.decode("latin-1").rstrip(" \x00")
    if not _IS_RE(text):
        raise FastPathUnsupported("unusual IS value")
    if "\\" not in text:
        return int(text)
    return [int(v) for v in text.split("\\")]


def _checked_text(raw: bytes, latin1: bool) -> str:
    """Text in the data set's character set: same as pydicom's for ASCII, or Latin-1 sets."""
    if b"\x1b" in raw:
        raise FastPathUnsupported("escape sequence in text")
    if not latin1 and not raw.isascii():
        raise FastPathUnsupported("non-ASCII text in a non-default character set")
    return raw.decode("latin-1")


def _dec_text(raw: bytes, latin1: bool) -> Any:
    """SH, LO, UC: pydicom's convert_text."""
    parts = _checked_text(raw, latin1).split("\\")
    if len(parts) == 1:
        return parts[0].rstrip("\0 ")
    return [p.rstrip("\0 ") for p in parts]


def _dec_single_text(raw: bytes, latin1: bool) -> Any:
    """ST, LT, UT: pydicom's convert_single_string."""
    return _checked_text(raw, latin1).rstrip("\0 ")


def _dec_pn(raw: bytes, latin1: bool) -> Any:
    """PN: the text of pydicom's PersonName (same as str(PersonName) without '=')."""
    text = _checked_text(raw.rstrip(b"\x00 "), latin1)
    if "=" in text:
        raise FastPathUnsupported("person name with component groups")
    parts = text.split("\\")
    return parts[0] if len(parts) == 1 else parts


def _dec_bytes(raw: bytes, latin1: bool) -> Any:
    return raw


def _number_decoder(fmt: str):
    one = struct.Struct("<" + fmt)
    size = one.size

    def decode(raw: bytes, latin1: bool) -> Any:
        n, rest = divmod(len(raw), size)
        if rest:
            raise FastPathUnsupported("numeric value of odd length")
        if n == 1:
            return one.unpack(raw)[0]
        return list(struct.unpack(f"<{n}{fmt}", raw))

    return decode


_NUMBER_FMT = {b"US": "H", b"UL": "L", b"SS": "h", b"SL": "l", b"FL": "f", b"FD": "d", b"SV": "q", b"UV": "Q"}
NUMBER_SIZE = {vr: struct.calcsize("<" + f) for vr, f in _NUMBER_FMT.items()}

_DECODERS = {
    b"CS": _dec_string, b"DA": _dec_string, b"TM": _dec_string, b"AS": _dec_string,
    b"UI": _dec_ui, b"DS": _dec_ds, b"IS": _dec_is,
    b"SH": _dec_text, b"LO": _dec_text, b"UC": _dec_text,
    b"ST": _dec_single_text, b"LT": _dec_single_text, b"UT": _dec_single_text,
    b"PN": _dec_pn,
    b"OB": _dec_bytes, b"OW": _dec_bytes, b"OD": _dec_bytes, b"OF": _dec_bytes,
    b"OL": _dec_bytes, b"OV": _dec_bytes, b"UN": _dec_bytes,
    **{vr: _number_decoder(f) for vr, f in _NUMBER_FMT.items()},
}


def decode_value(vr: bytes, raw: bytes, latin1: bool) -> Any:
    """The value pydicom's converter gives for ``vr``, as plain str/int/float/bytes/list."""
    if not raw:
        if vr == b"SQ":
            raise FastPathUnsupported("sequence")
        return "" if vr in _EMPTY_STR else None
    decoder = _DECODERS.get(vr)
    if decoder is None:
        raise FastPathUnsupported(f"VR {vr!r} not handled")
    return decoder(raw, latin1)


#: Public tags read: tag -> (canonical tag object, dictionary VR, decoder); fails
#: at import if a dictionary VR has no decoder here (then extend _DECODERS).
_PUBLIC_INFO = {tag: (_CANON[tag], vr, _DECODERS[vr]) for tag, vr in _PUBLIC_VR.items() if vr != b"SQ"}

_PRIVATE_VR_CACHE: dict[tuple[int, str], bytes] = {}


def _private_vr(tag: int, creators: dict[int, str]) -> bytes:
    """pydicom's ``_private_vr_for_tag``: LO for creators, else the private dictionary's VR or UN."""
    elem = tag & 0xFFFF
    if 0x0010 <= elem < 0x0100:
        return b"LO"
    if elem & 0xFF00:
        creator_tag = (tag & 0xFFFF0000) | (elem >> 8)
        if creator_tag in creators:
            key = (tag, creators[creator_tag])
            vr = _PRIVATE_VR_CACHE.get(key)
            if vr is None:
                try:
                    vr = vr_text(private_dictionary_VR(tag, key[1])).encode("ascii")
                except KeyError:
                    vr = b"UN"
                _PRIVATE_VR_CACHE[key] = vr
            return vr
    return b"UN"


#: The last decoded value of each public tag: ``tag -> (VR as read, raw bytes, latin1, value)``.  The
#: files of a series follow each other and most of their values are the same bytes, so a value equal to
#: the last one of its tag is not decoded again: decoding is a function of these three (the decoders
#: read nothing else), and a list is handed out as a new list each time, so no two files share one.
#: One entry per tag (bounded); threads may race on an entry, and then only miss.
_LAST_DECODED: dict[int, tuple[Optional[bytes], bytes, bool, Any]] = {}


def _latin1(kept: dict[int, tuple[Optional[bytes], bytes]]) -> bool:
    """Whether the values read as Latin-1: ASCII text reads the same in every character set pydicom
    knows; other bytes only in the default / Latin-1 sets."""
    if CHARSET not in kept:
        return True
    vr, raw = kept[CHARSET]
    if vr not in (None, b"CS"):
        raise FastPathUnsupported("unusual SpecificCharacterSet VR")
    charset = decode_value(b"CS", raw, True)
    return isinstance(charset, str) and charset.strip() in _LATIN1_CHARSETS


def decode_changed(before: dict[Any, Any], kept: dict[int, tuple[Optional[bytes], bytes]],
                   changed: frozenset) -> Optional[dict[Any, Any]]:
    """:func:`decode_all` of ``kept`` given ``before``, the :func:`decode_all` of a ``kept`` that held the
    same tags with the same bytes but for those in ``changed``: those are decoded, the others' values
    copied (a list as a new list).  None where one of ``changed`` is the character set, a private creator
    or neither a public tag read nor a private one (then decode all)."""
    public = _PUBLIC_INFO
    private = False
    for tag in changed:
        if tag not in public:
            if tag == CHARSET or not tag & 0x10000 or 0x0010 <= (tag & 0xFFFF) < 0x0100:
                return None
            private = True
    out = {k: v.copy() if type(v) is list else v for k, v in before.items()}
    latin1 = _latin1(kept)
    creators = None
    if private:  # the creators are the same bytes as before: their values too
        creators = {t: before[_CANON[t]] for t in kept if t & 0x10000 and 0x0010 <= (t & 0xFFFF) < 0x0100}
    for tag in changed:
        vr, raw = kept[tag]
        info = public.get(tag)
        if info is not None:
            _decode_public(tag, vr, raw, info, latin1, out)
        else:
            out[_CANON[tag]] = _decode_private(tag, vr, raw, creators, latin1)
    return out


def _decode_private(tag: int, vr: Optional[bytes], raw: bytes, creators: dict, latin1: bool) -> Any:
    """A private element's value that is not a creator (:func:`decode_all`'s rule)."""
    if vr is None or vr == b"UN":
        vr = _private_vr(tag, creators)
    return decode_value(vr, raw, latin1)


def _decode_public(tag: int, vr: Optional[bytes], raw: bytes, info: tuple, latin1: bool, out: dict) -> None:
    """One public tag's value into ``out`` (:func:`decode_all`'s rules, the last value's cache)."""
    canon, expected, decoder = info
    if vr is not None and vr != expected:
        if vr != b"UN":
            raise FastPathUnsupported("explicit VR differs from the dictionary")
        if len(raw) >= 0xFFFF:
            out[canon] = decode_value(b"UN", raw, latin1)
            return
    if raw:
        seen = _LAST_DECODED.get(tag)
        if seen is not None and seen[1] == raw and seen[0] == vr and seen[2] is latin1:
            value = seen[3]
        else:
            value = decoder(raw, latin1)
            _LAST_DECODED[tag] = (vr, raw, latin1, value)
        out[canon] = value.copy() if type(value) is list else value
    else:
        out[canon] = decode_value(expected, raw, latin1)


def decode_all(kept: dict[int, tuple[Optional[bytes], bytes]]) -> dict[Any, Any]:
    """Decoded values keyed by the canonical objects of :mod:`.tags`."""
    latin1 = _latin1(kept)
    creators: dict[int, str] = {}
    out: dict[Any, Any] = {}
    private_tags = []
    public = _PUBLIC_INFO
    for tag, (vr, raw) in kept.items():
        info = public.get(tag)
        if info is None:
            if not tag & 0x10000:
                raise FastPathUnsupported("sequence attribute")
            private_tags.append(tag)  # odd group: private
            continue
        _decode_public(tag, vr, raw, info, latin1, out)
    if private_tags:
        # Creators first: the VR of an implicit / UN private element depends on them.
        for tag in private_tags:
            if 0x0010 <= (tag & 0xFFFF) < 0x0100:
                vr, raw = kept[tag]
                value = decode_value(b"LO" if vr is None or vr == b"UN" else vr, raw, latin1)
                if not isinstance(value, str):
                    raise FastPathUnsupported("private creator with several values")
                creators[tag] = value
                out[_CANON[tag]] = value
        for tag in private_tags:
            if tag not in creators:
                vr, raw = kept[tag]
                out[_CANON[tag]] = _decode_private(tag, vr, raw, creators, latin1)
    return out
