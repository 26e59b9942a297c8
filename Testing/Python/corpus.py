"""Bad-input corpus for the reliability tests, generated on the fly (no binary blobs in git).

Every builder writes one kind of bad (or unusual) input into a folder and
returns a :class:`Case` saying what discovery must do with it:

* ``skip``: the file(s) must be reported in the JSON ``skipped`` list (and on
  stderr) with a reason matching ``reason``;
* ``series``: the file(s) are usable and must show up as their own series
  (``n_series`` new series), never disturbing the good one;
* ``silent``: nothing to report (symlink loop: the folder is simply not
  entered twice).

The GOOD series is five slices of a real ProstateX T2w axial series, copied
(read only) from the shared data.  Sources under /work/shared are never
written.
"""

from __future__ import annotations

import hashlib
import os
import stat
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from SeqClassifierLib.dicom.pydicom_compat import save_as

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SEQCLASSIFIER_DATA", REPO.parent / "shared" / "data"))
PROSTATEX = DATA / "prostatex"
VENDORS = DATA / "vendors"
GOOD_SERIES = PROSTATEX / "ProstateX-0000" / "07-07-2011" / "4.000000-t2tsetra-00702"
OTHER_SERIES = PROSTATEX / "ProstateX-0000" / "07-07-2011" / "3.000000-t2tsesag-87368"
ENHANCED_DTI = VENDORS / "dicom2nifti" / "philips_enhanced" / "dti"
MOSAIC_DTI = VENDORS / "dicom2nifti" / "siemens" / "dti"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# SOP classes of the non-MR objects
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
GRAYSCALE_PR = "1.2.840.10008.5.1.4.1.1.11.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def uid(*parts: str) -> str:
    """A deterministic UID (same corpus on every run)."""
    return generate_uid(entropy_srcs=["seqclassifier-corpus", *parts])


def need_data(path: Path) -> Path:
    """``path``, a folder of the real data; else the test is skipped (failed under CI, where it must be)."""
    if not path.is_dir():
        import pytest

        if os.environ.get("CI"):
            pytest.fail(f"real test data missing at {path} (set SEQCLASSIFIER_DATA)")
        pytest.skip(f"real test data not found at {path} (set SEQCLASSIFIER_DATA)")
    return path


def good_files(n: int = 5) -> list[Path]:
    return sorted(need_data(GOOD_SERIES).iterdir())[:n]


def copy_good(dest: Path, n: int = 5) -> list[Path]:
    """Copy ``n`` files of the GOOD series into ``dest`` (created)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in good_files(n):
        target = dest / src.name
        shutil.copyfile(src, target)  # copyfile: no permission bits copied (sources are read-only)
        out.append(target)
    return out


def good_slice() -> Dataset:
    """A real slice of the GOOD series (uncompressed), ready to be retagged."""
    return pydicom.dcmread(good_files(1)[0])


def retag(ds: Dataset, key: str, *, study: bool = False) -> Dataset:
    """New SeriesInstanceUID / SOPInstanceUID (and StudyInstanceUID) derived from ``key``."""
    ds.SeriesInstanceUID = uid(key, "series")
    ds.SOPInstanceUID = uid(key, "sop")
    if study:
        ds.StudyInstanceUID = uid(key, "study")
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = f"corpus {key}"
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_as(ds, path, enforce_file_format=True)
    return path


def _meta(sop_class: str, sop_instance: str, ts=ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    return meta


def minimal_object(sop_class: str, modality: str, key: str, image: bool = False) -> Dataset:
    """A minimal non-MR object with the right SOP class and Modality."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(key, "sop")
    ds.file_meta = _meta(sop_class, ds.SOPInstanceUID)
    ds.Modality = modality
    ds.PatientID = "CORPUS"
    ds.PatientName = "Corpus^Bad"
    ds.StudyInstanceUID = uid(key, "study")
    ds.SeriesInstanceUID = uid(key, "series")
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    if image:
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 0]
        ds.PixelSpacing = [1, 1]
        ds.PixelData = np.arange(256, dtype=np.uint16).tobytes()
    return ds


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------

@dataclass
class Case:
    kind: str
    paths: list[Path]
    expect: str  # "skip" | "series" | "silent"
    reason: str = ""  # regex the skip reason must match (re.search, case-insensitive)
    n_series: int = 0  # new series expected when expect == "series"
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def skipped_paths(self) -> list[Path]:
        """The paths that must be reported as skipped."""
        if self.expect != "skip":
            return []
        return list(self.extra.get("skipped", self.paths))


def truncated_pixels(folder: Path) -> Case:
    raw = good_files(1)[0].read_bytes()
    ds = retag(good_slice(), "truncated-pixels")
    p = save(ds, folder / "truncated_pixels.dcm")
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - len(raw) // 3])
    return Case("truncated (pixel data cut)", [p], "skip", r"truncated")


def truncated_header(folder: Path) -> Case:
    ds = retag(good_slice(), "truncated-header")
    p = save(ds, folder / "truncated_header.dcm")
    raw = p.read_bytes()
    p.write_bytes(raw[:700])  # inside the data set, well before the pixel data
    return Case("truncated (header cut)", [p], "skip", r"truncat|corrupt")


def not_dicom(folder: Path) -> Case:
    p = folder / "notes.txt"
    p.write_text("Patient notes, not an image.\n" * 20)
    q = folder / "image.png"
    q.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return Case("not DICOM (text, PNG)", [p, q], "skip", r"not a DICOM file")


def zero_bytes(folder: Path) -> Case:
    p = folder / "empty.dcm"
    p.write_bytes(b"")
    return Case("zero-byte file", [p], "skip", r"empty file \(0 bytes\)")


def no_preamble(folder: Path) -> Case:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = retag(good_slice(), "no-preamble")
    del ds.file_meta
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    p = folder / "bare_dataset"
    p.write_bytes(buf.getvalue())
    return Case("DICOM without preamble (bare data set)", [p], "series", n_series=1,
                notes="readable: its own series")


def dicomdir(folder: Path) -> Case:
    ds = Dataset()
    ds.file_meta = _meta("1.2.840.10008.1.3.10", uid("dicomdir"))
    ds.FileSetID = "CORPUS"
    ds.DirectoryRecordSequence = []
    p = folder / "DICOMDIR"
    save_as(ds, p, enforce_file_format=True)
    return Case("DICOMDIR", [p], "skip", r"DICOMDIR")


def missing_series_uid(folder: Path) -> Case:
    ds = retag(good_slice(), "no-series-uid")
    del ds.SeriesInstanceUID
    p = save(ds, folder / "no_series_uid.dcm")
    return Case("missing SeriesInstanceUID", [p], "skip", r"SeriesInstanceUID")


def missing_iop(folder: Path) -> Case:
    ds = retag(good_slice(), "no-iop")
    del ds.ImageOrientationPatient
    p = save(ds, folder / "no_iop.dcm")
    return Case("missing ImageOrientationPatient", [p], "series", n_series=1,
                notes="usable, plane unknown", extra={"plane": "unknown"})


def missing_pixel_spacing(folder: Path) -> Case:
    ds = retag(good_slice(), "no-spacing")
    del ds.PixelSpacing
    p = save(ds, folder / "no_pixel_spacing.dcm")
    return Case("missing PixelSpacing", [p], "series", n_series=1, notes="usable")


def header_only(folder: Path) -> Case:
    ds = retag(good_slice(), "header-only")
    del ds.PixelData
    p = save(ds, folder / "header_only.dcm")
    return Case("header without pixel data", [p], "skip", r"no pixel data")


def non_mr(folder: Path) -> Case:
    paths = [
        save(minimal_object(CT_IMAGE, "CT", "ct", image=True), folder / "ct.dcm"),
        save(minimal_object(BASIC_TEXT_SR, "SR", "sr"), folder / "sr.dcm"),
        save(minimal_object(SEGMENTATION, "SEG", "seg", image=True), folder / "seg.dcm"),
        save(minimal_object(GRAYSCALE_PR, "PR", "pr"), folder / "pr.dcm"),
    ]
    return Case("non-MR objects (CT, SR, SEG, PR)", paths, "skip", r"not an MR image \(Modality (CT|SR|SEG|PR)\)")


def mr_non_image(folder: Path) -> Case:
    """A presentation state that claims Modality MR: the SOP class must still refuse it."""
    p = save(minimal_object(GRAYSCALE_PR, "MR", "pr-mr"), folder / "pr_modality_mr.dcm")
    return Case("MR-modality non-image (PR SOP class)", [p], "skip", r"not an image|SOP class")


# -- compressed transfer syntaxes ------------------------------------------------

def _compressed_source(key: str) -> Dataset:
    return retag(good_slice(), key)


def rle(folder: Path) -> Case:
    ds = _compressed_source("rle")
    ds.compress(RLELossless)
    p = save(ds, folder / "rle.dcm")
    return Case("RLE Lossless", [p], "series", n_series=1, extra={"lossless": True})


def jpeg2000(folder: Path) -> Case:
    ds = _compressed_source("j2k")
    ds.compress(JPEG2000Lossless)
    p = save(ds, folder / "j2k.dcm")
    return Case("JPEG 2000 Lossless", [p], "series", n_series=1, extra={"lossless": True})


def jpeg_ls(folder: Path) -> Case:
    from pydicom.pixels.encoders import JPEGLSLosslessEncoder

    if JPEGLSLosslessEncoder.is_available:
        ds = _compressed_source("jpegls")
        ds.compress(JPEGLSLossless)
        src = "encoded from a ProstateX slice"
    else:  # no JPEG-LS encoder (pyjpegls): pydicom's own JPEG-LS file, retagged
        ds = retag(pydicom.dcmread(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm"), "jpegls")
        src = "pydicom's MR_small_jpeg_ls_lossless (no JPEG-LS encoder installed)"
    p = save(ds, folder / "jpegls.dcm")
    return Case("JPEG-LS Lossless", [p], "series", n_series=1, notes=src,
                extra={"lossless": True,
                       "reference": None if JPEGLSLosslessEncoder.is_available else PYDICOM_FILES / "MR_small.dcm"})


def jpeg_baseline(folder: Path) -> Case:
    """8-bit slice encoded by Pillow and encapsulated by pydicom (lossy)."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate

    ds = _compressed_source("jpeg-baseline")
    arr = ds.pixel_array.astype(np.float64)
    arr8 = np.clip(arr / max(arr.max(), 1) * 255.0, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr8, mode="L").save(buf, format="JPEG", quality=95)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue", "WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    p = save(ds, folder / "jpeg_baseline.dcm")
    return Case("JPEG Baseline (8-bit, Pillow)", [p], "series", n_series=1,
                extra={"lossless": False, "reference_array": arr8})


# -- real multi-frame / mosaic --------------------------------------------------

def _copy_tree(src: Path, dest: Path) -> list[Path]:
    out = []
    for f in sorted(src.rglob("*")):
        if f.is_file():
            t = dest / f.relative_to(src)
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, t)
            out.append(t)
    return out


def enhanced(folder: Path) -> Case:
    paths = _copy_tree(ENHANCED_DTI, folder / "philips_enhanced_dti")
    return Case("enhanced multi-frame MR (Philips DTI)", paths, "series", n_series=1)


def mosaic(folder: Path) -> Case:
    paths = _copy_tree(MOSAIC_DTI, folder / "siemens_mosaic_dti")
    return Case("Siemens mosaic (DTI)", paths, "series", n_series=1)


def different_sizes(folder: Path) -> Case:
    """Files of one SeriesInstanceUID with different Rows/Columns."""
    key = "different-sizes"
    big = retag(good_slice(), key)
    big.InstanceNumber = 1
    small = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    small.PatientID, small.PatientName = big.PatientID, big.PatientName  # one series: one patient, one study
    small.StudyInstanceUID = big.StudyInstanceUID
    small.SeriesInstanceUID = big.SeriesInstanceUID
    small.SOPInstanceUID = uid(key, "sop2")
    small.file_meta.MediaStorageSOPInstanceUID = small.SOPInstanceUID
    small.SeriesDescription = big.SeriesDescription
    small.ImageOrientationPatient = big.ImageOrientationPatient
    small.ImagePositionPatient = [float(v) + 3.0 * i for i, v in enumerate(big.ImagePositionPatient)]
    small.InstanceNumber = 2
    third = retag(good_slice(), key)
    third.SOPInstanceUID = uid(key, "sop3")
    third.file_meta.MediaStorageSOPInstanceUID = third.SOPInstanceUID
    third.Rows, third.Columns = 192, 768  # same bytes, other shape
    third.InstanceNumber = 3
    third.ImagePositionPatient = [float(v) + 6.0 for v in big.ImagePositionPatient]
    paths = [save(big, folder / "size_384.dcm"), save(small, folder / "size_64.dcm"),
             save(third, folder / "size_192x768.dcm")]
    return Case("slices of different sizes in one series", paths, "series", n_series=1,
                notes="must finish; classified or reported", extra={"n_files": 3})


def mixed_studies(folder: Path) -> Case:
    paths = []
    for i, f in enumerate(sorted(OTHER_SERIES.iterdir())[:3]):
        t = folder / "other_series" / f.name
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, t)
        paths.append(t)
    small = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    retag(small, "second-study", study=True)
    small.PatientID = "CORPUS-2"
    paths.append(save(small, folder / "second_study" / "mr_small.dcm"))
    return Case("several series and studies in one folder", paths, "series", n_series=2)


def unreadable(folder: Path) -> Case:
    folder.mkdir(parents=True, exist_ok=True)
    ds = retag(good_slice(), "unreadable")
    p = save(ds, folder / "unreadable.dcm")
    os.chmod(p, 0)
    return Case("unreadable (chmod 000)", [p], "skip", r"permission denied")


def unicode_long_paths(folder: Path) -> Case:
    deep = folder
    names = ["Ünïcødé-πρόστατα", "日本語フォルダ", "ĳ-ŉ-ﬁ-𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "очень-длинное-имя-папки-" + "x" * 40,
             "español niño (copia) #1", "עברית"]
    for i in range(3):
        for n in names:
            deep = deep / f"{n}-{i}"
    ds = retag(good_slice(), "unicode")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = "T2 ünïcødé — 日本"
    good = save(ds, deep / "séquence-ü.dcm")
    bad = deep / "kaputt-ñ.dcm"
    bad.write_bytes(b"ceci n'est pas un DICOM " * 10)
    assert len(str(good)) > 255, len(str(good))
    return Case("non-ASCII and long paths (> 255 chars)", [good, bad], "skip", r"not a DICOM file", n_series=1,
                notes="one good file (own series), one bad", extra={"skipped": [bad]})


def symlink_loop(folder: Path) -> Case:
    loop = folder / "loop"
    loop.mkdir()
    os.symlink("..", loop / "back_to_parent")
    os.symlink(loop / "self", loop / "self")  # a link to itself
    os.symlink(folder / "nowhere.dcm", loop / "dangling.dcm")
    return Case("symlink loop (+ self link, dangling link)", [loop / "self", loop / "dangling.dcm"], "skip",
                r"symbolic link|levels of symbolic links|cannot stat")


def special_files(folder: Path) -> Case:
    """A named pipe (opening it for reading would block forever) and a socket beside the images."""
    import socket

    fifo = folder / "pipe.dcm"
    os.mkfifo(fifo)
    sock_path = folder / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()  # the socket file stays
    return Case("special files (FIFO, socket)", [fifo, sock_path], "skip",
                r"not a regular file: (a named pipe \(FIFO\)|a socket)")


#: (keyword, raw value) per series of :func:`non_finite_numbers`: numbers a float parses but no scanner
#: writes (1e308 is finite, yet rounding it to a step overflows), infinities and NaN.
NON_FINITE = (
    {"RepetitionTime": "1e308", "EchoTime": "-1e308"},
    {"PixelSpacing": "1e308\\1e308", "SliceThickness": "inf"},
    {"FlipAngle": "nan", "EchoTime": "-inf", "SpacingBetweenSlices": "1e308"},
    {"ImageOrientationPatient": "\\".join(["1e308"] * 6), "RepetitionTime": "nan"},
    {"ImagePositionPatient": "1e308\\-1e308\\inf", "AcquisitionTime": "999999.999"},
)


def _raw_number(ds: Dataset, keyword: str, text: str) -> None:
    """Store ``text`` as the element's raw bytes (pydicom would refuse to write inf/NaN as DS)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    raw = text.encode("ascii")
    raw += b" " * (len(raw) % 2)
    if tag in ds:
        del ds[tag]
    ds[tag] = RawDataElement(pydicom.tag.Tag(tag), dictionary_VR(tag), len(raw), raw, 0, False, True)


def non_finite_numbers(folder: Path) -> Case:
    """A study of five series with huge, infinite or NaN numeric header values (the study-context stage
    groups them by rounded TR, TE, flip angle, spacing and positions)."""
    paths = []
    for i, values in enumerate(NON_FINITE):
        ds = retag(good_slice(), f"non-finite-{i}", study=False)
        ds.StudyInstanceUID = uid("non-finite", "study")
        ds.AcquisitionTime = f"1200{i * 5:02d}"
        for keyword, text in values.items():
            _raw_number(ds, keyword, text)
        paths.append(save(ds, folder / f"non_finite_{i}.dcm"))
    return Case("huge / infinite / NaN numbers (TR, TE, flip, spacing, orientation, position, time)", paths,
                "series", n_series=len(NON_FINITE), notes="treated as missing: classified, one-line note at most",
                extra={"one_line_notes": True})


#: Size of :func:`zeros_2gb`'s file (sparse: no disk blocks are written).
ZEROS_SIZE = 2 * 1024 ** 3


def zeros_2gb(folder: Path) -> Case:
    """A 2 GB file of zeros (sparse): no 'DICM', no data set start; must be refused from its first bytes."""
    p = folder / "zeros.dcm"
    with open(p, "wb") as fh:
        fh.truncate(ZEROS_SIZE)
    return Case("2 GB file of zeros (sparse)", [p], "skip", r"not a DICOM file")


BUILDERS: dict[str, Callable[[Path], Case]] = {
    "truncated_pixels": truncated_pixels,
    "truncated_header": truncated_header,
    "not_dicom": not_dicom,
    "zero_bytes": zero_bytes,
    "no_preamble": no_preamble,
    "dicomdir": dicomdir,
    "missing_series_uid": missing_series_uid,
    "missing_iop": missing_iop,
    "missing_pixel_spacing": missing_pixel_spacing,
    "header_only": header_only,
    "non_mr": non_mr,
    "mr_non_image": mr_non_image,
    "rle": rle,
    "jpeg2000": jpeg2000,
    "jpeg_ls": jpeg_ls,
    "jpeg_baseline": jpeg_baseline,
    "enhanced": enhanced,
    "mosaic": mosaic,
    "different_sizes": different_sizes,
    "mixed_studies": mixed_studies,
    "unreadable": unreadable,
    "unicode_long_paths": unicode_long_paths,
    "symlink_loop": symlink_loop,
    "special_files": special_files,
    "non_finite_numbers": non_finite_numbers,
    "zeros_2gb": zeros_2gb,
}


def build(kind: str, folder: Path) -> Case:
    """One kind into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    return BUILDERS[kind](folder)


def build_corpus(root: Path, kinds: Optional[list[str]] = None) -> dict[str, Case]:
    """Every kind into its own sub-folder of ``root`` (the bad files only; no GOOD series)."""
    return {kind: build(kind, root / kind) for kind in kinds or list(BUILDERS)}


# ----------------------------------------------------------------------------
# Many small files, fast
# ----------------------------------------------------------------------------

_SERIES_PH = "1.2.826.0.1.3680043.8.498.7" + "7" * 30      # 57 chars (odd -> padded)
_SOP_PH = "1.2.826.0.1.3680043.8.498.9" + "9" * 30


def write_many(folder: Path, n_files: int = 10_000, n_series: int = 100, bad_every: int = 500,
               size: int = 8) -> dict:
    """``n_files`` tiny MR files (``size``x``size``, from MR_small's header) in ``n_series`` series.

    Every ``bad_every``-th file is garbage (not DICOM).  Files are produced by
    replacing fixed-length placeholder UIDs in a template's bytes, so 10,000
    files take well under a second or two.
    """
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    ds.Rows = ds.Columns = size
    ds.PixelData = (np.arange(size * size, dtype=np.uint16) % 4096).tobytes()
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if tag in ds:
            delattr(ds, tag)
    ds.SeriesInstanceUID = _SERIES_PH
    ds.SOPInstanceUID = _SOP_PH
    ds.file_meta.MediaStorageSOPInstanceUID = _SOP_PH
    ds.InstanceNumber = 1
    import io

    buf = io.BytesIO()
    save_as(ds, buf, enforce_file_format=True)
    template = buf.getvalue()
    s_ph, i_ph = _SERIES_PH.encode(), _SOP_PH.encode()
    assert template.count(s_ph) == 1 and template.count(i_ph) == 2
    folder.mkdir(parents=True, exist_ok=True)
    n_bad = 0
    per = max(1, n_files // n_series)
    for i in range(n_files):
        s = i // per
        sub = folder / f"s{s:03d}"
        if i % per == 0:
            sub.mkdir(exist_ok=True)
        if bad_every and i % bad_every == bad_every - 1:
            (sub / f"f{i:05d}.dcm").write_bytes(b"garbage" * 8)
            n_bad += 1
            continue
        series = (_SERIES_PH[:-10] + f"{s:010d}").encode()
        sop = (_SOP_PH[:-10] + f"{i:010d}").encode()
        data = template.replace(s_ph, series).replace(i_ph, sop)
        (sub / f"f{i:05d}.dcm").write_bytes(data)
    return {"n_files": n_files, "n_bad": n_bad, "n_series": (n_files + per - 1) // per}


def tree_digest(root: Path) -> dict[str, tuple[str, int, int]]:
    """path -> (sha256, size, mtime_ns) of every file under ``root`` (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link:" + os.readlink(p), 0, st.st_mtime_ns)
                continue
            if not stat.S_ISREG(st.st_mode):  # a FIFO or socket: opening it would block
                out[p] = (f"special:{stat.S_IFMT(st.st_mode):o}", 0, st.st_mtime_ns)
                continue
            try:
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            except OSError:
                digest = "unreadable"
            out[p] = (digest, st.st_size, st.st_mtime_ns)
        for d in dirnames:
            st = os.lstat(os.path.join(dirpath, d))
            out[os.path.join(dirpath, d) + os.sep] = ("dir", 0, st.st_mtime_ns)
    return out


__all__ = ["BUILDERS", "Case", "build_corpus", "copy_good", "write_many", "tree_digest", "GOOD_SERIES",
           "PROSTATEX", "VENDORS", "uid", "struct"]
