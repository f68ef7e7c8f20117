"""bench/regions.py: the cost of a parallel region and of a small GEMM on 1 and all threads."""
import math

import numba
import numpy as np

from numbanet.bench import regions


def test_the_region_runs_every_item():
    out = np.full(7, -1, dtype=np.int64)
    regions._region(out)
    np.testing.assert_array_equal(out, np.arange(7))


def test_the_timings_are_microseconds():
    # Seconds in place of microseconds would read below 0.01; a region or a 16^3 product
    # taking a second would be a hang, not a figure.
    for t in (regions.region_us(repeats=5), regions.gemm_us(1, n=16, repeats=3)):
        assert math.isfinite(t) and 0.01 < t < 1e6, t


def test_main_prints_each_figure(capsys, monkeypatch):
    monkeypatch.setattr(regions, "REPEATS", 5)
    monkeypatch.setattr(regions, "GEMM_SIZE", 16)
    monkeypatch.setattr(regions, "GEMM_REPEATS", 3)
    regions.main()
    out = capsys.readouterr().out
    assert f"{numba.get_num_threads()} numba threads" in out
    for label in ("empty parallel region", "matmul 16^3 on 1 thread", "python -m numbanet.bench.regions"):
        assert label in out
