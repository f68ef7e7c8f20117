"""The `numbanet` command: info, train, bench, tune, profile.

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


def _tune(args):
    from numbanet.tune import main as tune_main
    return tune_main(args)


def _profile(args):
    from numbanet.profiler.run import main as profile_main
    return profile_main(args)


def build_parser():
    from numbanet.bench.runner import add_arguments as add_bench_arguments
    from numbanet.nn.train import add_arguments as add_train_arguments
    from numbanet.profiler.run import add_arguments as add_profile_arguments
    from numbanet.tune import add_arguments as add_tune_arguments
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
    tune = sub.add_parser("tune", help="measure the GEMM's micro-kernel shapes, blocking and thresholds on this "
                                       "machine and store the fastest for later processes (under two minutes)")
    tune.set_defaults(func=_tune)
    add_tune_arguments(tune)
    bench = sub.add_parser("bench", help="benchmark the kernels against NumPy/PyTorch/CuPy")
    bench.set_defaults(func=_bench)
    add_bench_arguments(bench)
    prof = sub.add_parser("profile", help="where a training step's time goes: per kernel, layer and pass, against "
                                          "the machine's roofline; a Chrome trace and a roofline chart")
    prof.set_defaults(func=_profile)
    add_profile_arguments(prof)
    return parser


# Set before NumPy loads OpenBLAS, which reads them once. Idle BLAS threads spin ~2**28
# cycles (~0.1 s) after each NumPy product by default, and on a small machine they slow
# whichever implementation the bench times next; 2**4 cycles lets them sleep at once, as
# PASSIVE does for OpenMP workers. Measure: `numbanet bench --quick --ops gemm --backends
# cpu,numpy`, then the same with NUMBANET_BENCH_ENV=1 (run as is, without these). Numba
# keeps its default threading layer, the one `numbanet train` gets; NUMBA_THREADING_LAYER,
# when set, is kept (bench.references.load_torch_first: why PyTorch loads first).
_BENCH_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}


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
