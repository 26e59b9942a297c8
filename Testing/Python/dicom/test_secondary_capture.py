"""Secondary Capture images in an MR study get a series; colour pixels are read as luminance.

Generated data only: Secondary Capture (single- and multi-frame, grey and
colour) and MR images written with pydicom into ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

import corpus
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.discovery import discover_series, read_file_header
from SeqClassifierLib.dicom.pixels import LUMA_WEIGHTS, luminance
from SeqClassifierLib.dicom.pydicom_compat import PYDICOM_VERSION
from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.model.evidence import evidence_conflicts

STUDY = corpus.uid("sc", "study")
SC = T.SECONDARY_CAPTURE_IMAGE_STORAGE
TRUE_COLOR_MF = "1.2.840.10008.5.1.4.1.1.7.4"
GREY_BYTE_MF = "1.2.840.10008.5.1.4.1.1.7.2"


def _rgb_pixels(rows: int, cols: int, frames: int = 1) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(frames, rows, cols, 3), dtype=np.uint8)


def _sc(key: str, sop_class: str = SC, modality: str = "OT", rgb: bool = False, frames: int = 1,
        photometric: str = "RGB") -> tuple[pydicom.Dataset, np.ndarray]:
    """A Secondary Capture of the study: ``frames`` frames of 12x10, colour when ``rgb``."""
    ds = corpus.minimal_object(sop_class, modality, key)
    ds.StudyInstanceUID = STUDY
    ds.PatientID = "SC-PAT"
    ds.SeriesDescription = f"FA map {key}"
    ds.Rows, ds.Columns = 12, 10
    if rgb:
        pixels = _rgb_pixels(12, 10, frames)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
    else:
        pixels = (np.arange(frames * 120, dtype=np.uint8) % 251).reshape(frames, 12, 10)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    return ds, pixels


def _mr(folder: Path) -> list[Path]:
    out = []
    for i in range(3):
        ds = corpus.minimal_object(corpus.MR_IMAGE, "MR", f"sc-mr-{i}", image=True)
        ds.StudyInstanceUID, ds.PatientID = STUDY, "SC-PAT"
        ds.SeriesInstanceUID = corpus.uid("sc-mr", "series")
        ds.ImagePositionPatient = [0, 0, float(i)]
        out.append(corpus.save(ds, folder / f"mr{i}.dcm"))
    return out


@pytest.mark.parametrize("modality", ["OT", "MR", None])
def test_secondary_capture_in_an_mr_study_gets_a_series(tmp_path, modality):
    _mr(tmp_path)
    ds, _ = _sc("grey", modality=modality or "OT")
    if modality is None:
        del ds.Modality
    p = corpus.save(ds, tmp_path / "sc.dcm")
    d = discover_series(tmp_path)
    assert d.skipped == []
    assert len(d.series) == 2
    (sc,) = [s for s in d.series if s.files == [str(p)]]
    assert sc.sop_class_uid == SC and sc.modality == (modality or "OT")
    assert sc.study_uid == STUDY and sc.n_frames == 1
    img = load_center_slice(sc)
    assert img.shape == (12, 10) and img.dtype == np.float32


def test_rgb_secondary_capture_is_read_as_luminance(tmp_path):
    ds, pixels = _sc("rgb", rgb=True)
    p = corpus.save(ds, tmp_path / "rgb.dcm")
    (s,) = discover_series(tmp_path).series
    img = load_center_slice(s)
    expected = pixels[0].astype(np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    assert img.shape == (12, 10)
    np.testing.assert_allclose(img, expected, rtol=0, atol=1e-3)
    assert read_file_header(p, fast=True) == read_file_header(p, fast=False)


def test_multiframe_true_colour_secondary_capture(tmp_path):
    ds, pixels = _sc("rgb-mf", sop_class=TRUE_COLOR_MF, rgb=True, frames=5)
    corpus.save(ds, tmp_path / "mf.dcm")
    (s,) = discover_series(tmp_path).series
    assert s.sop_class_uid == TRUE_COLOR_MF and s.n_frames == 5 and s.is_multiframe
    img = load_center_slice(s)
    centre = pixels[[f.frame for f in s.frames][(5 - 1) // 2]]
    np.testing.assert_allclose(img, centre.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32),
                               atol=1e-3)


def test_multiframe_grey_secondary_capture(tmp_path):
    ds, pixels = _sc("grey-mf", sop_class=GREY_BYTE_MF, frames=4)
    corpus.save(ds, tmp_path / "mf.dcm")
    (s,) = discover_series(tmp_path).series
    assert s.n_frames == 4
    img = load_center_slice(s)
    assert any(np.array_equal(img, pixels[k].astype(np.float32)) for k in range(4))


def test_ybr_full_colour_is_converted(tmp_path):
    """A YBR_FULL colour image: pixel_array gives RGB (pydicom 3; the compat module on 2.4), luminance is Y."""
    ds, pixels = _sc("ybr", rgb=True, photometric="YBR_FULL")
    pixels[..., 0] = 30 + pixels[..., 0] % 190       # Y, and Cb / Cr near grey: RGB stays in range
    pixels[..., 1:] = 118 + pixels[..., 1:] % 21
    ds.PixelData = pixels.tobytes()
    corpus.save(ds, tmp_path / "ybr.dcm")
    (s,) = discover_series(tmp_path).series
    img = load_center_slice(s)
    # the stored values are Y, Cb, Cr: the luminance of their RGB conversion is Y (up to rounding)
    np.testing.assert_allclose(img, pixels[0][..., 0].astype(np.float32), atol=2.0)


@pytest.mark.skipif(PYDICOM_VERSION < (3, 0), reason="Dataset.compress is pydicom 3")
def test_rle_compressed_colour_secondary_capture(tmp_path):
    ds, pixels = _sc("rle", rgb=True)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    corpus.save(ds, tmp_path / "rle.dcm")
    (s,) = discover_series(tmp_path).series
    np.testing.assert_allclose(load_center_slice(s),
                               pixels[0].astype(np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32),
                               atol=1e-3)


def test_non_mr_kinds_are_still_skipped(tmp_path):
    corpus.non_mr(tmp_path)
    corpus.mr_non_image(tmp_path)
    ds, _ = _sc("ct-sc", modality="CT")
    corpus.save(ds, tmp_path / "sc_of_ct.dcm")
    d = discover_series(tmp_path)
    assert d.series == []
    reasons = {Path(k.path).name: k.reason for k in d.skipped}
    assert reasons == {
        "ct.dcm": "not an MR image (Modality CT)", "sr.dcm": "not an MR image (Modality SR)",
        "seg.dcm": "not an MR image (Modality SEG)", "pr.dcm": "not an MR image (Modality PR)",
        "pr_modality_mr.dcm": "MR object that is not an image (Grayscale Softcopy Presentation State Storage)",
        "sc_of_ct.dcm": "not an MR image (Modality CT)"}


@pytest.mark.parametrize("sop_class", sorted(T.SECONDARY_CAPTURE_SOP_CLASSES))
def test_evidence_flags_a_secondary_capture_labelled_other_than_other(tmp_path, sop_class):
    ds, _ = _sc("ev", sop_class=sop_class, frames=1 if sop_class == SC else 2)
    corpus.save(ds, tmp_path / "ev.dcm")
    (s,) = discover_series(tmp_path).series
    assert any("Secondary Capture" in c for c in evidence_conflicts(s, SequenceLabel.T2w, None))
    assert not any("Secondary Capture" in c for c in evidence_conflicts(s, SequenceLabel.OTHER, None))


def test_luminance_leaves_grey_alone():
    grey = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert luminance(grey) is grey
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 1] = 100
    np.testing.assert_allclose(luminance(rgb), np.full((2, 3), 58.7, dtype=np.float32), rtol=1e-6)
