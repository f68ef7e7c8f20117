"""Numba's threading layer is only known after a parallel kernel has run once."""
import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, cache=True)
def _touch(a):
    for i in prange(a.shape[0]):
        a[i] = i


def threading_layer():
    _touch(np.empty(numba.get_num_threads(), dtype=np.int64))
    return numba.threading_layer()
