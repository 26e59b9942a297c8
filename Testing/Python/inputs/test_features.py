"""Metadata feature schema: fixed layout, concrete values on real series, robust to bad tags."""

from __future__ import annotations

import numpy as np
import pytest

from SeqClassifierLib.inputs.features import (FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES, extract_features,
                                       feature_dict, schema_table)
from SeqClassifierLib.records import SeriesRecord


def test_schema_is_unique_documented_and_versioned():
    assert len(set(FEATURE_NAMES)) == N_FEATURES == len(schema_table())
    assert all(desc for _, desc in schema_table())
    assert FEATURE_SCHEMA_VERSION.count(".") == 1


def _series(prostatex_discovery, pid, number):
    return next(s for s in prostatex_discovery.series if s.patient_id == pid and s.series_number == number)


def test_t2_sagittal_features(prostatex_discovery):
    f = feature_dict(_series(prostatex_discovery, "ProstateX-0000", 3))
    for name in ("tok:t2", "tok:tse", "tok:sag", "it:ORIGINAL", "ss:SE", "plane:sagittal", "mfr:SIEMENS", "acq:2D"):
        assert f.get(name) == 1.0, name
    for name in ("tok:diff", "tok:adc", "b:any_positive", "plane:axial", "miss:te", "agent"):
        assert name not in f, name
    assert f["num:flip"] == pytest.approx(160 / 90)  # FlipAngle 160 in this TSE header


def test_dwi_adc_and_calculated_b_features(prostatex_discovery):
    dwi = feature_dict(_series(prostatex_discovery, "ProstateX-0000", 6))
    adc = feature_dict(_series(prostatex_discovery, "ProstateX-0000", 7))
    calc = feature_dict(_series(prostatex_discovery, "ProstateX-0000", 8))
    assert dwi["it:TRACEW"] == 1.0 and dwi["b:multi"] == 1.0 and dwi["ss:EP"] == 1.0
    assert np.isclose(dwi["b:max"], np.log1p(800) / 7)
    assert adc["it:ADC"] == 1.0 and adc["tok:adc"] == 1.0
    assert calc["tok:calc"] == 1.0 and calc["b:high"] == 1.0


def test_missing_and_malformed_tags_are_feature_values():
    rec = SeriesRecord(series_uid="1.2.3", header={"EchoTime": "abc", "ImageType": 5, "PixelSpacing": "x"})
    x = extract_features(rec)
    f = dict(zip(FEATURE_NAMES, x))
    assert x.dtype == np.float32 and x.shape == (N_FEATURES,) and np.isfinite(x).all()
    assert f["miss:te"] == 1.0 and f["miss:tr"] == 1.0 and f["tok:empty"] == 1.0
    assert f["plane:unknown"] == 1.0 and f["ctx:available"] == 0.0 and "header:sparse" not in f


def test_feature_vectors_differ_between_classes(prostatex_discovery):
    vecs = {s.series_number: extract_features(s) for s in prostatex_discovery.series if s.patient_id == "ProstateX-0000"}
    assert not np.array_equal(vecs[4], vecs[6]) and not np.array_equal(vecs[6], vecs[7])
