"""pytest-benchmark: the conv cases (bench/cases.py) on every available implementation."""
OP = "conv"


def test_conv(bench_case):
    bench_case()
