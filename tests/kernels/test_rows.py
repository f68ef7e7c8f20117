"""kernels/cpu/rows.py: the row helpers, inlined into a kernel as the cpu kernels use them."""
import numba
import numpy as np
import pytest

from numbanet.kernels.cpu.rows import copy_row, zero_row


@numba.njit
def _rows(dst, src, n, have):
    for r in range(dst.shape[0]):
        if have[r]:
            copy_row(dst[r], src[r], n)
        else:
            zero_row(dst[r], n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_row_and_zero_row_write_the_first_n_and_nothing_else(dtype):
    src = np.arange(1, 16, dtype=dtype).reshape(3, 5)
    src[1, 0] = np.nan
    dst = np.full((3, 5), -7, dtype)
    _rows(dst, src, 4, np.array([True, True, False]))
    want = np.array([[1, 2, 3, 4, -7], [np.nan, 7, 8, 9, -7], [0, 0, 0, 0, -7]], dtype)
    np.testing.assert_array_equal(dst, want)
    assert dst.dtype == dtype
