"""Block means of a slice (inputs/block_mean.py): numpy's bits and dtype, on data where the order of the
additions shows, and numpy itself where its order differs (8 values or more, other dtypes)."""

from __future__ import annotations

import numpy as np
import pytest

from SeqClassifierLib.inputs.block_mean import MAX_FACTOR, block_mean


def _numpy(a, f):
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[:h * f, :w * f].reshape(h, f, w, f).mean(axis=(1, 3))


def _hostile(rng, shape, dtype):
    """Values over eight decades and both signs, a third of them zero (some -0.0): every other order of
    the additions gives other bits on most blocks."""
    a = rng.random(shape) ** 8 * 10.0 ** rng.uniform(0, 8, shape) * rng.choice([-1.0, 1.0], shape)
    a[rng.random(shape) < 0.3] = 0.0
    a[rng.random(shape) < 0.05] = -0.0
    return a.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f", range(2, MAX_FACTOR + 1))
def test_same_bits_as_numpy(dtype, f):
    rng = np.random.default_rng(f)
    for _ in range(12):
        shape = (f * int(rng.integers(1, 60)) + int(rng.integers(0, f)), f * int(rng.integers(1, 60)) + int(rng.integers(0, f)))
        a = _hostile(rng, shape, dtype)
        before = a.copy()
        want, got = _numpy(a, f), block_mean(a, f)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), (shape, f)
        assert a.tobytes() == before.tobytes()


def test_order_matters_on_this_data_so_the_test_can_fail():
    """The row-major order of all f*f values (one plain loop) gives other bits here: the comparison above
    would catch an implementation that summed in another order."""
    rng = np.random.default_rng(0)
    a = _hostile(rng, (300, 300), np.float32)
    x = a.reshape(100, 3, 100, 3)
    plain = np.zeros((100, 100), np.float32)
    for i in range(3):
        for j in range(3):
            plain += x[:, i, :, j]
    plain /= np.float32(9)
    assert plain.tobytes() != _numpy(a, 3).tobytes()


def test_all_negative_zero_blocks_give_positive_zero_as_numpy():
    a = np.full((6, 6), -0.0, np.float32)
    assert not np.signbit(block_mean(a, 3)).any() and not np.signbit(_numpy(a, 3)).any()


def test_strided_input_and_the_cases_left_to_numpy():
    rng = np.random.default_rng(5)
    a = _hostile(rng, (130, 131), np.float64)[::1, 1:]  # a view that is not contiguous
    assert block_mean(a, 4).tobytes() == _numpy(a, 4).tobytes()
    b = rng.normal(100, 30, (130, 130))
    for f, arr in ((8, a), (16, a), (3, b.astype(np.float16)), (3, b.astype(np.int32)), (1, a)):
        assert block_mean(arr, f).tobytes() == _numpy(arr, f).tobytes()
        assert block_mean(arr, f).dtype == _numpy(arr, f).dtype
