"""The `numbanet` command: info, train, bench.

It sits above `numbanet.nn` and `numbanet.bench` so that neither imports the other's
command line: `nn` never imports `bench`.
"""
import argparse
import os
import sys


def _info(args):
    if args.gpu_kernels:
        from numbanet.kernels import gpu_static
        problem = gpu_static.toolkit_problem()
        if problem:
            print(f"numbanet info --gpu-kernels needs the CUDA compiler wheels: {problem}; "
                  "pip install 'numbanet[cu12]'", file=sys.stderr)
            return 1
        cc = (int(args.arch[0]), int(args.arch[1:]))
        print(gpu_static.format_table(gpu_static.table(cc=cc), cc))
        return 0
    from numbanet.kernels.info import collect, format_info
    print(format_info(collect()))
    return 0


def _train(args):
    from numbanet.nn import distributed
    from numbanet.nn.train import main as train_main
    code = train_main(args)
    if code and distributed.active() is not None:
        # A process that gives up with an error would leave the others waiting in the
        # next collective: end the whole job with its status (its message is printed).
        distributed.abort(code)
    return code


def _bench(args):
    from numbanet.bench.runner import main as bench_main
    return bench_main(args)


def build_parser():
    from numbanet.bench.runner import add_arguments as add_bench_arguments
    from numbanet.nn.train import add_arguments as add_train_arguments
    parser = argparse.ArgumentParser(prog="numbanet", description="Hand-written Numba kernels for training neural networks")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, backends, CPU and threading")
    info.set_defaults(func=_info)
    info.add_argument("--gpu-kernels", action="store_true",
                      help="compile every gpu kernel for a real GPU (no GPU needed) and print registers, shared "
                           "memory, spills and H200 occupancy")
    info.add_argument("--arch", choices=("80", "90"), default="90",
                      help="the architecture for --gpu-kernels: sm_80 (A100) or sm_90 (H100/H200, the default)")
    train = sub.add_parser("train", help="train the article's MNIST CNN; --model charlm: a character-level GPT; "
                                         "--model lstm: an LSTM on 8x8 digits")
    train.set_defaults(func=_train)
    add_train_arguments(train)
    bench = sub.add_parser("bench", help="benchmark the kernels against NumPy/PyTorch/CuPy")
    bench.set_defaults(func=_bench)
    add_bench_arguments(bench)
    return parser


# OpenBLAS reads this once, when NumPy loads it. Its default lets idle BLAS threads spin
# for about 2**28 cycles (~0.1 s) after every NumPy product, and on 2 cores those spinning
# threads halved the speed of whichever implementation the benchmark timed next
# (measured: ours at 1024^3 fell from 167 to 74 GFLOP/s right after a NumPy call).
# 2**4 cycles lets them sleep at once, as OMP_WAIT_POLICY=PASSIVE does for OpenMP.
#
# Numba's default threading layer here is OpenMP (libgomp), a second OpenMP runtime beside
# PyTorch's own. Whichever pool starts first keeps its speed and the other loses it: with
# Numba's pool started first (as it is when the backends load), PyTorch's charlm training
# step ran 4-7x slower in the same process (1,030 ms against 210 ms alone; measured with
# `numbanet bench --ops train_step`), which made every "vs PyTorch" ratio flatter us.
# Numba's own workqueue pool is not an OpenMP runtime and leaves PyTorch's alone; ours ran
# as fast on it (charlm step 154-224 ms against 187-202 ms under OpenMP, same session).
_BENCH_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER": "workqueue"}


def _reexec_for_bench():
    """Start `numbanet bench` again in a fresh interpreter with _BENCH_ENV set (values the
    user set are kept): NumPy is already loaded here, too late to change OpenBLAS."""
    env = dict(os.environ)
    for key, value in _BENCH_ENV.items():
        env.setdefault(key, value)
    env["NUMBANET_BENCH_ENV"] = "1"
    os.execve(sys.executable, [sys.executable, "-m", "numbanet.cli", *sys.argv[1:]], env)


def main(argv=None):
    # Only a real command line is restarted; main(["bench", ...]) from Python runs as is.
    if argv is None and sys.argv[1:2] == ["bench"] and os.environ.get("NUMBANET_BENCH_ENV") != "1":
        _reexec_for_bench()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
