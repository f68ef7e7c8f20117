"""The per-element rules of every op, written once as plain Python for both backends.

Each function here computes one element (an activation and its gradient, the RNN cells'
gate arithmetic, dropout's counter hash, one optimizer update, a binary cross-entropy
term). Neither backend has a copy of its own: kernels/cpu/rules.py compiles them with
numba.njit(inline="always") and kernels/gpu/rules.py with kernels/gpu/launch.py's
`inlined`, and the kernels of both call those (`compile_rules` below). A rule that calls
another calls the other's compiled form for the same target.

Conventions that keep float32 in float32 on both targets: constants come in as arguments
typed by the caller (`zero`, `one`, `half`: the array's dtype) or are built from them;
an int or float literal beside a float32 would make numba compute in float64. The hash
stays in uint64 throughout: int64 op uint64 is float64 in numba.

The activation encoding of the whole library is ACTIVATIONS: an activation a kernel
applies in its own pass (a GEMM's or a convolution's epilogue, the recurrent cells) is
passed as its index here, so one compiled kernel serves every activation.
"""
import math
import types

import numpy as np

# The activations by code (the index). Those whose gradient is a function of their
# output y alone, so that a fused op can back-propagate through them from the y it
# returned.
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "leaky_relu")
LINEAR, RELU, SIGMOID, TANH, LEAKY_RELU = range(5)
CODES = {name: code for code, name in enumerate(ACTIVATIONS)}


# --------------------------------------------------------------------------- activations
# relu's NaN rule is PyTorch's: relu(NaN) = NaN (the comparison is false, v passes
# through), relu(-inf) = 0 (a typed zero, never v * 0), and its gradient is zeroed only
# where y <= 0, so a NaN or inf in d reaches the result exactly where relu let v through.

def relu(v, zero):
    return zero if v <= zero else v


def relu_grad(y, d, zero):
    """d * relu'(z) from relu's output y, as a select: no inf * 0 makes a NaN."""
    return zero if y <= zero else d


def sigmoid(v, one):
    # exp of a non-positive number only: no overflow for large |v|.
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


def sigmoid_derivative(y, one):
    return y * (one - y)


def tanh_derivative(y, one):
    return one - y * y


def activate(code, v, one):
    """ACTIVATIONS[code](v). In a kernel built per code the code is a constant and only
    its branch is compiled."""
    if code == RELU:
        return relu(v, one - one)
    if code == SIGMOID:
        return sigmoid(v, one)
    if code == TANH:
        return math.tanh(v)
    if code == LEAKY_RELU:
        return leaky_relu(v, leaky_slope(one), one - one)
    return v


def derivative(code, y, one):
    """act'(z) from the activation's output y = act(z)."""
    if code == RELU:
        return relu_grad(y, one, one - one)
    if code == SIGMOID:
        return sigmoid_derivative(y, one)
    if code == TANH:
        return tanh_derivative(y, one)
    if code == LEAKY_RELU:
        return leaky_relu_grad(y, one, leaky_slope(one), one - one)
    return one


def output_grad(code, y, d, one):
    """d * act'(z) from y = act(z): what an activation's backward writes (relu's and leaky
    relu's as a select)."""
    if code == RELU:
        return relu_grad(y, d, one - one)
    if code == LEAKY_RELU:
        return leaky_relu_grad(y, d, leaky_slope(one), one - one)
    return d * derivative(code, y, one)


# GELU, SiLU and leaky ReLU: their derivatives are not functions of the output alone
# (GELU and SiLU are not monotonic; leaky ReLU with a slope <= 0 loses the sign), so
# their backwards take the forward's input x. GELU's constants come in typed:
# r = 1 / sqrt(2), pdf = 1 / sqrt(2 pi), c = sqrt(2 / pi), a = 0.044715.
SQRT_HALF = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327
SQRT_2_OVER_PI = 0.7978845608028654
GELU_CUBIC = 0.044715


def gelu_from_erf(x, e, half, one):
    """x Phi(x) given e = erf(x / sqrt(2)) (math.erf, or the rational form below)."""
    return half * x * (one + e)


def gelu_grad_from_erf(d, e, x_phi, half, one):
    """d * (Phi(x) + x phi(x)), the derivative of x Phi(x), given e = erf(x / sqrt(2))
    and x_phi = x phi(x)."""
    return d * (half * (one + e) + x_phi)


def gelu_erf(x, half, one, r):
    return gelu_from_erf(x, math.erf(x * r), half, one)


def gelu_erf_grad(x, d, half, one, r, pdf):
    return gelu_grad_from_erf(d, math.erf(x * r), x * pdf * math.exp(-half * x * x), half, one)


def gelu_tanh(x, half, one, c, a):
    return half * x * (one + math.tanh(c * (x + a * x * x * x)))


def gelu_tanh_grad(x, d, half, one, c, a, three_a):
    t = math.tanh(c * (x + a * x * x * x))
    return d * (half * (one + t) + half * x * (one - t * t) * c * (one + three_a * x * x))


def silu(x, one):
    return x * sigmoid(x, one)


def silu_grad(x, d, one):
    s = sigmoid(x, one)
    # d/dx x s(x) = s + x s (1 - s)
    return d * s * (one + x * (one - s))


def leaky_relu(x, slope, zero):
    # NaN fails the test and stays NaN (slope * NaN).
    return x if x >= zero else slope * x


def leaky_relu_grad(x, d, slope, zero):
    # At x == 0 the slope is negative_slope, as in PyTorch (x > 0 selects 1). With a
    # positive slope y = leaky_relu(x) has x's sign, so the rule holds for y as well.
    return d if x > zero else slope * d


def leaky_slope(one):
    """Keras's default negative_slope, 0.2, in one's type: 1 / 5 rounds once to the same
    value as the literal cast to that type, where a float literal would make float32 math
    float64."""
    return one / (one + one + one + one + one)


# float32 erf as a rational function (Eigen's and XLA's fast float erf: odd degree-13
# over even degree-8 polynomials on [-4, 4], +/-1 outside; 6.5e-8 from erf, below
# float32's resolution) and its derivative from the same function, so that a GELU
# backward needs no exp: plain multiply-adds and one divide, which vectorize where
# libm's erff and expf are scalar calls. Every constant is a float32 argument.
ERF_P = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
         -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)
ERF_Q = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
         -1.45660718464996e-05)


def erf_rational(z, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4):
    """-> (erf(z), d erf / dz) of the rational approximation, float32, z clamped to [-4, 4]."""
    four, zero = np.float32(4), np.float32(0)
    two, three, five, six = np.float32(2), np.float32(3), np.float32(5), np.float32(6)
    c = min(max(z, -four), four)
    t = c * c
    big_p = (((((p6 * t + p5) * t + p4) * t + p3) * t + p2) * t + p1) * t + p0
    dp = ((((six * p6 * t + five * p5) * t + four * p4) * t + three * p3) * t + two * p2) * t + p1
    big_q = (((q4 * t + q3) * t + q2) * t + q1) * t + q0
    dq = ((four * q4 * t + three * q3) * t + two * q2) * t + q1
    num = c * big_p
    # d/dz [z P(z^2) / Q(z^2)] = ((P + 2 z^2 P') Q - z P 2 z Q') / Q^2; 0 where clamped.
    slope = ((big_p + two * t * dp) * big_q - num * two * c * dq) / (big_q * big_q)
    return num / big_q, slope if abs(z) <= four else zero


# tanh on float32 as an odd rational function (Eigen's fast tanh: x P(x^2) / Q(x^2) on
# [-7.9053, 7.9053], clamped outside; max error 3.4e-7 against float64 tanh over
# [-12, 12]): plain arithmetic that vectorizes across a tile's lanes where libm's tanhf
# is a scalar call. sigmoid(x) = (1 + tanh(x / 2)) / 2 from it. The cpu's recurrent cells
# use them for float32 (kernels/cpu/rules.py: gate_tanh, gate_sigmoid).
TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
          -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
_A0, _A1, _A2, _A3, _A4, _A5, _A6 = (np.float32(c) for c in TANH_P)
_B0, _B1, _B2, _B3 = (np.float32(c) for c in TANH_Q)
_CLAMP = np.float32(7.90531110763549805)
_HALF32 = np.float32(0.5)


def tanh_rational(x):
    x = max(min(x, _CLAMP), -_CLAMP)
    x2 = x * x
    p = ((((((_A6 * x2 + _A5) * x2 + _A4) * x2 + _A3) * x2 + _A2) * x2 + _A1) * x2 + _A0) * x
    q = ((_B3 * x2 + _B2) * x2 + _B1) * x2 + _B0
    return p / q


def sigmoid_rational(x):
    return _HALF32 + _HALF32 * tanh_rational(_HALF32 * x)


# --------------------------------------------------------------------------- recurrent cells
# The cells by code, with the gate blocks of their kernels (Keras's kernel has GATES *
# units columns) and the columns per unit that the forward keeps for the backward
# (kernels/cpu/rnn.py says which).
CELLS = ("simple", "lstm", "gru")
SIMPLE, LSTM, GRU = range(3)
GATES = (1, 4, 3)
WORKSPACE = (1, 6, 5)

# Keras's equations (act = activation, rec = recurrent_activation, gates in Keras's order):
#   LSTM  i, f, g, o = rec, rec, act, rec of x W + b + h U;  c = f c_prev + i g;  h = o act(c)
#   GRU   z, r = rec(.);  hh = act(x W_h + b_h + r (h U_h + rb_h));  h = z h_prev + (1 - z) hh
# The backward rules take the activations' derivatives (`derivative` above, from each
# gate's output) as arguments, so that a caller can form them in a loop of their own.

def lstm_cell(gi, gf, gg, c_prev):
    return gf * c_prev + gi * gg


def gru_candidate(xh, gr, rh):
    """The candidate's pre-activation; rh = h_prev U_h + rb_h (reset_after=True)."""
    return xh + gr * rh


def gru_state(gz, h_prev, hh, one):
    return gz * h_prev + (one - gz) * hh


def lstm_cell_grads(dh, dc_next, gi, gf, gg, go, tc, c_prev, d_tc, d_i, d_f, d_g, d_o):
    """-> (di, df, dg, do, dc_prev): the gate pre-activations' gradients and the cell
    state's gradient carried to the previous step. tc = act(c); d_* the derivatives of
    act at c and of each gate's activation."""
    dc = dc_next + dh * go * d_tc
    return dc * gg * d_i, dc * c_prev * d_f, dc * gi * d_g, dh * tc * d_o, dc * gf


def gru_cell_grads(dh, h_prev, gz, gr, hh, rh, d_z, d_r, d_h, one):
    """-> (dz, dr, dhh, dh_prev_direct, dhh_recurrent): the pre-activations' gradients on
    the input side, the part of dh_prev that skips the recurrent product (z dh) and the
    candidate's gradient on the recurrent side (r times dhh)."""
    dz = dh * (h_prev - hh) * d_z
    dhh = dh * (one - gz) * d_h
    dr = dhh * rh * d_r
    return dz, dr, dhh, dh * gz, dhh * gr


# --------------------------------------------------------------------------- dropout
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def counter_uniform(seed, i):
    """A uniform in [0, 1) from (seed, element index): splitmix64 of seed + (i+1) * golden,
    so both backends draw the same dropout mask for a seed with no RNG state."""
    z = np.uint64(seed) + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * (1.0 / 9007199254740992.0)


# --------------------------------------------------------------------------- optimizers
# Keras 3's formulas; the scalars come in the parameter's dtype (the caller casts them
# once), and weight decay is decoupled (lr_wd = lr * weight_decay).

def adam(p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    """-> (p, m, v) after one step; alpha is lr with the bias correction folded in."""
    p = p - lr_wd * p
    m = b1 * m + one_b1 * g
    v = b2 * v + one_b2 * g * g
    return p - alpha * m / (math.sqrt(v) + eps), m, v


def sgd(p, g, lr, lr_wd):
    return p - lr_wd * p - lr * g


def sgd_momentum(p, g, vel, lr, lr_wd, mom, nesterov):
    """-> (p, velocity): v = momentum v - lr g; p += v, or momentum v - lr g with nesterov."""
    p = p - lr_wd * p
    vel = mom * vel - lr * g
    if nesterov:
        return p + mom * vel - lr * g, vel
    return p + vel, vel


def rmsprop(p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum):
    """-> (p, velocity, average gradient, momentum) after one RMSprop step, Keras 3's
    order of operations: velocity = rho v + (1 - rho) g^2; centered: average = rho a +
    (1 - rho) g and the denominator sqrt(v - a^2 + eps), else sqrt(v + eps); increment =
    lr g / denominator; with momentum m = momentum m + increment and p -= m, else
    p -= increment. avg / mom pass through unchanged when not centered / no momentum."""
    p = p - lr_wd * p
    vel = rho * vel + one_rho * (g * g)
    if centered:
        avg = rho * avg + one_rho * g
        denominator = vel - avg * avg + eps
    else:
        denominator = vel + eps
    increment = lr * g / math.sqrt(denominator)
    if use_momentum:
        mom = momentum * mom + increment
        return p - mom, vel, avg, mom
    return p - increment, vel, avg, mom


def rmsprop_at(i, p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum, zero):
    """rmsprop on element i of the arrays in place; avg and mom are read and written only
    when centered / use_momentum (an absent slot may be an empty or dummy array)."""
    a = avg[i] if centered else zero
    m = mom[i] if use_momentum else zero
    p[i], vel[i], a, m = rmsprop(p[i], g[i], vel[i], a, m, lr, lr_wd, rho, one_rho, momentum, eps, centered,
                                 use_momentum)
    if centered:
        avg[i] = a
    if use_momentum:
        mom[i] = m


def adagrad(p, g, acc, lr, lr_wd, eps):
    """-> (p, accumulator) after one Adagrad step (Keras 3's): acc += g^2;
    p -= lr g / sqrt(acc + eps)."""
    p = p - lr_wd * p
    acc = acc + g * g
    return p - lr * g / math.sqrt(acc + eps), acc


def in_range(v, n):
    """0 <= v < n for an index v of a signed or unsigned int type: one unsigned comparison
    (a negative v is huge as uint64). The kernels skip an index outside, never write it."""
    return np.uint64(v) < np.uint64(n)


def clip_scale(sq_norm, clipnorm):
    """Keras's clipnorm factor clipnorm / max(norm, clipnorm) from the squared norm: exactly
    1 within bounds, NaN for a NaN norm (a broken gradient is not hidden)."""
    norm = math.sqrt(sq_norm)
    if norm > clipnorm:
        return clipnorm / norm
    if norm != norm:
        return norm
    return 1.0


# --------------------------------------------------------------------------- losses

def bce_probs(p, t, lo, hi, one, zero):
    """-> (loss term, d term / dp) of binary cross-entropy on a probability clipped to
    [lo, hi] = [eps, 1 - eps], as Keras; clipping has zero derivative outside."""
    c = min(max(p, lo), hi)
    loss = -(t * math.log(c) + (one - t) * math.log(one - c))
    return loss, (c - t) / (c * (one - c)) if lo <= p <= hi else zero


def bce_logits(z, t, one, zero):
    """-> (loss term, d term / dz) of binary cross-entropy on a logit, in the stable form
    max(z, 0) - z t + log(1 + exp(-|z|)): exp of a non-positive number only."""
    e = math.exp(-abs(z))
    s = one / (one + e) if z >= zero else e / (one + e)
    return max(z, zero) - z * t + math.log1p(e), s - t


# --------------------------------------------------------------------------- compiling

def compile_rules(jit):
    """{name: jit(rule)} for every rule above, each compiled form calling the other rules'
    compiled forms: a copy of each function over a namespace in which the rules' names
    are bound to those forms (numba resolves a call by the global it names)."""
    namespace = dict(globals())
    compiled = {}
    for name, fn in list(namespace.items()):
        if isinstance(fn, types.FunctionType) and fn.__module__ == __name__ and not name.startswith("_") \
                and name != "compile_rules":
            copy = types.FunctionType(fn.__code__, namespace, name, fn.__defaults__, fn.__closure__)
            copy.__qualname__, copy.__doc__ = fn.__qualname__, fn.__doc__
            compiled[name] = jit(copy)
    namespace.update(compiled)
    return compiled
