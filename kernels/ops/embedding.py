"""The embedding family: a table lookup and its deterministic scatter-add backward, on
kernels/<backend>/embedding.py."""
import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair


def check_ids(op, name, ids):
    """Integer token ids: int32 or int64 (other integer types are refused, not cast)."""
    dtype = shapes.check_int(op, name, ids)
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"{op}: {name} must be int32 or int64, got {dtype}")
    shapes.check_nonempty(op, name, ids)


def embedding(be, table, ids, *, _ids_checked=False):
    """out[..., :] = table[ids[...]]: table (V, D), integer ids of any shape -> ids.shape + (D,).

    _ids_checked: the caller has range-checked the ids itself (the gpu's check costs a
    download and a sync); an out-of-range id then reads as a row of zeros."""
    op = "embedding"
    table, ids = be._prepare(op, table=table, ids=ids)
    shapes.check_float(op, "table", table)
    shapes.check_ndim(op, "table", table, 2, "(input_dim, output_dim)")
    shapes.check_nonempty(op, "table", table)
    check_ids(op, "ids", ids)
    v, d = (int(s) for s in table.shape)
    flat = be._flat(ids)
    if not _ids_checked:
        be._check_range(op, "ids", flat, v, f"an embedding table of {v} rows")
    out = be.empty(tuple(ids.shape) + (d,), table.dtype)
    be.embed.embedding_forward(table, flat, be.reshape(out, (ids.size, d)))
    return out


def embedding_backward(be, ids, dout, input_dim, *, _ids_checked=False):
    """dtable (input_dim, D): row v is the sum of dout[i] over the positions i with ids[i] == v,
    added in increasing i (a deterministic scatter-add: no float atomics anywhere).
    _ids_checked as for embedding; an out-of-range id's gradient is then dropped."""
    op = "embedding_backward"
    ids, dout = be._prepare(op, ids=ids, dout=dout)
    check_ids(op, "ids", ids)
    shapes.check_float(op, "dout", dout)
    input_dim = shapes.int_scalar(op, "input_dim", input_dim)
    if input_dim < 1:
        raise ValueError(f"{op}: input_dim must be at least 1, got {input_dim}")
    if dout.ndim != ids.ndim + 1 or tuple(dout.shape)[:-1] != tuple(ids.shape):
        raise ValueError(f"{op}: dout must have shape ids.shape + (output_dim,) = {tuple(ids.shape)} + (D,), "
                         f"got {tuple(dout.shape)}")
    shapes.check_nonempty(op, "dout", dout)
    flat = be._flat(ids)
    if not _ids_checked:
        be._check_range(op, "ids", flat, input_dim, f"input_dim={input_dim} rows")
    d = tuple(dout.shape)[dout.ndim - 1]
    dtable = be.empty((input_dim, d), dout.dtype)
    be.embed.embedding_backward(flat, be.reshape(dout, (ids.size, d)), dtable)
    return dtable



# --------------------------------------------------------------------------- warm-ups

def _ids(be):
    return be.asarray(np.array([[0, 2], [2, 1]], dtype=np.int32))


def _warm_embedding(be, dt):
    be.embedding(be.zeros((3, 4), dt), _ids(be))


def _warm_embedding_backward(be, dt):
    ids = _ids(be)
    be.embedding_backward(ids, be.embedding(be.zeros((3, 4), dt), ids), 3)


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_embedding(table, ids, *, _ids_checked=False):
    # A gather: each id's row read and written.
    return 0, cost.nbytes(ids) + 2 * cost.size(ids) * table.shape[1] * cost.itemsize(table)


def _cost_embedding_backward(ids, dout, input_dim, *, _ids_checked=False):
    # dtable written whole (zeros where no id is), a dout row added per id.
    d = dout.shape[dout.ndim - 1]
    return cost.size(dout), cost.nbytes(ids, dout) + int(input_dim) * d * cost.itemsize(dout)


FAMILY = Family("embedding", module="embedding", attr="embed", ops=(
    *op_pair(embedding, embedding_backward, (_warm_embedding, _warm_embedding_backward),
             (_cost_embedding, _cost_embedding_backward)),
))
