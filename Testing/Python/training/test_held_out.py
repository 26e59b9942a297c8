"""The review threshold rule of training/held_out.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.records import Prediction
from SeqClassifierLib.training.held_out import _with_threshold, choose_review_threshold


def test_threshold_is_the_lowest_that_reaches_the_coverage():
    conf = np.array([0.99, 0.97, 0.90, 0.80, 0.60, 0.99, 0.98, 0.70])
    wrong = np.array([False, False, True, True, True, False, True, True])
    other = np.array([False, False, False, False, False, False, True, False])  # one wrong flagged by evidence
    # 5 wrong; 0.90 -> 5 must be flagged; one by evidence, so the 4 wrong without a reason (0.60 0.70 0.80
    # 0.90) must fall below the threshold
    assert choose_review_threshold(conf, wrong, other, floor=0.5) == pytest.approx(0.9001)
    assert choose_review_threshold(conf, wrong, other, target=0.6, floor=0.5) == pytest.approx(0.7001)
    assert choose_review_threshold(conf, wrong, other, target=0.6) == pytest.approx(0.90)  # the default floor
    assert choose_review_threshold(conf, wrong, wrong, floor=0.5) == 0.5  # every error has another reason
    assert choose_review_threshold(conf, np.zeros(8, bool), other) == 0.90


def test_low_confidence_reason_redone_for_a_new_threshold():
    p = Prediction("1.2", SequenceLabel.DWI, 0.85, {}, True, "m", review_reasons=[
        "low confidence (0.85 < 0.95)", "evidence conflict: ImageType says ADC"])
    q = _with_threshold(p, 0.8)
    assert q.review_reasons == ["evidence conflict: ImageType says ADC"] and q.needs_review
    r = _with_threshold(dataclasses.replace(p, review_reasons=["low confidence (0.85 < 0.95)"]), 0.8)
    assert r.review_reasons == [] and not r.needs_review
    assert _with_threshold(r, 0.9).review_reasons == ["low confidence (0.85 < 0.90)"]

