"""nn/trainers/epoch_iterator.py: fit's batches, gathered on the backend or on the host,
in the epoch's order, each batch size in its own workspace; evaluate's slices."""
import numpy as np
import pytest

from numbanet.nn.trainers import epoch_iterator
from numbanet.nn.trainers.epoch_iterator import EpochIterator, host_batches


def _data():
    rng = np.random.default_rng(0)
    # int32 labels, as the losses' target checks hand them to fit
    return [rng.standard_normal((7, 2, 3)).astype(np.float32)], [rng.integers(0, 5, 7).astype(np.int32)]


@pytest.mark.simulator
@pytest.mark.parametrize("resident", [True, False])
def test_batches_follow_the_order_and_reuse_their_size_s_workspace(nnbe, monkeypatch, resident):
    if not resident:
        monkeypatch.setattr(epoch_iterator, "RESIDENT_BYTES", 0)
    xs, ys = _data()
    data = EpochIterator(nnbe, xs, ys, batch_size=3)
    assert (data.steps, data.resident) == (3, resident)
    order = np.array([6, 0, 5, 1, 4, 2, 3], np.int32)
    first = []
    for epoch in range(2):
        data.set_order(order)
        for step in range(data.steps):
            with data.workspace(step):
                rows, xb, yb = data.batch(step)
                idx = order[3 * step:3 * step + 3]
                assert rows == len(idx)
                np.testing.assert_array_equal(nnbe.to_numpy(xb[0]), xs[0][idx])
                np.testing.assert_array_equal(nnbe.to_numpy(yb[0]), ys[0][idx])
                scratch = nnbe.empty((4,), "float32")   # what a step's layers take from the workspace
                if epoch == 0:
                    first.append(scratch)
                else:
                    assert scratch is first[step], f"step {step} allocated again in the second epoch"
    assert sorted(data.workspaces) == [1, 3]


def test_a_process_without_rows_gets_none():
    class NoRows:
        def share(self, lo, hi):
            return lo, lo

    from numbanet import kernels
    xs, ys = _data()
    data = EpochIterator(kernels.get_backend(), xs, ys, batch_size=4, sync=NoRows())
    data.set_order(np.arange(7, dtype=np.int32))
    assert data.batch(1) == (3, None, None)


@pytest.mark.simulator
def test_host_batches_upload_consecutive_slices(nnbe):
    xs, ys = _data()
    got = list(host_batches(nnbe, xs + ys, 3))
    assert [len(b) for b in got] == [2, 2, 2]
    for i, (xb, yb) in enumerate(got):
        np.testing.assert_array_equal(nnbe.to_numpy(xb), xs[0][3 * i:3 * i + 3])
        np.testing.assert_array_equal(nnbe.to_numpy(yb), ys[0][3 * i:3 * i + 3])
