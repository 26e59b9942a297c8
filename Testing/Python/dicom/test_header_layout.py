"""The last header's layout replayed on the next file (header_layout.py): a replay gives exactly the walk's
raw values and stop position, or gives up (None) and the file is walked -- on every file of the shared
data after every other file of its folder and of other series, and on copies changed in each way a
replay must notice (another length, another element, a changed sequence, a cut file)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from SeqClassifierLib.dicom import fast_header, header_layout
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.dicom.fast_decode import FastPathUnsupported
from SeqClassifierLib.dicom.pydicom_compat import save_as


def _files(*roots: Path) -> list[str]:
    return sorted(str(p) for r in roots for p in r.rglob("*") if p.is_file() and not p.name.endswith((".csv", ".md")))


class _Spy:
    """What walk_file decoded (the raw values the walk or the replay kept) and what each replay gave."""

    def __init__(self, monkeypatch):
        self.kept = None
        self.replays: list = []
        self.one_pass: list = []
        self.by_runs: list = []
        decode, follow = fast_header.decode_all, fast_header.follow
        check_all, check_runs = header_layout._check_all, header_layout._check_runs
        self.decoded = self.changed = 0

        def spy_check_all(*args):
            got = check_all(*args)
            self.one_pass.append(got is not None)
            return got

        def spy_check_runs(*args):
            got = check_runs(*args)
            self.by_runs.append(got is not None)
            return got

        monkeypatch.setattr(header_layout, "_check_all", spy_check_all)
        monkeypatch.setattr(header_layout, "_check_runs", spy_check_runs)

        changed = fast_header.decode_changed

        def decode_all(kept):
            self.kept = dict(kept)
            self.decoded += 1
            return decode(kept)

        def decode_changed(before, kept, fresh):
            got = changed(before, kept, fresh)
            if got is not None:
                self.kept = dict(kept)
                self.changed += 1
            return got

        def spy_follow(*args):
            got, layout = follow(*args)
            self.replays.append(got)
            return got, layout

        monkeypatch.setattr(fast_header, "decode_all", decode_all)
        monkeypatch.setattr(fast_header, "decode_changed", decode_changed)
        monkeypatch.setattr(fast_header, "follow", spy_follow)

    def read(self, path: str, after: str = None, size: int = None):
        """walk_file of ``path`` (after walking ``after`` first, whose layout it then meets): its raw
        values in order, stop, pixel head; or the reason it fell back."""
        fast_header._LAST_LAYOUT[0] = None
        if after is not None:
            try:
                fast_header.walk_file(after, None, fast_header.WANTED, False)
            except FastPathUnsupported:
                pass
        self.replays.clear()
        self.kept = None
        try:
            values, meta, size, stop, head, _ = fast_header.walk_file(path, size, fast_header.WANTED, False)
        except FastPathUnsupported as exc:
            return f"unsupported: {exc}"
        return list(self.kept.items()), list(values.items()), meta, size, stop, head


@pytest.fixture
def spy(monkeypatch):
    yield _Spy(monkeypatch)
    fast_header._LAST_LAYOUT[0] = None


def test_every_shared_file_read_after_another_is_read_as_afresh(prostatex, vendors, spy):
    files = _files(prostatex, vendors)
    afresh = {f: spy.read(f) for f in files}
    replayed = gave_up = 0
    spy.one_pass.clear()
    # each file after the one before it (mostly its own series), and after files of other series
    pairs = list(zip(files, files[1:])) + list(zip(files, files[37:])) + list(zip(files, files[::-1]))
    for before, f in pairs:
        assert spy.read(f, after=before) == afresh[f], (before, f)
        replayed += sum(r is not None for r in spy.replays)
        gave_up += sum(r is None for r in spy.replays)
    assert len(files) > 400 and sum(isinstance(v, tuple) for v in afresh.values()) > 400
    # both happen: most files of a series follow its layout, other series' files do not
    assert replayed > 400 and gave_up > 100, (replayed, gave_up)
    # read in a row, most files are replayed by runs (the bytes that change from file to file learnt
    # from the first files of a series), and their values decoded from the walked file's and theirs
    fast_header._LAST_LAYOUT[0] = None
    spy.by_runs.clear()
    spy.decoded = spy.changed = 0
    usable = [f for f in files if isinstance(afresh[f], tuple)]
    for f in usable:
        fast_header.walk_file(f, None, fast_header.WANTED, False)
    assert sum(spy.by_runs) > 0.7 * len(usable) > 280, (sum(spy.by_runs), len(usable))
    assert spy.changed > 0.5 * len(usable), (spy.changed, spy.decoded)


def _save(ds: pydicom.Dataset, path: Path, implicit: bool = False) -> str:
    ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit
                                      else pydicom.uid.ExplicitVRLittleEndian)
    save_as(ds, path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return str(path)


def _series(prostatex: Path) -> list[Path]:
    folder = next((prostatex / "ProstateX-0000" / "07-07-2011").glob("4.*"))
    return sorted(folder.iterdir())


def _variant(src: Path, tmp_path: Path, name: str, change=None, implicit: bool = False) -> str:
    ds = pydicom.dcmread(src)
    if change is not None:
        change(ds)
    return _save(ds, tmp_path / f"{name}.dcm", implicit)


def test_another_length_at_top_level_is_followed(prostatex, tmp_path, spy):
    src = _series(prostatex)[3]
    base = _variant(src, tmp_path, "base")

    def longer(ds):
        assert "ImagePositionPatient" in ds and "AcquisitionTime" in ds
        ds.InstanceNumber = "123456"  # longer: wanted values, and one that is skipped
        ds.ImagePositionPatient = ["-123.456789", "-98.7654321", "12.3456789"]
        ds.AcquisitionTime = "101010.123456"

    changed = _variant(src, tmp_path, "changed", longer)
    got = spy.read(changed, after=base)
    assert got == spy.read(changed) and isinstance(got, tuple)
    assert spy.read(changed, after=base) and spy.replays and spy.replays[0] is not None  # replayed, not walked
    assert dict(got[0])[0x00200013] == (b"IS", b"123456")


@pytest.mark.parametrize("how", ["element added", "VR changed", "sequence item changed", "sequence added"])
def test_a_changed_structure_is_walked(prostatex, tmp_path, spy, how):
    src = _series(prostatex)[3]
    base = _variant(src, tmp_path, "base")

    def change(ds):
        if how == "element added":
            ds.add_new(0x00204000, "LT", "an element the layout does not have")
        elif how == "VR changed":
            ds[0x00181030].value = ds[0x00181030].value.encode()  # Protocol Name written as UN:
            ds[0x00181030].VR = "UN"  # another VR and header size
        elif how == "sequence item changed":
            item = ds.ReferencedImageSequence[0]
            item.ReferencedSOPInstanceUID = item.ReferencedSOPInstanceUID + ".12"
        else:
            ds.ReferencedImageSequence.append(ds.ReferencedImageSequence[0])

    changed = _variant(src, tmp_path, "changed", change)
    got = spy.read(changed, after=base)
    assert got == spy.read(changed)
    assert spy.read(changed, after=base) == got and spy.replays == [None]  # the replay gave up: walked


def test_another_element_in_the_place_of_a_wanted_one_is_walked(prostatex, tmp_path, spy):
    src = _series(prostatex)[3]
    base = _variant(src, tmp_path, "base")
    data = bytearray(Path(base).read_bytes())
    at = data.find(b"\x08\x00\x3e\x10LO")  # Series Description, kept
    assert at > 0
    data[at + 2] = 0x3F  # (0008,103F): the same header but for the tag, not kept
    other = tmp_path / "other.dcm"
    other.write_bytes(bytes(data))
    got = spy.read(str(other), after=base)
    assert got == spy.read(str(other)) and 0x0008103E not in dict(got[0])
    spy.read(str(other), after=base)
    assert spy.replays == [None]


def test_the_size_given_bounds_the_replay_as_it_bounds_the_walk(prostatex, tmp_path, spy):
    src = _series(prostatex)[3]
    base = _variant(src, tmp_path, "base")
    stop = spy.read(base)[4]
    # a size that ends inside the pixel data's header (the file grew since it was listed, say)
    assert spy.read(base, after=base, size=stop + 8) == spy.read(base, size=stop + 8)
    assert spy.read(base, size=stop + 8).startswith("unsupported")
    spy.read(base, after=base, size=stop + 8)
    assert spy.replays == [None]


@pytest.mark.parametrize("cut", [2, 8, 11])
def test_a_file_cut_at_its_pixel_data_is_walked(prostatex, tmp_path, spy, cut):
    src = _series(prostatex)[3]
    base = _variant(src, tmp_path, "base")
    stop = spy.read(base)[4]
    data = Path(base).read_bytes()
    short = tmp_path / "short.dcm"
    short.write_bytes(data[:stop + cut])  # the stop header, or part of it, and nothing after
    assert spy.read(str(short), after=base) == spy.read(str(short))
    spy.read(str(short), after=base)
    assert spy.replays == [None]


def test_implicit_and_explicit_layouts_are_kept_apart(prostatex, tmp_path, spy):
    files = _series(prostatex)[2:5]
    explicit = [_variant(f, tmp_path, f"e{i}") for i, f in enumerate(files)]
    implicit = [_variant(f, tmp_path, f"i{i}", implicit=True) for i, f in enumerate(files)]
    for before, f in zip(explicit + implicit, implicit + explicit):
        assert spy.read(f, after=before) == spy.read(f)
        spy.by_runs.clear()
        spy.one_pass.clear()
        spy.read(f, after=before)
        # an explicit layout is never tried on an implicit data set, nor the other way round
        assert spy.replays == [None] and spy.by_runs == spy.one_pass == []
    assert spy.read(implicit[1], after=implicit[0]) == spy.read(implicit[1])
    spy.read(implicit[1], after=implicit[0])
    assert spy.replays and spy.replays[0] is not None  # implicit after implicit: replayed


def test_a_record_that_ran_to_the_end_of_the_file_is_no_layout():
    entries = [(132, b"\x08\x00\x05\x00CS\x0a\x00", header_layout.LEAF, None, b"CS", 10, 8, 6)]
    assert header_layout.finished(entries, 132, frozenset(), False) is None
    stop = (150, b"\xe0\x7f\x10\x00OW", header_layout.STOP, None, None, 0, 0, 0)
    assert header_layout.finished(entries + [stop], 132, frozenset(), False) is not None
    poison = (140, b"\xfe\xff", header_layout.POISON, None, None, 0, 0, 0)
    assert header_layout.finished(entries + [poison, stop], 132, frozenset(), False) is None


def test_discovery_gives_the_same_series_with_and_without_replays(prostatex, vendors, monkeypatch):
    with_replays = discover_series([prostatex, vendors], workers=1)
    monkeypatch.setattr(fast_header, "follow", lambda *a: (None, None))
    fast_header._LAST_LAYOUT[0] = None
    walked = discover_series([prostatex, vendors], workers=1)
    assert len(with_replays.series) == len(walked.series) > 20
    assert with_replays.series == walked.series
    assert with_replays.skipped == walked.skipped


def test_a_centre_slice_read_for_its_pixels_neither_replays_nor_replaces_the_layout(prostatex, spy):
    from SeqClassifierLib.dicom.pixels import read_native_frame

    files = [str(f) for f in _series(prostatex)]
    fast_header.walk_file(files[0], None, fast_header.WANTED, False)
    layout = fast_header._LAST_LAYOUT[0]
    assert layout is not None
    spy.replays.clear()
    other = _files(prostatex)[-1]  # a file of another series, for its pixels
    assert read_native_frame(other) is not None
    assert fast_header._LAST_LAYOUT[0] is layout and spy.replays == []
    fast_header.walk_file(files[1], None, fast_header.WANTED, False)
    assert spy.replays and spy.replays[0] is not None  # the next header still follows its neighbour's


def _uid_like(uid: str, digit: str) -> str:
    """Another UID of the same length (its last digit changed)."""
    return uid[:-1] + (digit if uid[-1] != digit else str((int(digit) + 1) % 10))


def test_files_that_differ_in_values_alone_are_replayed_by_runs_once_learnt(prostatex, tmp_path, spy):
    """Values that change from file to file (a kept one, a skipped one, one inside a sequence item) are
    learnt from the first file that differs there; the files after it are replayed by runs -- with the
    values read from them, and the same values as read afresh."""
    src = _series(prostatex)[3]

    def variant(i):
        def change(ds):
            ds.InstanceNumber = str(100 + i)  # kept, the same length
            ds.ContentTime = f"1010{10 + i}.000000"  # skipped
            item = ds.ReferencedImageSequence[0]  # inside an item of a sequence
            item.ReferencedSOPInstanceUID = _uid_like(item.ReferencedSOPInstanceUID, str(i % 10))
        return _variant(src, tmp_path, f"v{i}", change)

    files = [variant(i) for i in range(5)]
    afresh = [spy.read(f) for f in files]
    assert len({a[1][0] for a in afresh}) == 1 and len({dict(a[0])[0x00200013] for a in afresh}) == 5
    fast_header._LAST_LAYOUT[0] = None
    spy.by_runs.clear()
    got = []
    for f in files:
        spy.replays.clear()
        values, meta, size, stop, head, _ = fast_header.walk_file(f, None, fast_header.WANTED, False)
        got.append((list(spy.kept.items()), list(values.items()), meta, size, stop, head))
    assert got == afresh
    # the first file is walked, the second replayed (and its differences learnt) but not by runs, and
    # the next three by runs
    assert spy.by_runs == [False, True, True, True], spy.by_runs
    layout = fast_header._LAST_LAYOUT[0][0]
    assert len(layout.gaps) == 3, layout.gaps


def test_a_value_that_differs_outside_the_gaps_learnt_is_learnt_too(prostatex, tmp_path, spy):
    src = _series(prostatex)[3]
    a = _variant(src, tmp_path, "a", lambda ds: setattr(ds, "InstanceNumber", "11"))
    b = _variant(src, tmp_path, "b", lambda ds: setattr(ds, "InstanceNumber", "12"))

    def more(ds):
        ds.InstanceNumber = "13"
        ds.SeriesDescription = ds.SeriesDescription[:-1] + "#"  # kept; the same length; not learnt yet

    c = _variant(src, tmp_path, "c", more)
    d = _variant(src, tmp_path, "d", lambda ds: (setattr(ds, "InstanceNumber", "14"),
                                                 setattr(ds, "SeriesDescription", ds.SeriesDescription[:-1] + "%")))
    afresh = [spy.read(f) for f in (a, b, c, d)]
    fast_header._LAST_LAYOUT[0] = None
    spy.by_runs.clear()
    got = []
    for f in (a, b, c, d):
        values, meta, size, stop, head, _ = fast_header.walk_file(f, None, fast_header.WANTED, False)
        got.append((list(spy.kept.items()), list(values.items()), meta, size, stop, head))
    assert got == afresh
    assert dict(got[2][0])[0x0008103E][1].endswith(b"#") and dict(got[3][0])[0x0008103E][1].endswith(b"%")
    assert spy.by_runs == [False, False, True], spy.by_runs  # b learns, c differs elsewhere, d by runs


def test_files_alternating_between_two_layouts_are_walked_once_each(prostatex, tmp_path, spy):
    """A private element that some files of a series carry and others not: both layouts are kept."""
    src = _series(prostatex)[3]

    def variant(i):
        def change(ds):
            ds.InstanceNumber = str(10 + i)
            if i % 2:
                ds.add_new(0x00290012, "LO", "AN EXTRA ELEMENT")
        return _variant(src, tmp_path, f"alt{i}", change)

    files = [variant(i) for i in range(8)]
    afresh = [spy.read(f) for f in files]
    fast_header._LAST_LAYOUT[0] = None
    walked = []
    for f in files:
        spy.replays.clear()
        values, meta, size, stop, head, _ = fast_header.walk_file(f, None, fast_header.WANTED, False)
        assert (list(spy.kept.items()), list(values.items()), meta, size, stop, head) == afresh[files.index(f)]
        walked.append(spy.replays in ([], [None]))
    assert walked == [True, True] + [False] * 6, walked
    assert len(fast_header._LAST_LAYOUT[0]) == 2


def test_values_decoded_after_a_replay_by_runs_are_those_decoded_afresh(vendors, prostatex, monkeypatch):
    """decode_changed: the walked file's values and the changed ones, as decode_all gives them; a
    changed character set or private creator is decoded afresh (None)."""
    from SeqClassifierLib.dicom.fast_decode import CHARSET, decode_all, decode_changed

    kepts = []
    monkeypatch.setattr(fast_header, "decode_all", lambda kept: kepts.append(dict(kept)) or decode_all(kept))
    for f in _files(prostatex, vendors):
        fast_header._LAST_LAYOUT[0] = None  # every file walked: its raw values as the walk keeps them
        try:
            fast_header.walk_file(f, None, fast_header.WANTED, False)
        except FastPathUnsupported:
            pass
    fast_header._LAST_LAYOUT[0] = None
    assert len(kepts) > 400
    checked = privates = 0
    for before, after in zip(kepts, kepts[1:]):
        if list(before) != list(after):
            continue  # another layout: never given to decode_changed
        changed = tuple(t for t in after if after[t] != before[t])
        try:
            expected = decode_all(after)
        except FastPathUnsupported:
            continue
        previous = decode_all(before)
        got = decode_changed(previous, after, changed)
        if any(t == CHARSET or (t & 0x10000 and 0x10 <= (t & 0xFFFF) < 0x100) for t in changed):
            assert got is None
            continue
        assert got is not None and list(got.items()) == list(expected.items())
        lists = [k for k, v in expected.items() if type(v) is list]
        assert lists and all(got[k] is not previous[k] for k in lists)  # no two files share a list
        checked += 1
        privates += any(t & 0x10000 for t in changed)
    assert checked > 300 and privates > 20, (checked, privates)


def test_file_headers_after_replays_by_runs_are_those_read_afresh_and_share_no_list(prostatex, monkeypatch):
    files = [str(f) for f in _series(prostatex)]
    fast_header._LAST_LAYOUT[0] = None
    replayed = [fast_header.read_file_header_fast(f) for f in files]
    fast_header._LAST_LAYOUT[0] = None
    monkeypatch.setattr(fast_header, "follow", lambda *a: (None, None))
    walked = [fast_header.read_file_header_fast(f) for f in files]
    assert replayed == walked and len(files) > 10
    # the times are header values that change from file to file: taken from each file
    assert len({h.header["AcquisitionTime"] for h in replayed}) == len(files)
    for a, b in zip(replayed, replayed[1:]):
        assert a.header["ImageType"] == b.header["ImageType"] and a.header["ImageType"] is not b.header["ImageType"]
