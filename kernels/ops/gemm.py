"""The gemm family: matmul (with a fused bias and activation), dense_backward and
batched_matmul, on kernels/<backend>/gemm.py."""
import math

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op


def matmul_shapes(a, b, trans_a, trans_b, bias, out):
    op = "matmul"
    shapes.check_float(op, "a", a)
    shapes.check_float(op, "b", b)
    shapes.check_ndim(op, "a", a, 2)
    shapes.check_ndim(op, "b", b, 2)
    shapes.check_same_dtype(op, [("a", a), ("b", b), ("bias", bias), ("out", out)])
    m, ka = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if ka != kb:
        raise ValueError(f"{op}: inner dimensions differ: op(a) is {m}x{ka}, op(b) is {kb}x{n} "
                         f"(a.shape={tuple(a.shape)}, trans_a={trans_a}, b.shape={tuple(b.shape)}, trans_b={trans_b})")
    if m == 0 or n == 0 or ka == 0:
        raise ValueError(f"{op}: empty operand (a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)})")
    if bias is not None:
        shapes.check_float(op, "bias", bias)
        shapes.check_shape(op, "bias", bias, (n,))
    if out is not None:
        shapes.check_float(op, "out", out)
        shapes.check_shape(op, "out", out, (m, n))
    return m, n, ka


def batched_matmul_shapes(a, b, trans_a, trans_b, out):
    """-> (lead, m, n, k): op(a) (..., M, K) @ op(b) (..., K, N) with identical leading dims."""
    op = "batched_matmul"
    shapes.check_float(op, "a", a)
    shapes.check_float(op, "b", b)
    shapes.check_same_dtype(op, [("a", a), ("b", b), ("out", out)])
    for name, arr in (("a", a), ("b", b)):
        if arr.ndim < 3:
            raise ValueError(f"{op}: {name} must have rank >= 3 (..., rows, cols), got {arr.ndim}-D "
                             f"({name}.shape={tuple(arr.shape)}); use matmul for 2-D operands")
    if tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        raise ValueError(f"{op}: leading dimensions differ: a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)} "
                         "(they must be identical; nothing is broadcast)")
    nd = a.ndim
    m, ka = (a.shape[nd - 1], a.shape[nd - 2]) if trans_a else (a.shape[nd - 2], a.shape[nd - 1])
    kb, n = (b.shape[nd - 1], b.shape[nd - 2]) if trans_b else (b.shape[nd - 2], b.shape[nd - 1])
    if ka != kb:
        raise ValueError(f"{op}: inner dimensions differ: op(a) is {m}x{ka}, op(b) is {kb}x{n} "
                         f"(a.shape={tuple(a.shape)}, trans_a={trans_a}, b.shape={tuple(b.shape)}, trans_b={trans_b})")
    shapes.check_nonempty(op, "a", a)
    shapes.check_nonempty(op, "b", b)
    lead = tuple(int(s) for s in a.shape[:-2])
    if out is not None:
        shapes.check_float(op, "out", out)
        shapes.check_shape(op, "out", out, lead + (m, n))
    return lead, int(m), int(n), int(ka)


def matmul(be, a, b, *, trans_a=False, trans_b=False, bias=None, activation=None, out=None):
    """c = act(op(a) @ op(b) (+ bias over rows)); op transposes when asked; activation
    None, "linear", "relu", "sigmoid" or "tanh", applied as the product is written."""
    activation = shapes.check_activation("matmul", activation)
    trans_a, trans_b = shapes.flag("matmul", "trans_a", trans_a), shapes.flag("matmul", "trans_b", trans_b)
    a, b, bias = be._prepare("matmul", ("bias",), a=a, b=b, bias=bias)
    if out is not None:
        # After _prepare: a non-contiguous view of out has become a copy by now.
        be._check_written("matmul", "out", out, [("a", a), ("b", b), ("bias", bias)])
    m, n, _ = matmul_shapes(a, b, trans_a, trans_b, bias, out)
    if out is None:
        out = be.empty((m, n), a.dtype)
    be.gemm.matmul(a, b, trans_a, trans_b, bias, out, activation)
    return out


def dense_backward(be, x, w, dy, *, compute_dx=True, grads=None):
    """Gradients of y = x @ w + b: -> (dx, dw, db); dx is None when compute_dx=False.
    dw and db are views of one buffer, (in + 1) x out, `grads` when given: the gpu
    computes both with one GEMM (db as the product's extra row, x^T augmented by a
    row of ones)."""
    op = "dense_backward"
    x, w, dy = be._prepare(op, x=x, w=w, dy=dy)
    for name, arr in (("x", x), ("w", w), ("dy", dy)):
        shapes.check_float(op, name, arr)
        shapes.check_ndim(op, name, arr, 2)
    shapes.check_same_dtype(op, [("x", x), ("w", w), ("dy", dy)])
    n, units = x.shape[0], w.shape[1]
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"{op}: x has {x.shape[1]} features but w expects {w.shape[0]} "
                         f"(x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)})")
    shapes.check_shape(op, "dy", dy, (n, units))
    dwdb = be._grads_buffer(op, grads, (w.shape[0] + 1) * units, w.dtype, [("x", x), ("w", w), ("dy", dy)])
    dw = be.reshape(dwdb[:w.size], w.shape)
    db = dwdb[w.size:]
    dx = be.empty(x.shape, x.dtype) if compute_dx else None
    be.gemm.dense_backward(x, w, dy, dx, be.reshape(dwdb, (w.shape[0] + 1, units)))
    return dx, dw, db


def batched_matmul(be, a, b, *, trans_a=False, trans_b=False, out=None):
    """c[..., :, :] = op(a[...]) @ op(b[...]) over identical leading dimensions (rank >= 3;
    nothing is broadcast); op transposes the last two axes when asked."""
    op = "batched_matmul"
    trans_a, trans_b = shapes.flag(op, "trans_a", trans_a), shapes.flag(op, "trans_b", trans_b)
    a, b = be._prepare(op, a=a, b=b)
    if out is not None:
        be._check_written(op, "out", out, [("a", a), ("b", b)])
    lead, m, n, _ = batched_matmul_shapes(a, b, trans_a, trans_b, out)
    z = math.prod(int(d) for d in lead)
    if out is None:
        out = be.empty(lead + (m, n), a.dtype)
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    be.gemm.batched_matmul(be.reshape(a, (z,) + a_shape[-2:]), be.reshape(b, (z,) + b_shape[-2:]),
                           trans_a, trans_b, be.reshape(out, (z, m, n)))
    return out



# --------------------------------------------------------------------------- warm-ups

def _warm_matmul(be, dt):
    x, w, b = be.zeros((3, 5), dt), be.zeros((5, 4), dt), be.zeros((4,), dt)
    for act in shapes.EPILOGUE_ACTIVATIONS:
        be.matmul(x, w, bias=b, activation=act)
    be.matmul(be.zeros((5, 3), dt), be.zeros((4, 5), dt), trans_a=True, trans_b=True)
    # The cpu multiplies on one thread below gemm.serial_below() multiply-adds and through
    # its parallel driver above (one product that size), and applies an activation to a
    # large output in a threaded pass (threads.SERIAL_MAX).
    macs = be.gemm.serial_below() if hasattr(be.gemm, "serial_below") else 1
    be.matmul(be.zeros((64, 256), dt), be.zeros((256, -(-macs // (64 * 256))), dt))
    be.matmul(be.zeros((512, 64), dt), be.zeros((64, 256), dt), activation="relu")


def _warm_dense_backward(be, dt):
    x, w, dy = be.zeros((3, 5), dt), be.zeros((5, 4), dt), be.zeros((3, 4), dt)
    be.dense_backward(x, w, dy, compute_dx=True)
    be.dense_backward(x, w, dy, compute_dx=False)


def _warm_batched_matmul(be, dt):
    be.batched_matmul(be.zeros((2, 3, 4), dt), be.zeros((2, 5, 4), dt), trans_b=True)
    be.batched_matmul(be.zeros((2, 4, 3), dt), be.zeros((2, 4, 5), dt), trans_a=True)


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_matmul(a, b, *, trans_a=False, trans_b=False, bias=None, activation=None, out=None):
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    epilogue = (bias is not None) + cost.activation_flops(activation)
    return 2 * m * n * k + epilogue * m * n, cost.nbytes(a, b, bias) + m * n * cost.itemsize(a)


def _cost_dense_backward(x, w, dy, *, compute_dx=True, grads=None):
    # dw = x^T dy and db = the column sums of dy; dx = dy w^T when asked.
    (m, k), n = x.shape, w.shape[1]
    products = 2 if compute_dx else 1
    flops = products * 2 * m * n * k + m * n
    written = cost.nbytes(w) + n * cost.itemsize(w) + (cost.nbytes(x) if compute_dx else 0)
    return flops, cost.nbytes(x, dy) + (cost.nbytes(w) if compute_dx else 0) + written


def _cost_batched_matmul(a, b, *, trans_a=False, trans_b=False, out=None):
    nd = a.ndim
    m, k = (a.shape[nd - 1], a.shape[nd - 2]) if trans_a else (a.shape[nd - 2], a.shape[nd - 1])
    n = b.shape[nd - 2] if trans_b else b.shape[nd - 1]
    z = cost.size(a) // (m * k)
    return 2 * z * m * n * k, cost.nbytes(a, b) + z * m * n * cost.itemsize(a)


FAMILY = Family("gemm", module="gemm", attr="gemm", hot=True, ops=(
    Op("matmul", matmul, backward="dense_backward", warmup=_warm_matmul, cost=_cost_matmul),
    Op("dense_backward", dense_backward, warmup=_warm_dense_backward, cost=_cost_dense_backward),
    Op("batched_matmul", batched_matmul, warmup=_warm_batched_matmul, cost=_cost_batched_matmul),
))
