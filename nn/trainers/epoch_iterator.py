"""How batches reach the backend (Keras 3: keras/src/trainers/epoch_iterator.py).

fit: when the training arrays fit in RESIDENT_BYTES they are uploaded once and each
batch is gathered on the backend (be.take_rows); above, each batch is gathered on the
host and uploaded. Each batch size has its own Workspace: from the second step of a size
on, the step's activations and gradients reuse that workspace's arrays and the step
allocates nothing (kernels.backend.Workspace). evaluate and predict upload consecutive
slices (host_batches).
"""
import numpy as np

from numbanet.kernels.backend import Workspace

# Training sets up to this size live on the backend for the whole fit.
RESIDENT_BYTES = 2 << 30


class EpochIterator:
    """fit's batches of the host arrays xs + ys, batch_size rows a step, in the order
    set_order gives each epoch. With sync (a data-parallel fit: nn/distributed.py) each
    process gets its share of every batch's rows."""

    def __init__(self, be, xs, ys, batch_size, sync=None):
        self.be, self.sync = be, sync
        self.arrays = list(xs) + list(ys)
        self.n_inputs = len(xs)
        self.rows = xs[0].shape[0]
        self.batch_size = batch_size
        self.steps = (self.rows + batch_size - 1) // batch_size
        self.resident = sum(a.nbytes for a in self.arrays) <= RESIDENT_BYTES
        self.on_device = [be.asarray(np.ascontiguousarray(a)) for a in self.arrays] if self.resident else None
        self.workspaces = {}   # by batch size (the last batch may be smaller)
        self.order = self.order_on_device = None

    def set_order(self, order):
        """The epoch's row order: a permutation of range(rows), int32."""
        self.order = order
        if self.resident:
            self.order_on_device = self.be.asarray(order)

    def workspace(self, step):
        """The context the step runs in: the workspace of its batch size."""
        size = min(self.batch_size, self.rows - step * self.batch_size)
        return self.be.workspace(self.workspaces.setdefault(size, Workspace()))

    def batch(self, step):
        """(rows of the global batch, xs, ys) on the backend; xs and ys are None when this
        process has no rows this step. Inside workspace(step)."""
        be = self.be
        lo, hi = step * self.batch_size, min(self.rows, (step + 1) * self.batch_size)
        mine = (lo, hi) if self.sync is None else self.sync.share(lo, hi)
        if mine[0] == mine[1]:
            return hi - lo, None, None
        if self.resident:
            # The order is a permutation of range(rows): no range check (on the gpu, a
            # round trip per call).
            idx = self.order_on_device[mine[0]:mine[1]]
            batch = [be.take_rows(a, idx, _indices_checked=True) for a in self.on_device]
        else:
            idx = self.order[mine[0]:mine[1]]
            batch = [be.asarray(a[idx]) for a in self.arrays]
        return hi - lo, batch[:self.n_inputs], batch[self.n_inputs:]


def host_batches(be, arrays, batch_size):
    """Consecutive slices of batch_size rows of each host array, uploaded: one list per batch."""
    for lo in range(0, arrays[0].shape[0], batch_size):
        yield [be.asarray(np.ascontiguousarray(a[lo:lo + batch_size])) for a in arrays]
