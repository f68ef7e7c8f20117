"""`numbanet tune`: measure the GEMM's candidate configurations on this machine and store
the fastest for every later process (kernels/cpu/tuning.py reads it).

A bounded search, BLIS/ATLAS-style, each phase building on the one before:

1. compile   every candidate micro-kernel shape that fits the register file (at most
             MAX_TILES, best-first by the derived rule), each in its serial driver, on
             all cores at once (one process per core, into Numba's on-disk cache);
2. tile      each shape times one product on one thread (CPU time of that thread), with
             the blocking derived for it, the shapes taking turns (interleaved_best);
             the fastest wins;
3. blocking  the winner's KC and MC, each at 1/2, 1 and 2 times the derived value (a
             3 x 3 grid), time a large product on every thread;
4. thresholds with that: where the one-region parallel path starts to beat one thread
             (serial_macs), and where packing op(b) once beats packing it per thread
             (prepack_macs), on square products around each default.

Each time is the fastest of several runs (noise from other processes only ever adds
time). The plan's length is fixed before it starts (`plan`), and the default sizes keep
it under two minutes on 2 cores, compiling included (it prints its own time).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

# Compiling a candidate takes 8-15 CPU seconds: four, on two cores, keep the search
# under two minutes.
MAX_TILES = 4
GRID = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Sizes:
    tile: tuple          # (m, n, k) of phase 2, one thread
    blocking: tuple      # (m, n, k) of phase 3, every thread
    serial: tuple        # cube sides around the one-thread threshold
    prepack: tuple       # cube sides around the packing threshold
    seconds: float       # time per measurement (at least 3 runs)


FULL = Sizes(tile=(512, 512, 512), blocking=(1024, 1024, 1024), serial=(96, 128, 160, 192, 256, 320),
             prepack=(384, 512, 640, 768), seconds=0.25)
# For tests: every phase runs, on products small enough for the CUDA-less CI machine.
TINY = Sizes(tile=(40, 70, 30), blocking=(50, 70, 300), serial=(16, 24), prepack=(32,), seconds=0.0)


@dataclass(frozen=True)
class Step:
    phase: str
    what: str


def plan(machine, tiles=None, sizes=FULL):
    """The search's steps for `machine`, in order (their count bounds its time)."""
    from numbanet.kernels.cpu import tuning
    tiles = list(tiles) if tiles else tuning.candidate_tiles(machine)[:MAX_TILES]
    if not tiles:
        tiles = [tuning.derived_tile(machine)]
    steps = [Step("compile", t.name) for t in tiles]
    steps += [Step("tile", t.name) for t in tiles]
    steps.append(Step("compile", "parallel driver"))
    steps += [Step("blocking", f"kc x{f} mc x{g}") for f in GRID for g in GRID]
    steps += [Step("serial", f"{s}^3") for s in sizes.serial]
    steps += [Step("prepack", f"{s}^3") for s in sizes.prepack]
    return tiles, steps


def best_time(fn, seconds, min_runs=3, max_runs=50, clock=time.perf_counter):
    """The fastest of at least min_runs calls of fn (after one untimed call), running
    until `seconds` have passed or max_runs, timed by `clock`."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < seconds and len(times) < max_runs):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def interleaved_best(runs, seconds, starting=None, finished=None, rounds=3, clock=time.perf_counter):
    """{name: fastest time} of each of `runs` (name -> fn), timed in `rounds` rounds that
    take every candidate in turn: a slow spell of the machine (another process waking
    up) then costs each candidate one round, not one candidate all of its runs."""
    best = {}
    for r in range(rounds):
        for name, fn in runs.items():
            if starting:
                starting(name)
            best[name] = min(best.get(name, float("inf")), best_time(fn, seconds / rounds, clock=clock))
            if finished and r == rounds - 1:
                finished(name)
    return best


def _operands(shape, seed):
    m, n, k = shape
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    return a, b, np.empty((m, n), np.float32)


def _runner(choice, shape, threads, seed=0):
    from numbanet.kernels.cpu import gemm
    a, b, out = _operands(shape, seed)
    bias = gemm.no_bias(np.float32)
    return lambda: gemm.matmul_with(choice, a, b, False, False, bias, out, threads)


def _with(choice, **changes):
    from dataclasses import replace
    return replace(choice, source="given", where="", **changes)


def _blocking_grid(tile, machine):
    from numbanet.kernels.cpu import tuning
    kc0, mc0 = tuning.derived_blocking(tile, machine)
    lo_k, hi_k = tuning.KC_RANGE
    lo_m, hi_m = tuning.MC_RANGE
    grid = []
    for f in GRID:
        kc = max(lo_k, min(hi_k, int(kc0 * f) // 16 * 16))
        for g in GRID:
            mc = max(lo_m, min(hi_m, int(mc0 * g)))
            grid.append((kc, max(tile.mr, mc - mc % tile.mr)))
    return grid


def _crossover(sides, slow, fast, margin=0.97):
    """The smallest side from which `fast` beats `slow` (by `margin`) at that side and
    every larger one measured; None when it never does."""
    found = None
    for side in reversed(sides):
        if fast[side] < margin * slow[side]:
            found = side
        else:
            break
    return found


def _compile_in_workers(tiles, progress):
    """Compile each tile's serial driver (float32) into Numba's cache, one process per core."""
    workers = max(1, min(len(tiles), os.cpu_count() or 1))
    env = dict(os.environ, NUMBANET_BACKGROUND_COMPILE="0", NUMBA_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "numbanet.tune", ",".join(t.name for t in tiles[i::workers])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(workers)]
    failed = []
    for proc in procs:
        for line in proc.stdout:
            if line.startswith("compiled "):
                progress.update(1)
        if proc.wait() != 0:
            failed.append(proc.stderr.read()[-2000:])
    if failed:
        raise RuntimeError("numbanet tune: compiling a candidate failed:\n" + "\n".join(failed))


def _compile_only(names):
    """The worker: compile the serial driver of each named tile."""
    # Importing a kernel module puts it under the cache lock (kernels/cpu/__init__.py):
    # the workers share one cache with each other and with every later process.
    from numbanet.kernels.cpu import machine as machine_info, tuning
    from numbanet.kernels.cpu.tiles import Tile
    m = machine_info.describe()
    for name in names.split(","):
        tile = Tile.parse(name)
        kc, mc = tuning.derived_blocking(tile, m)
        _runner(tuning.Choice(tile, kc, mc, 1 << 40, 1 << 40), (9, 33, 5), 1)()
        print("compiled", name, flush=True)


def search(machine=None, tiles=None, sizes=FULL, out=None):
    """Run the plan; -> (Choice, measured dict). Prints a progress bar to `out` (sys.stderr
    as it is when called: a stream bound at import may have been replaced and closed since)."""
    out = sys.stderr if out is None else out
    import numba
    from tqdm import tqdm
    from numbanet import kernels
    from numbanet.kernels.cpu import machine as machine_info, tuning
    kernels.get_backend("cpu")
    machine = machine or machine_info.describe()
    tiles, steps = plan(machine, tiles, sizes)
    threads = numba.get_num_threads()
    start = time.perf_counter()
    measured = {"threads": threads, "load_before": _load()}
    with tqdm(total=len(steps), desc="numbanet tune", unit="step", file=out) as bar:
        bar.set_postfix_str("compiling candidates")
        _compile_in_workers(tiles, bar)
        measured["compile_candidates_s"] = round(time.perf_counter() - start, 1)

        flops = 2.0 * np.prod(sizes.tile)
        runs = {}
        for tile in tiles:
            kc, mc = tuning.derived_blocking(tile, machine)
            runs[tile.name] = _runner(tuning.Choice(tile, kc, mc, 1 << 40, 1 << 40, "given"), sizes.tile, 1)
        # One thread, in this thread: its CPU time, which other processes sharing the core
        # do not inflate as they do the wall-clock time.
        bests = interleaved_best(runs, sizes.seconds, lambda name: bar.set_postfix_str(f"tile {name}"),
                                 lambda name: bar.update(1), clock=time.thread_time)
        rates = {name: flops / t / 1e9 for name, t in bests.items()}
        winner = max(tiles, key=lambda t: rates[t.name])
        measured["tile_gflops_1thread"] = {k: round(v, 1) for k, v in rates.items()}

        bar.set_postfix_str(f"compiling the {winner.name} parallel driver")
        derived = tuning.derive(machine)
        kc, mc = tuning.derived_blocking(winner, machine)
        choice = tuning.Choice(winner, kc, mc, derived.serial_macs, derived.prepack_macs, "given")
        t0 = time.perf_counter()
        _runner(_with(choice, serial_macs=0, prepack_macs=0), (9, 33, 5), threads)()
        measured["compile_parallel_s"] = round(time.perf_counter() - t0, 1)
        bar.update(1)

        flops = 2.0 * np.prod(sizes.blocking)
        grid = _blocking_grid(winner, machine)
        runs = {}
        for kc, mc in dict.fromkeys(grid):
            runs[kc, mc] = _runner(_with(choice, kc=kc, mc=mc, serial_macs=0, prepack_macs=0), sizes.blocking, threads)
        bests = interleaved_best(runs, sizes.seconds, lambda km: bar.set_postfix_str("kc %d mc %d" % km),
                                 lambda km: bar.update(grid.count(km)))
        grid_rates = {km: flops / t / 1e9 for km, t in bests.items()}
        kc, mc = max(grid_rates, key=grid_rates.get)
        choice = _with(choice, kc=kc, mc=mc)
        measured["blocking_gflops"] = {f"kc={k} mc={c}": round(v, 1) for (k, c), v in grid_rates.items()}

        # (one thread, one region split by rows) around serial_macs; (one region, op(b)
        # packed once) around prepack_macs
        paths = {"serial": _with(choice, serial_macs=1 << 40), "split": _with(choice, serial_macs=0, prepack_macs=1 << 40),
                 "prepack": _with(choice, serial_macs=0, prepack_macs=0)}
        found = {}
        for phase, sides, pair in (("serial", sizes.serial, ("serial", "split")),
                                   ("prepack", sizes.prepack, ("split", "prepack"))):
            times = {}
            for side in sides:
                bar.set_postfix_str(f"{pair[0]} or {pair[1]} at {side}^3")
                runs = {path: _runner(paths[path], (side, side, side), threads) for path in pair}
                times[side] = interleaved_best(runs, sizes.seconds)
                bar.update(1)
            side = _crossover(sides, {s: t[pair[0]] for s, t in times.items()}, {s: t[pair[1]] for s, t in times.items()})
            found[phase] = (sides[-1] + 1) ** 3 if side is None else side ** 3
            measured[f"{phase}_ms"] = {f"{s}^3": {p: round(v * 1e3, 4) for p, v in t.items()} for s, t in times.items()}
        choice = tuning.Choice(winner, kc, mc, found["serial"], max(found["prepack"], found["serial"]), "tuned")
    measured["seconds"] = round(time.perf_counter() - start, 1)
    measured["load_after"] = _load()
    measured["tiles_considered"] = [t.name for t in tiles]
    return choice, measured


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def save(choice, machine, measured):
    """Store the choice for `machine` (atomically: a temporary file renamed into place)."""
    from numbanet.kernels.cpu import tuning
    from numbanet.nn.utils import atomic_write
    path = tuning.path_for(machine)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = tuning.record(choice, machine, measured)
    atomic_write(path, lambda f: f.write((json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()), ".json")
    tuning.forget()
    return path


def add_arguments(parser):
    # (the generator's list: importing the kernels would cost every `numbanet` command)
    from numbanet.kernels.cpu._pack_rows_gen import TILES
    parser.add_argument("--tiles", default=None,
                        help="comma-separated micro-kernel shapes to measure, of " + ", ".join(
                            f"{mr}x{nr}" for mr, nr in TILES) + "; default: the ones that fit this CPU's "
                        f"registers, at most {MAX_TILES}")
    parser.add_argument("--dry-run", action="store_true", help="print the machine and the plan, measure nothing")
    # Test-only: every phase on tiny products (tests/test_tune.py).
    parser.add_argument("--sizes", choices=("full", "tiny"), default="full", help=argparse.SUPPRESS)


def main(args):
    from numbanet.kernels.cpu import machine as machine_info, tuning
    from numbanet.kernels.cpu.tiles import Tile
    machine = machine_info.describe()
    try:
        tiles = [Tile.parse(t) for t in args.tiles.split(",")] if args.tiles else None
    except ValueError as e:
        print(f"numbanet tune: --tiles: {e}", file=sys.stderr)
        return 2
    sizes = TINY if args.sizes == "tiny" else FULL
    tiles, steps = plan(machine, tiles, sizes)
    print(f"machine: {machine.describe()}")
    print(f"in force: {tuning.current().describe()} ({tuning.current().origin()})")
    print(f"plan: {len(steps)} steps: {', '.join(t.name for t in tiles)} compiled and timed on one thread, "
          f"the winner's KC x MC grid ({len(GRID) ** 2}), {len(sizes.serial)} + {len(sizes.prepack)} threshold sizes")
    if args.dry_run:
        return 0
    busy = _load()
    if busy is not None and busy > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {busy} on {os.cpu_count()} CPUs: other processes share the cores, so the "
              "timings (the thread thresholds most) will not be this machine's; run `numbanet tune` again when "
              "it is idle", file=sys.stderr)
    choice, measured = search(machine, tiles, sizes)
    path = save(choice, machine, measured)
    rates = measured["tile_gflops_1thread"]
    print("one thread, GFLOP/s at %dx%dx%d: " % sizes.tile + ", ".join(f"{k} {v}" for k, v in rates.items()))
    print(f"chose: {choice.describe()}")
    print(f"stored: {path} (search {measured['seconds']} s, load average {measured['load_before']} before, "
          f"{measured['load_after']} after)")
    return 0


if __name__ == "__main__":
    _compile_only(sys.argv[1])
