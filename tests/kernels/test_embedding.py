"""embedding / embedding_backward against NumPy, the scatter-add's summation order, range checks."""
import numpy as np
import pytest

from helpers import check_grad, check_op, randn


def ids_for(shape, v, dtype, seed=0):
    return np.random.default_rng(seed).integers(0, v, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("v,d,ids_shape", [(1, 1, (1,)), (7, 3, (5,)), (10, 16, (2, 9)), (65, 33, (3, 4, 5))])
def test_embedding_forward(be, v, d, ids_shape, id_dtype, dtype):
    table = randn((v, d), dtype)
    ids = ids_for(ids_shape, v, id_dtype)
    got = check_op(be, lambda be, t, i: be.embedding(t, i), [table, ids], lambda t, i: t[i])
    assert got.shape == ids_shape + (d,)


def scatter_add_in_order(ids, dout, v):
    """dtable row by row in increasing position order, in dout's own dtype: the order the
    op promises, so float32 results must match bit for bit."""
    d = dout.shape[-1]
    flat_ids = ids.reshape(-1)
    flat = dout.reshape(-1, d)
    dtable = np.zeros((v, d), dout.dtype)
    for i in range(flat_ids.shape[0]):
        dtable[flat_ids[i]] += flat[i]
    return dtable


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("v,d,ids_shape", [(1, 1, (1,)), (7, 3, (5,)), (3, 5, (4, 8)), (65, 17, (3, 4, 5)),
                                           (500, 2, (40,))])
def test_embedding_backward_sums_in_position_order(be, small, v, d, ids_shape, id_dtype, dtype):
    ids = ids_for(ids_shape, v, id_dtype, seed=v)
    dout = randn(ids_shape + (d,), dtype, seed=1)
    got = be.to_numpy(be.embedding_backward(be.asarray(ids), be.asarray(dout), v))
    assert got.dtype == np.dtype(dtype) and got.shape == (v, d)
    np.testing.assert_array_equal(got, scatter_add_in_order(ids, dout, v))


def test_embedding_backward_rows_without_ids_are_zero(be):
    ids = np.array([[4, 4], [1, 4]], np.int32)
    dout = np.ones((2, 2, 3), np.float32)
    got = be.to_numpy(be.embedding_backward(be.asarray(ids), be.asarray(dout), 6))
    np.testing.assert_array_equal(got, [[0] * 3, [1] * 3, [0] * 3, [0] * 3, [3] * 3, [0] * 3])


def test_embedding_gradient_finite_differences(be):
    table = randn((6, 4), np.float64)
    ids = np.array([[0, 5, 5], [2, 0, 5]], np.int64)
    r = randn((2, 3, 4), np.float64, seed=2)

    def loss(be, table, ids, r):
        return float(np.sum(be.to_numpy(be.embedding(table, ids)) * be.to_numpy(r)))

    def backward(be, table, ids, r):
        return be.embedding_backward(ids, r, 6)

    check_grad(be, loss, backward, [table, ids, r], wrt=[0])


def test_embedding_backward_is_deterministic(be, small):
    n, v = (40, 3) if small else (20000, 50)
    ids = be.asarray(ids_for((n,), v, np.int32, seed=3))
    dout = be.asarray(randn((n, 8), np.float32, seed=4))
    first = be.to_numpy(be.embedding_backward(ids, dout, v)).tobytes()
    for _ in range(2):
        assert be.to_numpy(be.embedding_backward(ids, dout, v)).tobytes() == first


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad_id,pos", [(7, 2), (-1, 0), (2 ** 40, 1)])
def test_embedding_ids_out_of_range(be, bad_id, pos):
    ids = np.array([[1, 2], [3, 4]], np.int64)  # int64: 2**40 fits
    ids.reshape(-1)[pos] = bad_id
    table = be.asarray(randn((7, 3), np.float32))
    with pytest.raises(ValueError, match=rf"embedding: ids\[{pos}\]={bad_id} is out of range for an embedding "
                                         rf"table of 7 rows \(expected values in \[0, 7\)\)"):
        be.embedding(table, be.asarray(ids))
    with pytest.raises(ValueError, match=rf"embedding_backward: ids\[{pos}\]={bad_id} is out of range for "
                                         rf"input_dim=7 rows \(expected values in \[0, 7\)\)"):
        be.embedding_backward(be.asarray(ids), be.asarray(np.ones((2, 2, 3), np.float32)), 7)


def test_embedding_unchecked_bad_ids_stay_inside_the_arrays(be):
    """With the caller's _ids_checked=True a bad id is not caught, but it never reads or
    writes outside the table: its output row is 0 and its gradient is dropped."""
    table = randn((5, 3), np.float32)
    ids = np.array([4, -3, 9, 0, 2 ** 31 - 1], np.int32)
    out = be.to_numpy(be.embedding(be.asarray(table), be.asarray(ids), _ids_checked=True))
    np.testing.assert_array_equal(out, [table[4], np.zeros(3), np.zeros(3), table[0], np.zeros(3)])
    dout = randn((5, 3), np.float32, seed=1)
    dtable = be.to_numpy(be.embedding_backward(be.asarray(ids), be.asarray(dout), 5, _ids_checked=True))
    want = np.zeros((5, 3), np.float32)
    want[4], want[0] = dout[0], dout[3]
    np.testing.assert_array_equal(dtable, want)


def test_embedding_rejects_bad_input(be):
    table = be.asarray(np.ones((5, 3), np.float32))
    ids = be.asarray(np.array([0, 1], np.int32))
    with pytest.raises(TypeError, match=r"embedding: ids must be an integer array, got float32"):
        be.embedding(table, be.asarray(np.array([0.0, 1.0], np.float32)))
    with pytest.raises(TypeError, match=r"embedding: ids must be int32 or int64, got uint8"):
        be.embedding(table, be.asarray(np.array([0, 1], np.uint8)))
    with pytest.raises(TypeError, match=r"embedding: table must be float32 or float64, got int32"):
        be.embedding(be.asarray(np.ones((5, 3), np.int32)), ids)
    with pytest.raises(ValueError, match=r"embedding: table must be 2-D \(input_dim, output_dim\)"):
        be.embedding(be.asarray(np.ones(5, np.float32)), ids)
    with pytest.raises(ValueError, match=r"embedding: ids is empty"):
        be.embedding(table, be.asarray(np.zeros((0,), np.int32)))
    dout = be.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"embedding_backward: input_dim must be at least 1, got 0"):
        be.embedding_backward(ids, dout, 0)
    with pytest.raises(TypeError, match=r"embedding_backward: input_dim must be an int, got 2.5"):
        be.embedding_backward(ids, dout, 2.5)
    with pytest.raises(ValueError, match=r"embedding_backward: dout must have shape ids.shape \+ \(output_dim,\)"):
        be.embedding_backward(ids, be.asarray(np.ones((3, 3), np.float32)), 5)
    with pytest.raises(TypeError, match=r"embedding_backward: dout must be float32 or float64"):
        be.embedding_backward(ids, be.asarray(np.ones((2, 3), np.int32)), 5)
