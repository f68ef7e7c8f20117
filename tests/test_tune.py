"""numbanet/tune.py and `numbanet tune`: the search's plan is bounded, its selection rules
pick what the timings say, and a tiny real search (test-only sizes, two candidates, a
temporary cache directory) stores a file that a fresh process then uses."""
import json
import os
import subprocess
import sys

import pytest

from numbanet import tune
from numbanet.kernels.cpu import machine, tuning
from numbanet.kernels.cpu.tiles import Tile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake(isa, fma=2):
    lanes, registers = {"avx512": (16, 32), "avx2": (8, 16), "sse2": (4, 16)}[isa]
    return machine.Machine("Test CPU", "testcore", frozenset(), isa, lanes, registers, fma, True, 32768, 1 << 20, 0)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "sse2"])
def test_the_plan_is_bounded(isa):
    m = fake(isa)
    tiles, steps = tune.plan(m)
    assert 1 <= len(tiles) <= tune.MAX_TILES
    # compile + time each tile, compile the winner's parallel driver, a 3 x 3 blocking
    # grid, and the threshold sizes: nothing else, whatever the machine.
    assert len(steps) == 2 * len(tiles) + 1 + 9 + len(tune.FULL.serial) + len(tune.FULL.prepack)
    assert all(s.phase in ("compile", "tile", "blocking", "serial", "prepack") for s in steps)
    assert all(t.nr % m.lanes == 0 for t in tiles) or tiles == [tuning.derived_tile(m)]


def test_the_plan_measures_given_tiles_only():
    tiles, steps = tune.plan(fake("avx512"), [Tile(8, 16)], tune.TINY)
    assert tiles == [Tile(8, 16)]
    assert [s.what for s in steps if s.phase == "tile"] == ["8x16"]


def test_blocking_grid_is_three_by_three_around_the_derived_values():
    m = fake("avx512")
    tile = Tile(8, 32)
    kc, mc = tuning.derived_blocking(tile, m)
    grid = tune._blocking_grid(tile, m)
    assert len(grid) == 9
    assert (kc, mc) in grid
    assert sorted({k for k, _ in grid}) == [kc // 2, kc, 2 * kc]
    assert all(c % tile.mr == 0 for _, c in grid)


def test_crossover_takes_the_side_from_which_the_fast_path_always_wins():
    sides = (1, 2, 3, 4)
    slow = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}
    assert tune._crossover(sides, slow, {1: 0.5, 2: 1.2, 3: 0.5, 4: 0.5}) == 3
    assert tune._crossover(sides, slow, {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5}) == 1
    assert tune._crossover(sides, slow, {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.99}) is None   # within the margin


def test_best_time_keeps_the_fastest_and_runs_at_least_three_times():
    calls = []
    delays = iter([0.0, 0.02, 0.001, 0.03, 0.0, 0.0, 0.0])

    def fn():
        calls.append(1)
        __import__("time").sleep(next(delays))

    t = tune.best_time(fn, 0.0)
    assert len(calls) == 4 and t < 0.01   # one untimed call, then three


def test_interleaved_best_takes_turns():
    order = []
    runs = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    best = tune.interleaved_best(runs, 0.0, rounds=2)
    assert set(best) == {"a", "b"}
    # each round: a's calls, then b's (one untimed + three timed each)
    assert order == ["a"] * 4 + ["b"] * 4 + ["a"] * 4 + ["b"] * 4


def _cli(*args, tuning_dir, timeout=900):
    env = dict(os.environ, NUMBANET_TUNING_DIR=str(tuning_dir), NUMBANET_BACKGROUND_COMPILE="0")
    env.pop(tuning.SWITCH_ENV, None)
    return subprocess.run([sys.executable, "-m", "numbanet.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_help_names_the_options(tmp_path):
    proc = _cli("tune", "--help", tuning_dir=tmp_path)
    assert proc.returncode == 0
    assert "--tiles" in proc.stdout and "--dry-run" in proc.stdout
    assert "--sizes" not in proc.stdout   # test-only


def test_bad_tiles_are_refused_with_the_candidates(tmp_path):
    proc = _cli("tune", "--tiles", "8x32,7x7", tuning_dir=tmp_path)
    assert proc.returncode == 2
    assert "numbanet tune: --tiles: gemm tile: no candidate micro-kernel is 7x7; the candidates are" in proc.stderr
    assert not os.listdir(tmp_path)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    proc = _cli("tune", "--dry-run", tuning_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, steps = tune.plan(machine.describe())
    assert f"plan: {len(steps)} steps" in proc.stdout
    assert not os.listdir(tmp_path)


def test_a_tiny_search_stores_a_choice_that_the_next_process_uses(tmp_path):
    proc = _cli("tune", "--tiles", "8x16,4x16", "--sizes", "tiny", tuning_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = os.listdir(tmp_path)
    assert len(files) == 1 and not files[0].startswith(".tmp")   # renamed into place, no temporary left
    path = str(tmp_path / files[0])
    assert path == tuning.path_for(machine.describe(), str(tmp_path))
    with open(path) as f:
        doc = json.load(f)
    choice = tuning.parse(doc, machine.describe())
    assert choice.tile.name in ("8x16", "4x16")
    measured = doc["measured"]
    assert set(measured["tile_gflops_1thread"]) == {"8x16", "4x16"}
    # The winner is the faster of the two, by the search's own numbers.
    rates = measured["tile_gflops_1thread"]
    assert choice.tile.name == max(rates, key=rates.get)
    assert f"kc={choice.kc} mc={choice.mc}" in measured["blocking_gflops"]
    assert "stored: " + path in proc.stdout and "100%" in proc.stderr   # the progress bar ran to its end
    info = _cli("info", tuning_dir=tmp_path)
    assert info.returncode == 0, info.stderr
    assert f"tuned file {path}" in info.stdout
    assert f"{choice.tile.name} micro-kernel, KC {choice.kc}, MC {choice.mc}" in info.stdout
