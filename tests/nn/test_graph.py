"""nn/graph.py: the graph a functional model runs: its checks, gradients summed over a
fan-out and over a shared layer's calls."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet import nn
from numbanet.nn.layers import Add, Dense, Input
from numbanet.nn.layers.base import calls_without_building
from toy_models import blobs, residual_model


@pytest.mark.simulator
def test_fan_out_sums_gradients():
    m = residual_model()
    m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = blobs(12)
    assert check_model_gradients(m, x.astype("float64") * 0.5, y) == 2 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2


@pytest.mark.simulator
def test_shared_layer_accumulates_over_its_calls():
    a, b = Input((3,)), Input((3,))
    shared = Dense(3, activation="tanh")
    m = nn.Model([a, b], Dense(1)(Add()([shared(a), shared(shared(b))])), dtype="float64")
    assert [l.name for l in m.layers].count(shared.name) == 1 and len(m.get_weights()) == 4
    m.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    check_model_gradients(m, [rng.standard_normal((4, 3)), rng.standard_normal((4, 3))],
                          rng.standard_normal((4, 1)))


def test_graph_errors():
    a, b = Input((3,)), Input((3,))
    y = Add()([a, b])
    with pytest.raises(ValueError, match="the outputs depend on nn.Input '.*', which is not among the model's inputs"):
        nn.Model(a, y)
    with pytest.raises(ValueError, match="every input must come from nn.Input"):
        nn.Model(y, Dense(1)(y))
    with pytest.raises(ValueError, match="the name 'twin' is used by 2 layers"):
        nn.Model(a, Dense(1, name="twin")(Dense(3, name="twin")(a)))
    m = nn.Model([a, b], y)
    with pytest.raises(ValueError, match="predict: x has 1 arrays but the model has 2 inputs"):
        m.predict([np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match=r"the inputs have different lengths \(x\[0\] has 2 samples, x\[1\] has 3\)"):
        m.predict([np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32)])
    with pytest.raises(TypeError, match="nesting models is not supported"):
        m(a)
    c = Input((4,))
    # A built layer refuses a call on other shapes itself (tests/nn/layers/test_base.py);
    # wired unbuilt (as a file's loader wires), the graph checks them.
    with calls_without_building():
        e = Dense(2)
        shared = Add()([e(a), e(c)])
    with pytest.raises(ValueError, match="a shared layer needs the same shapes at every call"):
        nn.Model([a, c], shared)
