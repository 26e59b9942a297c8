"""The fast header reader, parallel discovery and the header cache give exactly
the results of the plain pydicom path (no timing assertions here: see
Testing/benchmarks/bench_classify.py)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from SeqClassifierLib import config
from SeqClassifierLib.dicom import discovery
from SeqClassifierLib.dicom import fast_header
from SeqClassifierLib.dicom.discovery import discover_series, read_file_header
from SeqClassifierLib.dicom.fast_header import FastPathUnsupported, read_file_header_fast
from SeqClassifierLib.dicom.header import FileHeader, UnusableFile
from SeqClassifierLib.dicom.header_cache import HeaderCache
from SeqClassifierLib.dicom.pixels import pixel_array, read_native_frame
from SeqClassifierLib.dicom.pydicom_compat import save_as
from SeqClassifierLib.dicom.pydicom_reader import read_file_header_pydicom


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def _strict_equal(a, b) -> bool:
    """Equal values of the same types, all the way down (1 != 1.0, tuple != list)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        return all(_strict_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same_header(slow: FileHeader, fast: FileHeader, where: str) -> None:
    for f in dataclasses.fields(FileHeader):
        x, y = getattr(slow, f.name), getattr(fast, f.name)
        assert _strict_equal(x, y), f"{where}: field {f.name} differs: pydicom {x!r} vs fast {y!r}"


def _outcome(fn, path):
    try:
        return fn(path)
    except UnusableFile as exc:
        return f"UnusableFile: {exc}"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _compare_file(path: Path, *, expect_fast: bool | None = None) -> bool:
    """pydicom vs fast vs front door for one file; True when the fast path handled it."""
    slow = _outcome(read_file_header_pydicom, path)
    front = _outcome(read_file_header, path)
    try:
        fast = _outcome(read_file_header_fast, path)
    except FastPathUnsupported:
        fast = None
    for name, other in (("front door", front), ("fast", fast)):
        if other is None:
            continue
        if isinstance(slow, str) or isinstance(other, str):
            assert slow == other, f"{path}: {name} gives {other!r}, pydicom {slow!r}"
        else:
            _assert_same_header(slow, other, f"{path} ({name})")
    if expect_fast is not None:
        assert (fast is not None) == expect_fast, f"{path}: fast path {'not ' if expect_fast else ''}used"
    return fast is not None


def _old_mtime(path: Path, seconds_ago: float = 3600.0) -> None:
    """Date a file back so the cache does not treat it as still being written."""
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


# ----------------------------------------------------------------------------
# Real data: every file, field by field
# ----------------------------------------------------------------------------

def test_prostatex_every_file_identical_and_fast(prostatex):
    files = [p for p in _files(prostatex) if p.suffix == ".dcm"]
    assert len(files) == 376
    for p in files:
        _compare_file(p, expect_fast=True)
    _compare_file(prostatex / "labels.csv", expect_fast=False)


def test_vendor_every_file_identical(vendors):
    files = _files(vendors)
    used = sum(_compare_file(p) for p in files)
    # GE, Philips classic (explicit and implicit VR), Siemens classic and mosaic,
    # Hitachi, generic: fast; enhanced multi-frame and labels.csv: pydicom.
    enhanced = [p for p in files if "philips_enhanced" in str(p) or "siemens_multiframe" in str(p)]
    assert used == len(files) - len(enhanced) - 1
    for p in enhanced:
        _compare_file(p, expect_fast=False)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "MR_small_padded.dcm", "MR_small_expb.dcm",
                                  "MR_truncated.dcm"])
def test_pydicom_mr_small_variants(pydicom_test_files, name):
    handled = _compare_file(pydicom_test_files / name)
    assert handled == (name not in ("MR_small_bigendian.dcm", "MR_small_expb.dcm"))


def test_every_pydicom_test_file_same_outcome(pydicom_test_files):
    """CT, RT, US, SR, DICOMDIR, deflated, big endian, odd encodings: same outcome or a fall-back."""
    for p in _files(pydicom_test_files):
        _compare_file(p)


# ----------------------------------------------------------------------------
# Crafted variants: VR handling, character sets, private tags, sequences
# ----------------------------------------------------------------------------

def _save(ds: pydicom.Dataset, path: Path, implicit: bool) -> Path:
    ds = ds.copy()
    ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit
                                      else pydicom.uid.ExplicitVRLittleEndian)
    save_as(ds, path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return path


def _mutations():
    def name_latin1(ds):
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Müller^Jürgen"

    def name_utf8(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Müller^Jürgen"

    def name_groups(ds):
        ds.PatientName = "Yamada^Tarou=山田^太郎"
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]

    def multi_values(ds):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "NORM", "MOSAIC"]
        ds[0x0019, 0x0010] = pydicom.DataElement(0x00190010, "LO", "SIEMENS MR HEADER")
        ds[0x0019, 0x100A] = pydicom.DataElement(0x0019100A, "US", 16)
        ds.ScanningSequence = ["EP", "SE"]
        ds.SeriesDescription = "a\\b"
        ds.PixelSpacing = [" 0.5", "0.75 "]

    def odd_numbers(ds):
        ds.EchoTime = "+1.5e1"
        ds.RepetitionTime = ".5"
        ds.SeriesNumber = "+7"
        ds.InstanceNumber = " 12"
        ds.ImagePositionPatient = ["-1", "2.", "3e0"]

    def weird_numbers(ds):
        ds["EchoTime"].value = "nan"
        ds["InstanceNumber"].value = "5.0"

    def empty_values(ds):
        ds.ImageType = ""
        ds.SeriesDescription = ""
        ds.EchoTime = None
        ds.SeriesNumber = None
        ds.PatientName = ""
        ds.ImageOrientationPatient = None

    def siemens_b_text(ds):
        ds[0x0019, 0x0010] = pydicom.DataElement(0x00190010, "LO", "SIEMENS MR HEADER")
        ds[0x0019, 0x100C] = pydicom.DataElement(0x0019100C, "IS", "800")
        ds.Manufacturer = "SIEMENS"

    def siemens_b_un(ds):
        ds[0x0019, 0x0010] = pydicom.DataElement(0x00190010, "LO", "SIEMENS MR HEADER")
        ds[0x0019, 0x100C] = pydicom.DataElement(0x0019100C, "UN", b"1000")

    def siemens_b_no_creator(ds):
        ds[0x0019, 0x100C] = pydicom.DataElement(0x0019100C, "UN", b"50 ")
        ds.Manufacturer = "SIEMENS"

    def ge_b(ds):
        ds[0x0043, 0x0010] = pydicom.DataElement(0x00430010, "LO", "GEMS_PARM_01")
        ds[0x0043, 0x1039] = pydicom.DataElement(0x00431039, "IS", ["1000000800", "8", "0", "0"])

    def philips_b(ds):
        ds[0x2001, 0x0010] = pydicom.DataElement(0x20010010, "LO", "Philips Imaging DD 001")
        ds[0x2001, 0x1003] = pydicom.DataElement(0x20011003, "FL", 1300.0)

    def philips_b_un(ds):
        ds[0x2001, 0x0010] = pydicom.DataElement(0x20010010, "LO", "Philips Imaging DD 001")
        ds[0x2001, 0x1003] = pydicom.DataElement(0x20011003, "UN", b"\x00\x00zD")

    def wrong_creator(ds):
        ds[0x0019, 0x0010] = pydicom.DataElement(0x00190010, "LO", "SOMEONE ELSE")
        ds[0x0019, 0x100C] = pydicom.DataElement(0x0019100C, "UN", b"800")

    def standard_b(ds):
        ds.DiffusionBValue = 1400.0

    def public_un(ds):
        ds.add_new(0x0008103E, "UN", b"t2_tse_tra ")  # SeriesDescription
        ds.add_new(0x00180081, "UN", b"89.5")         # EchoTime

    def nested_sequences(ds):
        inner = pydicom.Dataset()
        inner.CodeValue = "113100"
        inner.CodeMeaning = "x" * 300
        item = pydicom.Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3"
        item.PurposeOfReferenceCodeSequence = pydicom.Sequence([inner, inner.copy()])
        ds.ReferencedImageSequence = pydicom.Sequence([item, item.copy(), pydicom.Dataset()])
        ds.DeidentificationMethodCodeSequence = pydicom.Sequence([inner.copy()])
        for name in ("ReferencedImageSequence", "DeidentificationMethodCodeSequence"):
            ds[name].is_undefined_length = True
            for it in ds[name].value:
                it.is_undefined_length_sequence_item = True

    def big_private_blob(ds):
        ds[0x0029, 0x0010] = pydicom.DataElement(0x00290010, "LO", "SIEMENS CSA HEADER")
        ds[0x0029, 0x1010] = pydicom.DataElement(0x00291010, "OB", bytes(range(256)) * 400)

    def not_mr(ds):
        ds.Modality = "CT"

    def no_series_uid(ds):
        del ds.SeriesInstanceUID

    def no_rows(ds):
        del ds.Rows

    def header_only(ds):
        del ds.PixelData

    def enhanced_sop(ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"

    def mr_spectroscopy(ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.2"

    return [name_latin1, name_utf8, name_groups, multi_values, odd_numbers, weird_numbers, empty_values,
            siemens_b_text, siemens_b_un, siemens_b_no_creator, ge_b, philips_b, philips_b_un, wrong_creator,
            standard_b, public_un, nested_sequences, big_private_blob, not_mr, no_series_uid, no_rows,
            header_only, enhanced_sop, mr_spectroscopy]


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_crafted_variants_identical(pydicom_test_files, tmp_path, mutate, implicit):
    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    mutate(ds)
    if implicit and any(e.VR == "UN" and not e.tag.is_private for e in ds):
        pytest.skip("a public UN element cannot be written in implicit VR")
    path = _save(ds, tmp_path / f"{mutate.__name__}.dcm", implicit)
    _compare_file(path)


def test_crafted_variants_use_the_fast_path_where_expected(pydicom_test_files, tmp_path):
    """Guard against a fast path that silently falls back for everything."""
    expected_fallback = {"name_utf8", "name_groups", "weird_numbers", "enhanced_sop"}
    for mutate in _mutations():
        ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
        mutate(ds)
        path = _save(ds, tmp_path / f"{mutate.__name__}.dcm", False)
        used = _compare_file(path)
        assert used == (mutate.__name__ not in expected_fallback), mutate.__name__


def test_private_b_values_through_the_fast_path(pydicom_test_files, tmp_path):
    cases = {"siemens_b_text": [800.0], "siemens_b_un": [1000.0], "siemens_b_no_creator": [50.0],
             "ge_b": [800.0], "philips_b": [1300.0], "philips_b_un": [1000.0], "wrong_creator": None,
             "standard_b": [1400.0]}
    muts = {m.__name__: m for m in _mutations()}
    for name, expected in cases.items():
        for implicit in (False, True):
            ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
            muts[name](ds)
            path = _save(ds, tmp_path / f"{name}_{implicit}.dcm", implicit)
            h = read_file_header_fast(path)
            assert h.header.get("BValues") == expected, (name, implicit)


def test_implicit_vr_copy_of_a_real_siemens_dwi(prostatex, tmp_path):
    """Real private tags (CSA blobs, B_value) re-encoded as implicit VR: VRs from the private dictionary."""
    folder = prostatex / "ProstateX-0000" / "07-07-2011"
    dwi = sorted(next(folder.glob("6.*")).iterdir())[:3]
    for i, src in enumerate(dwi):
        ds = pydicom.dcmread(src)
        path = _save(ds, tmp_path / f"implicit_{i}.dcm", True)
        assert _compare_file(path, expect_fast=True)
        assert read_file_header_fast(path).frames[0].b_value is not None


def test_file_without_preamble_is_read_by_the_fast_path(pydicom_test_files, tmp_path):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    for implicit in (True, False):
        ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, implicit
        del ds.file_meta
        write_dataset(buf, ds)
        path = tmp_path / f"bare_{implicit}"
        path.write_bytes(buf.getvalue())
        assert _compare_file(path, expect_fast=True)


def test_non_default_pydicom_config_falls_back(pydicom_test_files):
    path = pydicom_test_files / "MR_small.dcm"
    old = pydicom.config.datetime_conversion
    pydicom.config.datetime_conversion = True
    try:
        with pytest.raises(FastPathUnsupported):
            read_file_header_fast(path)
        _assert_same_header(read_file_header_pydicom(path), read_file_header(path), "config")
    finally:
        pydicom.config.datetime_conversion = old
    assert read_file_header_fast(path) is not None


# ----------------------------------------------------------------------------
# Bad input: the same UnusableFile reasons
# ----------------------------------------------------------------------------

def _bad_files(tmp: Path, pydicom_test_files: Path) -> dict[str, Path]:
    good = (pydicom_test_files / "MR_small.dcm").read_bytes()
    out = {}

    def put(name: str, data: bytes) -> None:
        out[name] = tmp / name
        out[name].write_bytes(data)

    put("empty.dcm", b"")
    put("notes.txt", b"not an image\n" * 40)
    put("tiny.dcm", b"\x08\x00\x05\x00CS\x00\x00")
    put("dicm_only.dcm", b"\0" * 128 + b"DICM")
    put("cut_in_meta.dcm", good[:150])
    put("cut_in_header.dcm", good[:600])
    put("cut_in_pixels.dcm", good[:-1000])
    put("garbage_after_dicm.dcm", b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    shutil.copy(pydicom_test_files / "MR_truncated.dcm", tmp / "truncated.dcm")
    out["truncated.dcm"] = tmp / "truncated.dcm"
    for name, mutate in (("ct.dcm", lambda ds: setattr(ds, "Modality", "CT")),
                         ("nouid.dcm", lambda ds: delattr(ds, "SeriesInstanceUID")),
                         ("header_only.dcm", lambda ds: delattr(ds, "PixelData")),
                         ("norows.dcm", lambda ds: delattr(ds, "Rows"))):
        ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
        mutate(ds)
        save_as(ds, tmp / name)
        out[name] = tmp / name
    return out


def test_bad_inputs_give_the_same_reasons(tmp_path, pydicom_test_files):
    files = _bad_files(tmp_path, pydicom_test_files)
    reasons = {}
    for name, path in files.items():
        slow = _outcome(read_file_header_pydicom, path)
        assert isinstance(slow, str), name
        assert _outcome(read_file_header, path) == slow, name
        try:
            assert _outcome(read_file_header_fast, path) == slow, name
        except FastPathUnsupported:
            pass
        reasons[name] = slow
    assert reasons["empty.dcm"] == "UnusableFile: empty file (0 bytes)"
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "Modality CT" in reasons["ct.dcm"]
    assert "SeriesInstanceUID" in reasons["nouid.dcm"]
    assert "no pixel data" in reasons["header_only.dcm"]
    assert "pixel data declares" in reasons["truncated.dcm"]
    assert "pixel data declares" in reasons["cut_in_pixels.dcm"]


def test_unreadable_file_same_reason(tmp_path, pydicom_test_files):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root reads files without permission")
    path = tmp_path / "locked.dcm"
    shutil.copy(pydicom_test_files / "MR_small.dcm", path)
    path.chmod(0)
    try:
        assert _outcome(read_file_header, path) == _outcome(read_file_header_pydicom, path)
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------
# Discovery: serial == parallel, fast == pydicom
# ----------------------------------------------------------------------------

def _mixed_folder(tmp: Path, prostatex: Path, pydicom_test_files: Path) -> Path:
    root = tmp / "mixed"
    root.mkdir()
    for name, path in _bad_files(tmp, pydicom_test_files).items():
        shutil.copy(path, root / name)
    series = sorted((prostatex / "ProstateX-0001").glob("*/*"))[:3]
    for i, folder in enumerate(series):
        for f in sorted(folder.iterdir())[:40]:
            os.symlink(f, root / f"{i}_{f.name}")
    return root


@pytest.mark.parametrize("workers", [2, 3])
def test_discovery_serial_equals_parallel(prostatex, vendors, tmp_path, pydicom_test_files, workers):
    mixed = _mixed_folder(tmp_path, prostatex, pydicom_test_files)
    for roots in ([prostatex], [vendors], [mixed, tmp_path / "missing"]):
        serial = discover_series(roots, workers=1)
        parallel = discover_series(roots, workers=workers)
        assert _strict_equal(serial, parallel), roots
        assert serial.series


def test_discovery_fast_equals_pydicom(prostatex, vendors, monkeypatch):
    fast = discover_series([prostatex, vendors], workers=1)
    monkeypatch.setattr(discovery, "FAST_HEADERS", False)
    slow = discover_series([prostatex, vendors], workers=1)
    assert _strict_equal(fast, slow)


def test_parallel_progress_reaches_the_total(prostatex):
    calls = []
    d = discover_series(prostatex, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (d.n_files, d.n_files)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_parallel_from_keeps_reading_in_this_process_below_it(monkeypatch):
    """``parallel_from`` (the CLI's header-reading child: its parent needs a core for torch) raises
    the file count from which readers start unasked; asked-for workers are still started."""
    import sys

    from SeqClassifierLib import parallel
    from SeqClassifierLib.dicom import discovery

    monkeypatch.delitem(sys.modules, "slicer", raising=False)  # a Slicer stand-in of another test
    monkeypatch.setattr(parallel, "available_cpus", lambda: 4)
    monkeypatch.setattr(discovery, "start_method", lambda: "fork")
    monkeypatch.setattr(parallel, "workers_override", lambda: None)
    monkeypatch.setattr(parallel, "may_start_processes", lambda: True)
    assert discovery._plan_workers(2000, None)[0] == 4
    assert discovery._plan_workers(2000, None, parallel_from=3000)[0] == 1
    assert discovery._plan_workers(3000, None, parallel_from=3000)[0] == 4
    assert discovery._plan_workers(2000, 2, parallel_from=3000)[0] == 2
    assert discovery._plan_workers(600, None, parallel_from=200)[0] == 1  # never below the method's own
    # ProstateX's 377 files are read in this process, 640 and more by readers
    assert discovery._plan_workers(377, None)[0] == 1 and discovery._plan_workers(639, None)[0] == 1
    assert discovery._plan_workers(640, None)[0] == 4


# ----------------------------------------------------------------------------
# Header cache
# ----------------------------------------------------------------------------

def _copy_series(prostatex: Path, dest: Path, n: int = 6) -> list[Path]:
    folder = sorted((prostatex / "ProstateX-0000").glob("*/*"))[1]
    dest.mkdir()
    out = []
    for f in sorted(folder.iterdir())[:n]:
        shutil.copy(f, dest / f.name)
        _old_mtime(dest / f.name)
        out.append(dest / f.name)
    (dest / "notes.txt").write_text("not DICOM")
    _old_mtime(dest / "notes.txt")
    return out


def test_cache_returns_the_same_result(prostatex, tmp_path):
    files = _copy_series(prostatex, tmp_path / "in")
    cache = HeaderCache()
    first = discover_series(tmp_path / "in", cache=cache, workers=1)
    assert cache.misses == len(files) + 1 and len(cache) == len(files) + 1
    again = discover_series(tmp_path / "in", cache=cache, workers=1)
    assert cache.hits == len(files) + 1
    assert _strict_equal(first, again)
    assert _strict_equal(first, discover_series(tmp_path / "in", workers=1))


def test_cache_invalidated_by_mtime_and_size(prostatex, tmp_path):
    files = _copy_series(prostatex, tmp_path / "in")
    cache = HeaderCache()
    discover_series(tmp_path / "in", cache=cache, workers=1)
    # same size, other content, other mtime: re-read
    ds = pydicom.dcmread(files[0])
    ds.SeriesDescription = "CHANGED" + "x" * (len(ds.SeriesDescription) - 7)
    save_as(ds, files[0])
    _old_mtime(files[0], 100)
    # other size: re-read
    ds = pydicom.dcmread(files[1])
    ds.SeriesDescription = "a much longer description than before"
    save_as(ds, files[1])
    _old_mtime(files[1], 200)
    hits = cache.hits
    d = discover_series(tmp_path / "in", cache=cache, workers=1)
    assert cache.hits - hits == len(files) + 1 - 2
    assert _strict_equal(d, discover_series(tmp_path / "in", workers=1))
    assert cache.lookup(files[0])[0].description.startswith("CHANGED")
    assert cache.lookup(files[1])[0].description == "a much longer description than before"


def test_cache_does_not_keep_files_still_being_written(prostatex, tmp_path):
    files = _copy_series(prostatex, tmp_path / "in", n=2)
    os.utime(files[0])  # modified just now
    cache = HeaderCache()
    discover_series(tmp_path / "in", cache=cache, workers=1)
    assert len(cache) == 2  # the other DICOM file and notes.txt


def test_cache_persists_and_never_writes_into_inputs(prostatex, tmp_path):
    _copy_series(prostatex, tmp_path / "in")
    store = tmp_path / "cachedir" / "headers.json"
    cache = HeaderCache(store)
    first = discover_series(tmp_path / "in", cache=cache, workers=1)
    assert cache.save(inputs=[tmp_path / "in"]) == store
    loaded = HeaderCache.persistent(store)
    assert len(loaded) == len(cache)
    again = discover_series(tmp_path / "in", cache=loaded, workers=1)
    assert loaded.hits == len(cache) and loaded.misses == 0
    assert _strict_equal(first, again)
    # all hits: nothing new, so the (possibly large) file is not rewritten
    before = store.stat().st_mtime_ns, store.stat().st_ino
    assert loaded.save(inputs=[tmp_path / "in"]) == store
    assert (store.stat().st_mtime_ns, store.stat().st_ino) == before
    inside = HeaderCache(tmp_path / "in" / "sub" / "headers.json")
    with pytest.raises(ValueError, match="inside the input folder"):
        inside.save(inputs=[tmp_path / "in"])
    assert not (tmp_path / "in" / "sub").exists()


def test_cache_relative_paths_keep_the_callers_spelling(prostatex, tmp_path, monkeypatch):
    _copy_series(prostatex, tmp_path / "in", n=2)
    cache = HeaderCache()
    monkeypatch.chdir(tmp_path)
    a = discover_series("in", cache=cache, workers=1)
    b = discover_series(str(tmp_path / "in"), cache=cache, workers=1)
    assert cache.hits == 3
    assert all(not os.path.isabs(f) for s in a.series for f in s.files)
    assert all(os.path.isabs(f) for s in b.series for f in s.files)


def test_default_cache_dir_is_per_user(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQCLASSIFIER_CACHE", str(tmp_path / "c"))
    assert config.cache_root() == tmp_path / "c"
    assert HeaderCache.persistent().path == tmp_path / "c" / "headers.json"
    monkeypatch.delenv("SEQCLASSIFIER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.header_cache_file() == tmp_path / "xdg" / "seqclassifier" / "headers.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.header_cache_file() == Path.home() / ".cache" / "seqclassifier" / "headers.json"


# ----------------------------------------------------------------------------
# Native pixel reading (offered to preprocessing.read_frame)
# ----------------------------------------------------------------------------

def test_native_frames_equal_pydicom_pixel_array(prostatex, pydicom_test_files):
    paths = [p for p in _files(prostatex) if p.suffix == ".dcm"][::7]
    paths += [pydicom_test_files / n for n in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
                                               "CT_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm")]
    used = 0
    for p in paths:
        try:
            arr, ds = read_native_frame(p)
        except FastPathUnsupported:
            continue
        ref = pixel_array(p)
        assert arr.dtype == ref.dtype and arr.shape == ref.shape and np.array_equal(arr, ref), p
        assert arr.flags.writeable
        full = pydicom.dcmread(p, stop_before_pixels=True)
        for tag in (fast_header.T.RESCALE_SLOPE, fast_header.T.RESCALE_INTERCEPT):
            assert (tag in ds) == (tag in full)
        used += 1
    assert used == len(paths) - 3  # RLE, big endian and padded (excess pixel bytes) fall back
    with pytest.raises(FastPathUnsupported):
        read_native_frame(pydicom_test_files / "MR_small_RLE.dcm")
