"""The noise measure of a slice: the median of its absolute Laplacian, the same bits in half the passes.

:func:`~SeqClassifierLib.inputs.quality.image_quality` estimates noise as the
median of ``|[1 -2 1] x [1 -2 1]|`` over the slice (Immerkaer), computed in
float64 as nine terms added left to right (:func:`abs_laplacian`, fourteen
passes over the slice).  Floating-point additions in another order round
differently -- unless no addition rounds at all.  Where that is certain, the
same numbers come from cheaper passes:

* **float64, seven passes** (:func:`float64_is_exact`): the float32 pixels
  span at most :data:`EXACT_EXPONENT_SPREAD` binary orders, so every partial
  sum is a whole multiple of the smallest value's unit below ``2**53`` of them;
  the mask is then applied as a row pass and a column pass (:func:`abs_separable`);
* **float32, seven passes on half the bytes** (:func:`float32_is_exact`): the
  pixels are whole numbers below ``2**20`` (MR pixels stored as integers with
  slope 1, the usual case), so every partial sum is a whole number below
  ``2**24``, exact in float32; the median's two middle values are then averaged
  in float64, as in the float64 path.

A slice that fits neither (a Philips float slope over a wide range, NaN, ...)
takes the fourteen passes.  ``Testing/Python/inputs/test_laplacian.py`` checks
each path bit for bit against the reference and that the guards refuse data
where the order shows.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from SeqClassifierLib.inputs.order_stats import median

__all__ = ["EXACT_EXPONENT_SPREAD", "FLOAT32_INTEGER_LIMIT", "abs_laplacian", "abs_separable",
           "float32_is_exact", "float64_is_exact", "laplacian_median"]

#: Largest spread of binary exponents (``frexp``) between the largest and the smallest non-zero magnitude
#: of float32 pixels for which every sum of the Laplacian of their float64 values is exact; 25 would
#: still be, one is kept as margin.
EXACT_EXPONENT_SPREAD = 24
#: Whole-number pixels below this magnitude: every sum of their Laplacian (at most 16 of them) is a
#: whole number below ``2**24``, exact in float32.
FLOAT32_INTEGER_LIMIT = 2.0 ** 20


def abs_laplacian(a: np.ndarray) -> np.ndarray:
    """``|a[:-2, :-2] - 2 a[:-2, 1:-1] + a[:-2, 2:] - 2 a[1:-1, :-2] + 4 a[1:-1, 1:-1] - ... + a[2:, 2:]|``,
    summed left to right in two buffers instead of sixteen temporaries (the reference order)."""
    acc = np.empty((a.shape[0] - 2, a.shape[1] - 2), dtype=a.dtype)
    tmp = np.empty_like(acc)
    np.multiply(a[:-2, 1:-1], 2, out=tmp)
    np.subtract(a[:-2, :-2], tmp, out=acc)
    np.add(acc, a[:-2, 2:], out=acc)
    for (dy, dx), k, op in (((1, 0), 2, np.subtract), ((1, 1), 4, np.add), ((1, 2), 2, np.subtract),
                            ((2, 0), 1, np.add), ((2, 1), 2, np.subtract), ((2, 2), 1, np.add)):
        term = a[dy:dy + acc.shape[0], dx:dx + acc.shape[1]]
        if k != 1:
            term = np.multiply(term, k, out=tmp)
        op(acc, term, out=acc)
    return np.abs(acc, out=acc)


def abs_separable(a: np.ndarray) -> np.ndarray:
    """The same mask as a row pass then a column pass, ``x - 2y`` as ``(x - y) - y``: seven passes.  The
    bits of :func:`abs_laplacian` only where no sum rounds (:func:`float64_is_exact`,
    :func:`float32_is_exact`); anywhere else the order of the additions shows."""
    mid = a[:, 1:-1]
    rows = np.subtract(a[:, :-2], mid)
    np.subtract(rows, mid, out=rows)
    np.add(rows, a[:, 2:], out=rows)
    mid = rows[1:-1]
    acc = np.subtract(rows[:-2], mid)
    np.subtract(acc, mid, out=acc)
    np.add(acc, rows[2:], out=acc)
    return np.abs(acc, out=acc)


def float64_is_exact(sorted_values: np.ndarray) -> bool:
    """True when every sum of the Laplacian of these float32 values (ascending, finite), taken in float64,
    is exact.

    Every float32 value is a whole multiple of ``u = 2**(e_min - 24)`` (``e_min``: the ``frexp``
    exponent of the smallest non-zero magnitude), and every partial sum of the mask (its coefficients'
    magnitudes add up to 16) is a whole multiple of ``u`` below ``16 * 2**e_max``: exact while that is
    under ``2**53 * u``, i.e. ``e_max - e_min <= 25``.  MR pixels (integers times a slope) span 17
    binary orders at most."""
    s = np.asarray(sorted_values)
    if s.dtype != np.float32 or s.size == 0:
        return False
    below, above = int(np.searchsorted(s, 0.0, "left")), int(np.searchsorted(s, 0.0, "right"))
    smallest = []  # magnitudes of the negative and the positive value nearest zero
    if below:
        smallest.append(-float(s[below - 1]))
    if above < s.size:
        smallest.append(float(s[above]))
    if not smallest:  # all zero
        return True
    largest = max(-float(s[0]), float(s[-1]))
    return math.frexp(largest)[1] - math.frexp(min(smallest))[1] <= EXACT_EXPONENT_SPREAD


def float32_is_exact(img: np.ndarray, sorted_values: np.ndarray) -> bool:
    """True when the float32 pixels of ``img`` (``sorted_values``: the same, ascending, finite) are whole
    numbers below :data:`FLOAT32_INTEGER_LIMIT` in magnitude: every sum of their Laplacian is exact in float32."""
    s = np.asarray(sorted_values)
    if s.dtype != np.float32 or s.size == 0 or img.dtype != np.float32:
        return False
    if max(-float(s[0]), float(s[-1])) >= FLOAT32_INTEGER_LIMIT:
        return False
    return bool(np.array_equal(s, np.rint(s)))


def laplacian_median(a: np.ndarray, img: Optional[np.ndarray] = None, sorted_values: Optional[np.ndarray] = None,
                     float32_exact: Optional[bool] = None) -> float:
    """``float(np.median(abs_laplacian(a)))`` of a 2D float64 slice ``a``, the same bits.  ``img``: the
    float32 slice ``a`` was made from and ``sorted_values`` its sorted pixels, when the caller has them:
    then a cheaper exact path is taken where there is one (see the module docstring);
    ``float32_exact``: :func:`float32_is_exact` of them, if the caller has asked it already."""
    if img is not None and sorted_values is not None and img.dtype == np.float32 and img.shape == a.shape \
            and sorted_values.size == img.size:
        if float32_exact is None:
            float32_exact = float32_is_exact(img, sorted_values)
        if float32_exact:
            return median(abs_separable(img), mean_dtype=np.float64)  # as the float64 path averages
        if float64_is_exact(sorted_values):
            return median(abs_separable(a))
    return median(abs_laplacian(a))
