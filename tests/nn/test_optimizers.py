"""SGD and Adam: defaults, strings, and one model step against the update written in NumPy."""
import numpy as np
import pytest

from numbanet.nn import optimizers
from numbanet.nn.layers import Dense
from numbanet.nn.models import Sequential


@pytest.mark.simulator
def test_keras_defaults_and_strings():
    a = optimizers.Adam()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    s = optimizers.SGD()
    assert (s.learning_rate, s.momentum, s.nesterov) == (0.01, 0.0, False)
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    assert isinstance(optimizers.get("SGD"), optimizers.SGD)
    with pytest.raises(ValueError, match="optimizer must be 'sgd', 'adam'"):
        optimizers.get("rmsprop")
    with pytest.raises(ValueError, match="momentum must be in"):
        optimizers.SGD(momentum=1.0)


def _steps(opt, n_steps=3):
    m = Sequential([Dense(2, input_shape=(3,))], dtype="float64")
    m.compile(opt, "mse")
    x = np.random.default_rng(0).standard_normal((4, 3))
    t = np.random.default_rng(1).standard_normal((4, 2))
    w0 = m.get_weights()
    for _ in range(n_steps):
        m.train_on_batch(x, t)
    return x, t, w0, m.get_weights()


def _grads(w, b, x, t):
    d = 2 * (x @ w + b - t) / t.size
    return [x.T @ d, d.sum(0)]


@pytest.mark.simulator
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_steps_match_numpy(momentum, nesterov):
    x, t, (w, b), got = _steps(optimizers.SGD(0.1, momentum=momentum, nesterov=nesterov))
    p, vel = [w, b], [np.zeros_like(w), np.zeros_like(b)]
    for _ in range(3):
        g = _grads(p[0], p[1], x, t)
        for i in range(2):
            vel[i] = momentum * vel[i] - 0.1 * g[i]
            p[i] = p[i] + (momentum * vel[i] - 0.1 * g[i] if nesterov else vel[i])
    for a, e in zip(got, p):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)


@pytest.mark.simulator
def test_adam_steps_match_numpy():
    x, t, (w, b), got = _steps(optimizers.Adam(0.05))
    p, m, v = [w, b], [0 * w, 0 * b], [0 * w, 0 * b]
    for step in range(1, 4):
        g = _grads(p[0], p[1], x, t)
        for i in range(2):
            m[i] = 0.9 * m[i] + 0.1 * g[i]
            v[i] = 0.999 * v[i] + 0.001 * g[i] ** 2
            lr_t = 0.05 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            p[i] = p[i] - lr_t * m[i] / (np.sqrt(v[i]) + 1e-7)
    for a, e in zip(got, p):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12)
