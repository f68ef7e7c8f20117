"""A tiny CNN trained a few steps on the cpu and the gpu backend from the same weights ends
with the same weights (float32 tolerance): the whole training path runs on the gpu ops."""
import numpy as np

from toy_models import tiny_cnn


def test_tiny_cnn_trains_the_same_on_gpu_and_cpu():
    rng = np.random.default_rng(7)
    x = rng.random((4, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 3, 4)
    on_cpu = tiny_cnn()
    start = [w.copy() for w in on_cpu.get_weights()]
    on_gpu = tiny_cnn(start)
    on_gpu.to("gpu")
    assert on_gpu.be.name == "gpu"
    for _ in range(3):
        loss_cpu = on_cpu.train_on_batch(x, y)[0]
        loss_gpu = on_gpu.train_on_batch(x, y)[0]
        np.testing.assert_allclose(loss_gpu, loss_cpu, rtol=1e-5)
    moved = False
    for w_cpu, w_gpu, w0 in zip(on_cpu.get_weights(), on_gpu.get_weights(), start):
        np.testing.assert_allclose(w_gpu, w_cpu, rtol=1e-4, atol=1e-6)
        moved |= not np.allclose(w_cpu, w0)
    assert moved, "three Adam steps left every weight unchanged"
