"""Percentiles and medians from one sort, bit for bit numpy's (inputs/order_stats.py), and the image
functions that use them giving the same bits as the formulas they replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest

from SeqClassifierLib.inputs.image import load_center_slice, normalize_intensity, square_slice
from SeqClassifierLib.inputs.order_stats import median, ordered, percentile
from SeqClassifierLib.inputs.laplacian import abs_laplacian as _abs_laplacian
from SeqClassifierLib.inputs.quality import image_quality


def _arrays():
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 11, 1000, 1001, 147456):
        for dtype in (np.float32, np.float64):
            yield rng.normal(100, 30, n).astype(dtype)
            yield rng.integers(0, 5, n).astype(dtype)  # many ties
            yield (rng.random(n) ** 8 * 4095).astype(dtype)  # skewed, as MR intensities


@pytest.mark.parametrize("q", [0.5, 99.0, 99.5, [0.5, 99.5], 50.0, 0.0, 100.0])
def test_percentile_is_numpys_bits(q):
    for a in _arrays():
        want = np.percentile(a, q)
        got = percentile(a, q)
        assert np.asarray(got).dtype == np.asarray(want).dtype
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), (a.dtype, a.size, q)
        assert np.asarray(percentile(a, q, ordered(a))).tobytes() == np.asarray(want).tobytes()


def test_median_is_numpys_bits():
    for a in _arrays():
        assert median(a) == float(np.median(a)), (a.dtype, a.size)
    assert median(np.array([3.0, 1.0])) == 2.0 and median(np.array([5.0, 1.0, 4.0])) == 4.0


def test_median_leaves_nan_to_numpy_and_does_not_change_its_input():
    a = np.array([1.0, np.nan, 3.0])
    with np.errstate(invalid="ignore"):
        assert math.isnan(median(a))
    b = np.array([4.0, 1.0, 3.0, 2.0])
    median(b)
    assert b.tolist() == [4.0, 1.0, 3.0, 2.0]


def test_percentile_refuses_sorted_values_of_another_array():
    a = np.arange(10, dtype=np.float32)
    with pytest.raises(ValueError, match="dtype float64"):
        percentile(a, 50, ordered(a.astype(np.float64)))


def _old_normalize(img, low=0.5, high=99.5):
    img = np.asarray(img, dtype=np.float32)
    lo, hi = np.percentile(img, [low, high])
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _old_abs_laplacian(a):
    return np.abs(a[:-2, :-2] - 2 * a[:-2, 1:-1] + a[:-2, 2:] - 2 * a[1:-1, :-2] + 4 * a[1:-1, 1:-1]
                  - 2 * a[1:-1, 2:] + a[2:, :-2] - 2 * a[2:, 1:-1] + a[2:, 2:])


def test_real_slices_give_the_former_bits(prostatex_discovery):
    """Every ProstateX centre slice: the Laplacian, the normalisation and the quality are the bits of
    the former formulas, with and without the shared sort."""
    for rec in prostatex_discovery.series:
        raw = load_center_slice(rec)
        assert raw.dtype == np.float32
        values = ordered(raw)
        a = raw.astype(np.float64)
        assert _abs_laplacian(a).tobytes() == _old_abs_laplacian(a).tobytes()
        old = _old_normalize(raw)
        assert normalize_intensity(raw).tobytes() == old.tobytes()
        assert normalize_intensity(raw, sorted_values=values).tobytes() == old.tobytes()
        assert square_slice(raw, 128, values).tobytes() == square_slice(raw, 128).tobytes()
        q = image_quality(raw)
        assert image_quality(raw, values) == q
        lap = _old_abs_laplacian(a)
        old_noise = 1.4826 * float(np.median(lap)) / 6.0
        assert 1.4826 * median(lap) / 6.0 == old_noise


def test_sorted_values_are_ignored_where_they_cannot_apply():
    rng = np.random.default_rng(3)
    img = rng.normal(500, 50, (64, 64)).astype(np.float32)
    img[3, 3] = np.nan
    wrong = ordered(np.zeros((64, 64), np.float32))  # of another image: must not be used with NaN
    assert normalize_intensity(img, sorted_values=wrong).tobytes() == normalize_intensity(img).tobytes()
    as64 = img.astype(np.float64)
    assert image_quality(as64, ordered(img)) == image_quality(as64)


def test_percentile_leaves_the_sorted_values_as_they_were_and_returns_plain_numpy():
    rng = np.random.default_rng(11)
    a = rng.normal(100, 30, 5000).astype(np.float32)
    s = ordered(a)
    before = s.copy()
    pair = percentile(a, [0.5, 99.5], s)
    one = percentile(a.astype(np.float64), 99.0, s.astype(np.float64))
    assert s.tobytes() == before.tobytes()
    assert type(pair) is np.ndarray and type(one) is type(np.percentile(a.astype(np.float64), 99.0))


def _mr_slice(rng, shape=(200, 180), slope=0.734, spread=4095):
    """Integer pixels times a rescale slope, as MR slices are."""
    return (rng.integers(0, spread, shape).astype(np.float32) * np.float32(slope)).astype(np.float32)


def test_quality_from_the_sorted_values_is_the_quality_without_them():
    rng = np.random.default_rng(13)
    for shape, slope, spread in (((200, 180), 0.734, 4095), ((64, 64), 1.0, 3), ((97, 131), 3.1e-4, 65535),
                                 ((120, 90), 1.0, 4095), ((50, 60), 1.0, 2 ** 21)):
        img = _mr_slice(rng, shape, slope, spread)
        img[: shape[0] // 3] = img.max()  # a clipped band, to move the clipped fraction
        assert image_quality(img, ordered(img)) == image_quality(img)
