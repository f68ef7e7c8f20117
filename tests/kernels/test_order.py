"""kernels/*/order.py: the NaN rule of max and argmax (first NaN, else first maximum), on
every backend through argmax and max pooling, against NumPy's argmax."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated

HYPOTHESIS = settings(max_examples=4 if simulated() else 40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 1.0, -1.0]


def test_beats_truth_table():
    from numbanet.kernels.cpu.order import beats
    nan = float("nan")
    # (later value, running maximum) -> does the later one win?
    table = {(2.0, 1.0): True, (1.0, 1.0): False, (0.0, 1.0): False, (nan, 1.0): True, (nan, nan): False,
             (5.0, nan): False, (float("inf"), 1.0): True, (-0.0, 0.0): False}
    for (v, best), want in table.items():
        assert bool(beats(v, best)) is want, (v, best)


@HYPOTHESIS
@given(n=st.integers(1, 6), c=st.integers(1, 9), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_argmax_with_specials_matches_numpy(be, n, c, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.choice(SPECIALS, size=(n, c)).astype(dtype)
    np.testing.assert_array_equal(be.to_numpy(be.argmax(be.asarray(x))), np.argmax(x, axis=1))


@HYPOTHESIS
@given(seed=st.integers(0, 2 ** 16), dtype=st.sampled_from([np.float32, np.float64]))
def test_max_pool_window_with_specials_matches_numpy(be, seed, dtype):
    x = np.random.default_rng(seed).choice(SPECIALS, size=(1, 4, 4, 2)).astype(dtype)
    y, idx = (be.to_numpy(a) for a in be.max_pool2d(be.asarray(x)))
    for i, j, ch in np.ndindex(2, 2, 2):
        win = x[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2, ch].reshape(-1)
        k = int(np.argmax(win))
        np.testing.assert_array_equal(y[0, i, j, ch], win[k])
        assert idx[0, i, j, ch] == (2 * i + k // 2) * 4 + 2 * j + k % 2
