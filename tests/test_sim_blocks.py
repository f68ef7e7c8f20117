"""tests/sim_blocks.py: the simulator's thread block of greenlets computes what the shipped
one computes, on kernels that share memory across barriers, exit early, count
votes and fail in one thread. Both run here, in the main process: the simulator's kernel
class runs a plain Python function with a simulated `cuda` module swapped in, whatever
NUMBA_ENABLE_CUDASIM says."""
import threading

import numpy as np
import pytest
from numba import cuda, float32

import sim_blocks

from numba.cuda.simulator import kernel, kernelapi

STOCK = kernel.BlockManager
GREENLETS = sim_blocks.greenlet_block_manager(kernel)


def launch(manager, fn, grid, block, *args, monkeypatch):
    """fn[grid, block](*args) under the simulator with `manager` running the blocks; fails
    instead of hanging when a barrier never opens. -> the exception the launch raised, or None."""
    monkeypatch.setattr(kernel, "BlockManager", manager)
    monkeypatch.setattr(kernelapi, "threading", threading if manager is STOCK else sim_blocks._threading_of_greenlets())
    raised = []

    def go():
        try:
            kernel.FakeCUDAKernel(fn, device=False)[grid, block](*args)
        except Exception as exc:   # noqa: BLE001 - handed to the test
            raised.append(exc)

    runner = threading.Thread(target=go, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), f"{manager.__name__}: the launch of {fn.__name__} did not finish"
    return raised[0] if raised else None


def rotate_rounds(x, out):
    """Each round, every thread reads its neighbour's shared value, then all write: wrong
    if a barrier lets one thread through early."""
    sh = cuda.shared.array((4, 32), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    base = (cuda.blockIdx.x * 4 + ty) * 32
    sh[ty, tx] = x[base + tx]
    for _ in range(6):
        cuda.syncthreads()
        v = sh[(ty + 1) % 4, (tx + 1) % 32]
        cuda.syncthreads()
        sh[ty, tx] = v * 2 + 1
    cuda.syncthreads()
    out[base + tx] = sh[ty, tx]


def early_exit_sum(x, n, out):
    """Threads at or past n return before the barriers; the rest reduce through shared memory."""
    sh = cuda.shared.array(64, float32)
    t = cuda.threadIdx.x
    if t >= n:
        return
    sh[t] = x[t]
    cuda.syncthreads()
    if t == 0:
        s = float32(0)
        for i in range(n):
            s += sh[i]
        sh[0] = s
    cuda.syncthreads()
    out[t] = sh[0]


def votes(x, out):
    t = cuda.threadIdx.x
    c = cuda.syncthreads_count(x[t] > 0)
    a = cuda.syncthreads_and(x[t] > 0)
    o = cuda.syncthreads_or(x[t] > 5)
    if t == 0:
        out[0], out[1], out[2] = c, a, o


def one_thread_fails(x, out):
    """Thread 5 reads past x while the others wait at the second barrier."""
    t = cuda.threadIdx.x
    cuda.syncthreads()
    if t == 5:
        out[t] = x[t * 40]
    cuda.syncthreads()
    out[t] = x[t]


@pytest.fixture
def both(monkeypatch):
    def run(fn, grid, block, make_args):
        results = []
        for manager in (STOCK, GREENLETS):
            args = make_args()
            error = launch(manager, fn, grid, block, *args, monkeypatch=monkeypatch)
            results.append((error, [np.array(a) for a in args if isinstance(a, np.ndarray)]))
        return results
    return run


def test_the_greenlet_manager_is_built_on_this_simulator():
    assert GREENLETS is not None and issubclass(GREENLETS, STOCK)


def test_barriers_order_shared_memory_as_the_stock_simulator_does(both):
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 5, 3 * 4 * 32).astype(np.float32)
    (e1, (_, want)), (e2, (_, got)) = both(rotate_rounds, 3, (32, 4), lambda: (x.copy(), np.zeros_like(x)))
    assert e1 is None and e2 is None
    # Independent of both: six rounds of "take the (+1, +1) neighbour, double, add one".
    ref = x.reshape(3, 4, 32).astype(np.float64)
    for _ in range(6):
        ref = np.roll(ref, (-1, -1), axis=(1, 2)) * 2 + 1
    np.testing.assert_array_equal(got, ref.reshape(-1))
    np.testing.assert_array_equal(got, want)


def test_threads_that_returned_do_not_hold_a_barrier(both):
    x = np.arange(64, dtype=np.float32)
    (e1, (_, want)), (e2, (_, got)) = both(early_exit_sum, 1, 64, lambda: (x.copy(), 20, np.full(64, -1, np.float32)))
    assert e1 is None and e2 is None
    np.testing.assert_array_equal(got[:20], np.full(20, x[:20].sum()))
    np.testing.assert_array_equal(got[20:], -1)
    np.testing.assert_array_equal(got, want)


def test_votes_across_the_block(both):
    x = np.array([3, 0, 7, -1, 9, 2, 0, 1], dtype=np.int32)
    (e1, (_, want)), (e2, (_, got)) = both(votes, 1, 8, lambda: (x.copy(), np.zeros(3, np.int32)))
    assert e1 is None and e2 is None
    np.testing.assert_array_equal(got, [np.count_nonzero(x > 0), 0, 1])
    np.testing.assert_array_equal(got, want)


def test_a_failing_thread_raises_from_the_launch_and_frees_the_others(both):
    x = np.arange(16, dtype=np.float32)
    (e1, _), (e2, _) = both(one_thread_fails, 1, 16, lambda: (x.copy(), np.zeros(16, np.float32)))
    assert isinstance(e1, IndexError) and isinstance(e2, IndexError), (e1, e2)
    assert str(e2).startswith("tid=[5, 0, 0] ctaid=[0, 0, 0]"), str(e2)
    assert str(e1).startswith("tid=[5, 0, 0]"), str(e1)


def test_install_swaps_the_manager_in(monkeypatch):
    monkeypatch.setattr(kernel, "BlockManager", STOCK)
    monkeypatch.setattr(kernelapi, "threading", threading)
    assert sim_blocks.install()
    assert kernel.BlockManager.__name__ == "GreenletBlockManager"
    assert kernelapi.threading.current_thread() is threading.current_thread()   # outside a block
