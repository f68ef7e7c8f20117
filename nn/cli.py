"""The `numbanet` command: info, train, bench."""
import argparse
import os
import sys


def _info(args):
    from kernels.info import collect, format_info
    print(format_info(collect()))
    return 0


def _train(args):
    from nn.train import main as train_main
    return train_main(args)


# bench/ sits beside nn/ in the repository (an editable install, as the README's
# commands make); it is not part of an installed wheel.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAVE_BENCH = os.path.isfile(os.path.join(_REPO, "bench", "runner.py"))


def _bench(args):
    if not _HAVE_BENCH:
        print("numbanet bench: bench/runner.py not found beside the nn package; "
              "run it from a source checkout installed with `pip install -e .`", file=sys.stderr)
        return 2
    from bench.runner import main as bench_main
    return bench_main(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="numbanet", description="Hand-written Numba kernels for training neural networks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends, CPU and threading").set_defaults(func=_info)
    train = sub.add_parser("train", help="train the article's MNIST CNN")
    train.set_defaults(func=_train)
    bench = sub.add_parser("bench", help="benchmark the kernels against NumPy/PyTorch/CuPy")
    bench.set_defaults(func=_bench)
    return parser, train, bench


def main(argv=None):
    parser, train, bench = build_parser()
    from nn.train import add_arguments as add_train_arguments
    add_train_arguments(train)
    if _HAVE_BENCH:
        sys.path.insert(0, _REPO)
        from bench.runner import add_arguments as add_bench_arguments
        add_bench_arguments(bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
