"""Activation specs (names, parameter dicts, nn.activations functions and partials), the host
functions against NumPy, and gradients through layers by finite differences."""
import functools
import math

import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn import activations
from numbanet.nn.layers import Dense
from numbanet.nn.models import Sequential


def test_specs():
    assert activations.get("GELU") == "gelu" and activations.get("swish") == "silu"
    assert activations.get(activations.gelu) == "gelu"
    assert activations.get(functools.partial(activations.gelu, approximate=True)) == {"name": "gelu",
                                                                                       "approximate": True}
    assert activations.get({"name": "leaky_relu", "negative_slope": 0.2}) == "leaky_relu"   # the default
    assert activations.get({"name": "leaky_relu", "negative_slope": 0.1}) == {"name": "leaky_relu",
                                                                              "negative_slope": 0.1}
    assert activations.needs_input("gelu") and not activations.needs_input("relu")
    with pytest.raises(ValueError, match=r"activation 'relu' takes no parameters, got \['alpha'\]"):
        activations.get({"name": "relu", "alpha": 1})
    with pytest.raises(ValueError, match="approximate must be True or False"):
        activations.get({"name": "gelu", "approximate": "tanh"})
    with pytest.raises(ValueError, match="activation must be one of"):
        activations.get(np.tanh)


def test_host_functions():
    x = np.linspace(-3, 3, 13)
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(activations.gelu(x), 0.5 * x * (1 + erf(x / np.sqrt(2))), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(activations.gelu(x, approximate=True),
                               0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), rtol=1e-12)
    np.testing.assert_allclose(activations.silu(x), x / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(activations.leaky_relu(x), np.where(x >= 0, x, 0.2 * x), rtol=1e-15)
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.5), np.where(x >= 0, x, 0.5 * x))


@pytest.mark.simulator
@pytest.mark.parametrize("act", ["gelu", functools.partial(activations.gelu, approximate=True), "silu", "swish",
                                 "leaky_relu", {"name": "leaky_relu", "negative_slope": -0.3}])
def test_layer_gradients(act):
    m = Sequential([Dense(5, activation=act, input_shape=(3,)), Dense(2)], dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    check_model_gradients(m, rng.standard_normal((6, 3)), rng.standard_normal((6, 2)))


def test_layer_config_keeps_the_parameters():
    d = Dense(3, activation=functools.partial(activations.leaky_relu, negative_slope=0.05))
    cfg = d.get_config()
    assert cfg["activation"] == {"name": "leaky_relu", "negative_slope": 0.05}
    assert Dense(**cfg).activation == cfg["activation"]
