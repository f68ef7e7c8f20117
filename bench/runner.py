"""`numbanet bench`: our backends against NumPy, PyTorch CPU and CuPy, one table per op.

Timing: every implementation's first call is timed on its own (compile time for ours),
untimed calls warm it (at least one, and more until --warmup seconds have passed: a
training step's first calls run slower while caches, allocator and thread pool settle,
so a fixed count of calls would time part of that transient), then the repeats go
round-robin over the implementations, in an order rotated each repeat, so that drift of a shared, noisy
machine lands on ours and the references alike. Medians and the interquartile range are
reported; ratios are taken within the same run.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from numbanet.bench import cases as C
from numbanet.bench import implementations
from numbanet.bench import report
from numbanet.nn.utils import atomic_write

FAIR_ENV_NOTE = ("note: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set and can slow NumPy's reference; "
                 "for a fair reference run `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE numbanet bench`")


WARMUP_S = 0.5
WARMUP_MAX_CALLS = 50


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="fewer cases and repeats (under a minute on 2 cores)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of GFLOP/s against GEMM size (needs matplotlib)")
    parser.add_argument("--save", metavar="DIR",
                        help="write DIR/<machine>.md (the machine facts and the tables) and DIR/<machine>.png "
                             "(our ratios to the references), named by CPU model and GPU (needs matplotlib)")
    parser.add_argument("--ops", default=",".join(C.OPS),
                        help=f"comma-separated ops to run, from {','.join(C.OPS)} (default: all)")
    parser.add_argument("--backends", default=",".join(C.OURS + C.REFERENCES),
                        help="comma-separated implementations: our backends cpu,gpu and the references "
                             "numpy,torch,cupy (default: all that are available)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per case (default 7, 5 with --quick)")
    parser.add_argument("--warmup", type=float, default=None, metavar="SECONDS",
                        help=f"untimed calls per implementation after its first, for at least this long "
                             f"(default {WARMUP_S}; at most {WARMUP_MAX_CALLS} calls)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # toy sizes, for the tests
    return parser


def _split(text, allowed, what):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError(f"numbanet bench: --{what} expects a comma-separated list from "
                         f"{','.join(allowed)}, got {text!r}")
    return names


# ---------------------------------------------------------------------- machine
def machine_info():
    import numba
    from numbanet.kernels.info import cpu_model, gemm_tuning
    from numbanet import kernels
    from numbanet.bench.references import openblas_info

    gpu_ok, gpu_detail = kernels.gpu_status()
    # Creating the cpu backend sets malloc for the whole process (kernels/cpu/memory.py),
    # so every implementation timed here runs with the same allocator settings.
    kernels.get_backend("cpu")
    from numbanet.kernels.cpu.memory import status as malloc_status
    from numbanet.kernels.cpu.threads import threading_layer
    info = {"malloc": malloc_status(), "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
            # The layer Numba picked (config says only "default" when none was asked for).
            "numba_threads": numba.get_num_threads(), "numba_threading_layer": threading_layer(),
            "gpu": gpu_detail if gpu_ok else f"none ({gpu_detail})",
            "gpu_name": report.gpu_name(gpu_detail) if gpu_ok else None, "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "openblas": openblas_info(),
            # What our CPU kernels were compiled for and the GEMM configuration in force:
            # figures from two machines (or ISAs, or tunings) are never read as one.
            "gemm": gemm_tuning()}
    # Kernels compiled for another CPU than this one (NUMBA_CPU_NAME=haswell: AVX2 only):
    # the run is saved apart from this machine's own.
    import llvmlite.binding as ll
    info["target"] = info["gemm"]["cpu_name"] if info["gemm"]["cpu_name"] != ll.get_host_cpu_name() else None
    try:
        from numbanet.bench.references import torch_module
        torch = torch_module()
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        # The vector ISA PyTorch's CPU kernels run with (ATEN_CPU_CAPABILITY=avx2 limits it,
        # as NUMBA_CPU_NAME/NUMBA_CPU_FEATURES limit ours): an AVX2 run compares like with like.
        # (torch.backends.cpu.get_cpu_capability: PyTorch 2.1 and newer.)
        capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
        info["torch_isa"] = capability() if capability is not None else None
    except C.Missing:
        info["torch"] = None
    return info


def format_header(info):
    ob = info["openblas"]
    lines = [f"CPU: {info['cpu_model']} ({info['logical_cpus']} logical CPUs); numba threads: {info['numba_threads']} "
             f"({info.get('numba_threading_layer', 'default')} threading layer)"
             + (f"; torch threads: {info['torch_threads']}" if info.get("torch") else ""),
             f"GPU: {info['gpu']}"]
    g = info.get("gemm")
    if g:
        conv = f"; conv/rnn tile {g['short_tile']}" if g.get("short_tile") else ""
        lines += [f"ISA: {g['isa']} (numba compiles for {g['cpu_name']}); "
                  f"CPU GEMM: {g['summary']}, {g['origin']}{conv}"]
    torch_isa = f" ({info['torch_isa']} kernels)" if info.get("torch_isa") else ""
    lines += [f"numpy {info['numpy']}, numba {info['numba']}, torch {info.get('torch') or 'not installed'}{torch_isa}",
             f"NumPy BLAS: {ob.get('config') or 'OpenBLAS ' + str(ob.get('version'))}, "
             f"core kernel: {ob.get('corename', 'unknown')}, "
             f"threads: {ob.get('threads', '?')} (via {ob.get('source')})"]
    if info.get("OMP_WAIT_POLICY"):
        lines.append(f"OMP_WAIT_POLICY={info['OMP_WAIT_POLICY']}, "
                     f"OPENBLAS_THREAD_TIMEOUT={info.get('OPENBLAS_THREAD_TIMEOUT') or 'unset (OpenBLAS threads spin ~0.1 s after each call)'}")
    if info.get("malloc"):
        lines.append(f"malloc (this process, all implementations): {info['malloc']}")
    env = [f"{k}={ob[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if ob.get(k) is not None]
    if env:
        lines.append(f"environment: {' '.join(env)}")
        lines.append(FAIR_ENV_NOTE)
    return "\n".join(lines)


# ---------------------------------------------------------------------- timing
def _time_call(p):
    t0 = time.perf_counter()
    p.run()
    p.sync()
    return time.perf_counter() - t0


def start_spinners(count):
    """`count` child processes, each a Python loop that never sleeps: the other CPU-bound
    job of a busy machine. The operating system shares the cores between them and the
    implementation being timed, so a kernel whose threads wait at a barrier for a
    descheduled one shows it. Stopped by stop_spinners."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_spinners(procs):
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def _warm_up(p, seconds):
    """One untimed call, then more until `seconds` have passed (at most WARMUP_MAX_CALLS)."""
    spent, calls = _time_call(p), 1
    while spent < seconds and calls < WARMUP_MAX_CALLS:
        spent += _time_call(p)
        calls += 1
    return calls


def run_case(case, impls, repeats, log=None, warmup_s=0.0):
    """-> one row per impl: status ok/missing/error, first-call time, warm-up calls, the
    timed repeats. A case with busy_cores runs its timed repeats (not the first calls nor
    the warm-up) beside that many spinning processes."""
    rows, live = [], []
    for impl in impls:
        row = {"op": case.op, "kind": case.kind, "case": case.label, "size": case.size, "impl": impl,
               "ours": impl in C.OURS, "device": implementations.device_of(impl), "unit": case.unit, "work": case.work}
        try:
            p = implementations.prepare(case, impl)
            row["first_call_s"] = _time_call(p)  # numba compiles (or loads its cache) here
            row["warmup_calls"] = _warm_up(p, warmup_s)
            row.update(status="ok", times_s=[])
            live.append((row, p))
        except C.Missing as exc:
            row.update(status="missing", reason=str(exc))
        except Exception as exc:  # ours or a reference broke: reported, and the run fails
            row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    spinners = start_spinners(case.busy_cores)
    try:
        for r in range(repeats):
            shift = r % max(len(live), 1)
            for row, p in live[shift:] + live[:shift]:
                try:
                    row["times_s"].append(_time_call(p))
                except Exception as exc:
                    row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
            live = [(row, p) for row, p in live if row["status"] == "ok"]
    finally:
        stop_spinners(spinners)
    for row in rows:
        if row["status"] == "ok":
            t = np.asarray(row["times_s"])
            q1, med, q3 = np.percentile(t, [25, 50, 75])
            row.update(median_s=float(med), q1_s=float(q1), q3_s=float(q3), min_s=float(t.min()),
                       max_s=float(t.max()), rate=case.work / med / 1e9)
    _ratios(rows)
    if log:
        log(f"  {case.op:<10} {case.label}: " + ", ".join(
            f"{r['impl']} {r['median_s'] * 1e3:.3g} ms" if r["status"] == "ok" else f"{r['impl']} {r['status']}"
            for r in rows))
    return rows


def _ratios(rows):
    """ratio = reference time / our time (above 1: ours is faster); GPU/CPU = cpu time / gpu time."""
    med = {r["impl"]: r["median_s"] for r in rows if r["status"] == "ok"}
    for r in rows:
        if r["status"] != "ok":
            continue
        for ref in ("numpy", "torch"):
            r[f"vs_{ref}"] = med[ref] / r["median_s"] if ref in med and r["impl"] != ref else None
        if r["impl"] == "gpu" and "cpu" in med:
            r["gpu_over_cpu"] = med["cpu"] / r["median_s"]
        elif r["impl"] == "cupy" and "numpy" in med:
            r["gpu_over_cpu"] = med["numpy"] / r["median_s"]
        else:
            r["gpu_over_cpu"] = None


# ---------------------------------------------------------------------- output
def _ms(s):
    return f"{s * 1e3:.3f}" if s < 1 else f"{s * 1e3:.0f}"


def _x(v):
    return "" if v is None else f"{v:.2f}x"


def format_tables(rows):
    """One markdown table per op, in run order."""
    out = []
    # An implementation missing from every case (no GPU, CuPy not installed) is left out of
    # the tables; the "missing" list under them says why.
    ran = {r["impl"] for r in rows if r["status"] != "missing"}
    for op in C.OPS:
        op_rows = [r for r in rows if r["op"] == op and r["impl"] in ran]
        if not op_rows:
            continue
        unit = op_rows[0]["unit"]
        out.append(f"### {op} ({unit})")
        out.append("")
        head = ["shape", "backend", "median ms", "IQR ms", unit, "vs NumPy", "vs PyTorch", "GPU/CPU", "first call s"]
        table = [head]
        for r in op_rows:
            if r["status"] != "ok":
                table.append([r["case"], r["impl"], r["status"], "", "", "", "", "", ""])
                continue
            table.append([r["case"], r["impl"], _ms(r["median_s"]), f"{_ms(r['q1_s'])}-{_ms(r['q3_s'])}",
                          f"{r['rate']:.1f}", _x(r["vs_numpy"]), _x(r["vs_torch"]), _x(r["gpu_over_cpu"]),
                          f"{r['first_call_s']:.2f}"])
        widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
        fmt = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
        out.append(fmt(table[0]))
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += [fmt(row) for row in table[1:]]
        out.append("")
    out.append("median and IQR over the timed repeats; vs NumPy/PyTorch = reference time / this time "
               "(above 1x: faster than the reference); GPU/CPU = cpu (or numpy) time / gpu (or cupy) time; "
               "first call = the untimed-in-median first call (ours: Numba compile or cache load).")
    return "\n".join(out)


def format_missing(rows):
    """The implementations that did not run, with why: not failures."""
    missing = {}
    for r in rows:
        if r["status"] == "missing":
            missing.setdefault((r["impl"], r["reason"]), []).append(r["op"])
    if not missing:
        return ""
    return "\n".join(["missing (not failures):"] + [
        f"  {impl} [{','.join(dict.fromkeys(op_list))}]: {reason}" for (impl, reason), op_list in missing.items()])


def write_json(path, payload):
    """Atomic (nn.utils.atomic_write): a reader never sees half a file."""
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=1).encode("utf-8")), suffix=".json")


def _numbanet_version():
    from importlib import metadata
    try:
        return metadata.version("numbanet")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _load(values):
    return ", ".join(f"{v:.2f}" for v in values)


def save_results(directory, info, header, rows, date_utc, command, run, load_at_start):
    """`--save DIR`: the run as DIR/<machine>.md and DIR/<machine>.png (bench/report.py)."""
    load = f"{_load(load_at_start)} at the start, {_load(os.getloadavg())} at the end"
    name = report.title(info)
    page = report.markdown(header, format_tables(rows), format_missing(rows), name=name, command=command,
                           run=run, date_utc=date_utc, load=load, version=_numbanet_version())
    slug = report.machine_slug(info["cpu_model"], info.get("gpu_name"), info.get("target"))
    return report.save(directory, slug, page, rows, f"numbanet bench on {name}, {date_utc}")


def _argv_of(args):
    """The options that shaped the run, as they would be typed (output paths left out)."""
    argv = ["--quick"] if args.quick else []
    if args.ops != ",".join(C.OPS):
        argv += ["--ops", args.ops]
    if args.backends != ",".join(C.OURS + C.REFERENCES):
        argv += ["--backends", args.backends]
    argv += ["--repeats", str(args.repeats)] if args.repeats is not None else []
    argv += ["--warmup", f"{args.warmup:g}"] if args.warmup is not None else []
    return argv + (["--tiny"] if args.tiny else [])


def _matplotlib_missing():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def write_plot(path, rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("--plot needs matplotlib, which is not installed: pip install 'numbanet[plot]' "
                "(or pip install matplotlib)")
    square = [r for r in rows if r["op"] == "gemm" and r["status"] == "ok" and r["case"].count("x") == 2
              and len(set(r["case"].split("x"))) == 1]
    if not square:
        return "--plot: no square GEMM cases ran, nothing to plot"
    fig, ax = plt.subplots(figsize=(6, 4))
    for impl in dict.fromkeys(r["impl"] for r in square):
        pts = sorted((r["size"], r["rate"]) for r in square if r["impl"] == impl)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (N x N x N float32 GEMM)")
    ax.set_ylabel("GFLOP/s")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------- entry point
def run(case_list, impls, repeats, log=None, warmup_s=0.0):
    rows = []
    for case in case_list:
        rows += run_case(case, impls, repeats, log, warmup_s)
    return rows


def main(args, out=None):
    out = out or sys.stdout
    err = sys.stderr
    try:
        ops = _split(args.ops, C.OPS, "ops")
        impls = _split(args.backends, C.OURS + C.REFERENCES, "backends")
    except ValueError as exc:
        print(exc, file=err)
        return 2
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 3 if args.tiny else 7)
    if repeats < 1:
        print(f"numbanet bench: --repeats must be at least 1, got {repeats}", file=err)
        return 2
    warmup_s = args.warmup if args.warmup is not None else (0.0 if args.tiny else WARMUP_S)
    if not 0.0 <= warmup_s <= 60.0:
        print(f"numbanet bench: --warmup must be between 0 and 60 seconds, got {warmup_s}", file=err)
        return 2
    if args.save and _matplotlib_missing():  # said before the run, not after minutes of it
        print(report.PLOT_MISSING, file=err)
        return 2
    started, load_at_start = time.perf_counter(), os.getloadavg()
    # Numba's OpenMP workers, PyTorch's and OpenBLAS's threads share the cores in this one
    # process; an OpenMP runtime that spin-waits after each parallel region starves the
    # next implementation's threads (on 2 cores: 0.01 ms calls measured at 10+ ms).
    # PASSIVE makes idle workers sleep. An explicit OMP_WAIT_POLICY is kept.
    omp_policy_set = "OMP_WAIT_POLICY" not in os.environ
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from numbanet.bench.references import load_torch_first
    load_torch_first()  # before machine_info starts Numba's threads: see its docstring
    info = machine_info()
    info["OMP_WAIT_POLICY"] = os.environ["OMP_WAIT_POLICY"] + (" (set by numbanet bench)" if omp_policy_set else "")
    # Set by `numbanet bench` before NumPy loaded OpenBLAS (nn/cli.py); read at load time only.
    info["OPENBLAS_THREAD_TIMEOUT"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    header = format_header(info)
    print(header, file=out)
    print("", file=out)
    case_list = C.cases_for(ops, quick=args.quick, tiny=args.tiny)
    rows = run(case_list, impls, repeats, log=lambda s: print(s, file=err, flush=True), warmup_s=warmup_s)
    print(format_tables(rows), file=out)
    missing = format_missing(rows)
    if missing:
        print("\n" + missing, file=out)
    errors = [r for r in rows if r["status"] == "error"]
    for r in errors:
        print(f"ERROR {r['op']} {r['case']} on {r['impl']}: {r['reason']}", file=err)
    elapsed = time.perf_counter() - started
    now = time.gmtime()
    summary = (f"numbanet bench{' --quick' if args.quick else ''}: {len(case_list)} cases, {repeats} repeats "
               f"after {warmup_s:g} s of warm-up, {elapsed:.1f} s ({time.strftime('%Y-%m-%d %H:%M UTC', now)})")
    print("\n" + summary, file=out)
    status = 1 if errors else 0
    if args.json:
        write_json(args.json, {"machine": info, "repeats": repeats, "warmup_s": warmup_s, "quick": bool(args.quick),
                               "elapsed_s": elapsed, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
                               "results": rows})
        print(f"wrote {args.json}", file=out)
    if args.save:
        command = "numbanet bench " + " ".join(_argv_of(args))
        paths = save_results(args.save, info, header, rows, time.strftime("%Y-%m-%d %H:%M UTC", now),
                             command, summary.split(": ", 1)[1], load_at_start)
        print("wrote " + " and ".join(paths), file=out)
    if args.plot:
        problem = write_plot(args.plot, rows)
        if problem:
            print(problem, file=err)
            status = status or 2
        else:
            print(f"wrote {args.plot}", file=out)
    return status


if __name__ == "__main__":
    parser = add_arguments(argparse.ArgumentParser(prog="numbanet bench"))
    sys.exit(main(parser.parse_args()))
