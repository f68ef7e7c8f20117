"""kernels/cpu/rows.py: the row helpers, inlined into a kernel as the cpu kernels use them."""
import numba
import numpy as np
import pytest

from numbanet.kernels.cpu.rows import copy_or_zero


@numba.njit
def _rows(dst, src, n, have):
    for r in range(dst.shape[0]):
        copy_or_zero(dst[r], src[r], n, have[r])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_or_zero_copies_the_rows_it_has_and_zeroes_the_others(dtype):
    src = np.arange(1, 16, dtype=dtype).reshape(3, 5)
    src[1, 0] = np.nan
    dst = np.full((3, 5), -7, dtype)
    _rows(dst, src, 4, np.array([True, True, False]))
    want = np.array([[1, 2, 3, 4, -7], [np.nan, 7, 8, 9, -7], [0, 0, 0, 0, -7]], dtype)
    np.testing.assert_array_equal(dst, want)
    assert dst.dtype == dtype
