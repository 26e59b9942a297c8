"""Property-based fuzzing of header parsing and feature extraction (hypothesis, derandomized).

Real headers (a few ProstateX files: T2w, DWI with the Siemens private
b-value, ADC) are mutated two ways and written to a temporary file:

* bytes: flips, deletions, insertions and a truncation at random positions
  *before the pixel data*;
* element values: random strings / huge numbers / NaN / lists on ImageType,
  EchoTime, PixelSpacing, ImageOrientationPatient, the private b-value tags,
  NumberOfFrames and enhanced functional groups.

Properties: ``read_file_header`` (fast and pydicom readers) returns a
FileHeader or raises ``UnusableFile``, nothing else; ``discover_series`` never
raises; ``extract_features(build_series([...]))`` is a finite float32 vector
of ``N_FEATURES`` values.
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import corpus
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.inputs.features import N_FEATURES, extract_features
from SeqClassifierLib.dicom.discovery import build_series, discover_series, read_file_header
from SeqClassifierLib.dicom.header import FileHeader, UnusableFile
from SeqClassifierLib.dicom.pydicom_compat import save_as

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SOURCES = [
    ("t2", corpus.PROSTATEX / "ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702"),
    ("dwi", corpus.PROSTATEX / "ProstateX-0000/07-07-2011/6.000000-ep2ddifftraDYNDIST-69284"),
    ("adc", corpus.PROSTATEX / "ProstateX-0000/07-07-2011/7.000000-ep2ddifftraDYNDISTADC-48780"),
]


def _load_sources():
    out = []
    for name, folder in SOURCES:
        if not folder.is_dir():
            continue
        path = sorted(folder.iterdir())[0]
        raw = path.read_bytes()
        with open(path, "rb") as fh:
            pydicom.dcmread(fh, stop_before_pixels=True)
            pixel_offset = fh.tell()
        out.append((name, raw, pixel_offset, path))
    return out


HEADERS = _load_sources()
DATASETS = [pydicom.dcmread(h[3]) for h in HEADERS]
pytestmark = [
    pytest.mark.skipif(not HEADERS, reason=f"real test data not found at {corpus.PROSTATEX}"),
    # mutated values make pydicom warn about every invalid DS/IS/UI it meets: expected here
    pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:pydicom"),
]
WORK = Path(tempfile.mkdtemp(prefix="seqcls-fuzz-"))


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    # keep raw UN bytes raw (the fuzzed values are exactly what pydicom would refuse to convert)
    old = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    yield
    pydicom.config.replace_un_with_known_vr = old
    shutil.rmtree(WORK, ignore_errors=True)


STATS = {"files": 0, "header": 0, "unusable": 0, "write_refused": 0}
REASONS: dict = {}


def check_file(path: Path) -> None:
    """The properties, for one file."""
    STATS["files"] += 1
    headers = []
    for fast in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h = read_file_header(path, fast=fast)
        except UnusableFile as exc:
            assert str(exc), "an UnusableFile without a reason"
            STATS["unusable"] += 1
            key = str(exc).split(":")[0].split("(")[0].strip()
            REASONS[key] = REASONS.get(key, 0) + 1
            continue
        STATS["header"] += 1
        assert isinstance(h, FileHeader)
        assert h.series_uid and h.frames
        headers.append(h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = extract_features(build_series([h]))
        assert x.dtype == np.float32 and x.shape == (N_FEATURES,)
        assert np.isfinite(x).all(), [i for i in range(N_FEATURES) if not math.isfinite(x[i])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = discover_series(path.parent)
    assert d.n_files == 1 and len(d.series) + len(d.skipped) == 1


# ----------------------------------------------------------------------------
# Byte mutations in the header region
# ----------------------------------------------------------------------------

op = st.tuples(st.sampled_from(["flip", "delete", "insert", "set"]), st.floats(0, 1, exclude_max=True),
               st.integers(1, 16), st.binary(min_size=1, max_size=16))


@FUZZ
@given(src=st.integers(0, len(HEADERS) - 1 if HEADERS else 0), ops=st.lists(op, min_size=1, max_size=6),
       truncate=st.one_of(st.none(), st.floats(0, 1)))
def test_byte_mutations_in_the_header(src, ops, truncate):
    name, raw, pixel_offset, _ = HEADERS[src]
    header, pixels = bytearray(raw[:pixel_offset]), raw[pixel_offset:]
    start = 132  # keep the preamble + 'DICM' in most cases: mutate the data set itself
    for kind, where, n, data in ops:
        pos = start + int(where * max(1, len(header) - start))
        if kind == "flip":
            for k in range(pos, min(pos + n, len(header))):
                header[k] ^= 0xFF
        elif kind == "delete":
            del header[pos:pos + n]
        elif kind == "insert":
            header[pos:pos] = data
        else:
            header[pos:pos + len(data)] = data
    blob = bytes(header) + pixels
    if truncate is not None:
        blob = blob[: start + int(truncate * (len(header) - start))]
    folder = WORK / "bytes"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / f"{name}.dcm"
    path.write_bytes(blob)
    check_file(path)


# ----------------------------------------------------------------------------
# Element values
# ----------------------------------------------------------------------------

number_text = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "", " ", "1e-320", "9" * 64, "0x10", "1,5", "١٢"]),
)
junk_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
value_text = st.one_of(number_text, junk_text,
                       st.lists(st.one_of(number_text, junk_text), max_size=8).map("\\".join))

FIELDS = [
    (T.IMAGE_TYPE, "CS"), (T.ECHO_TIME, "DS"), (T.REPETITION_TIME, "DS"), (T.PIXEL_SPACING, "DS"),
    (T.IMAGE_ORIENTATION_PATIENT, "DS"), (T.IMAGE_POSITION_PATIENT, "DS"), (T.SIEMENS_B_VALUE, "IS"),
    (T.GE_B_VALUE, "IS"), (T.PHILIPS_B_VALUE, "FL"), (T.DIFFUSION_B_VALUE, "FD"), (T.ROWS, "US"),
    (T.SLICE_THICKNESS, "DS"), (T.SCANNING_SEQUENCE, "CS"), (T.MANUFACTURER, "LO"), (T.SERIES_DESCRIPTION, "LO"),
    (T.NUMBER_OF_TEMPORAL_POSITIONS, "IS"), (T.TEMPORAL_POSITION_IDENTIFIER, "IS"), (T.TRIGGER_TIME, "DS"),
    (T.RESCALE_SLOPE, "DS"), (T.SIEMENS_CREATOR, "LO"), (T.GE_CREATOR, "LO"), (T.PHILIPS_CREATOR, "LO"),
]


def _raw(text: str) -> bytes:
    raw = text.encode("utf-8", "replace")
    return raw + (b" " if len(raw) % 2 else b"")


def _element(tag, vr, text: str, as_bytes: bool, number: float) -> DataElement:
    """The element as pydicom would write it, or its raw bytes as UN when pydicom refuses the value."""
    try:
        if vr == "US":
            return DataElement(tag, vr, int(number) % 65536 if math.isfinite(number) else 0)
        if vr in ("FL", "FD"):
            return DataElement(tag, vr, float(number))
        if not as_bytes:
            return DataElement(tag, vr, text)
    except (ValueError, OverflowError, TypeError):
        pass
    return DataElement(tag, "UN", _raw(text))  # raw, unvalidated bytes (what a broken writer produces)


def _set(ds: Dataset, keyword: str, value) -> None:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    try:
        ds[tag] = DataElement(tag, pydicom.datadict.dictionary_VR(tag), value)
    except (ValueError, OverflowError, TypeError):
        ds[tag] = DataElement(tag, "UN", _raw(str(value)))


edit = st.tuples(st.integers(0, len(FIELDS) - 1), value_text, st.booleans(),
                 st.floats(allow_nan=True, allow_infinity=True, width=32), st.booleans())


def _functional_groups(ds: Dataset, data) -> None:
    """Enhanced-style groups with junk: shared + per-frame, possibly fewer items than frames."""
    def item() -> Dataset:
        it = Dataset()
        pm = Dataset()
        _set(pm, "PixelSpacing", data.draw(value_text))
        _set(pm, "SliceThickness", data.draw(number_text))
        it.PixelMeasuresSequence = DicomSequence([pm])
        po = Dataset()
        _set(po, "ImageOrientationPatient", data.draw(value_text))
        it.PlaneOrientationSequence = DicomSequence([po])
        pp = Dataset()
        _set(pp, "ImagePositionPatient", data.draw(value_text))
        it.PlanePositionSequence = DicomSequence([pp])
        diff = Dataset()
        _set(diff, "DiffusionBValue", data.draw(st.floats(allow_nan=True, allow_infinity=True)))
        it.MRDiffusionSequence = DicomSequence([diff] if data.draw(st.booleans()) else [])
        fc = Dataset()
        _set(fc, "TemporalPositionIndex", data.draw(st.integers(-(2**31), 2**31 - 1)))
        _set(fc, "InStackPositionNumber", data.draw(st.integers(-(2**31), 2**31 - 1)))
        it.FrameContentSequence = DicomSequence([fc])
        return it

    ds.SharedFunctionalGroupsSequence = DicomSequence([item()] if data.draw(st.booleans()) else [])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence([item() for _ in range(data.draw(st.integers(0, 3)))])
    # kept moderate on purpose: a huge NumberOfFrames is its own (known-bad) test below
    _set(ds, "NumberOfFrames", data.draw(st.one_of(st.integers(-5, 40).map(str), st.sampled_from(["", "x", "1e3", "nan"]))))


@FUZZ
@given(src=st.integers(0, len(HEADERS) - 1 if HEADERS else 0), edits=st.lists(edit, min_size=1, max_size=8),
       delete=st.lists(st.integers(0, len(FIELDS) - 1), max_size=3), enhanced=st.booleans(), data=st.data())
def test_element_value_mutations(src, edits, delete, enhanced, data):
    name, raw, _, path = HEADERS[src]
    ds = copy.deepcopy(DATASETS[src])
    for i, text, as_bytes, number, _ in edits:
        tag, vr = FIELDS[i]
        ds[tag] = _element(tag, vr, text, as_bytes, number)
    for i in delete:
        tag = FIELDS[i][0]
        if tag in ds and tag != T.ROWS:
            del ds[tag]
    if enhanced:
        _functional_groups(ds, data)
    folder = WORK / "values"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = folder / f"{name}.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = pydicom.config.settings.writing_validation_mode
        pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
        try:
            save_as(ds, out, enforce_file_format=False)
        except Exception:  # a value pydicom cannot even write: not what we test
            STATS["write_refused"] += 1
            return
        finally:
            pydicom.config.settings.writing_validation_mode = old
    check_file(out)


def test_zz_fuzzing_reached_both_outcomes():
    """The properties above were really exercised (files read, both outcomes seen)."""
    print(f"\nfuzz: {STATS}; reasons: {dict(sorted(REASONS.items(), key=lambda kv: -kv[1]))}")
    if STATS["files"] == 0:
        pytest.skip("fuzz tests did not run (deselected)")
    assert STATS["header"] > 50 and STATS["unusable"] > 50


# ----------------------------------------------------------------------------
# Hazard found by fuzzing: a declared NumberOfFrames far beyond the pixel data
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("declared", [2, 10**6, 2**31 - 1])
def test_number_of_frames_beyond_the_pixel_data_is_refused(tmp_path, fast, declared):
    ds = corpus.retag(corpus.good_slice(), "frames")
    ds.NumberOfFrames = declared  # the pixel data holds one frame
    path = corpus.save(ds, tmp_path / "frames.dcm")
    with pytest.raises(UnusableFile) as info:
        read_file_header(path, fast=fast)
    reason = str(info.value)
    assert f"NumberOfFrames {declared}" in reason
    assert ("does not fit the pixel data" in reason and "hold 1 frame(s)" in reason) or "implausible" in reason


@pytest.mark.parametrize("fast", [True, False])
def test_number_of_frames_matching_the_pixel_data_is_read(tmp_path, fast):

    ds = corpus.retag(corpus.good_slice(), "frames3")
    one = ds.PixelData
    ds.PixelData = one * 3
    ds.NumberOfFrames = 3
    path = corpus.save(ds, tmp_path / "frames3.dcm")
    h = read_file_header(path, fast=fast)
    assert [f.frame for f in h.frames] == [0, 1, 2]
