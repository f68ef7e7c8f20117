"""matmul: every backend against float64 NumPy `@`, including the edge shapes of the tiled kernel."""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from numbanet.kernels.cpu._pack_rows import TILE_SHAPES
from helpers import check_op, randn

# `be` only selects a backend object, so sharing it across generated examples is safe.
HYPOTHESIS = settings(max_examples=6 if simulated() else 25, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def matmul_op(be, a, b, bias=None, *, trans_a=False, trans_b=False):
    return be.matmul(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias)


def matmul_ref(a, b, bias=None, *, trans_a=False, trans_b=False):
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    c = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)
    if bias is not None:
        c = c + bias.astype(np.float64)
    return c.astype(a.dtype)


def operands(m, n, k, trans_a, trans_b, dtype, seed=0):
    a = randn((k, m) if trans_a else (m, k), dtype, seed)
    b = randn((n, k) if trans_b else (k, n), dtype, seed + 1)
    return a, b


def shrink(small, *dims):
    return tuple(min(d, 5) for d in dims) if small else dims


# Sizes straddle the kernel's tiles (MR=8, NR=16, MC=128, KC=256) and include primes,
# single rows/columns and K both tiny and longer than one or two KC slices.
SHAPES = [
    (1, 1, 1), (1, 67, 13), (67, 1, 13), (5, 7, 1), (8, 16, 256), (9, 17, 257),
    (128, 32, 7), (129, 15, 31), (101, 3, 600), (2, 2, 1000), (257, 33, 5), (7, 127, 513),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matmul_shapes(be, small, m, n, k, dtype):
    m, n, k = shrink(small, m, n, k)
    a, b = operands(m, n, k, False, False, dtype)
    check_op(be, matmul_op, [a, b], matmul_ref, k=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_transposes_and_bias(be, small, trans_a, trans_b, dtype):
    m, n, k = shrink(small, 37, 71, 300)
    a, b = operands(m, n, k, trans_a, trans_b, dtype, seed=3)
    bias = randn((n,), dtype, seed=9)
    check_op(be, matmul_op, [a, b, bias], matmul_ref, kwargs={"trans_a": trans_a, "trans_b": trans_b}, k=k)


@HYPOTHESIS
@given(m=st.integers(1, 140), n=st.integers(1, 140), k=st.integers(1, 300),
       trans_a=st.booleans(), trans_b=st.booleans(), with_bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matmul_hypothesis(be, small, m, n, k, trans_a, trans_b, with_bias, dtype):
    m, n, k = shrink(small, m, n, k)
    a, b = operands(m, n, k, trans_a, trans_b, dtype, seed=m * 7 + n)
    inputs = [a, b, randn((n,), dtype, seed=2) if with_bias else None]
    check_op(be, matmul_op, inputs, matmul_ref, kwargs={"trans_a": trans_a, "trans_b": trans_b}, k=k)


def test_matmul_out_is_written_and_returned(be, small):
    m, n, k = shrink(small, 30, 70, 20)
    a, b = operands(m, n, k, False, False, np.float32, seed=5)
    out = be.asarray(np.full((m, n), np.nan, np.float32))
    got = be.matmul(be.asarray(a), be.asarray(b), out=out)
    assert got is out
    np.testing.assert_allclose(be.to_numpy(out), matmul_ref(a, b), rtol=1e-4, atol=1e-4)


def test_matmul_non_contiguous_inputs(be, small):
    """Slices and transposed views are handled by the public op (copied, never misread)."""
    m, n, k = shrink(small, 23, 45, 31)
    big_a = randn((2 * m, 3 * k), np.float64, seed=11)
    big_b = randn((n, k), np.float64, seed=12)
    a = big_a[::2, 1::3]
    b_view = big_b.T
    assert not a.flags.c_contiguous and not b_view.flags.c_contiguous
    # The cpu backend takes the views themselves; another backend gets them uploaded.
    on_backend = (lambda v: v) if be.name == "cpu" else be.asarray
    got = be.to_numpy(be.matmul(on_backend(a), on_backend(b_view)))
    np.testing.assert_allclose(got, a @ b_view, rtol=1e-10, atol=1e-10 * k)


def test_matmul_is_deterministic(be, small):
    """Threads own disjoint rows of out, so repeated runs agree bit for bit."""
    m, n, k = shrink(small, 300, 70, 600)
    a, b = operands(m, n, k, False, True, np.float32, seed=17)
    a, b = be.asarray(a), be.asarray(b)
    first = be.to_numpy(be.matmul(a, b, trans_b=True))
    for _ in range(3):
        np.testing.assert_array_equal(be.to_numpy(be.matmul(a, b, trans_b=True)), first)


def test_matmul_float32_stays_float32(be, small):
    """A float32 product must not be computed in float64: its error is float32-sized."""
    # Under the simulator only the output is shrunk: K stays long enough for float32
    # accumulation error to show (one 3x3 tile, K = 1000: 125 K-steps of one block).
    m, n, k = (3, 3, 1000) if small else (8, 8, 4000)
    a, b = operands(m, n, k, False, False, np.float32, seed=21)
    got = be.to_numpy(be.matmul(be.asarray(a), be.asarray(b)))
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert got.dtype == np.float32
    rounded = exact.astype(np.float32)
    # Accumulating K float32 products leaves errors far above one rounding of the exact
    # result (sqrt(K) roundings of partial sums of size ~sqrt(K)); a kernel accumulating
    # in float64 would match that rounding almost everywhere.
    assert np.mean(got != rounded) > 0.5


TILE_NAMES = [f"{mr}x{nr}" for mr, nr in TILE_SHAPES]


# The ways the cpu matmul runs (kernels/cpu/gemm.py: serial; one region split by rows or
# columns; op(b) packed first, then mc-row rectangles), called directly so that every
# split is tried on small shapes, for every candidate tile and two blockings (a small
# kc and mc, so that small shapes cross several KC slices and MC blocks). Shapes straddle
# the tile's MR and NR, mc and kc, and include single rows/columns and K below, at and
# past one and two slices.
WIDE_SHAPES = [(1, 1, 1), (1, 70, 300), (70, 1, 300), (7, 31, 5), (130, 65, 513), (257, 96, 40), (16, 64, 1)]


def _tile_shapes(mr, nr, kc, mc):
    return WIDE_SHAPES + [(mr, nr, kc), (mr + 1, nr + 1, kc + 1), (mr - 1 or 1, nr - 1, 5),
                          (2 * mc + 3, 2 * nr + 1, 2 * kc + 1), (mc, 3 * nr, kc - 1)]


def _choice(tile, kc, mc):
    from numbanet.kernels.cpu.tiles import Tile
    from numbanet.kernels.cpu.tuning import Choice
    return Choice(Tile.parse(tile), kc, mc, 0, 0, "given")


def _wide_all_ways(choice, a, b, trans_a, trans_b, bias, dtype):
    """{decomposition name: out} from every cpu driver and split of the same product."""
    from numbanet.kernels.cpu import gemm
    tile, kc, mc = choice.tile, choice.kc, choice.mc
    m = a.shape[1] if trans_a else a.shape[0]
    bias_arr = gemm.no_bias(dtype) if bias is None else bias
    out_shape = (m, b.shape[0] if trans_b else b.shape[1])
    results = {}
    out = np.full(out_shape, np.nan, dtype)
    gemm._wide_serial(tile, kc, mc, a, b, trans_a, trans_b, bias_arr, out)
    results["serial"] = out
    # (prepack, rows per rectangle, column groups, threads)
    for prepack in (False, True):
        for rstep, ngroups, nparts in ((tile.mr, 1, 1), (tile.mr, 1, 3), (2 * tile.mr, 2, 2), (mc, 3, 4),
                                       (m, 5, 5), (m, 1, 1)):
            rstep = -(-rstep // tile.mr) * tile.mr
            nitems = -(-m // rstep) * ngroups
            out = np.full(out_shape, np.nan, dtype)
            gemm._wide_parallel(tile, a, b, trans_a, trans_b, bias_arr, out, kc, mc, prepack, rstep, ngroups,
                                min(nparts, nitems))
            results[f"prepack={prepack} rstep={rstep} groups={ngroups} parts={nparts}"] = out
    return results


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("tile", TILE_NAMES)
def test_cpu_matmul_every_path_and_split(tile, trans_a, trans_b):
    """Every path of every candidate against float64 NumPy, and, for one tile and
    blocking, all of them equal bit for bit: each element's products are added in one
    order (KC slices in turn) whichever thread computes it."""
    dtype = np.float32
    mr, nr = (int(v) for v in tile.split("x"))
    for kc, mc in ((256, 128 // mr * mr), (40, 3 * mr)):
        choice = _choice(tile, kc, mc)
        for m, n, k in _tile_shapes(mr, nr, kc, mc):
            a, b = operands(m, n, k, trans_a, trans_b, dtype, seed=m + 3 * n + k)
            bias = randn((n,), dtype, seed=4) if (m + n) % 2 else None
            want = matmul_ref(a, b, bias, trans_a=trans_a, trans_b=trans_b).astype(np.float64)
            results = _wide_all_ways(choice, a, b, trans_a, trans_b, bias, dtype)
            first = results["serial"]
            for name, got in results.items():
                where = f"{tile} kc={kc} mc={mc} {m}x{n}x{k} {name}"
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(k), err_msg=where)
                np.testing.assert_array_equal(got, first, err_msg=where)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_cpu_matmul_every_path_float64(trans_a, trans_b):
    from numbanet.kernels.cpu import tuning
    m, n, k = 37, 70, 300
    a, b = operands(m, n, k, trans_a, trans_b, np.float64, seed=8)
    bias = randn((n,), np.float64, seed=5)
    want = matmul_ref(a, b, bias, trans_a=trans_a, trans_b=trans_b)
    for name, got in _wide_all_ways(tuning.current(), a, b, trans_a, trans_b, bias, np.float64).items():
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.sqrt(k), err_msg=name)


def test_cpu_matmul_bits_do_not_depend_on_the_tuning():
    """Every element is one chain of fused multiply-adds, p ascending, from 0 or the bias,
    whatever the tile shape, the blocking (a KC slice ends with the running sum stored
    in out, in float32, and resumes from it) or the path: the tuning in force changes
    speed, never results."""
    from numbanet.kernels.cpu import gemm, tuning
    a, b = operands(45, 70, 700, False, True, np.float32, seed=41)
    bias = randn((70,), np.float32, seed=42)
    want = matmul_ref(a, b, bias, trans_b=True).astype(np.float64)
    first = None
    for tile in sorted({"8x32", "8x16", tuning.current().tile.name}):
        mr = int(tile.split("x")[0])
        for kc, mc in ((64, 2 * mr), (256, 128 // mr * mr), (700, 8 * mr)):
            # serial; one region, split by columns (trans_b); op(b) packed first
            for serial_macs, prepack_macs in ((1 << 40, 1 << 40), (0, 1 << 40), (0, 0)):
                choice = replace(_choice(tile, kc, mc), serial_macs=serial_macs, prepack_macs=prepack_macs)
                out = np.empty((45, 70), np.float32)
                gemm.matmul_with(choice, a, b, False, True, bias, out, 2)
                np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.sqrt(700))
                first = out if first is None else first
                np.testing.assert_array_equal(out, first, err_msg=f"{choice}")


@pytest.mark.parametrize("size", ["serial", "split", "prepacked"])
def test_cpu_matmul_same_on_one_thread_and_all(size):
    """be.matmul at a size each path is chosen for, on 1 thread and on every thread."""
    import numba
    from numbanet.kernels import get_backend
    from numbanet.kernels.cpu import gemm, tuning
    cpu = get_backend("cpu")
    choice = tuning.current()
    serial = gemm.serial_below()
    # A product of each size class for the choice in force (the thresholds differ by machine).
    side = {"serial": max(2, int(round((serial / 2) ** (1 / 3)))),
            "split": int(round(((serial + choice.prepack_macs) / 2) ** (1 / 3))),
            "prepacked": int(round((2 * max(serial, choice.prepack_macs)) ** (1 / 3)))}[size]
    m, n, k = side, side + 3, side + 1
    macs = m * n * k
    assert (macs < serial) == (size == "serial" or (size == "split" and serial > macs))
    assert (macs >= max(choice.prepack_macs, serial)) == (size == "prepacked")
    a, b = operands(m, n, k, False, True, np.float32, seed=31)
    bias = randn((n,), np.float32, seed=32)
    every = cpu.matmul(a, b, trans_b=True, bias=bias)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = cpu.matmul(a, b, trans_b=True, bias=bias)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, every)
    np.testing.assert_allclose(every, matmul_ref(a, b, bias, trans_b=True), rtol=1e-4, atol=1e-4 * np.sqrt(k))


ACTIVATION_REFS = {
    "linear": lambda z: z,
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", list(ACTIVATION_REFS))
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_matmul_fused_activation(be, small, activation, trans_a, trans_b, dtype):
    """matmul(..., activation=a) is a(op(a) @ op(b) + bias), computed in one pass."""
    m, n, k = shrink(small, 33, 70, 40)
    a, b = operands(m, n, k, trans_a, trans_b, dtype, seed=13)
    bias = randn((n,), dtype, seed=14, scale=3.0)

    def ref(a, b, bias, **kw):
        z = matmul_ref(a, b, bias, **kw).astype(np.float64)
        return ACTIVATION_REFS[activation](z).astype(dtype)

    check_op(be, lambda be, a, b, bias, **kw: be.matmul(a, b, bias=bias, activation=activation, **kw),
             [a, b, bias], ref, kwargs={"trans_a": trans_a, "trans_b": trans_b}, k=k, scale=3.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_matmul_fused_relu_at_infinities_and_zeros(be):
    """relu in the epilogue is an exact 0 where the product is <= 0 (-inf, -0 included),
    and passes +inf."""
    a = np.array([[1.0, 1.0], [np.inf, 0.0], [-np.inf, 0.0], [0.0, 0.0], [-1.0, 0.0]], np.float32)
    b = np.array([[1.0, -1.0], [1.0, -1.0]], np.float32)
    fused = be.to_numpy(be.matmul(be.asarray(a), be.asarray(b), activation="relu"))
    want = np.array([[2, 0], [np.inf, 0], [0, np.inf], [0, 0], [0, 1]], np.float32)
    np.testing.assert_array_equal(fused, want)
    assert not np.signbit(fused).any()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_matmul_fused_relu_follows_the_relu_op(be):
    """The epilogue's relu is the relu op's, NaN rule included (relu(NaN) = NaN): fused and
    unfused agree bit for bit."""
    a = np.array([[np.nan, 1.0], [1.0, 1.0], [np.inf, 0.0], [-np.inf, 0.0], [0.0, 0.0]], np.float32)
    b = np.array([[1.0, -1.0], [1.0, -1.0]], np.float32)
    a_, b_ = be.asarray(a), be.asarray(b)
    fused = be.to_numpy(be.matmul(a_, b_, activation="relu"))
    apart = be.to_numpy(be.relu(be.matmul(a_, b_)))
    np.testing.assert_array_equal(fused, apart)
    assert np.isnan(fused[0]).all()


# --------------------------------------------------------------------------- bad input

def bad(be, *arrays):
    return [be.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]


@pytest.mark.parametrize("a_shape,b_shape,kwargs,match", [
    ((3, 4), (5, 6), {}, r"matmul: inner dimensions differ"),
    ((3, 4), (6, 4), {}, r"matmul: inner dimensions differ"),
    ((3, 4, 1), (4, 2), {}, r"matmul: a must be 2-D"),
    ((3, 4), (4,), {}, r"matmul: b must be 2-D"),
    ((0, 4), (4, 2), {}, r"matmul: empty operand"),
    ((4, 3), (4, 2), {"trans_a": False}, r"matmul: inner dimensions differ.*trans_a=False"),
])
def test_matmul_rejects_bad_shapes(be, a_shape, b_shape, kwargs, match):
    a, b = bad(be, np.ones(a_shape, np.float32), np.ones(b_shape, np.float32))
    with pytest.raises(ValueError, match=match):
        be.matmul(a, b, **kwargs)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.int64])
def test_matmul_rejects_non_float(be, dtype):
    a, b = bad(be, np.ones((2, 3), dtype), np.ones((3, 2), dtype))
    with pytest.raises(TypeError, match=r"matmul: a must be float32 or float64, got"):
        be.matmul(a, b)


def test_matmul_rejects_mixed_dtypes_and_bad_bias_or_out(be):
    a32, b64 = bad(be, np.ones((2, 3), np.float32), np.ones((3, 2), np.float64))
    with pytest.raises(TypeError, match=r"matmul: b is float64 but a is float32"):
        be.matmul(a32, b64)
    a, b, bias = bad(be, np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"matmul: bias must have shape \(2,\), got \(3,\)"):
        be.matmul(a, b, bias=bias)
    out = be.asarray(np.empty((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"matmul: out must have shape \(2, 2\)"):
        be.matmul(a, b, out=out)
    with pytest.raises(ValueError, match=r"matmul: activation must be None or one of linear, relu, sigmoid, "
                                         r"tanh, got 'softmax'"):
        be.matmul(a, b, activation="softmax")


# --------------------------------------------------------------------------- batched_matmul

def batched_ref(a, b, *, trans_a=False, trans_b=False):
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    return (np.swapaxes(a64, -1, -2) if trans_a else a64) @ (np.swapaxes(b64, -1, -2) if trans_b else b64)


def batched_operands(lead, m, n, k, trans_a, trans_b, dtype, seed=0):
    a = randn(tuple(lead) + ((k, m) if trans_a else (m, k)), dtype, seed)
    b = randn(tuple(lead) + ((n, k) if trans_b else (k, n)), dtype, seed + 1)
    return a, b


# (leading dims, m, n, k): attention-shaped products, single rows/columns, and sizes
# crossing the cpu tiles (MR=8, NR=16, MC=128, KC=256) and the gpu's 64 x 64 x 8 block tile.
BATCHED = [((1,), 1, 1, 1), ((3,), 5, 7, 2), ((2, 3), 17, 33, 9), ((4,), 130, 20, 16),
           ((2,), 9, 129, 300), ((5, 1, 2), 3, 4, 70), ((1,), 200, 3, 5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("lead,m,n,k", BATCHED)
def test_batched_matmul(be, small, lead, m, n, k, trans_a, trans_b, dtype):
    m, n, k = shrink(small, m, n, k)
    lead = tuple(min(s, 2) for s in lead) if small else lead
    a, b = batched_operands(lead, m, n, k, trans_a, trans_b, dtype, seed=m + n)
    check_op(be, lambda be, a, b, **kw: be.batched_matmul(a, b, **kw), [a, b],
             lambda a, b, **kw: batched_ref(a, b, **kw).astype(dtype),
             kwargs={"trans_a": trans_a, "trans_b": trans_b}, k=k)


def test_batched_matmul_each_product_is_its_own(be, small):
    """Every batch entry gets its own operands: a product taken from the wrong entry fails."""
    z, m, n, k = 6, 4, 5, 3
    a = np.zeros((z, m, k))
    b = np.zeros((z, k, n))
    for i in range(z):
        a[i] = i + 1
        b[i] = 10.0 ** i
    got = be.to_numpy(be.batched_matmul(be.asarray(a), be.asarray(b)))
    for i in range(z):
        np.testing.assert_array_equal(got[i], np.full((m, n), k * (i + 1) * 10.0 ** i))


def test_batched_matmul_out_is_written_and_returned(be, small):
    a, b = batched_operands((2, 3), 6, 5, 4, False, True, np.float32, seed=3)
    out = be.asarray(np.full((2, 3, 6, 5), np.nan, np.float32))
    got = be.batched_matmul(be.asarray(a), be.asarray(b), trans_b=True, out=out)
    assert got is out
    np.testing.assert_allclose(be.to_numpy(out), batched_ref(a, b, trans_b=True), rtol=1e-4, atol=1e-5)


def test_batched_matmul_is_deterministic(be, small):
    lead, m, n, k = ((3,), 5, 6, 7) if small else ((8,), 100, 70, 300)
    a, b = batched_operands(lead, m, n, k, True, False, np.float32, seed=5)
    a, b = be.asarray(a), be.asarray(b)
    first = be.to_numpy(be.batched_matmul(a, b, trans_a=True))
    for _ in range(2):
        np.testing.assert_array_equal(be.to_numpy(be.batched_matmul(a, b, trans_a=True)), first)


@pytest.mark.parametrize("a_shape,b_shape,kwargs,exc,match", [
    ((2, 3, 4), (3, 4, 5), {}, ValueError, r"batched_matmul: leading dimensions differ.*nothing is broadcast"),
    ((1, 3, 4), (2, 4, 5), {}, ValueError, r"batched_matmul: leading dimensions differ"),
    ((2, 3, 4), (2, 1, 4, 5), {}, ValueError, r"batched_matmul: leading dimensions differ"),
    ((2, 3, 4), (2, 5, 4), {}, ValueError, r"batched_matmul: inner dimensions differ"),
    ((2, 4, 3), (2, 4, 5), {"trans_a": False}, ValueError, r"batched_matmul: inner dimensions differ.*trans_a=False"),
    ((3, 4), (4, 5), {}, ValueError, r"batched_matmul: a must have rank >= 3.*use matmul"),
    ((2, 3, 4), (4, 5), {}, ValueError, r"batched_matmul: b must have rank >= 3"),
    ((2, 0, 4), (2, 4, 5), {}, ValueError, r"batched_matmul: a is empty"),
])
def test_batched_matmul_rejects_bad_shapes(be, a_shape, b_shape, kwargs, exc, match):
    a, b = bad(be, np.ones(a_shape, np.float32), np.ones(b_shape, np.float32))
    with pytest.raises(exc, match=match):
        be.batched_matmul(a, b, **kwargs)


def test_batched_matmul_rejects_bad_dtypes_and_out(be):
    a, b = bad(be, np.ones((2, 3, 4), np.int32), np.ones((2, 4, 5), np.int32))
    with pytest.raises(TypeError, match=r"batched_matmul: a must be float32 or float64, got int32"):
        be.batched_matmul(a, b)
    a, b = bad(be, np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float64))
    with pytest.raises(TypeError, match=r"batched_matmul: b is float64 but a is float32"):
        be.batched_matmul(a, b)
    a, b = bad(be, np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"batched_matmul: out must have shape \(2, 3, 5\), got \(2, 5, 3\)"):
        be.batched_matmul(a, b, out=be.asarray(np.empty((2, 5, 3), np.float32)))
    with pytest.raises(TypeError, match=r"batched_matmul: out is float64 but a is float32"):
        be.batched_matmul(a, b, out=be.asarray(np.empty((2, 3, 5), np.float64)))
