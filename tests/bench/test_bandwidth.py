"""bench/bandwidth.py's triad: the STREAM kernel the profiler's bandwidth roof comes from."""
import math

import numpy as np

from numbanet.bench import bandwidth


def test_triad_computes_b_plus_s_c_over_every_chunk():
    rng = np.random.default_rng(0)
    b, c = rng.random(1001, dtype=np.float32), rng.random(1001, dtype=np.float32)
    a = np.full_like(b, np.nan)
    bandwidth._threaded_triad(a, b, c, np.float32(3.0), 7)   # 7 chunks that do not divide 1001
    np.testing.assert_array_equal(a, b + np.float32(3.0) * c)


def test_triad_rate_is_a_positive_number():
    rate = bandwidth.triad_gbs(n=10_000, repeats=2)
    assert math.isfinite(rate) and rate > 0
