"""numbanet.profile() on the gpu backend (tests/test_gpu_simulator.py runs this under the
simulator): every op launched during a step is in the table, timed, and the transfers
are listed."""
import numpy as np

import numbanet
from numbanet import kernels
from toy_models import tiny_cnn


def test_gpu_table_has_every_launched_kernel():
    rng = np.random.default_rng(7)
    x = rng.random((4, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 3, 4)
    model = tiny_cnn()
    model.to("gpu")
    model.train_on_batch(x, y)
    with numbanet.profile(["gpu"]) as p:
        model.train_on_batch(x, y)
    assert [s.backend for s in p.steps] == ["gpu"]
    launched = {c.name for c in p.calls if c.kind == "kernel" and c.step is not None}
    assert {"conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "matmul", "dense_backward",
            "adam_step", "softmax_cross_entropy_stats"} <= launched
    rows = p.rows()
    listed = {r.name for r in rows if r.backend == "gpu"}
    assert launched <= listed
    assert {"asarray", "to_numpy"} <= {r.name for r in rows if r.kind == "transfer"}
    text = p.table(roofline=False)
    for name in launched:
        assert name in text, name
    for r in rows:
        assert r.total_ns >= 0 and r.calls >= 1
    if "simulator" in kernels.gpu_status()[1]:
        assert p.limits()["gpu"] is None   # the simulator times nothing: no roofs from it
