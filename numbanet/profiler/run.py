"""`numbanet profile`: profile N training steps of one of numbanet's models.

    numbanet profile --model cnn --steps 20                  # the article's CNN, batch 128
    numbanet profile --model charlm --backend cpu,gpu        # both backends, one chart

Each backend: the model built on it, three warm-up steps (compiling), then `--steps`
profiled steps, each followed by an unprofiled one (Profile.paused): the reference the
profiled steps are checked against, interleaved with them so that a drifting load on
the machine weighs on both alike. Prints the table and the check, writes the Chrome
trace and the roofline chart. The data are random (shapes of the model's real data): a step's time
does not depend on the values.
"""
import os
import statistics
import sys
import time

import numpy as np

MODELS = ("cnn", "charlm", "lstm")
DEFAULT_BATCH = {"cnn": 128, "charlm": 32, "lstm": 32}


def add_arguments(parser):
    parser.add_argument("--model", choices=MODELS, default="cnn",
                        help="cnn: the article's MNIST CNN; charlm: the character GPT (bench's default size); "
                             "lstm: the digits LSTM")
    parser.add_argument("--backend", default=None,
                        help="cpu, gpu or cpu,gpu (both, in one chart); default: the process default backend")
    parser.add_argument("--steps", type=int, default=20, help="training steps profiled (default 20)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: cnn 128, charlm 32, lstm 32")
    parser.add_argument("--by", choices=("layer", "op"), default="layer",
                        help="a row per op, layer and pass (default), or per op")
    parser.add_argument("--top", type=int, default=None, help="show only the first N rows per backend")
    parser.add_argument("--out", default=".", help="folder for the trace and the chart (default: here)")
    parser.add_argument("--no-roofline", action="store_true",
                        help="do not measure the machine's limits (no %% roof column, no chart)")
    parser.add_argument("--refresh-limits", action="store_true",
                        help="measure the machine's limits again instead of reading the cached ones")


def build(model, batch, seed=0):
    """(compiled model, x, y) on the process's default backend."""
    rng = np.random.default_rng(seed)
    if model == "cnn":
        from numbanet.nn.mnist_cnn import build_model
        return (build_model(), rng.random((batch, 28, 28, 1), dtype=np.float32),
                rng.integers(0, 10, size=batch).astype(np.int64))
    if model == "charlm":
        from numbanet.bench.cases import CHARLM
        from numbanet.nn import charlm
        _, steps, d, heads, layers, vocab = CHARLM
        m = charlm.compile_model(charlm.build_model(vocab, steps, d, heads, layers), total_steps=10_000)
        return (m, rng.integers(0, vocab, size=(batch, steps)).astype(np.int32),
                rng.integers(0, vocab, size=(batch, steps)).astype(np.int32))
    if model == "lstm":
        from numbanet.nn import digits_lstm
        return (digits_lstm.build_model(), rng.random((batch, 8, 8), dtype=np.float32),
                rng.integers(0, 10, size=batch).astype(np.int64))
    raise ValueError(f"profile: model must be one of {MODELS}, got {model!r}")


def unprofiled_step_ns(model, x, y, steps):
    """Wall time of `steps` train_on_batch calls, each synchronized, in ns (a list)."""
    times = []
    for _ in range(steps):
        start = time.perf_counter_ns()
        model.train_on_batch(x, y)
        model.be.synchronize()
        times.append(time.perf_counter_ns() - start)
    return times


def check(profile, profiled, reference):
    """{backend: (step, call, unprofiled)}, medians in ns: `step` the training step's time
    (its rows add up to it: summary.py), `call` the profiled train_on_batch calls' time
    (the step, and the input checks and transfers around it), both less the profiler's
    bookkeeping, and `unprofiled` the same calls' time unprofiled."""
    out = {}
    for backend, ref in reference.items():
        steps = [s.net_ns for s in profile.steps if s.backend == backend]
        out[backend] = (statistics.median(steps), statistics.median(profiled[backend]), statistics.median(ref))
    return out


def check_lines(profile, profiled, reference):
    lines = []
    for backend, (step, call, ref) in check(profile, profiled, reference).items():
        lines.append(f"{backend}: train_on_batch profiled {call / 1e6:.2f} ms (median of {len(profiled[backend])}; "
                     f"the step's rows {step / 1e6:.2f} ms, the input checks and transfers around the step "
                     f"{(call - step) / 1e6:.2f} ms) against {ref / 1e6:.2f} ms unprofiled (median of "
                     f"{len(reference[backend])}, interleaved): {100 * call / ref:.1f}%")
    return lines


def run(model_name, backends, steps, batch, out=".", by="layer", top=None, roofline=True, refresh=False,
        file=None):
    """Profile; -> (Profile, {backend: unprofiled train_on_batch times (ns)}, trace path, chart path or None)."""
    # sys.stdout read per call, not bound at import: a captured stream replaced since is closed.
    file = sys.stdout if file is None else file
    from numbanet import kernels
    from numbanet.profiler import profile
    if steps < 1:
        raise ValueError(f"profile: --steps must be at least 1, got {steps}")
    if batch < 1:
        raise ValueError(f"profile: --batch-size must be at least 1, got {batch}")
    previous = kernels.get_backend().name
    prepared, reference = {}, {}
    try:
        for name in backends:
            kernels.set_backend(name)
            model, x, y = build(model_name, batch)
            unprofiled_step_ns(model, x, y, 3)   # compiles every kernel the step runs
            reference[name] = []
            prepared[name] = (model, x, y)
        profiled = {name: [] for name in backends}
        with profile(backends) as p:
            for name in backends:
                model, x, y = prepared[name]
                for _ in range(steps):
                    book, start = p.recorder.book_ns, time.perf_counter_ns()
                    model.train_on_batch(x, y)
                    model.be.synchronize()
                    profiled[name].append(time.perf_counter_ns() - start - (p.recorder.book_ns - book))
                    with p.paused():
                        reference[name] += unprofiled_step_ns(model, x, y, 1)
    finally:
        kernels.set_backend(previous)
    if roofline:
        p.limits(refresh)
    print(p.table(by=by, top=top, roofline=roofline), file=file)
    for line in check_lines(p, profiled, reference):
        print(line, file=file)
    os.makedirs(out, exist_ok=True)
    tag = "_".join(backends)
    trace_path = p.save_trace(os.path.join(out, f"profile_{model_name}_{tag}.json"))
    print(f"trace: {trace_path} (open in https://ui.perfetto.dev or chrome://tracing)", file=file)
    chart = None
    if roofline:
        try:
            chart = p.save_roofline(os.path.join(out, f"profile_{model_name}.png"),
                                    title=f"numbanet {model_name}, batch {batch}, {tag}")
            print(f"roofline chart: {chart}", file=file)
        except ImportError as e:
            print(f"no roofline chart: {e}", file=file)
    return p, reference, trace_path, chart


def main(args):
    from numbanet import kernels
    names = [args.backend] if args.backend is None else [b.strip() for b in args.backend.split(",") if b.strip()]
    if names == [None]:
        names = [kernels.get_backend().name]
    for name in names:
        if name not in ("cpu", "gpu"):
            print(f"numbanet profile: --backend takes cpu, gpu or cpu,gpu, got {name!r}", file=sys.stderr)
            return 2
    try:
        run(args.model, names, args.steps, args.batch_size or DEFAULT_BATCH[args.model], args.out, args.by,
            args.top, not args.no_roofline, args.refresh_limits)
    except (ValueError, kernels.BackendUnavailable) as e:
        print(f"numbanet profile: {e}", file=sys.stderr)
        return 2
    return 0
