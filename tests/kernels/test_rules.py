"""kernels/rules.py (and its compiled forms, kernels/cpu/rules.py and kernels/gpu/rules.py):
the per-element rules, written once, against NumPy and finite differences."""
import math
import os
import re

import numpy as np
import pytest

from numbanet.kernels import rules, shapes

KERNELS = os.path.dirname(os.path.abspath(rules.__file__))


def test_compiled_rules_call_each_others_compiled_forms():
    """silu calls sigmoid: its compiled form must call sigmoid's compiled form (numba can
    only call what it compiled), which compile_rules arranges through the names."""
    calls = []

    def jit(fn):
        def compiled(*args):
            calls.append(fn.__name__)
            return fn(*args)
        return compiled
    compiled = rules.compile_rules(jit)
    assert {"relu", "sigmoid", "activate", "counter_uniform", "adam", "lstm_cell_grads"} <= set(compiled)
    assert "compile_rules" not in compiled
    assert compiled["silu"](2.0, 1.0) == pytest.approx(2.0 / (1.0 + math.exp(-2.0)))
    assert calls == ["silu", "sigmoid"]
    calls.clear()
    compiled["activate"](rules.SIGMOID, 0.5, 1.0)
    assert calls == ["activate", "sigmoid"]
    assert rules.silu.__globals__["sigmoid"] is rules.sigmoid   # the module itself is untouched


REFS = {rules.LINEAR: lambda z: z, rules.RELU: lambda z: np.maximum(z, 0.0),
        rules.SIGMOID: lambda z: 1.0 / (1.0 + np.exp(-z)), rules.TANH: np.tanh,
        rules.LEAKY_RELU: lambda z: np.where(z >= 0, z, 0.2 * z)}


@pytest.mark.parametrize("code", range(len(rules.ACTIVATIONS)))
def test_activations_and_their_gradients_from_the_output(code):
    z = np.linspace(-6.0, 6.0, 61) + 0.013   # no point on relu's kink
    y = np.array([rules.activate(code, v, 1.0) for v in z])
    np.testing.assert_allclose(y, REFS[code](z), rtol=1e-12, atol=1e-15)
    h = 1e-6
    fd = (REFS[code](z + h) - REFS[code](z - h)) / (2 * h)
    d = np.array([rules.derivative(code, v, 1.0) for v in y])
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-8)
    dy = np.cos(z)
    np.testing.assert_allclose([rules.output_grad(code, a, b, 1.0) for a, b in zip(y, dy)], dy * fd,
                               rtol=1e-6, atol=1e-8)


def test_relu_nan_and_inf_rules():
    assert math.isnan(rules.relu(math.nan, 0.0))
    assert rules.relu(-math.inf, 0.0) == 0.0
    # The gradient is a select: an inf dy where y <= 0 gives 0, not inf * 0.
    assert rules.relu_grad(0.0, math.inf, 0.0) == 0.0
    assert math.isnan(rules.relu_grad(2.0, math.nan, 0.0))


def test_sigmoid_does_not_overflow():
    assert rules.sigmoid(-1000.0, 1.0) == 0.0 and rules.sigmoid(1000.0, 1.0) == 1.0


@pytest.mark.parametrize("name,ref", [("gelu_erf", lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2)))),
                                      ("gelu_tanh", lambda x: 0.5 * x * (1 + math.tanh(
                                          math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
                                      ("silu", lambda x: x / (1 + math.exp(-x)))])
def test_x_activations_and_their_gradients(name, ref):
    consts = {"gelu_erf": (0.5, 1.0, rules.SQRT_HALF), "gelu_tanh": (0.5, 1.0, rules.SQRT_2_OVER_PI, rules.GELU_CUBIC),
              "silu": (1.0,)}[name]
    grad_consts = {"gelu_erf": consts + (rules.INV_SQRT_2PI,), "gelu_tanh": consts + (3 * rules.GELU_CUBIC,),
                   "silu": consts}[name]
    forward, backward = getattr(rules, name), getattr(rules, name + "_grad")
    for x in np.linspace(-5.0, 5.0, 41):
        assert forward(x, *consts) == pytest.approx(ref(x), rel=1e-12, abs=1e-15)
        fd = (ref(x + 1e-6) - ref(x - 1e-6)) / 2e-6
        assert backward(x, 0.5, *grad_consts) == pytest.approx(0.5 * fd, rel=1e-6, abs=1e-9)


def test_leaky_relu():
    assert rules.leaky_relu(-2.0, 0.2, 0.0) == -0.4 and rules.leaky_relu(3.0, 0.2, 0.0) == 3.0
    # The fused activation's slope is Keras's default, 0.2, as the literal rounds to each type.
    assert rules.leaky_slope(np.float32(1)) == np.float32(0.2) and rules.leaky_slope(1.0) == 0.2
    assert rules.leaky_relu_grad(0.0, 1.0, 0.2, 0.0) == 0.2   # PyTorch's rule at 0
    assert rules.leaky_relu_grad(1e-9, 1.0, 0.2, 0.0) == 1.0


def test_rational_forms_are_within_float32_resolution():
    x = np.linspace(-12, 12, 4001).astype(np.float32)
    t = np.array([rules.tanh_rational(v) for v in x], np.float64)
    assert np.max(np.abs(t - np.tanh(x.astype(np.float64)))) < 4e-7
    s = np.array([rules.sigmoid_rational(v) for v in x], np.float64)
    assert np.max(np.abs(s - 1 / (1 + np.exp(-x.astype(np.float64))))) < 4e-7
    coeffs = tuple(np.float32(c) for c in rules.ERF_P + rules.ERF_Q)
    z = np.linspace(-5, 5, 2001).astype(np.float32)
    e = np.array([rules.erf_rational(v, *coeffs) for v in z], np.float64)
    np.testing.assert_allclose(e[:, 0], [math.erf(v) for v in z.astype(np.float64)], atol=2e-7)
    fd = [(math.erf(v + 1e-4) - math.erf(v - 1e-4)) / 2e-4 for v in z.astype(np.float64)]
    np.testing.assert_allclose(e[np.abs(z) < 3.9, 1], np.asarray(fd)[np.abs(z) < 3.9], atol=2e-6)


def test_lstm_and_gru_gradients_against_finite_differences():
    rng = np.random.default_rng(0)
    sig = lambda v: 1 / (1 + math.exp(-v))

    def lstm_h_c(zi, zf, zg, zo, c_prev):
        i, f, g, o = sig(zi), sig(zf), math.tanh(zg), sig(zo)
        c = rules.lstm_cell(i, f, g, c_prev)
        return o * math.tanh(c), c
    z = rng.standard_normal(5)
    dh, dc_next = 0.7, -0.3
    loss = lambda zz, cp: dh * lstm_h_c(*zz, cp)[0] + dc_next * lstm_h_c(*zz, cp)[1]
    i, f, g, o = sig(z[0]), sig(z[1]), math.tanh(z[2]), sig(z[3])
    c = rules.lstm_cell(i, f, g, z[4])
    tc = math.tanh(c)
    got = rules.lstm_cell_grads(dh, dc_next, i, f, g, o, tc, z[4], 1 - tc * tc, i * (1 - i), f * (1 - f), 1 - g * g,
                                o * (1 - o))
    for k in range(5):
        e = np.zeros(5)
        e[k] = 1e-6
        fd = (loss((z + e)[:4], (z + e)[4]) - loss((z - e)[:4], (z - e)[4])) / 2e-6
        assert got[k] == pytest.approx(fd, rel=1e-5, abs=1e-8), k

    def gru_h(zz, zr, xh, rh, h_prev):
        gz, gr = sig(zz), sig(zr)
        return rules.gru_state(gz, h_prev, math.tanh(rules.gru_candidate(xh, gr, rh)), 1.0)
    v = rng.standard_normal(5)
    gz, gr = sig(v[0]), sig(v[1])
    hh = math.tanh(rules.gru_candidate(v[2], gr, v[3]))
    dz, dr, dhh, direct, dhh_rec = rules.gru_cell_grads(dh, v[4], gz, gr, hh, v[3], gz * (1 - gz), gr * (1 - gr),
                                                         1 - hh * hh, 1.0)
    for k, want in ((0, dz), (1, dr), (2, dhh), (4, direct)):
        e = np.zeros(5)
        e[k] = 1e-6
        fd = dh * (gru_h(*(v + e)) - gru_h(*(v - e))) / 2e-6
        assert want == pytest.approx(fd, rel=1e-5, abs=1e-8), k
    assert dhh_rec == pytest.approx(dhh * gr)


def test_counter_uniform_is_splitmix64():
    def splitmix(seed, i):
        mask = (1 << 64) - 1
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return (z ^ (z >> 31)) >> 11
    with np.errstate(over="ignore"):
        for seed, i in ((0, 0), (7, 12345), (2 ** 63 - 1, 10 ** 9)):
            assert rules.counter_uniform(seed, i) == splitmix(seed, i) / 2.0 ** 53


def test_optimizer_updates_are_keras_formulas():
    p, m, v = rules.adam(1.0, 0.5, 0.1, 0.2, 0.01, 0.9, 0.1, 0.999, 0.001, 0.05, 1e-7)
    m_want, v_want = 0.9 * 0.1 + 0.1 * 0.5, 0.999 * 0.2 + 0.001 * 0.25
    assert (m, v) == pytest.approx((m_want, v_want))
    assert p == pytest.approx(1.0 - 0.01 - 0.05 * m_want / (math.sqrt(v_want) + 1e-7))
    assert rules.sgd(1.0, 0.5, 0.1, 0.0) == pytest.approx(0.95)
    p, vel = rules.sgd_momentum(1.0, 0.5, 0.2, 0.1, 0.0, 0.9, True)
    assert vel == pytest.approx(0.9 * 0.2 - 0.05) and p == pytest.approx(1.0 + 0.9 * vel - 0.05)
    assert rules.clip_scale(4.0, 1.0) == 0.5 and rules.clip_scale(0.25, 1.0) == 1.0
    assert math.isnan(rules.clip_scale(math.nan, 1.0))


def test_binary_crossentropy_terms():
    for p, t in ((0.3, 1.0), (0.9, 0.0), (1e-9, 1.0)):
        loss, grad = rules.bce_probs(p, t, 1e-7, 1 - 1e-7, 1.0, 0.0)
        c = min(max(p, 1e-7), 1 - 1e-7)
        assert loss == pytest.approx(-(t * math.log(c) + (1 - t) * math.log(1 - c)))
        assert grad == (0.0 if c != p else pytest.approx((p - t) / (p * (1 - p))))
    for z, t in ((2.0, 1.0), (-30.0, 0.0), (0.5, 0.3)):
        loss, grad = rules.bce_logits(z, t, 1.0, 0.0)
        s = 1 / (1 + math.exp(-z))
        assert loss == pytest.approx(-(t * math.log(s) + (1 - t) * math.log(1 - s)), rel=1e-9, abs=1e-12)
        assert grad == pytest.approx(s - t)


def test_one_activation_encoding():
    assert rules.ACTIVATIONS[:4] == ("linear", "relu", "sigmoid", "tanh")
    assert all(rules.CODES[name] == code for name, code in shapes.RNN_ACTIVATIONS.items())
    assert set(shapes.EPILOGUE_ACTIVATIONS) <= set(rules.ACTIVATIONS)


# Text that only a rule writes: a constant of a hash or an approximation, or a formula.
_ONLY_IN_RULES = [r"0x9E3779B97F4A7C15", r"4\.89352455891786e-03", r"-1\.60960333262415e-02", r"0\.044715",
                  r"one - y \* y", r"y \* \(one - y\)", r"b2 \* v", r"\(one - gz\)", r"math\.log1p",
                  r"LINEAR, (RELU|TANH)", r"norm != norm"]


def test_no_second_copy_of_a_rule():
    """grep over kernels/: the per-element rules and the activation encoding live in
    kernels/rules.py only."""
    found = []
    for folder, _, files in os.walk(KERNELS):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == rules.__file__:
                continue
            with open(path, encoding="utf-8") as f:
                text = f.read()
            found += [f"{os.path.relpath(path, KERNELS)}: {p}" for p in _ONLY_IN_RULES if re.search(p, text)]
    assert not found, found
