"""The range rule for labels and indices: kernels.shapes.first_out_of_range on the host and
each backend's _first_out_of_range (the gpu's device scan, kernels/gpu/checks.py) agree on
the first bad position and value, and the error names the op, the entry and the range."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from numbanet.kernels import shapes

HYPOTHESIS = settings(max_examples=4 if simulated() else 40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def first_bad_loop(idx, n):
    for i, v in enumerate(idx.reshape(-1).tolist()):
        if not 0 <= v < n:
            return i, v
    return None


@HYPOTHESIS
@given(size=st.integers(1, 40), n=st.integers(1, 10), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.uint64]))
def test_first_out_of_range_on_host_and_backend(be, size, n, seed, dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    idx = rng.integers(max(info.min, -3), min(info.max, n + 3), size, endpoint=True).astype(dtype)
    want = first_bad_loop(idx, n)
    assert shapes.first_out_of_range(idx, n) == want
    assert be._first_out_of_range(be.asarray(idx), n) == want


def test_the_error_names_everything():
    err = shapes.out_of_range_error("take_rows", "indices", 3, -1, 4, "x with 4 rows")
    assert isinstance(err, ValueError)
    assert str(err) == "take_rows: indices[3]=-1 is out of range for x with 4 rows (expected values in [0, 4))"


@pytest.mark.parametrize("padding,explicit,want", [("SAME", True, "same"), ("valid", False, "valid"),
                                                    (2, True, (2, 2)), ((1, 0), True, (1, 0))])
def test_padding_rule(padding, explicit, want):
    assert shapes.check_padding("op", padding, explicit) == want


@pytest.mark.parametrize("padding", [1, (1, 1), "full", None, True, (1.0, 1)])
def test_padding_rule_without_explicit_pads(padding):
    with pytest.raises(ValueError, match=r"^op: padding must be 'valid' or 'same'"):
        shapes.check_padding("op", padding, explicit=False)
