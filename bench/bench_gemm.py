"""pytest-benchmark: the gemm cases (bench/cases.py) on every available implementation."""
OP = "gemm"


def test_gemm(bench_case):
    bench_case()
