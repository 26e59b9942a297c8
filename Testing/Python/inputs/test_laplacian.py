"""The noise median of a slice (inputs/laplacian.py): each cheaper path gives the reference's bits where
its guard lets it run, and the guards refuse data on which the order of the additions shows."""

from __future__ import annotations

import numpy as np

from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.inputs.laplacian import (FLOAT32_INTEGER_LIMIT, abs_laplacian, abs_separable, float32_is_exact,
                                               float64_is_exact, laplacian_median)
from SeqClassifierLib.inputs.order_stats import median, ordered


def _reference(img32: np.ndarray) -> float:
    return float(np.median(abs_laplacian(img32.astype(np.float64))))


def _slice(rng, shape, slope=1.0, spread=4095, offset=0):
    return ((rng.integers(0, spread, shape) + offset).astype(np.float32) * np.float32(slope)).astype(np.float32)


def test_reference_is_numpys_nine_term_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1e3, (40, 37))
    old = np.abs(a[:-2, :-2] - 2 * a[:-2, 1:-1] + a[:-2, 2:] - 2 * a[1:-1, :-2] + 4 * a[1:-1, 1:-1]
                 - 2 * a[1:-1, 2:] + a[2:, :-2] - 2 * a[2:, 1:-1] + a[2:, 2:])
    assert abs_laplacian(a).tobytes() == old.tobytes()


def test_whole_number_pixels_take_float32_and_give_the_reference_bits():
    rng = np.random.default_rng(2)
    for shape, spread, offset in (((200, 180), 4095, 0), ((64, 65), 3, 0), ((33, 40), 65535, -32768),
                                  ((100, 100), 2 ** 19, 0)):
        img = _slice(rng, shape, 1.0, spread, offset)
        s = ordered(img)
        assert float32_is_exact(img, s)
        assert np.asarray(abs_separable(img), np.float64).tobytes() == abs_laplacian(img.astype(np.float64)).tobytes()
        assert laplacian_median(img.astype(np.float64), img, s) == _reference(img), shape


def test_even_count_medians_are_averaged_in_float64():
    """Two middle values whose float32 sum rounds (2**23 + 1 and 2**23 + 2): the float32 path must
    still give their float64 mean."""
    v = 2 ** 19  # a checkerboard of +-v: every Laplacian value is 16 v = 2**23
    img = np.array([[v * (-1) ** (i + j) for j in range(4)] for i in range(3)], np.float32)
    img[0, 0] += 1  # a corner of the first of the two Laplacian values
    img[0, 3] -= 2  # a corner of the second
    lap = abs_laplacian(img.astype(np.float64)).ravel()
    assert sorted(lap - 2 ** 23) == [1.0, 2.0]
    assert float(np.mean(lap.astype(np.float32))) != float(np.median(lap))  # float32 would round
    s = ordered(img)
    assert float32_is_exact(img, s)
    assert laplacian_median(img.astype(np.float64), img, s) == _reference(img) == 2 ** 23 + 1.5


def test_slope_scaled_pixels_take_float64_separable_and_give_the_reference_bits():
    rng = np.random.default_rng(3)
    for slope in (0.734, 1.2207, 3.1e-4, 17.5):
        img = _slice(rng, (120, 97), slope)
        s = ordered(img)
        assert not float32_is_exact(img, s) and float64_is_exact(s)
        a = img.astype(np.float64)
        assert abs_separable(a).tobytes() == abs_laplacian(a).tobytes()
        assert laplacian_median(a, img, s) == _reference(img), slope


def test_the_guards_refuse_data_where_the_order_shows():
    rng = np.random.default_rng(4)
    # 2**-20 beside 2**20: 40 binary orders, float64 sums round
    wide = (rng.random((200, 180)) ** 30 * 2.0 ** 20).astype(np.float32)
    wide[wide == 0] = 2.0 ** -20
    s = ordered(wide)
    assert not float64_is_exact(s) and not float32_is_exact(wide, s)
    w64 = wide.astype(np.float64)
    assert abs_separable(w64).tobytes() != abs_laplacian(w64).tobytes()
    assert laplacian_median(w64, wide, s) == _reference(wide)  # the reference path
    # whole numbers at 2**23: float32 sums of 16 of them round, so float32 is refused
    big = _slice(rng, (60, 60), 1.0, 2 ** 23, 2 ** 23)
    sb = ordered(big)
    assert big.max() >= FLOAT32_INTEGER_LIMIT and not float32_is_exact(big, sb)
    assert np.asarray(abs_separable(big), np.float64).tobytes() != abs_laplacian(big.astype(np.float64)).tobytes()
    assert laplacian_median(big.astype(np.float64), big, sb) == _reference(big)
    # float64 pixels carry 53 bits: no guard applies to them
    assert not float64_is_exact(ordered(wide.astype(np.float64)))
    assert float64_is_exact(ordered(np.zeros((4, 4), np.float32)))


def test_real_slices(prostatex_discovery):
    for rec in prostatex_discovery.series:
        img = load_center_slice(rec)
        s = ordered(img)
        assert laplacian_median(img.astype(np.float64), img, s) == _reference(img)
        assert laplacian_median(img.astype(np.float64)) == median(abs_laplacian(img.astype(np.float64)))
