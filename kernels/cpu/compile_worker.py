"""The background-compile helper process (started by kernels/cpu/precompile.py): reads
`item dtype` lines on stdin and runs each item's warm-up, lowest rank first, so that the
kernels it compiles land in the shared on-disk cache for the parent to load.

    python -m numbanet.kernels.cpu.compile_worker PARENT_PID

It exits at the end of its input, after precompile._IDLE_EXIT_S seconds without work, or
when its parent is gone (Linux kills it then: PR_SET_PDEATHSIG). A warm-up that fails
is skipped: the parent compiles what the helper did not.
"""
import os
import select
import sys

import numpy as np

from numbanet import kernels
from numbanet.kernels.cpu import gemm, precompile

# Warm-up items: backend ops on tiny arrays. Calling the op (not compiling a signature
# written here) gives exactly the argument types the layers' calls give, whatever the
# kernels' signatures become. The helper takes the lowest rank first. The parent needs
# the forward pass first (a CNN: conv2d_forward, whose compile also makes the GEMM
# micro-kernel and the direct-conv tile, which the GEMM and conv2d_backward call), so
# the helper starts with what shares nothing with it (Adam, the loss, the ReLU
# gradient), then the Dense GEMM and the backward passes, which need those shared
# kernels: by then the parent has compiled them and they load from the cache.
def _warm_dense(be, dt):
    x, w, b = be.zeros((3, 5), dt), be.zeros((5, 4), dt), be.zeros((4,), dt)
    for act in ("relu", "linear"):
        be.matmul(x, w, bias=b, activation=act)
    be.dense_backward(x, w, be.zeros((3, 4), dt), compute_dx=True)
    # matmul runs serially below gemm.serial_below() multiply-adds and through its
    # parallel driver above: one product that size.
    n = -(-gemm.serial_below() // (64 * 256))
    be.matmul(be.zeros((64, 256), dt), be.zeros((256, n), dt))


def _warm_loss(be, dt):
    z = be.zeros((4, 10), dt)
    labels = be.asarray(np.array([1, 0, 3, 9], dtype=np.int32))
    be.softmax_cross_entropy_stats(z, labels, _labels_checked=True)
    be.softmax_cross_entropy(z, labels, _labels_checked=True)
    be.accuracy(z, labels, _labels_checked=True)
    be.sum(be.zeros((4,), dt))


def _warm_relu_backward(be, dt):
    _warm_activation_backward("relu")(be, dt)


def _warm_adam(be, dt):
    from numbanet.kernels.cpu import optim
    for size in (8, optim._PARALLEL_MIN):   # both the serial and the threaded path
        p = be.zeros((size,), dt)
        be.adam_step(p, be.zeros((size,), dt), be.zeros((size,), dt), be.zeros((size,), dt), lr=1e-3, step=1)


def _warm_conv_backward(be, dt):
    x, w = be.zeros((2, 6, 6, 3), dt), be.zeros((3, 3, 3, 4), dt)
    y = be.zeros((2, 4, 4, 4), dt)
    be.conv2d_backward(x, w, y, compute_dx=True)


def _warm_max_pool_backward(be, dt):
    # Zero indices (valid ones) rather than max_pool2d's: the forward is the parent's.
    be.max_pool2d_backward(be.zeros((2, 2, 2, 3), dt), be.zeros((2, 2, 2, 3), np.int32), (2, 4, 4, 3))


def _warm_avg_pool_backward(be, dt):
    be.avg_pool2d_backward(be.zeros((2, 2, 2, 3), dt), (2, 4, 4, 3))


def _warm_activation_backward(name, both_paths=True):
    def warm(be, dt):
        from numbanet.kernels.cpu.activation import SERIAL_MAX
        # Elementwise gradients: the serial path (small arrays) and the threaded one.
        for shape in ((3, 4), (SERIAL_MAX + 1,)) if both_paths else ((3, 4),):
            y = be.zeros(shape, dt)
            getattr(be, name + "_backward")(y, y)
    return warm


# These call the forward for the backward's inputs: it is the parent's (whose miss sent
# the hint), so the helper waits for it and loads it from the cache.
def _warm_dropout_backward(be, dt):
    d, mask = be.dropout(be.zeros((3, 4), dt), 0.5, 7)
    be.dropout_backward(d, mask)


def _warm_layer_norm_backward(be, dt):
    x, g = be.zeros((3, 4, 8), dt), be.zeros((8,), dt)
    y, mean, rstd = be.layer_norm(x, g, be.zeros((8,), dt))
    be.layer_norm_backward(x, g, y, mean, rstd)


def _warm_embedding_backward(be, dt):
    ids = be.asarray(np.array([[0, 2], [2, 1]], dtype=np.int32))
    e = be.embedding(be.zeros((3, 4), dt), ids)
    be.embedding_backward(ids, e, 3)


def _warm_attention_backward(be, dt):
    q = be.zeros((2, 5, 2, 4), dt)
    out, lse = be.attention(q, q, q, causal=True)
    be.attention_backward(q, q, q, out, out, lse, causal=True)


WARMUPS = {
    # name: (rank, function)
    "adam": (1, _warm_adam),
    "relu_backward": (2, _warm_relu_backward),
    "loss": (3, _warm_loss),
    "dense": (4, _warm_dense),
    "conv2d_backward": (5, _warm_conv_backward),
    "max_pool2d_backward": (6, _warm_max_pool_backward),
    "avg_pool2d_backward": (7, _warm_avg_pool_backward),
    "sigmoid_backward": (8, _warm_activation_backward("sigmoid")),
    "tanh_backward": (9, _warm_activation_backward("tanh")),
    "softmax_backward": (10, _warm_activation_backward("softmax", both_paths=False)),
    "dropout_backward": (11, _warm_dropout_backward),
    "embedding_backward": (12, _warm_embedding_backward),
    "layer_norm_backward": (13, _warm_layer_norm_backward),
    "attention_backward": (14, _warm_attention_backward),
}

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _die_with_parent(parent_pid):
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def _serve(parent_pid):
    """The helper's side: read `name dtype` lines from stdin, run the warm-ups lowest rank
    first, exit at end of input, when the parent is gone, or after precompile._IDLE_EXIT_S idle."""
    _die_with_parent(parent_pid)
    be = kernels.get_backend("cpu")
    pending, done, buffer = set(), set(), b""
    fd = sys.stdin.fileno()
    eof = False
    while os.getppid() == parent_pid:
        if not eof:
            ready, _, _ = select.select([fd], [], [], 0 if pending else precompile._IDLE_EXIT_S)
            if ready:
                chunk = os.read(fd, 4096)
                eof = not chunk
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    item = tuple(line.decode().split())
                    if len(item) == 2 and item[0] in WARMUPS and item[1] in _DTYPES and item not in done:
                        pending.add(item)
            elif not pending:
                return   # idle
        if pending:
            item = min(pending, key=lambda p: (WARMUPS[p[0]][0], p[1]))
            pending.discard(item)
            done.add(item)
            try:
                WARMUPS[item[0]][1](be, _DTYPES[item[1]])
            except Exception:   # noqa: BLE001 - the parent compiles what this did not
                pass
        elif eof:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
