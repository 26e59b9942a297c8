"""Series discovery on the real ProstateX and vendor data, and on edge cases."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from SeqClassifierLib.labels import Plane
from SeqClassifierLib.dicom.discovery import discover_series, plane_of, read_file_header, slice_normal
from SeqClassifierLib.dicom.header import UnusableFile
from SeqClassifierLib.dicom.phoenix import phoenix_b_values
from SeqClassifierLib.dicom.vendors import ge_b_value, philips_b_value, siemens_b_value
from SeqClassifierLib.dicom.pydicom_compat import save_as


def test_prostatex_finds_exactly_the_18_labelled_series(prostatex_discovery, prostatex_labels):
    found = {s.series_uid for s in prostatex_discovery.series}
    assert len(prostatex_discovery.series) == 18
    assert found == {row["SeriesInstanceUID"] for row in prostatex_labels}


def test_prostatex_file_counts_match_the_folders(prostatex, prostatex_discovery, prostatex_labels):
    by_uid = prostatex_discovery.by_uid()
    for row in prostatex_labels:
        folder = prostatex / row["series_dir"]
        expected = sorted(str(p) for p in folder.iterdir() if p.is_file())
        rec = by_uid[row["SeriesInstanceUID"]]
        assert sorted(rec.files) == expected, row["series_dir"]
        assert rec.description == row["SeriesDescription"]


def test_prostatex_planes(prostatex_discovery):
    planes = {(s.patient_id, s.description): s.plane for s in prostatex_discovery.series}
    for pid in ("ProstateX-0000", "ProstateX-0001"):
        assert planes[(pid, "t2_tse_sag")] is Plane.SAGITTAL
        assert planes[(pid, "t2_tse_tra")] is Plane.AXIAL
        assert planes[(pid, "t2_tse_cor")] is Plane.CORONAL
    # ProstateX-0000's axial T2 is tilted ~18.5 degrees and is still axial.
    tra = next(s for s in prostatex_discovery.series if s.patient_id == "ProstateX-0000" and s.description == "t2_tse_tra")
    assert 15 < tra.obliquity_deg < 22


def test_prostatex_b_values_from_siemens_private_tag(prostatex_discovery):
    by_desc = {(s.patient_id, s.series_number): s for s in prostatex_discovery.series}
    dwi = by_desc[("ProstateX-0000", 6)]
    assert dwi.b_values == [50.0, 400.0, 800.0]
    assert dwi.n_files == 57 and len({f.location for f in dwi.frames}) == 19
    # frames ordered by b-value, then by position along the normal
    assert [f.b_value for f in dwi.frames[:19]] == [50.0] * 19
    locs = [f.location for f in dwi.frames[:19]]
    assert locs == sorted(locs)
    assert by_desc[("ProstateX-0000", 8)].b_values == [1000.0]       # calculated b-value
    assert by_desc[("ProstateX-0000", 3)].b_values == []             # T2w: no b-value
    assert by_desc[("ProstateX-0001", 7)].b_values == [50.0, 400.0, 800.0]


def test_three_plane_localizer_is_not_mistaken_for_a_dynamic_series(prostatex_discovery):
    loc = next(s for s in prostatex_discovery.series if s.patient_id == "ProstateX-0001" and s.series_number == 1)
    assert loc.n_files == 13
    assert loc.temporal_positions == 1
    assert sum(f.location is not None for f in loc.frames) == 5  # majority orientation only


def test_enhanced_multiframe_philips_dti(vendors):
    d = discover_series(vendors / "dicom2nifti" / "philips_enhanced" / "dti")
    (s,) = d.series
    assert s.is_multiframe and s.n_files == 1 and s.n_frames == 32
    assert s.b_values == [0.0, 1300.0]
    assert s.plane is Plane.AXIAL
    assert {f.frame for f in s.frames} == set(range(32))


def test_enhanced_multiframe_fmri_temporal_positions(vendors):
    (s,) = discover_series(vendors / "dicom2nifti" / "philips_enhanced" / "fmri").series
    assert s.n_frames == 32 and s.temporal_positions == 4


def test_siemens_mosaic(vendors):
    (s,) = discover_series(vendors / "dicom2nifti" / "siemens" / "dti").series
    assert s.is_mosaic and s.n_files == 2
    assert s.b_values == [0.0, 1000.0]
    assert all(f.mosaic_tiles > 1 for f in s.frames)


def test_vendor_private_b_values(vendors):
    d = discover_series(vendors / "dicom2nifti")
    by_dir = {}
    for s in d.series:
        by_dir[os.path.relpath(os.path.dirname(s.files[0]), vendors / "dicom2nifti")] = s
    assert by_dir["ge/dti/001"].b_values == [0.0, 1000.0]          # GE (0043,1039)
    assert by_dir["philips/dti/002"].b_values == [0.0, 40.0, 273.0, 800.0]  # Philips (2001,1003)
    assert by_dir["philips/dti/001"].b_values == [0.0, 1000.0]     # Philips, UN bytes
    assert by_dir["siemens/dti_classic/001"].b_values == [0.0, 1000.0]  # Siemens (0019,100C)
    # b-value tags stripped, ImageType DIFFUSION: the Siemens protocol in (0029,1020) says b=2800
    stripped = by_dir["siemens/fmri_classic/001"]
    assert stripped.b_values == [2800.0]
    assert stripped.header["BValueSource"] == "Siemens protocol (CSA series header)"
    assert "BValueSource" not in by_dir["siemens/dti_classic/001"].header
    assert by_dir["siemens/anatomical/001"].b_values == []  # not diffusion: protocol not read
    assert len(d.series) == 19


def _csa_series_header(protocol: str) -> bytes:
    """A CSA2 ("SV10") blob holding a MrPhoenixProtocol ASCCONV text, as scanners write it."""
    return b"SV10\x04\x03\x02\x01" + bytes(8) + ("### ASCCONV BEGIN ###\n" + protocol
                                                  + "### ASCCONV END ###\n").encode("latin-1")


def test_phoenix_b_values():
    three = ("sDiffusion.lDiffWeightings\t = \t3\nsDiffusion.alBValue.__attribute__.size\t = \t128\n"
             "sDiffusion.alBValue[1]\t = \t400\nsDiffusion.alBValue[2]\t = \t800\n")
    assert phoenix_b_values(_csa_series_header(three)) == [0.0, 400.0, 800.0]  # [0] omitted: it is 0
    assert phoenix_b_values(_csa_series_header("sDiffusion.lDiffWeightings = 1\n")) == [0.0]
    assert phoenix_b_values(_csa_series_header("sDiffusion.alBValue[1] = 800\n")) == []  # no weightings
    assert phoenix_b_values(b"SV10 no protocol text") == []
    # values past the plausible range are dropped, like the per-image tags
    assert phoenix_b_values(_csa_series_header("sDiffusion.lDiffWeightings = 2\nsDiffusion.alBValue[1] = 99999999\n")) == [0.0]


def test_stripped_siemens_dwi_gets_b_values_from_the_protocol(prostatex, tmp_path):
    """A ProstateX DWI copy without (0019,100C): b-values come from the CSA series header when there
    is one, and are absent (not invented) when there is none."""
    src = next((prostatex / "ProstateX-0000").glob("*/6.000000-ep2ddifftraDYNDIST-*"))
    protocol = ("sDiffusion.lDiffWeightings\t = \t3\nsDiffusion.alBValue[0]\t = \t50\n"
                "sDiffusion.alBValue[1]\t = \t400\nsDiffusion.alBValue[2]\t = \t800\n")
    # the protocol's private block must belong to Siemens' CSA creator (the rule of every private tag)
    for creator, expected in (("SIEMENS CSA HEADER", [50.0, 400.0, 800.0]), (None, []), ("ACME PRIVATE", [])):
        dest = tmp_path / (creator or "none").replace(" ", "_")
        dest.mkdir()
        for f in sorted(src.iterdir())[:6]:
            ds = pydicom.dcmread(f)
            del ds[0x0019100C]
            for tag in [t for t in ds.keys() if t.group == 0x0029]:
                del ds[tag]
            if creator:
                ds.private_block(0x0029, creator, create=True).add_new(0x20, "OB", _csa_series_header(protocol))
            save_as(ds, dest / f.name)
        (s,) = discover_series(dest).series
        assert "DIFFUSION" in s.header["ImageType"]
        assert s.b_values == expected, creator


def test_private_b_value_parsers():
    assert siemens_b_value(b"800") == 800.0
    assert siemens_b_value("50 ") == 50.0
    assert siemens_b_value(b"\xff\xfe") is None
    assert ge_b_value([1000000800, 8, 0, 0]) == 800.0
    assert ge_b_value([1000, 8, 0, 0]) == 1000.0
    assert ge_b_value([335544320, 0, 0, 0]) is None   # malformed: out of range
    assert philips_b_value(b"\x00\x00zD") == 1000.0
    assert philips_b_value(800.0) == 800.0


def test_plane_of_oblique_normals():
    assert plane_of(slice_normal((1, 0, 0, 0, 1, 0)))[0] is Plane.AXIAL
    assert plane_of(slice_normal((0, 1, 0, 0, 0, -1)))[0] is Plane.SAGITTAL
    assert plane_of(slice_normal((1, 0, 0, 0, 0, -1)))[0] is Plane.CORONAL
    # axial tilted 20 degrees about left-right
    import math
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    plane, angle = plane_of(slice_normal((1, 0, 0, 0, c, -s)))
    assert plane is Plane.AXIAL and abs(angle - 20) < 1e-6
    assert plane_of(None)[0] is Plane.UNKNOWN
    assert slice_normal((1, 0, 0, 1, 0, 0)) is None


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm"])
def test_transfer_syntaxes_are_read(pydicom_test_files, tmp_path, name):
    shutil.copy(pydicom_test_files / name, tmp_path / name)
    d = discover_series(tmp_path)
    assert d.skipped == []
    (s,) = d.series
    assert s.n_files == 1 and s.series_uid.endswith("6185059.5457")


def test_bad_files_are_skipped_with_reasons(tmp_path, pydicom_test_files):
    shutil.copy(pydicom_test_files / "MR_small.dcm", tmp_path / "good.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    shutil.copy(pydicom_test_files / "MR_truncated.dcm", tmp_path / "truncated.dcm")
    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    ds.Modality = "CT"
    ds.SeriesInstanceUID = "1.2.3.4"
    save_as(ds, tmp_path / "ct.dcm")
    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    del ds.SeriesInstanceUID
    save_as(ds, tmp_path / "nouid.dcm")
    d = discover_series([tmp_path, tmp_path / "missing"])
    reasons = {Path(s.path).name: s.reason for s in d.skipped}
    assert len(d.series) == 1 and d.series[0].files == [str(tmp_path / "good.dcm")]
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "Modality CT" in reasons["ct.dcm"]
    assert "SeriesInstanceUID" in reasons["nouid.dcm"]
    assert reasons["missing"] == "no such file or folder"
    # MR_truncated's header is intact; its pixel data is cut short.
    assert reasons["truncated.dcm"].startswith("truncated: pixel data declares 8192 bytes")


def test_dicom_without_preamble_is_read(tmp_path, pydicom_test_files):
    raw = (pydicom_test_files / "MR_small.dcm").read_bytes()
    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    # strip preamble + file meta: write the bare data set (implicit VR LE)
    from pydicom.filewriter import write_dataset
    from pydicom.filebase import DicomBytesIO

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    del ds.file_meta
    write_dataset(buf, ds)
    (tmp_path / "bare").write_bytes(buf.getvalue())
    assert raw[128:132] == b"DICM" and buf.getvalue()[128:132] != b"DICM"
    h = read_file_header(tmp_path / "bare")
    assert h.series_uid.endswith("6185059.5457")


def test_mixed_series_in_one_folder_and_symlink_loop(tmp_path, prostatex):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    src = [prostatex / "ProstateX-0000/07-07-2011/3.000000-t2tsesag-87368",
           prostatex / "ProstateX-0000/07-07-2011/7.000000-ep2ddifftraDYNDISTADC-48780"]
    for i, folder in enumerate(src):
        for f in sorted(folder.iterdir())[:4]:
            os.symlink(f, mixed / f"{i}_{f.name}")
    os.symlink(tmp_path, mixed / "loop")  # a folder symlink back to the parent
    d = discover_series(tmp_path)
    assert sorted(s.n_files for s in d.series) == [4, 4]
    assert sorted(s.description for s in d.series) == ["ep2d_diff_tra_DYNDIST_ADC", "t2_tse_sag"]


def test_unusable_file_reason_for_dicomdir(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "TEST"
    save_as(ds, tmp_path / "DICOMDIR", enforce_file_format=True)
    with pytest.raises(UnusableFile, match="DICOMDIR"):
        read_file_header(tmp_path / "DICOMDIR")


def test_header_without_pixel_data_is_skipped(tmp_path, pydicom_test_files):
    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    del ds.PixelData
    save_as(ds, tmp_path / "header_only.dcm")
    with pytest.raises(UnusableFile, match="no pixel data"):
        read_file_header(tmp_path / "header_only.dcm")


# -- deflated transfer syntax (1.2.840.10008.1.2.1.99) ------------------------------

def _deflated_pair(tmp_path):
    """The same generated MR image saved deflated and explicit VR little endian."""
    import corpus
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    ds = corpus.minimal_object(corpus.MR_IMAGE, "MR", "deflated", image=True)
    ds.SeriesDescription = "t2_tse_tra deflated"
    paths = {}
    for name, ts in (("deflated", DeflatedExplicitVRLittleEndian), ("plain", ExplicitVRLittleEndian)):
        ds.file_meta.TransferSyntaxUID = ts
        paths[name] = corpus.save(ds, tmp_path / name / "image.dcm")
    return paths, np.arange(256, dtype=np.uint16).reshape(16, 16)


def test_deflated_mr_image_is_read_and_classifiable(tmp_path):
    from SeqClassifierLib.inputs.image import load_center_slice

    paths, pixels = _deflated_pair(tmp_path)
    assert pydicom.dcmread(paths["deflated"]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    d = discover_series(paths["deflated"].parent)
    assert d.skipped == []
    (s,) = d.series
    (plain,) = discover_series(paths["plain"].parent).series
    same_path = dataclasses.replace(s, files=plain.files,
                                    frames=[dataclasses.replace(f, path=plain.files[0]) for f in s.frames])
    assert same_path == plain
    assert np.array_equal(load_center_slice(s), pixels.astype(np.float32))


def _deflate_body(path, body_edit):
    """Rewrite a deflated file with its inflated data set changed by ``body_edit``."""
    import zlib

    raw = path.read_bytes()
    meta_end = 132 + 12 + int(pydicom.dcmread(path).file_meta.FileMetaInformationGroupLength)
    body = zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path.write_bytes(raw[:meta_end] + c.compress(body_edit(body)) + c.flush())


def test_deflated_reasons_name_the_inflated_data_set(tmp_path, monkeypatch):
    from SeqClassifierLib.dicom import pydicom_reader

    paths, _ = _deflated_pair(tmp_path)
    f = paths["deflated"]
    _deflate_body(f, lambda body: body[:-100])  # pixel data cut short inside the deflated stream
    with pytest.raises(UnusableFile, match=r"^truncated: pixel data declares 512 bytes but the file ends 100 bytes early"):
        read_file_header(f)
    _deflate_body(f, lambda body: body[:body.rfind(b"\xe0\x7f\x10\x00")])  # no pixel data at all
    with pytest.raises(UnusableFile, match=r"^no pixel data \(header only\)"):
        read_file_header(f)
    paths, _ = _deflated_pair(tmp_path / "bomb")
    monkeypatch.setattr(pydicom_reader, "MAX_INFLATED", 200)
    with pytest.raises(UnusableFile, match=r"^deflated transfer syntax: the data set inflates to more than"):
        read_file_header(paths["deflated"])
