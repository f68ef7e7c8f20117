"""Kernel launches and device allocations per training step of the article's CNN on the gpu
backend (bench/gpu_launches.py counts them), asserted so that neither can grow silently.

Under the simulator the article-sized step (batch 128, 28 x 28) is counted in dry mode:
kernels are counted, not run. test_dry_counting_launches_what_a_real_step_launches checks
on a small CNN that a dry step launches exactly the kernels of an executed one.
"""
from collections import Counter

import numpy as np
import pytest

from numbanet import kernels
from numbanet.bench import gpu_launches
from numbanet.nn.layers import Conv2D, Dense, Flatten, MaxPooling2D
from numbanet.nn.models import Sequential
from numbanet.nn.optimizers import Adam

# One step of the article's CNN at batch 128, derived layer by layer (M x N over K: the
# GEMM's output and reduction length; a GEMM whose output tiles are too few for the GPU
# splits over K and adds a reduce launch, kernels/gpu/gemm.py split_for):
ARTICLE_STEP = {
    "batch gather from the resident dataset: x rows, y rows": 2,
    "conv1 forward, 86528 x 32 over 9, relu in the epilogue": 1,
    "max pool 1": 1,
    "conv2 forward, 15488 x 64 over 288, relu in the epilogue": 1,
    "max pool 2": 1,
    "dense1 forward, 128 x 128 over 1600: split-K, bias and relu in the reduce": 2,
    "dense2 forward, logits 128 x 10": 1,
    "loss, dlogits, loss sum and correct count, in one block": 1,
    "dense2 backward: dw and db in one GEMM, dx": 2,
    "dense1 backward: relu', dw and db in one GEMM, dx": 3,
    "max pool 2 backward": 1,
    "conv2 backward: relu'; dw and db 289 x 64 over 15488 split-K (2); dx 21632 x 32 over 576 split (2)": 5,
    "max pool 1 backward": 1,
    "conv1 backward: relu'; dw and db 10 x 32 over 86528 split-K (2); no dx": 3,
    "Adam over the packed weights, gradients and moments (nn/packed.py)": 1,
}


@pytest.fixture(scope="module")
def gpu():
    ok, why = kernels.gpu_status()
    assert ok, f"these tests need the gpu backend (real or NUMBA_ENABLE_CUDASIM=1): {why}"
    return kernels.get_backend("gpu")


def test_article_cnn_step_launches(gpu):
    counter = gpu_launches.count_fit_steps(batch=128, steps=2)
    launches = counter.launches[1]
    assert counter.allocations[1] == [], (f"the second training step allocated device memory: "
                                          f"{counter.allocations[1]} (expected the step's workspace)")
    want = sum(ARTICLE_STEP.values())
    got = Counter(name for name, _ in launches)
    assert len(launches) == want, (
        f"one training step of the article's CNN launched {len(launches)} kernels, expected {want}; "
        f"update ARTICLE_STEP with the reason if the change is intended. Launched:\n"
        + "\n".join(f"  {n} x {name}" for name, n in sorted(got.items())))


def small_cnn():
    m = Sequential()
    m.add(Conv2D(4, kernel_size=(3, 3), activation="relu", input_shape=(6, 6, 1)))
    m.add(MaxPooling2D(pool_size=(2, 2)))
    m.add(Conv2D(3, kernel_size=(2, 2), activation="relu"))
    m.add(Flatten())
    m.add(Dense(5, activation="relu"))
    m.add(Dense(3, activation="softmax"))
    m.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    m.build((6, 6, 1), backend=kernels.get_backend("gpu"))
    return m


def test_dry_counting_launches_what_a_real_step_launches(gpu, monkeypatch):
    """The dry mode's count is the executed step's count: same kernels, same order."""
    from numbanet.kernels.gpu import launch
    rng = np.random.default_rng(3)
    x = rng.random((6, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 3, 6)
    # launch.scratch keeps its buffers for the process: each count starts without them,
    # or the second would find what the first (or an earlier test) allocated.
    monkeypatch.setattr(launch, "_scratch", {})
    real = gpu_launches.count_fit_steps(batch=3, steps=2, dry=False, model=small_cnn(), x=x, y=y)
    monkeypatch.setattr(launch, "_scratch", {})
    dry = gpu_launches.count_fit_steps(batch=3, steps=2, dry=True, model=small_cnn(), x=x, y=y)
    assert real.launches == dry.launches
    assert len(real.launches[1]) > 10
    assert [len(a) for a in real.allocations.values()] == [len(a) for a in dry.allocations.values()]
