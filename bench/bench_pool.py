"""pytest-benchmark: the pool cases (bench/cases.py) on every available implementation."""
OP = "pool"


def test_pool(bench_case):
    bench_case()
