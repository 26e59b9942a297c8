"""The fast reader decodes a value equal to its tag's last one only once (fast_decode._LAST_DECODED):
every file's values are those decoded afresh, no two files share a list, and the character set still
decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from SeqClassifierLib.dicom import fast_decode, fast_header
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.fast_decode import CHARSET, FastPathUnsupported, decode_all


def _files(*roots: Path) -> list[str]:
    return sorted(str(p) for r in roots for p in r.rglob("*") if p.is_file() and not p.name.endswith((".csv", ".md")))


def _values(path: str):
    try:
        return fast_header.walk_file(path, None, fast_header.WANTED, False)[0]
    except FastPathUnsupported as exc:
        return f"unsupported: {exc}"


def _exact(values) -> object:
    """Values with their types and float bits (repr of a float round-trips), comparable with ==."""
    if isinstance(values, str):
        return values
    return {int(k): (type(v).__name__, repr(v), [type(x).__name__ for x in v] if isinstance(v, list) else None)
            for k, v in values.items()}


def test_values_decoded_once_for_files_in_a_row_are_those_decoded_afresh(prostatex, vendors):
    files = _files(prostatex, vendors)
    fast_decode._LAST_DECODED.clear()
    in_a_row = [_values(f) for f in files]  # the files of each series one after another: mostly hits
    afresh = []
    for f in files:
        fast_decode._LAST_DECODED.clear()
        afresh.append(_values(f))
    assert len(files) > 400
    assert sum(isinstance(v, dict) for v in in_a_row) > 400
    assert [_exact(v) for v in in_a_row] == [_exact(v) for v in afresh]
    # the same ImageOrientationPatient in consecutive files: equal lists, never the same list
    iop = [v[T.IMAGE_ORIENTATION_PATIENT] for v in in_a_row
           if isinstance(v, dict) and isinstance(v.get(T.IMAGE_ORIENTATION_PATIENT), list)]
    pairs = [(a, b) for a, b in zip(iop, iop[1:]) if a == b]
    assert len(pairs) > 300 and not any(a is b for a, b in pairs)


def test_a_list_handed_out_is_the_callers_own():
    fast_decode._LAST_DECODED.clear()
    kept = {int(T.IMAGE_TYPE): (b"CS", b"ORIGINAL\\PRIMARY\\M\\ND ")}
    first = decode_all(kept)[T.IMAGE_TYPE]
    first.append("CHANGED")
    first[0] = "DERIVED"
    assert decode_all(kept)[T.IMAGE_TYPE] == ["ORIGINAL", "PRIMARY", "M", "ND"]
    assert decode_all(kept)[T.IMAGE_TYPE] is not decode_all(kept)[T.IMAGE_TYPE]


def test_the_same_bytes_under_another_character_set_are_decoded_again():
    fast_decode._LAST_DECODED.clear()
    name = (b"PN", "Müller^Hans".encode("latin-1"))
    assert decode_all({CHARSET: (b"CS", b"ISO_IR 100"), int(T.PATIENT_NAME): name})[T.PATIENT_NAME] == "Müller^Hans"
    # UTF-8: the Latin-1 reading of those bytes would be wrong; the fast path hands the file to pydicom
    with pytest.raises(FastPathUnsupported, match="non-ASCII"):
        decode_all({CHARSET: (b"CS", b"ISO_IR 192"), int(T.PATIENT_NAME): name})
    # and a value the decoder refuses is refused every time
    bad = {int(T.ECHO_TIME): (b"DS", b"nan ")}
    for _ in range(2):
        with pytest.raises(FastPathUnsupported, match="unusual DS"):
            decode_all(bad)


def test_one_entry_per_tag_whatever_the_number_of_files(prostatex):
    fast_decode._LAST_DECODED.clear()
    for f in _files(prostatex):
        _values(f)
    assert 0 < len(fast_decode._LAST_DECODED) <= len(fast_header.WANTED)
