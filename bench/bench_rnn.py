"""pytest-benchmark: the recurrent cases (bench/cases.py) on every available implementation."""
OP = "rnn"


def test_rnn(bench_case):
    bench_case()
