"""column_sum, sum and argmax against NumPy."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from helpers import check_op, randn

HYPOTHESIS = settings(max_examples=4 if simulated() else 20, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=3), dtype=st.sampled_from([np.float32, np.float64]))
def test_column_sum(be, small, shape, dtype):
    shape = tuple(min(s, 5) for s in shape) if small else tuple(shape)
    x = randn(shape, dtype)
    rows = x.size // shape[-1]
    check_op(be, lambda be, x: be.column_sum(x), [x],
             lambda x: x.reshape(rows, shape[-1]).astype(np.float64).sum(0).astype(dtype), k=rows)


def test_column_sum_is_deterministic(be, small):
    x = randn((64, 9) if small else (5000, 130), np.float32)
    first = be.to_numpy(be.column_sum(be.asarray(x)))
    for _ in range(3):
        np.testing.assert_array_equal(be.to_numpy(be.column_sum(be.asarray(x))), first)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum(be, dtype):
    x = randn((17, 3, 5), dtype)
    got = be.sum(be.asarray(x))
    assert isinstance(got, float)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(), rtol=1e-12)


@HYPOTHESIS
@given(n=st.integers(1, 20), c=st.integers(1, 20), dtype=st.sampled_from([np.float32, np.float64]))
def test_argmax(be, n, c, dtype):
    # Rounded values make ties common: the first maximum must win, as in NumPy.
    x = np.round(randn((n, c), dtype))
    got = be.to_numpy(be.argmax(be.asarray(x)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(x, axis=1))


def test_bad_input(be):
    for op in ("column_sum", "sum", "argmax"):
        f = getattr(be, op)
        with pytest.raises(TypeError, match=op):
            f(be.asarray(np.zeros((2, 3), np.int64)))
        with pytest.raises(TypeError, match=op):
            f(be.asarray(np.zeros((2, 3), np.float16)))
        with pytest.raises(ValueError, match=op):
            f(be.asarray(np.zeros((0, 3), np.float32)))
    with pytest.raises(ValueError, match="argmax"):
        be.argmax(be.asarray(np.zeros((2, 3, 4), np.float32)))
