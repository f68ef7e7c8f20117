"""pytest-benchmark: the attention cases (bench/cases.py) on every available implementation."""
OP = "attention"


def test_attention(bench_case):
    bench_case()
