"""Every gpu op against the cpu op on the same small random inputs (float32 and float64),
run-to-run determinism of the gpu kernels, and GEMM / conv shapes at the tile edges.

The cpu backend is the reference here (its own tests check it against NumPy); both are
compared through tests/helpers.py, with the tolerance of a sum of k terms. Shapes stay
tiny: under NUMBA_ENABLE_CUDASIM every CUDA thread is a Python thread.
"""
import numpy as np
import pytest

from numbanet import kernels
from helpers import assert_close, download, randn, tolerances, upload

DTYPES = [np.float32, np.float64]

# The simulator runs the dropout hash in NumPy uint64 scalars, which wrap (as intended,
# and as on the device) but warn; a real GPU never sees this.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning")


@pytest.fixture(scope="module")
def gpu():
    ok, why = kernels.gpu_status()
    assert ok, f"these tests need the gpu backend (real or NUMBA_ENABLE_CUDASIM=1): {why}"
    return kernels.get_backend("gpu")


@pytest.fixture(scope="module")
def cpu():
    return kernels.get_backend("cpu")


def run(be, op, arrays):
    out = download(be, op(be, *upload(be, *arrays) if len(arrays) > 1 else (upload(be, arrays[0]),)))
    return out if isinstance(out, tuple) else (out,)


def compare(gpu, cpu, op, arrays, dtype, k=1, exact=False):
    got = run(gpu, op, arrays)
    want = run(cpu, op, arrays)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None
        elif isinstance(w, float):
            # Host scalars (sum, penalty) come back as Python floats from both backends.
            assert isinstance(g, float)
            rtol, atol = tolerances(dtype, k)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {i}")
        elif exact or not np.issubdtype(np.asarray(w).dtype, np.floating):
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
        else:
            assert_close(g, w, dtype, k=k, what=f"output {i}")
    return got


def onehot(labels, c, dtype):
    y = np.zeros((labels.shape[0], c), dtype)
    y[np.arange(labels.shape[0]), labels] = 1
    return y


def in_place(step):
    """Wrap an in-place optimizer step as an op returning the updated arrays."""
    def op(be, *arrays):
        step(be, *arrays)
        return tuple(a for a in arrays if a is not None)
    return op


LABELS = np.array([2, 0, 1], np.int64)

def workspace_steps(be, x):
    """Two 'steps' in one Workspace: the second gets the first's arrays back (be.empty)."""
    from numbanet.kernels.backend import Workspace
    ws, outs = Workspace(), []
    for _ in range(2):
        with be.workspace(ws):
            buf = be.empty(x.shape, x.dtype)
            be.assign(buf, x)
            outs.append(be.scale(buf, 2.0))
    assert outs[0] is outs[1] and ws.allocated == 2, "workspace: the second step allocated again"
    return outs[1]


# name -> (op(be, *arrays), inputs(dtype), k = longest reduction, exact?)
CASES = {
    "workspace_empty_assign": (workspace_steps, lambda d: [randn((3, 4), d, 1)], 1, True),
    "zero": (lambda be, a: (be.zero(a), a)[1], lambda d: [randn((2, 5), d, 1)], 1, True),
    "matmul_bias": (lambda be, a, b, c: be.matmul(a, b, bias=c),
                    lambda d: [randn((5, 7), d, 1), randn((7, 3), d, 2), randn((3,), d, 3)], 7, False),
    "matmul_tt": (lambda be, a, b: be.matmul(a, b, trans_a=True, trans_b=True),
                  lambda d: [randn((7, 5), d, 1), randn((3, 7), d, 2)], 7, False),
    "dense_backward": (lambda be, x, w, dy: be.dense_backward(x, w, dy),
                       lambda d: [randn((5, 7), d, 1), randn((7, 3), d, 2), randn((5, 3), d, 3)], 7, False),
    "conv2d_same_s2": (lambda be, x, w, b: be.conv2d(x, w, b, strides=(2, 2), padding="same"),
                       lambda d: [randn((2, 5, 5, 2), d, 1), randn((3, 3, 2, 3), d, 2), randn((3,), d, 3)], 18, False),
    "conv2d_backward": (lambda be, x, w, dy: be.conv2d_backward(x, w, dy, padding="valid"),
                        lambda d: [randn((2, 4, 4, 2), d, 1), randn((3, 3, 2, 3), d, 2), randn((2, 2, 2, 3), d, 3)],
                        27, False),
    "conv2d_backward_same_s2": (lambda be, x, w, dy: be.conv2d_backward(x, w, dy, strides=(2, 2), padding="same"),
                                lambda d: [randn((1, 5, 4, 2), d, 1), randn((3, 2, 2, 2), d, 2),
                                           randn((1, 3, 2, 2), d, 3)], 12, False),
    "max_pool2d": (lambda be, x: be.max_pool2d(x, pool_size=(2, 2), strides=(1, 1)),
                   lambda d: [randn((2, 3, 3, 2), d, 1)], 1, True),
    "max_pool2d_backward": (lambda be, x, dy: be.max_pool2d_backward(
                                dy, be.max_pool2d(x, pool_size=(2, 2), strides=(1, 1))[1], x.shape),
                            lambda d: [randn((2, 3, 3, 2), d, 1), randn((2, 2, 2, 2), d, 2)], 4, False),
    "avg_pool2d_same": (lambda be, x: be.avg_pool2d(x, pool_size=(2, 2), padding="same"),
                        lambda d: [randn((1, 3, 5, 2), d, 1)], 4, False),
    "avg_pool2d_backward": (lambda be, dy: be.avg_pool2d_backward(dy, (1, 3, 5, 2), pool_size=(2, 2),
                                                                   strides=(1, 2), padding="same"),
                            lambda d: [randn((1, 3, 3, 2), d, 1)], 4, False),
    "conv2d_causal_dilated": (lambda be, x, w, b: be.conv2d(x, w, b, padding="causal", dilation_rate=(1, 2)),
                              lambda d: [randn((2, 1, 6, 2), d, 1), randn((1, 3, 2, 3), d, 2), randn((3,), d, 3)],
                              6, False),
    "conv2d_backward_dilated": (lambda be, x, w, dy: be.conv2d_backward(x, w, dy, padding="same",
                                                                        dilation_rate=(2, 1)),
                                lambda d: [randn((1, 5, 4, 2), d, 1), randn((2, 2, 2, 2), d, 2),
                                           randn((1, 5, 4, 2), d, 3)], 20, False),
    "conv2d_transpose": (lambda be, x, w, b: be.conv2d_transpose(x, w, b, strides=(2, 2), padding="same",
                                                                 output_padding=(1, 0)),
                         lambda d: [randn((1, 3, 2, 2), d, 1), randn((3, 3, 2, 2), d, 2), randn((2,), d, 3)],
                         18, False),
    "conv2d_transpose_backward": (lambda be, x, w, dy: be.conv2d_transpose_backward(x, w, dy, strides=(2, 2)),
                                  lambda d: [randn((1, 2, 2, 2), d, 1), randn((3, 3, 2, 2), d, 2),
                                             randn((1, 5, 5, 2), d, 3)], 25, False),
    "global_max_pool": (lambda be, x: be.global_max_pool(x), lambda d: [randn((2, 5, 3), d, 1)], 1, True),
    "global_max_pool_backward": (lambda be, x, dy: be.global_max_pool_backward(dy, be.global_max_pool(x)[1],
                                                                                x.shape),
                                 lambda d: [randn((2, 5, 3), d, 1), randn((2, 3), d, 2)], 1, True),
    "upsample2d": (lambda be, x: be.upsample2d(x, size=(2, 3)), lambda d: [randn((1, 2, 2, 3), d, 1)], 1, True),
    "upsample2d_backward": (lambda be, dy: be.upsample2d_backward(dy, size=(2, 3)),
                            lambda d: [randn((1, 4, 6, 3), d, 1)], 6, False),
    "adam_step": (in_place(lambda be, p, g, m, v: be.adam_step(p, g, m, v, lr=0.01, step=3, weight_decay=0.1)),
                  lambda d: [randn((4, 3), d, 1), randn((4, 3), d, 2), randn((4, 3), d, 3),
                             np.abs(randn((4, 3), d, 4))], 1, False),
    "sgd_nesterov": (in_place(lambda be, p, g, v: be.sgd_step(p, g, v, lr=0.1, momentum=0.9, nesterov=True,
                                                              weight_decay=0.01)),
                     lambda d: [randn((7,), d, 1), randn((7,), d, 2), randn((7,), d, 3)], 1, False),
    "sgd_plain": (in_place(lambda be, p, g: be.sgd_step(p, g, lr=0.1)),
                  lambda d: [randn((7,), d, 1), randn((7,), d, 2)], 1, False),
    "relu": (lambda be, x: be.relu(x), lambda d: [randn((3, 4), d, 1)], 1, True),
    "relu_backward": (lambda be, x, dy: be.relu_backward(be.relu(x), dy),
                      lambda d: [randn((3, 4), d, 1), randn((3, 4), d, 2)], 1, True),
    "sigmoid": (lambda be, x, dy: (be.sigmoid(x), be.sigmoid_backward(be.sigmoid(x), dy)),
                lambda d: [randn((3, 4), d, 1, scale=5), randn((3, 4), d, 2)], 1, False),
    "tanh": (lambda be, x, dy: (be.tanh(x), be.tanh_backward(be.tanh(x), dy)),
             lambda d: [randn((3, 4), d, 1), randn((3, 4), d, 2)], 1, False),
    "softmax": (lambda be, x, dy: (be.softmax(x), be.softmax_backward(be.softmax(x), dy)),
                lambda d: [randn((3, 4), d, 1, scale=3), randn((3, 4), d, 2)], 4, False),
    "softmax_cross_entropy_int": (lambda be, z, y: be.softmax_cross_entropy(z, y),
                                  lambda d: [randn((3, 4), d, 1, scale=3), LABELS], 4, False),
    "softmax_cross_entropy_onehot": (lambda be, z, y: be.softmax_cross_entropy(z, y),
                                     lambda d: [randn((3, 4), d, 1, scale=3), onehot(LABELS, 4, d)], 4, False),
    "softmax_cross_entropy_stats": (lambda be, z, y: (lambda r: (r[0], r[1], *(v.item() for v in be.to_numpy(r[2]))))(
                                        be.softmax_cross_entropy_stats(z, y)),
                                    lambda d: [randn((3, 4), d, 1, scale=3), LABELS], 4, False),
    "crossentropy": (lambda be, p, y: be.crossentropy(p, y, eps=0.05),
                     lambda d: [np.linspace(0.01, 0.99, 12).reshape(3, 4).astype(d), LABELS], 4, False),
    "mse": (lambda be, p, t: be.mse(p, t), lambda d: [randn((3, 2, 2), d, 1), randn((3, 2, 2), d, 2)], 4, False),
    "accuracy": (lambda be, s, y: be.accuracy(s, y), lambda d: [randn((3, 4), d, 1), LABELS], 1, True),
    "accuracy_onehot": (lambda be, s, y: be.accuracy(s, y), lambda d: [randn((3, 4), d, 1), onehot(LABELS, 4, d)],
                        1, True),
    "bias_add": (lambda be, x, b: be.bias_add(x, b), lambda d: [randn((2, 3, 4), d, 1), randn((4,), d, 2)], 1, True),
    "dropout": (lambda be, x, dy: (lambda ym: ym + (be.dropout_backward(dy, ym[1]),))(be.dropout(x, 0.4, 12345)),
                lambda d: [randn((5, 7), d, 1), randn((5, 7), d, 2)], 1, True),
    "l1_l2": (lambda be, w, dw: (be.l1_l2_penalty(w, l1=0.01, l2=0.02),
                                 (be.l1_l2_grad(w, dw, l1=0.01, l2=0.02), dw)[1]),
              lambda d: [randn((4, 3), d, 1), randn((4, 3), d, 2)], 12, False),
    "scale": (lambda be, x: be.scale(x, 0.3), lambda d: [randn((2, 5), d, 1)], 1, False),
    "take_rows": (lambda be, x, i: be.take_rows(x, i),
                  lambda d: [randn((4, 2, 3), d, 1), np.array([3, 0, 3, 1], np.int32)], 1, True),
    "column_sum": (lambda be, x: be.column_sum(x), lambda d: [randn((3, 5, 4), d, 1)], 15, False),
    "sum": (lambda be, x: be.sum(x), lambda d: [randn((3, 5, 4), d, 1)], 60, False),
    "argmax": (lambda be, x: be.argmax(x), lambda d: [randn((5, 4), d, 1)], 1, True),
    # A training step's loss: the mean data loss and a penalty summed on the backend.
    "sum_and_penalty_into": (lambda be, x, w: (lambda acc: (be.sum(x, into=acc, scale=0.25),
                                                            be.l1_l2_penalty(w, l1=0.01, l2=0.02, into=acc),
                                                            float(be.to_numpy(acc)[0]))[2])(
                                 be.zeros((1,), np.float64)),
                             lambda d: [randn((3, 5), d, 1), randn((4, 3), d, 2)], 15, False),
    "gelu": (lambda be, x, dy: (be.gelu(x), be.gelu_backward(x, dy)),
             lambda d: [randn((3, 4), d, 1, scale=3), randn((3, 4), d, 2)], 1, False),
    "gelu_tanh": (lambda be, x, dy: (be.gelu(x, approximate=True), be.gelu_backward(x, dy, approximate=True)),
                  lambda d: [randn((3, 4), d, 1, scale=3), randn((3, 4), d, 2)], 1, False),
    "silu": (lambda be, x, dy: (be.silu(x), be.silu_backward(x, dy)),
             lambda d: [randn((3, 4), d, 1, scale=5), randn((3, 4), d, 2)], 1, False),
    "leaky_relu": (lambda be, x, dy: (be.leaky_relu(x, negative_slope=0.1),
                                      be.leaky_relu_backward(x, dy, negative_slope=0.1)),
                   lambda d: [randn((3, 4), d, 1), randn((3, 4), d, 2)], 1, True),
    "add": (lambda be, a, b: be.add(a, b), lambda d: [randn((3, 4), d, 1), randn((3, 4), d, 2)], 1, True),
    "concatenate_split": (lambda be, a, b: (lambda c: (c,) + tuple(be.split(c, [2, 3], axis=1)))(
                              be.concatenate([a, b], axis=1)),
                          lambda d: [randn((2, 2, 3), d, 1), randn((2, 3, 3), d, 2)], 1, True),
    "transpose": (lambda be, x: be.transpose(x, (0, 2, 1, 3)), lambda d: [randn((2, 3, 2, 4), d, 1)], 1, True),
    "binary_crossentropy": (lambda be, p, t: be.binary_crossentropy(p, t),
                            lambda d: [np.linspace(0.05, 0.95, 12).reshape(3, 4).astype(d),
                                       (np.arange(12).reshape(3, 4) % 2).astype(d)], 4, False),
    "binary_crossentropy_logits": (lambda be, z, t: be.binary_crossentropy(z, t, from_logits=True),
                                   lambda d: [randn((3, 4), d, 1, scale=4),
                                              (np.arange(12).reshape(3, 4) % 2).astype(d)], 4, False),
    "binary_accuracy": (lambda be, p, t: be.binary_accuracy(p, t), lambda d: [
                            np.linspace(0.05, 0.95, 12).reshape(3, 4).astype(d),
                            (np.arange(12).reshape(3, 4) % 2).astype(d)], 1, True),
    "clip_by_global_norm": (in_place(lambda be, a, b: be.clip_by_global_norm([a, b], 0.5)),
                            lambda d: [randn((3, 4), d, 1), randn((5,), d, 2)], 17, False),
    "clip_by_norm": (in_place(lambda be, a: be.clip_by_norm(a, 0.5)), lambda d: [randn((3, 4), d, 1)], 12, False),
}


# The transformer ops (issue 12).
IDS = np.array([[3, 0, 3], [1, 3, 4]], np.int64)
CASES.update({
    "batched_matmul_tn": (lambda be, a, b: be.batched_matmul(a, b, trans_a=True),
                          lambda d: [randn((2, 3, 4, 5), d, 1), randn((2, 3, 4, 3), d, 2)], 4, False),
    "softmax_causal_rank3": (lambda be, x, dy: (lambda y: (y, be.softmax_backward(y, dy)))(be.softmax(x, causal=True)),
                             lambda d: [randn((2, 4, 5), d, 1, scale=3), randn((2, 4, 5), d, 2)], 5, False),
    "attention": (lambda be, q, k, v: be.attention(q, k, v, causal=False, scale=0.6),
                  lambda d: [randn((2, 4, 2, 3), d, 1), randn((2, 5, 2, 3), d, 2), randn((2, 5, 2, 4), d, 3)], 5, False),
    "attention_backward_causal": (
        lambda be, q, k, v, do: (lambda o: be.attention_backward(q, k, v, o[0], do, o[1], causal=True))(
            be.attention(q, k, v, causal=True)),
        lambda d: [randn((1, 6, 2, 3), d, 1), randn((1, 6, 2, 3), d, 2), randn((1, 6, 2, 2), d, 3),
                   randn((1, 6, 2, 2), d, 4)], 6, False),
    "layer_norm": (lambda be, x, g, b: be.layer_norm(x, g, b, epsilon=1e-3),
                   lambda d: [randn((2, 3, 6), d, 1), randn((6,), d, 2), randn((6,), d, 3)], 6, False),
    "layer_norm_backward": (lambda be, x, g, dy: (lambda r: be.layer_norm_backward(x, g, dy, r[1], r[2]))(
                                be.layer_norm(x, g, None)),
                            lambda d: [randn((3, 7), d, 1), randn((7,), d, 2), randn((3, 7), d, 3)], 7, False),
    # The moving statistics are updated in place: returned with the outputs.
    "batch_norm_train": (lambda be, x, g, b, mm, mv: be.batch_norm_train(x, g, b, mm, mv, momentum=0.9) + (mm, mv),
                         lambda d: [randn((2, 3, 6), d, 1) + d(2), randn((6,), d, 2), randn((6,), d, 3),
                                    randn((6,), d, 4), np.abs(randn((6,), d, 5)) + d(0.5)], 6, False),
    "batch_norm_inference": (lambda be, x, g, b, mm, mv: be.batch_norm_inference(x, g, b, mm, mv, epsilon=0.01),
                             lambda d: [randn((2, 3, 6), d, 1), randn((6,), d, 2), randn((6,), d, 3),
                                        randn((6,), d, 4), np.abs(randn((6,), d, 5)) + d(0.5)], 2, False),
    "batch_norm_backward": (lambda be, x, g, dy, mm, mv: (lambda r: be.batch_norm_backward(x, g, dy, r[1], r[2]))(
                                be.batch_norm_train(x, g, None, mm, mv)),
                            lambda d: [randn((3, 2, 7), d, 1), randn((7,), d, 2), randn((3, 2, 7), d, 3),
                                       np.zeros(7, d), np.ones(7, d)], 6, False),
    "rmsprop_plain": (in_place(lambda be, p, g, v: be.rmsprop_step(p, g, v, lr=0.01, weight_decay=0.1)),
                      lambda d: [randn((4, 3), d, 1), randn((4, 3), d, 2), np.abs(randn((4, 3), d, 3))], 2, False),
    "rmsprop_centered_momentum": (
        in_place(lambda be, p, g, v, a, m: be.rmsprop_step(p, g, v, a, m, lr=0.01, momentum=0.9)),
        lambda d: [randn((7,), d, 1), randn((7,), d, 2), np.abs(randn((7,), d, 3)) + d(1), randn((7,), d, 4) * d(0.1),
                   randn((7,), d, 5)], 2, False),
    "adagrad": (in_place(lambda be, p, g, a: be.adagrad_step(p, g, a, lr=0.01, weight_decay=0.1)),
                lambda d: [randn((7,), d, 1), randn((7,), d, 2), np.abs(randn((7,), d, 3))], 2, False),
    "embedding": (lambda be, t, i: be.embedding(t, i), lambda d: [randn((5, 3), d, 1), IDS], 1, True),
    # Both backends add each row's gradients in increasing position order: the same bits.
    "embedding_backward": (lambda be, i, dout: be.embedding_backward(i, dout, 6),
                           lambda d: [IDS, randn((2, 3, 4), d, 1)], 1, True),
})


# The recurrent ops (issue 13): every cell, a mask with a padded step, go_backwards, the
# dropout masks, and the gradients of every output.
RNN_MASK = np.array([[1, 1, 0], [0, 1, 1]], np.int32)


def _rnn_case(cell, dropout=False, **flags):
    g = {"simple": 1, "lstm": 4, "gru": 3}[cell]

    def op(be, x, k, r, b, dy, mask, *masks):
        drop = dict(zip(("dropout_mask", "recurrent_dropout_mask"), masks))
        y, h, c, ws = be.rnn(x, k, r, b, cell=cell, mask=mask, **drop, **flags)
        grads = be.rnn_backward(x, k, r, b, ws, dy, cell=cell, mask=mask, dh=h, **drop, **flags)
        return (y, h, c) + grads

    def inputs(d):
        arrays = [randn((2, 3, 4), d, 1), randn((4, g * 5), d, 2, scale=0.5), randn((5, g * 5), d, 3, scale=0.5),
                  randn((2, g * 5) if cell == "gru" else (g * 5,), d, 4, scale=0.3), randn((2, 3, 5), d, 5), RNN_MASK]
        if dropout:
            keep = np.random.default_rng(6)
            arrays += [((keep.random((2, 4)) > 0.3) / 0.7).astype(d), ((keep.random((2, 5)) > 0.3) / 0.7).astype(d)]
        return arrays
    return op, inputs, 9, False


CASES.update({
    "rnn_simple_dropout": _rnn_case("simple", dropout=True),
    "rnn_lstm_backwards": _rnn_case("lstm", go_backwards=True),
    "rnn_lstm_dropout_in_order": _rnn_case("lstm", dropout=True, go_backwards=True, outputs_in_input_order=True),
    "rnn_gru_zero_output": _rnn_case("gru", zero_output_for_mask=True),
    "rnn_gru_dropout_relu": _rnn_case("gru", dropout=True, activation="relu", recurrent_activation="tanh"),
})


def public_ops():
    """Every op of the backend API: the public methods kernels/backend.py defines."""
    from numbanet.kernels.backend import Backend
    return {name for name, value in vars(Backend).items()
            if callable(value) and not name.startswith("_") and name != "reshape"}


class CallRecorder:
    """A backend that records the name of every op called through it."""

    def __init__(self, be, called):
        self._be, self._called = be, called

    def __getattr__(self, name):
        self._called.add(name)
        return getattr(self._be, name)


def test_every_public_op_has_a_case(cpu):
    """Coverage by the ops the cases really call, not by their names: each case runs on a
    recording backend, and every public method of kernels/backend.py must have been hit."""
    called = set()
    for name, (op, inputs, _, _) in CASES.items():
        run(CallRecorder(cpu, called), op, inputs(np.float64))
    missing = sorted(public_ops() - called)
    assert not missing, f"no cross-backend case calls {missing}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_gpu_matches_cpu(gpu, cpu, name, dtype):
    op, inputs, k, exact = CASES[name]
    compare(gpu, cpu, op, inputs(dtype), dtype, k=k, exact=exact)


@pytest.mark.parametrize("name", ["matmul_bias", "conv2d_backward", "conv2d_backward_same_s2", "max_pool2d_backward",
                                  "conv2d_transpose_backward", "upsample2d_backward",
                                  "column_sum", "sum", "l1_l2", "softmax_cross_entropy_int", "batched_matmul_tn",
                                  "attention_backward_causal", "layer_norm_backward", "batch_norm_train",
                                  "batch_norm_backward", "embedding_backward",
                                  "clip_by_global_norm", "rnn_lstm_backwards", "rnn_gru_zero_output"])
def test_gpu_is_deterministic(gpu, name):
    op, inputs, _, _ = CASES[name]
    arrays = inputs(np.float32)
    first = run(gpu, op, arrays)
    second = run(gpu, op, arrays)
    for a, b in zip(first, second):
        if isinstance(a, float):
            assert a == b
        else:
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def gemm_reference(a, b, bias, trans_a, trans_b, activation):
    z = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64) + bias
    return {"linear": z, "relu": np.where(z > 0, z, 0.0), "tanh": np.tanh(z)}[activation]


def check_gemm(gpu, m, n, k, trans_a, trans_b, dtype, activation="linear"):
    a = randn((k, m) if trans_a else (m, k), dtype, 1)
    b = randn((n, k) if trans_b else (k, n), dtype, 2)
    bias = randn((n,), dtype, 3)
    got = download(gpu, gpu.matmul(*upload(gpu, a, b), trans_a=trans_a, trans_b=trans_b,
                                   bias=upload(gpu, bias), activation=activation))
    want = gemm_reference(a, b, bias, trans_a, trans_b, activation)
    assert_close(got, want.astype(dtype), dtype, k=k)


# (config, m, n): 1 x 1; edges of each tile shape (one past a tile, a partial warp
# fragment); the config is asserted, so a change of the selection rule shows here.
TILE_CASES = [
    ("small", 1, 1), ("small", 65, 70), ("small", 3, 33), ("small", 127, 64),
    ("narrow", 130, 7), ("narrow", 129, 32),
    ("big", 130, 129),
]
TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]
# The big tile runs 1024 Python threads per launch under the simulator: (F, F) and (T, T)
# cover both load orders of each operand.
TILE_PARAMS = [(c, m, n, ta, tb) for c, m, n in TILE_CASES for ta, tb in TRANSPOSES
               if c != "big" or ta == tb]


@pytest.mark.parametrize("config,m,n,trans_a,trans_b", TILE_PARAMS)
def test_gemm_tile_edges(gpu, config, m, n, trans_a, trans_b):
    """Every tile shape at its edges, every transpose, bias and relu in the epilogue;
    K = 9 crosses the 8-deep K step (the double-buffered loop's last, partial step)."""
    from numbanet.kernels.gpu import gemm
    dtype = np.float32 if config == "big" else np.float64
    assert gemm.config_for(m, n, dtype) == config
    check_gemm(gpu, m, n, 9, trans_a, trans_b, dtype, activation="relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_float64_never_takes_the_big_tile(dtype):
    from numbanet.kernels.gpu import gemm
    want = "big" if dtype == np.float32 else "small"
    assert gemm.config_for(128, 128, dtype) == want


@pytest.mark.parametrize("m,n,k", [(5, 7, 40), (3, 33, 43), (1, 1, 17)])
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_gemm_split_k(gpu, monkeypatch, m, n, k, activation):
    """Split-K (forced with a minimum chunk of 8): partial tiles in the scratch buffer, summed
    in split order by the reduce kernel with bias and activation; an uneven last chunk."""
    from numbanet.kernels.gpu import gemm
    monkeypatch.setattr(gemm, "SPLIT_MIN_K", 8)
    splits, chunk = gemm.split_for(m, n, k, gemm.config_for(m, n, np.float64))
    assert splits > 1 and chunk % gemm.BK == 0 and (splits - 1) * chunk < k <= splits * chunk
    check_gemm(gpu, m, n, k, False, True, np.float64, activation)
    check_gemm(gpu, m, n, k, True, False, np.float32, activation)


def test_gemm_split_k_is_deterministic(gpu, monkeypatch):
    from numbanet.kernels.gpu import gemm
    monkeypatch.setattr(gemm, "SPLIT_MIN_K", 8)
    a, b = upload(gpu, randn((4, 50), np.float32, 1), randn((50, 6), np.float32, 2))
    first = download(gpu, gpu.matmul(a, b))
    assert np.asarray(first).tobytes() == np.asarray(download(gpu, gpu.matmul(a, b))).tobytes()


def test_split_rule_at_full_size():
    """The split count depends on the shapes only: the article CNN's first conv layer dw
    (9 x 32 outputs over 128 * 26 * 26 positions) splits to fill the GPU; a square 4096
    GEMM or a product with K below two chunks does not."""
    from numbanet.kernels.gpu import gemm
    splits, chunk = gemm.split_for(9, 32, 128 * 26 * 26, "narrow")
    assert splits >= gemm.TARGET_BLOCKS // 2 and chunk >= gemm.SPLIT_MIN_K
    assert gemm.split_for(4096, 4096, 4096, "big") == (1, 4096)
    assert gemm.split_for(10, 10, 2 * gemm.SPLIT_MIN_K - 1, "small") == (1, 2 * gemm.SPLIT_MIN_K - 1)


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,split", [
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), "valid", False),
    ((1, 9, 9, 1), (1, 1, 1, 2), (1, 1), "valid", False),      # 81 output rows: crosses the 64-row tile
    ((1, 3, 3, 3), (3, 3, 3, 1), (1, 1), "same", False),       # K = 27: crosses the 8-deep K tile
    ((2, 4, 3, 1), (2, 3, 1, 2), (3, 2), "same", False),
    ((2, 9, 8, 1), (3, 3, 1, 2), (1, 1), "same", False),       # 144 rows, 2 channels: the narrow tile
    ((2, 4, 5, 2), (3, 2, 2, 3), (1, 2), "same", True),        # dw and dx split over K
])
def test_conv2d_edges_against_numpy(gpu, monkeypatch, x_shape, w_shape, strides, padding, split):
    """Forward and all three gradients against a direct NumPy loop, float64."""
    if split:
        from numbanet.kernels.gpu import gemm
        monkeypatch.setattr(gemm, "SPLIT_MIN_K", 8)
    x = randn(x_shape, np.float64, 1)
    w = randn(w_shape, np.float64, 2)
    y = download(gpu, gpu.conv2d(*upload(gpu, x, w), strides=strides, padding=padding))
    dy = randn(y.shape, np.float64, 3)
    dx, dw, db = download(gpu, gpu.conv2d_backward(*upload(gpu, x, w, dy), strides=strides, padding=padding))
    n, h, wd, c = x_shape
    kh, kw, _, co = w_shape
    oh, ow = y.shape[1], y.shape[2]
    if padding == "same":
        pt = max((oh - 1) * strides[0] + kh - h, 0) // 2
        pl = max((ow - 1) * strides[1] + kw - wd, 0) // 2
    else:
        pt = pl = 0
    want_y = np.zeros(y.shape)
    want_dx = np.zeros(x.shape)
    want_dw = np.zeros(w.shape)
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    for q in range(kw):
                        hh, ww = i * strides[0] - pt + p, j * strides[1] - pl + q
                        if 0 <= hh < h and 0 <= ww < wd:
                            want_y[b, i, j] += x[b, hh, ww] @ w[p, q]
                            want_dx[b, hh, ww] += w[p, q] @ dy[b, i, j]
                            want_dw[p, q] += np.outer(x[b, hh, ww], dy[b, i, j])
    k = kh * kw * max(c, co) * n * oh * ow
    assert_close(y, want_y, np.float64, k=k, what="y")
    assert_close(dx, want_dx, np.float64, k=k, what="dx")
    assert_close(dw, want_dw, np.float64, k=k, what="dw")
    assert_close(db, dy.sum(axis=(0, 1, 2)), np.float64, k=k, what="db")


@pytest.mark.parametrize("x_shape,w_shape,padding,activation,configs", [
    # the first conv layer's shape class: one input channel, 4 filters, many rows
    ((2, 9, 8, 1), (3, 3, 1, 4), "same", "relu", ("narrow", "small", None)),
    # 128 filters over 132 positions: the 128 x 128 tile in float32
    ((1, 12, 11, 2), (1, 1, 2, 128), "valid", "linear", ("big", "small", "narrow")),
    # 144 = 3 * 3 * 16 weight rows: dw in the narrow tile
    ((1, 4, 4, 16), (3, 3, 16, 8), "valid", "tanh", ("small", "narrow", "small")),
])
def test_conv2d_float32_tile_shapes(gpu, cpu, x_shape, w_shape, padding, activation, configs):
    """The float32 tile shapes a full-size layer selects (BIG needs float32, so these are
    float32 against the cpu backend), forward with the fused activation and backward."""
    from numbanet.kernels.gpu import gemm
    n, h, wd, c = x_shape
    kh, kw, _, co = w_shape
    y_shape = gpu.conv2d(gpu.zeros(x_shape), gpu.zeros(w_shape), padding=padding).shape
    m = n * y_shape[1] * y_shape[2]
    got = (gemm.config_for(m, co, np.float32), gemm.config_for(kh * kw * c, co, np.float32),
           gemm.config_for(n * h * wd, c, np.float32) if configs[2] else None)
    assert got == configs
    dtype = np.float32
    x, w, b = randn(x_shape, dtype, 1), randn(w_shape, dtype, 2), randn((co,), dtype, 3)
    dy = randn(y_shape, dtype, 4)
    op = lambda be, x, w, b, dy: (be.conv2d(x, w, b, padding=padding, activation=activation),
                                  *be.conv2d_backward(x, w, dy, padding=padding, compute_dx=configs[2] is not None))
    compare(gpu, cpu, op, [x, w, b, dy], dtype, k=kh * kw * max(c, co) * m)


def test_backend_rejects_host_arrays(gpu):
    with pytest.raises(TypeError, match="matmul: a must be a numba device array.*be.asarray"):
        gpu.matmul(np.ones((2, 2), np.float32), gpu.asarray(np.ones((2, 2), np.float32)))


def test_memory_helpers(gpu):
    z = gpu.zeros((3, 5), np.float64)
    np.testing.assert_array_equal(gpu.to_numpy(z), np.zeros((3, 5)))
    x = randn((4, 6), np.float32, 1)
    d = gpu.asarray(x)
    c = gpu.copy(d)
    np.testing.assert_array_equal(gpu.to_numpy(c), x)
    view = d[:, ::2]
    assert not gpu._is_c_contiguous(view)
    np.testing.assert_array_equal(gpu.to_numpy(gpu._contiguous(view)), x[:, ::2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,index", [
    ((9,), np.s_[::2]),
    ((4, 6), np.s_[:, ::2]),
    ((3, 4, 5), np.s_[:, ::2, 1:]),
    ((2, 3, 4, 5), np.s_[:, 1:, :, ::3]),
])
def test_contiguous_copies_strided_views_on_the_device(gpu, shape, index, dtype):
    """A strided view of each rank is copied into C order by a kernel, not through the host."""
    x = randn(shape, dtype, 1)
    view = gpu.asarray(x)[index]
    assert not gpu._is_c_contiguous(view)
    got = gpu._contiguous(view)
    assert gpu._is_c_contiguous(got)
    np.testing.assert_array_equal(gpu.to_numpy(got), x[index])


def test_status_reports_the_simulator_honestly():
    ok, detail = kernels.gpu_status()
    assert ok and "gpu" in kernels.available_backends()
    if kernels._simulator_on():
        assert "simulator" in detail.lower()


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_batched_gemm_tile_edges(gpu, trans_a, trans_b):
    """33 x 35 x 17 products cross the batched kernel's 32 x 32 tile and its 16-deep K step."""
    z, m, n, k = 2, 33, 35, 17
    a = randn((z, k, m) if trans_a else (z, m, k), np.float64, 1)
    b = randn((z, n, k) if trans_b else (z, k, n), np.float64, 2)
    got = download(gpu, gpu.batched_matmul(*upload(gpu, a, b), trans_a=trans_a, trans_b=trans_b))
    want = np.einsum("zik,zkj->zij", a.swapaxes(1, 2) if trans_a else a, b.swapaxes(1, 2) if trans_b else b)
    assert_close(got, want, np.float64, k=k)


def test_embedding_backward_sort_crosses_tiles(gpu, cpu):
    """300 positions span three tiles of the gpu's radix sort and 300 rows need two 8-bit
    passes; both backends add each row's gradients in position order: the same bits."""
    ids = np.random.default_rng(5).integers(0, 300, 300).astype(np.int32)
    ids[::7] = 299  # a long run of one id across the tiles
    dout = randn((300, 2), np.float32, 3)
    compare(gpu, cpu, lambda be, i, g: be.embedding_backward(i, g, 300), [ids, dout], np.float32, exact=True)
