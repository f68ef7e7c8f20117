"""pytest-benchmark: the optim cases (bench/cases.py) on every available implementation."""
OP = "optim"


def test_optim(bench_case):
    bench_case()
