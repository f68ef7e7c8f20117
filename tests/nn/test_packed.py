"""nn/packed.py: fit's one-kernel optimizer update over packed weights and gradients.

fit packs a model only when every layer with weights writes its gradients into the packed
buffer (Dense and Conv2D with a bias) and is called once; any other model (a shared layer,
whose gradient is the sum over its calls; a layer that does not write packed gradients)
must fall back to the update per array. Either way the training must be the same as the
update per array, which is what a model gets with packing switched off."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import utils
from numbanet.nn.layers import Add, Dense, Input, LayerNormalization


def _sequential():
    return nn.Sequential([Dense(5, activation="relu", input_shape=(3,)), Dense(3, activation="softmax")],
                         dtype="float64")


def _residual():
    x = Input((3,))
    h = Dense(4, activation="tanh")(x)
    return nn.Model(x, Dense(3, activation="softmax")(Add()([h, Dense(4, activation="relu")(h)])), dtype="float64")


def _shared():
    x = Input((3,))
    shared = Dense(3, activation="tanh")
    return nn.Model(x, Dense(3, activation="softmax")(shared(shared(x))), dtype="float64")


def _with_layer_norm():
    x = Input((3,))
    return nn.Model(x, Dense(3, activation="softmax")(LayerNormalization()(Dense(4)(x))), dtype="float64")


MODELS = {"sequential": (_sequential, True), "functional": (_residual, True),
          "shared layer": (_shared, False), "layer norm": (_with_layer_norm, False)}


def _train(build, packing, monkeypatch):
    if not packing:
        monkeypatch.setattr(Dense, "packs_grads", False)
    utils.set_random_seed(7)
    m = build()
    m.compile(nn.optimizers.Adam(learning_rate=0.05), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3))
    y = rng.integers(0, 3, 8)
    h = m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # two steps: the simulator is slow
    monkeypatch.undo()
    return m, h.history["loss"]


@pytest.mark.simulator
@pytest.mark.parametrize("name", list(MODELS))
def test_packed_update_only_where_it_is_exact_and_equal_to_the_update_per_array(name, monkeypatch):
    build, packs = MODELS[name]
    ref, ref_loss = _train(build, False, monkeypatch)
    assert ref._packed is None
    m, loss = _train(build, True, monkeypatch)
    assert (m._packed is not None) == packs, \
        f"{name}: expected the model {'packed' if packs else 'not packed'}, got _packed={m._packed!r}"
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    utils.set_random_seed(7)
    w0 = build().get_weights()
    for got, want, start in zip(m.get_weights(), ref.get_weights(), w0):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        assert not np.array_equal(got, start), f"{name}: two Adam steps left a weight unchanged"
    if packs:
        assert all(any(layer.params[k] is v for v in m._packed.views.values())
                   for _, layer, k in m._params()), f"{name}: a weight is not a view of the packed buffer"
