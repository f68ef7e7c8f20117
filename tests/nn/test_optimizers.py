"""SGD, Adam, AdamW, RMSprop and Adagrad: defaults, strings, and model steps against the
updates written in NumPy."""
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
        optimizers.get("nadam")
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


# --------------------------------------------------------------------------- AdamW, clipping, schedules

def adamw_ref(p, m, v, g, lr, step, wd, b1=0.9, b2=0.999, eps=1e-7):
    """Keras 3: p -= p * wd * lr, then the Adam update."""
    p = p - p * wd * lr
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    lr_t = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    return p - lr_t * m / (np.sqrt(v) + eps), m, v


def test_adamw_defaults_and_steps_match_numpy():
    a = optimizers.AdamW()
    assert (a.learning_rate, a.weight_decay, a.beta_1, a.beta_2, a.epsilon) == (0.001, 0.004, 0.9, 0.999, 1e-7)
    assert isinstance(optimizers.get("adamw"), optimizers.AdamW)
    x, t, (w, b), got = _steps(optimizers.AdamW(0.05, weight_decay=0.1))
    p, m, v = [w, b], [0 * w, 0 * b], [0 * w, 0 * b]
    for step in range(1, 4):
        g = _grads(p[0], p[1], x, t)
        for i in range(2):
            p[i], m[i], v[i] = adamw_ref(p[i], m[i], v[i], g[i], 0.05, step, 0.1)
    for a_, e in zip(got, p):
        np.testing.assert_allclose(a_, e, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="AdamW: weight_decay must be a number >= 0"):
        optimizers.AdamW(weight_decay=None)


def test_exclude_from_weight_decay_matches_variable_names():
    opt = optimizers.AdamW(0.05, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    x, t, (w, b), got = _steps(opt, n_steps=1)
    g = _grads(w, b, x, t)
    want_w = adamw_ref(w, 0 * w, 0 * w, g[0], 0.05, 1, 0.5)[0]
    want_b = adamw_ref(b, 0 * b, 0 * b, g[1], 0.05, 1, 0.0)[0]
    np.testing.assert_allclose(got[0], want_w, rtol=1e-9)
    np.testing.assert_allclose(got[1], want_b, rtol=1e-9)


@pytest.mark.simulator
@pytest.mark.parametrize("kind", ["clipnorm", "global_clipnorm"])
def test_clipping_matches_keras_rule(kind):
    # SGD: the step is -lr * (clipped g), so the clipped gradient is read off the update.
    x, t, (w, b), got = _steps(optimizers.SGD(1.0, **{kind: 0.05}), n_steps=1)
    g = _grads(w, b, x, t)
    if kind == "clipnorm":
        want = [gi * 0.05 / max(np.linalg.norm(gi), 0.05) for gi in g]
    else:
        norm = np.sqrt(sum((gi ** 2).sum() for gi in g))
        want = [gi * 0.05 / max(norm, 0.05) for gi in g]
    for p0, p1, wi in zip((w, b), got, want):
        np.testing.assert_allclose(p0 - p1, wi, rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError, match="pass clipnorm or global_clipnorm, not both"):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="clipnorm must be None or a finite number > 0"):
        optimizers.SGD(clipnorm=-1)


def test_a_schedule_sets_each_steps_rate():
    sched = optimizers.schedules.CosineDecay(0.1, decay_steps=4, alpha=0.0, warmup_target=0.3, warmup_steps=2)
    x, t, (w, b), got = _steps(optimizers.SGD(sched), n_steps=3)
    p = [w, b]
    for step in range(3):
        g = _grads(p[0], p[1], x, t)
        lr = sched(step)                              # Keras calls the schedule with the steps taken so far
        p = [pi - lr * gi for pi, gi in zip(p, g)]
    for a_, e in zip(got, p):
        np.testing.assert_allclose(a_, e, rtol=1e-12, atol=1e-14)


def test_config_round_trip_with_schedule():
    sched = optimizers.schedules.CosineDecay(0.0, 50, warmup_target=1e-3, warmup_steps=5)
    opt = optimizers.AdamW(sched, weight_decay=0.01, global_clipnorm=1.0)
    again = optimizers.from_config("AdamW", opt.get_config(), iterations=7)
    assert again.get_config() == opt.get_config() and again.iterations == 7
    assert again.current_learning_rate() == sched(7)


# --------------------------------------------------------------------------- RMSprop, Adagrad

def test_rmsprop_and_adagrad_keras_defaults_strings_and_config():
    r = optimizers.RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    a = optimizers.Adagrad()
    assert (a.learning_rate, a.initial_accumulator_value, a.epsilon) == (0.001, 0.1, 1e-7)
    assert isinstance(optimizers.get("rmsprop"), optimizers.RMSprop)
    assert isinstance(optimizers.get("Adagrad"), optimizers.Adagrad)
    for opt in (optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, epsilon=1e-6, centered=True, clipnorm=1.0),
                optimizers.Adagrad(0.02, initial_accumulator_value=0.3, epsilon=1e-5, weight_decay=0.01)):
        back = optimizers.from_config(type(opt).__name__, opt.get_config(), iterations=4)
        assert type(back) is type(opt) and back.get_config() == opt.get_config() and back.iterations == 4
    assert optimizers.RMSprop(momentum=0.9, centered=True).needed_slots() == ("velocity", "momentum",
                                                                               "average_gradient")
    assert optimizers.RMSprop().needed_slots() == ("velocity",)
    with pytest.raises(ValueError, match=r"RMSprop: rho must be a number in \[0.0, 1.0\), got 1.0"):
        optimizers.RMSprop(rho=1.0)
    with pytest.raises(ValueError, match="RMSprop: centered must be True or False"):
        optimizers.RMSprop(centered=1)
    with pytest.raises(ValueError, match="Adagrad: initial_accumulator_value must be a number"):
        optimizers.Adagrad(initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="Adagrad: epsilon must be > 0"):
        optimizers.Adagrad(epsilon=0.0)


@pytest.mark.simulator
@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.9, False), (0.0, True), (0.5, True)])
def test_rmsprop_steps_match_numpy(momentum, centered):
    """Keras 3's update: epsilon inside the root, the centered mean subtracted there, the
    momentum buffer accumulating the increments."""
    x, t, (w, b), got = _steps(optimizers.RMSprop(0.05, rho=0.8, momentum=momentum, centered=centered))
    p = [w, b]
    vel, avg, mom = ([0 * w, 0 * b] for _ in range(3))
    for _ in range(3):
        g = _grads(p[0], p[1], x, t)
        for i in range(2):
            vel[i] = 0.8 * vel[i] + 0.2 * g[i] ** 2
            denominator = vel[i] + 1e-7
            if centered:
                avg[i] = 0.8 * avg[i] + 0.2 * g[i]
                denominator = vel[i] - avg[i] ** 2 + 1e-7
            increment = 0.05 * g[i] / np.sqrt(denominator)
            if momentum:
                mom[i] = momentum * mom[i] + increment
                p[i] = p[i] - mom[i]
            else:
                p[i] = p[i] - increment
    for a, e in zip(got, p):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12)


@pytest.mark.simulator
def test_adagrad_steps_match_numpy():
    """The accumulator starts at initial_accumulator_value, not zero."""
    opt = optimizers.Adagrad(0.1, initial_accumulator_value=0.25)
    x, t, (w, b), got = _steps(opt)
    p, acc = [w, b], [np.full_like(w, 0.25), np.full_like(b, 0.25)]
    for _ in range(3):
        g = _grads(p[0], p[1], x, t)
        for i in range(2):
            acc[i] = acc[i] + g[i] ** 2
            p[i] = p[i] - 0.1 * g[i] / np.sqrt(acc[i] + 1e-7)
    for a, e in zip(got, p):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12)
