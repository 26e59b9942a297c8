"""The means of a slice's ``f`` x ``f`` blocks, the same bits as numpy's, in a fifth of the time.

``a[:h*f, :w*f].reshape(h, f, w, f).mean(axis=(1, 3))`` shrinks a slice to
the model's size (:func:`~SeqClassifierLib.inputs.image.square_slice`) and
measures its structure (:func:`~SeqClassifierLib.inputs.quality.image_quality`).
numpy's reduction over two axes that are not adjacent walks every element
through its iterator: 1.0-1.3 ms on a 384 x 384 slice, a sixth of the image
work of a series.

What numpy computes there (1.26 and 2.x alike) is, for each output element:
the ``f`` values of each block row summed one after another from +0.0 (below
8 values numpy's pairwise sum is that plain loop), the ``f`` row sums added one
after another, the total divided by ``f * f`` as an ``intp``.  :func:`block_mean`
does the same additions on whole strided views of the slice, ``f * f`` numpy
calls in all, so the rounding of every step, hence every bit, is numpy's.
From 8 values on numpy sums pairwise, so a larger ``f`` (or another dtype) is
left to numpy.  ``Testing/Python/inputs/test_block_mean.py`` compares the two
bit for bit on slices whose values span eight decades, where any other order
of the additions gives other bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_FACTOR", "block_mean"]

#: Largest block side summed here; numpy's pairwise sum changes its order from 8 values on.
MAX_FACTOR = 7


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """``a[:h*f, :w*f].reshape(h, f, w, f).mean(axis=(1, 3))`` of a 2D array, with ``h, w = a.shape[0] // f,
    a.shape[1] // f``: a new array of the same bits and dtype (``a`` is not changed)."""
    a = np.asarray(a)
    f = int(f)
    h, w = a.shape[0] // f, a.shape[1] // f
    if not (a.ndim == 2 and 2 <= f <= MAX_FACTOR and h and w and a.dtype in (np.float32, np.float64)):
        return a[:h * f, :w * f].reshape(h, f, w, f).mean(axis=(1, 3))
    total = None
    for i in range(f):
        rows = a[i:h * f:f]
        # numpy's sum of a block row starts from +0.0 (-0.0 + 0.0 is +0.0)
        row = np.add(rows[:, 0:w * f:f], a.dtype.type(0.0))
        for j in range(1, f):
            np.add(row, rows[:, j:w * f:f], out=row)
        if total is None:
            total = row
        else:
            np.add(total, row, out=total)
    return np.true_divide(total, np.intp(f * f), out=total, casting="unsafe")
