"""The attention family: fused scaled-dot-product attention and its backward, on
kernels/<backend>/attention.py."""
import math

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair


def attention_shapes(op, q, k, v, scale):
    """q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv) -> (B, Tq, Tk, H, D, Dv, scale);
    scale None -> 1 / sqrt(D)."""
    for name, arr in (("q", q), ("k", k), ("v", v)):
        shapes.check_float(op, name, arr)
        shapes.check_ndim(op, name, arr, 4, "(batch, time, heads, head_dim)")
        shapes.check_nonempty(op, name, arr)
    shapes.check_same_dtype(op, [("q", q), ("k", k), ("v", v)])
    bsz, tq, h, d = (int(s) for s in q.shape)
    got = f"(q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}, v.shape={tuple(v.shape)})"
    if k.shape[0] != bsz or v.shape[0] != bsz:
        raise ValueError(f"{op}: q, k and v must have the same batch size {got}")
    if k.shape[2] != h or v.shape[2] != h:
        raise ValueError(f"{op}: q, k and v must have the same number of heads {got}")
    if k.shape[3] != d:
        raise ValueError(f"{op}: q and k must have the same head dimension {got}")
    if v.shape[1] != k.shape[1]:
        raise ValueError(f"{op}: k and v must have the same number of keys (axis 1) {got}")
    scale = 1.0 / math.sqrt(d) if scale is None else shapes.float_scalar(op, "scale", scale)
    return bsz, tq, int(k.shape[1]), h, d, int(v.shape[3]), scale


def attention(be, q, k, v, *, causal=False, scale=None):
    """Fused scaled-dot-product attention: -> (out, lse).

    q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv) -> out (B, Tq, H, Dv), the layout
    a layer's projections produce, without transposes. lse (B, H, Tq) is the log-sum-exp
    of each query row's scaled, masked scores; attention_backward recomputes the
    probabilities from it. scale defaults to 1 / sqrt(D); causal keeps key j for query i
    only where j <= i (Keras's top-left aligned mask)."""
    op = "attention"
    causal = shapes.flag(op, "causal", causal)
    q, k, v = be._prepare(op, q=q, k=k, v=v)
    bsz, tq, _, h, _, dv, scale = attention_shapes(op, q, k, v, scale)
    out = be.empty((bsz, tq, h, dv), q.dtype)
    lse = be.empty((bsz, h, tq), q.dtype)
    be.attn.attention_forward(q, k, v, out, lse, causal, scale)
    return out, lse


def attention_backward(be, q, k, v, out, dout, lse, *, causal=False, scale=None):
    """-> (dq, dk, dv) of sum(dout * out) for out, lse = attention(q, k, v, causal, scale)."""
    op = "attention_backward"
    causal = shapes.flag(op, "causal", causal)
    q, k, v, out, dout, lse = be._prepare(op, q=q, k=k, v=v, out=out, dout=dout, lse=lse)
    bsz, tq, _, h, _, dv, scale = attention_shapes(op, q, k, v, scale)
    for name, arr in (("out", out), ("dout", dout), ("lse", lse)):
        shapes.check_float(op, name, arr)
    shapes.check_same_dtype(op, [("q", q), ("out", out), ("dout", dout), ("lse", lse)])
    shapes.check_shape(op, "out", out, (bsz, tq, h, dv))
    shapes.check_shape(op, "dout", dout, (bsz, tq, h, dv))
    shapes.check_shape(op, "lse", lse, (bsz, h, tq))
    dq = be.empty(tuple(q.shape), q.dtype)
    dk = be.empty(tuple(k.shape), q.dtype)
    dv_ = be.empty(tuple(v.shape), q.dtype)
    be.attn.attention_backward(q, k, v, out, dout, lse, dq, dk, dv_, causal, scale)
    return dq, dk, dv_



# --------------------------------------------------------------------------- warm-ups

def _warm_attention(be, dt):
    q = be.zeros((2, 5, 2, 4), dt)
    for causal in (False, True):
        be.attention(q, q, q, causal=causal)


def _warm_attention_backward(be, dt):
    q = be.zeros((2, 5, 2, 4), dt)
    for causal in (False, True):
        out, lse = be.attention(q, q, q, causal=causal)
        be.attention_backward(q, q, q, out, out, lse, causal=causal)


# --------------------------------------------------------------------------- costs (Op.cost)

def _attention_sizes(q, k, v, causal):
    """(score entries computed, D, Dv): B * H * Tq * Tk, halved (with the diagonal) when causal."""
    bsz, tq, h, d = q.shape
    tk, dv = k.shape[1], v.shape[3]
    pairs = tq * tk
    if causal:
        # Query i sees keys 0..i (top-left aligned): the lower triangle of the Tq x Tk scores.
        pairs = tq * (tq + 1) // 2 if tq <= tk else tk * (tk + 1) // 2 + (tq - tk) * tk
    return bsz * h * pairs, d, dv


def _cost_attention(q, k, v, *, causal=False, scale=None):
    # q k^T (a multiply-add per score and D), the online softmax (5 per score: scale,
    # max, exp, sum, rescale) and p v (a multiply-add per score and Dv); out and lse written.
    scores, d, dv = _attention_sizes(q, k, v, causal)
    bsz, tq, h, _ = q.shape
    written = (bsz * tq * h * dv + bsz * h * tq) * cost.itemsize(q)
    return scores * (2 * d + 5 + 2 * dv), cost.nbytes(q, k, v) + written


def _cost_attention_backward(q, k, v, out, dout, lse, *, causal=False, scale=None):
    # The scores recomputed (q k^T) and the probabilities from lse (3 per score), dv += p^T
    # dout, dp = dout v^T, ds = p (dp - rowsum(dout * out)) (2 per score), dq += ds k and
    # dk += ds^T q: five products the size of the forward's.
    scores, d, dv = _attention_sizes(q, k, v, causal)
    flops = scores * (2 * d + 3 + 2 * dv + 2 * dv + 2 + 2 * d + 2 * d)
    return flops, cost.nbytes(q, k, v, out, dout, lse) + cost.nbytes(q, k, v)


FAMILY = Family("attention", module="attention", attr="attn", hot=True, ops=(
    *op_pair(attention, attention_backward, (_warm_attention, _warm_attention_backward),
             (_cost_attention, _cost_attention_backward)),
))
