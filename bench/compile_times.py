"""Where first-use compile time goes: each kernel's own compile CPU seconds.

    python -m numbanet.bench.compile_times [OP ...] [--dtypes float32,float64] [--top 30]

Runs the declared warm-ups (kernels/ops/) of the given ops (all of them by default) in a
child process against a fresh, empty NUMBA_CACHE_DIR with the background compile off, and
prints, per compiled function, the CPU seconds of its own compiles: a function's compile
includes the compiles of the callees Numba types inside it, and those are subtracted, so
the column adds up to the total. CPU seconds, not wall time: on a shared machine the wall
time grows with the load, the CPU time much less. bench/startup.py gives the whole
first-step and every-op figures; this says which kernels they are made of.
"""
import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time


@contextlib.contextmanager
def record():
    """Within: {name: [own CPU seconds, compiles]} of every Numba compile, filled in as
    they end (name: the module's last part and the function's qualified name)."""
    from numba.core import event
    own = collections.defaultdict(lambda: [0.0, 0])
    stack = []   # per compile in progress: [start, CPU seconds of the compiles inside it]

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append([time.process_time(), 0.0])

        def on_end(self, ev):
            start, inner = stack.pop()
            total = time.process_time() - start
            fn = ev.data["dispatcher"].py_func
            entry = own[f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__qualname__}"]
            entry[0] += total - inner
            entry[1] += 1
            if stack:
                stack[-1][1] += total

    with event.install_listener("numba:compile", Listener()):
        yield own


def _child(names, dtypes):
    import numpy as np

    from numbanet import kernels
    from numbanet.kernels import ops
    be = kernels.get_backend("cpu")
    chosen = [ops.get(n) for n in names] if names else [op for op in ops.all_ops() if op.warmup is not None]
    with record() as own:
        for dtype in dtypes:
            for op in chosen:
                if op.warmup is None:
                    raise SystemExit(f"compile_times: op {op.name!r} declares no warm-up")
                op.warmup(be, np.dtype(dtype).type)
    print(json.dumps({name: v for name, v in own.items()}))


def measure(names=(), dtypes=("float32", "float64")):
    """{function: [own CPU seconds, compiles]} from a child with an empty cache."""
    with tempfile.TemporaryDirectory(prefix="numbanet-cache-") as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMBANET_BACKGROUND_COMPILE="0")
        code = f"from numbanet.bench.compile_times import _child; _child({list(names)!r}, {list(dtypes)!r})"
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compile_times: the child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(own, top):
    rows = sorted(own.items(), key=lambda kv: -kv[1][0])
    total = sum(v[0] for v in own.values())
    out = [f"{'CPU s':>8}  {'share':>6}  {'compiles':>8}  function",
           f"{total:8.1f}  {'100%':>6}  {sum(v[1] for v in own.values()):8d}  (all)"]
    for name, (seconds, count) in rows[:top]:
        out.append(f"{seconds:8.1f}  {100 * seconds / total if total else 0:5.1f}%  {count:8d}  {name}")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m numbanet.bench.compile_times", description=__doc__.split("\n")[0])
    parser.add_argument("ops", nargs="*", help="ops whose warm-ups to compile (default: every op that declares one)")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    print(format_table(measure(args.ops, [d.strip() for d in args.dtypes.split(",") if d.strip()]), args.top))


if __name__ == "__main__":
    main()
