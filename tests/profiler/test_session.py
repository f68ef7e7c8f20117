"""numbanet.profile(): a profiled step changes nothing it computes, every call is recorded
with its layer, pass and cost, and nothing of the profiler is left behind."""
import subprocess
import sys

import numpy as np
import pytest

import numbanet
from numbanet import kernels
from numbanet.kernels import ops
from numbanet.nn import graph
from numbanet.nn.mnist_cnn import build_model
from numbanet.nn.trainers.trainer import Trainer
from numbanet.profiler import recorder as recorder_mod


def tiny_cnn():
    return build_model(input_shape=(12, 12, 1), filters=(2, 3), units=4, classes=3)


def data(n=6, seed=3):
    rng = np.random.default_rng(seed)
    return rng.random((n, 12, 12, 1), dtype=np.float32), rng.integers(0, 3, n)


def test_importing_numbanet_does_not_import_the_profiler():
    code = "import sys, numbanet; print('numbanet.profiler' in sys.modules); numbanet.profile; " \
           "print('numbanet.profiler' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_a_profiled_step_gives_the_same_weights_bit_for_bit():
    x, y = data()
    plain, profiled = tiny_cnn(), tiny_cnn()
    profiled.set_weights(plain.get_weights())
    for _ in range(2):
        plain.train_on_batch(x, y)
    profiled.train_on_batch(x, y)
    with numbanet.profile() as p:
        profiled.train_on_batch(x, y)
    assert len(p.steps) == 1
    for a, b in zip(plain.get_weights(), profiled.get_weights()):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_calls_carry_their_layer_pass_and_cost():
    x, y = data()
    model = tiny_cnn()
    model.train_on_batch(x, y)
    with numbanet.profile() as p:
        model.fit(x, y, batch_size=3, epochs=1, verbose=0, shuffle=False)
    assert len(p.steps) == 2
    in_steps = [c for c in p.calls if c.step is not None]
    where = {(c.name, c.layer, c.phase) for c in in_steps}
    conv, conv2 = model.layers[0].name, model.layers[2].name
    dense_out = model.layers[-1].name
    for expected in [("conv2d", conv, "forward"), ("conv2d", conv2, "forward"), ("conv2d_backward", conv, "backward"),
                     ("max_pool2d_backward", model.layers[1].name, "backward"), ("matmul", dense_out, "forward"),
                     ("adam_step", "(optimizer)", "optimizer")]:
        assert expected in where, (expected, sorted(where))
    assert any(c.layer == "(loss)" and c.phase == "forward" for c in in_steps)
    for c in in_steps:
        assert c.self_ns >= 0 and c.end >= c.start
        if c.kind == "kernel":
            assert isinstance(c.flops, int) and isinstance(c.bytes, int) and c.bytes > 0, c.name
    # Each conv2d call's cost is the one its arguments give: (3, 12, 12, 1) * (3, 3, 1, 2) -> (3, 10, 10, 2).
    first = next(c for c in in_steps if c.name == "conv2d" and c.layer == conv)
    assert first.flops == 3 * 10 * 10 * 2 * (2 * 9 + 1 + 1)   # 9 multiply-adds, the bias, relu


def test_off_leaves_nothing_behind():
    be = kernels.get_backend("cpu")
    originals = {name: Trainer.__dict__[name] for name in ("_train_batch", "_backward", "_update")}
    with pytest.raises(ZeroDivisionError):
        with numbanet.profile():
            assert "conv2d" in vars(be) and graph.profiler is not None
            1 / 0
    wrapped = [op.name for op in ops.all_ops()] + list(recorder_mod.MEMORY + recorder_mod.TRANSFERS)
    assert not set(wrapped) & set(vars(be)), "a timing wrapper was left on the backend"
    assert graph.profiler is None
    assert {name: Trainer.__dict__[name] for name in originals} == originals


def test_profiles_do_not_nest_and_are_read_after_the_block():
    with numbanet.profile() as p:
        with pytest.raises(RuntimeError, match="do not nest"):
            numbanet.profile().__enter__()
        with pytest.raises(RuntimeError, match="after the `with numbanet.profile\\(\\)` block"):
            p.table()
    assert "conv2d" not in vars(kernels.get_backend("cpu"))


def test_every_op_is_recorded_with_a_cost_on_its_warm_up_arguments():
    be = kernels.get_backend("cpu")
    with numbanet.profile(["cpu"]) as p:
        for op in ops.all_ops():
            op.warmup(be, np.float32)
    recorded = {c.name for c in p.calls if c.kind == "kernel"}
    assert recorded == {op.name for op in ops.all_ops()}
    for c in p.calls:
        if c.kind == "kernel":
            assert c.flops >= 0 and c.bytes > 0, c.name


def test_paused_steps_are_not_recorded():
    x, y = data()
    model = tiny_cnn()
    model.train_on_batch(x, y)
    be = kernels.get_backend("cpu")
    with numbanet.profile() as p:
        model.train_on_batch(x, y)
        with p.paused():
            assert "conv2d" not in vars(be) and graph.profiler is None
            model.train_on_batch(x, y)
        model.train_on_batch(x, y)
    assert [s.index for s in p.steps] == [0, 1]
    assert {c.step for c in p.calls if c.name == "conv2d"} == {0, 1}
    with pytest.raises(RuntimeError, match="inside the `with numbanet.profile\\(\\)` block"):
        with p.paused():
            pass
