"""Center-slice choice, pixel reading with rescale, normalisation and model input."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from SeqClassifierLib.inputs.image import (ImageUnavailable, center_frame, choose_volume, load_center_slice,
                                            normalize_intensity, prepare_image, read_frame, to_model_input)
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.dicom.pydicom_compat import save_as


def _series(d, pid, number):
    return next(s for s in d.series if s.patient_id == pid and s.series_number == number)


def test_multi_b_dwi_uses_highest_b_center_slice(prostatex_discovery):
    dwi = _series(prostatex_discovery, "ProstateX-0000", 6)
    frames, why = choose_volume(dwi)
    assert len(frames) == 19 and {f.b_value for f in frames} == {800.0}
    assert "highest b-value (b=800)" in why
    c = center_frame(dwi)
    locs = sorted(f.location for f in frames)
    assert c.location == locs[9] and c.b_value == 800.0
    ds = pydicom.dcmread(c.path, stop_before_pixels=True)
    assert ds[0x0019, 0x100C].value.strip() == b"800"


def test_center_slice_pixels_match_pydicom(prostatex_discovery):
    t2 = _series(prostatex_discovery, "ProstateX-0000", 4)
    img = load_center_slice(t2)
    ref = pydicom.dcmread(center_frame(t2).path).pixel_array.astype(np.float32)
    assert img.shape == (384, 384)
    np.testing.assert_array_equal(img, ref)


def test_localizer_uses_majority_orientation(prostatex_discovery):
    loc = _series(prostatex_discovery, "ProstateX-0001", 1)
    frames, why = choose_volume(loc)
    assert len(frames) == 5 and "majority orientation" in why


def test_enhanced_frame_and_mosaic_tile(vendors):
    (mf,) = discover_series(vendors / "dicom2nifti" / "philips_enhanced" / "dti").series
    c = center_frame(mf)
    assert c.b_value == 1300.0
    img = read_frame(c)
    full = pydicom.dcmread(c.path).pixel_array
    assert img.shape == full.shape[1:]
    (mosaic,) = discover_series(vendors / "dicom2nifti" / "siemens" / "dti").series
    tile = load_center_slice(mosaic)
    big = pydicom.dcmread(mosaic.files[0], stop_before_pixels=True)
    assert tile.shape[0] < big.Rows and tile.shape[0] * 14 == big.Rows  # 14x14 grid of 96px tiles


def test_rescale_slope_and_intercept_are_applied(tmp_path, pydicom_test_files):
    ds = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 2.5, -100
    save_as(ds, tmp_path / "r.dcm")
    (s,) = discover_series(tmp_path).series
    img = load_center_slice(s)
    np.testing.assert_allclose(img, ds.pixel_array.astype(np.float32) * 2.5 - 100)


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm"])
def test_compressed_pixels_equal_uncompressed(tmp_path, pydicom_test_files, name):
    shutil.copy(pydicom_test_files / name, tmp_path / name)
    (s,) = discover_series(tmp_path).series
    ref = pydicom.dcmread(pydicom_test_files / "MR_small.dcm").pixel_array.astype(np.float32)
    np.testing.assert_array_equal(load_center_slice(s), ref)


def test_truncated_pixels_raise_image_unavailable(tmp_path, pydicom_test_files):
    from SeqClassifierLib.records import FrameRef

    shutil.copy(pydicom_test_files / "MR_truncated.dcm", tmp_path / "t.dcm")
    with pytest.raises(ImageUnavailable, match="t.dcm"):
        read_frame(FrameRef(str(tmp_path / "t.dcm")))


def test_normalisation_and_model_input():
    rng = np.random.default_rng(0)
    img = rng.normal(1000, 100, (60, 40)).astype(np.float32)
    img[0, 0] = 1e6  # an outlier does not squash the range
    n = normalize_intensity(img)
    assert n.min() == 0.0 and n.max() == 1.0 and 0.4 < float(np.median(n)) < 0.6
    x = to_model_input(n, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], x[1])
    assert x[0, 0, 0] == pytest.approx(-2.0)  # padded border: (0 - 0.5) / 0.25
    assert np.array_equal(normalize_intensity(np.full((5, 5), 7.0)), np.zeros((5, 5)))


def test_prepare_image_on_real_series(prostatex_discovery):
    x = prepare_image(_series(prostatex_discovery, "ProstateX-0001", 8), 64, (0.5,) * 3, (0.5,) * 3)
    assert x.shape == (3, 64, 64) and np.isfinite(x).all() and x.min() >= -1.0 and x.max() <= 1.0
