"""pytest-benchmark: the train_step cases (bench/cases.py) on every available implementation."""
OP = "train_step"


def test_train_step(bench_case):
    bench_case()
