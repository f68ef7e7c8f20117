"""The rnn family: SimpleRNN, LSTM and GRU layers over a sequence, forward and backward
through time.

A layer is one GEMM over all time steps for the input projection (x @ kernel + bias),
the recurrence (kernels/<backend>/rnn.py: rnn_forward, rnn_backward, which loop over time
themselves) and, backward, three GEMMs over all steps (dkernel, drecurrent_kernel, dx)
and the bias's column sums, each summed in a fixed order. The equations and the
workspace layout are in kernels/cpu/rnn.py's docstring; the cells' codes, gate counts
and workspace widths in kernels/rules.py.
"""
import types

import numpy as np

from numbanet.kernels import rules, shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair

CELLS = {name: code for code, name in enumerate(rules.CELLS)}
WORKSPACE = dict(zip(rules.CELLS, rules.WORKSPACE))   # workspace columns per unit


def rnn_cell(op, cell):
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(f"{op}: cell must be one of {sorted(CELLS)}, got {cell!r}")
    return cell


def rnn_activation(op, name, value):
    """An activation the recurrent kernels compute (by name) -> its code."""
    if not isinstance(value, str) or value not in shapes.RNN_ACTIVATIONS:
        raise ValueError(f"{op}: {name} must be one of {sorted(shapes.RNN_ACTIVATIONS)}, got {value!r}")
    return shapes.RNN_ACTIVATIONS[value]


def rnn_shapes(op, cell, x, kernel, recurrent_kernel, bias):
    """x (batch, timesteps, features), kernel (features, G * units), recurrent_kernel
    (units, G * units), bias (see rnn_bias_shape) or None -> (B, T, I, H, G)."""
    for name, arr in (("x", x), ("kernel", kernel), ("recurrent_kernel", recurrent_kernel)):
        shapes.check_float(op, name, arr)
    shapes.check_ndim(op, "x", x, 3, "(batch, timesteps, features)")
    shapes.check_ndim(op, "kernel", kernel, 2, "(features, gates * units)")
    shapes.check_ndim(op, "recurrent_kernel", recurrent_kernel, 2, "(units, gates * units)")
    shapes.check_nonempty(op, "x", x)
    shapes.check_nonempty(op, "recurrent_kernel", recurrent_kernel)
    shapes.check_same_dtype(op, [("x", x), ("kernel", kernel), ("recurrent_kernel", recurrent_kernel), ("bias", bias)])
    g = shapes.RNN_GATES[cell]
    h = int(recurrent_kernel.shape[0])
    if tuple(recurrent_kernel.shape) != (h, g * h):
        raise ValueError(f"{op}: a {cell} cell's recurrent_kernel must have shape (units, {g} * units), got "
                         f"{tuple(recurrent_kernel.shape)}")
    b_count, t_count, features = (int(s) for s in x.shape)
    if tuple(kernel.shape) != (features, g * h):
        raise ValueError(f"{op}: kernel must have shape (features, {g} * units) = {(features, g * h)} for x with "
                         f"{features} features and {h} units, got {tuple(kernel.shape)} (x.shape={tuple(x.shape)})")
    if bias is not None:
        shapes.check_float(op, "bias", bias)
        shapes.check_shape(op, "bias", bias, shapes.rnn_bias_shape(cell, h))
    return b_count, t_count, features, h, g


def check_rnn_state(op, name, arr, dtype, batch, units):
    shapes.check_float(op, name, arr)
    if np.dtype(arr.dtype) != dtype:
        raise TypeError(f"{op}: {name} is {np.dtype(arr.dtype)} but x is {dtype}; pass arrays of one dtype")
    shapes.check_shape(op, name, arr, (batch, units))


def check_rnn_mask(op, mask, batch, steps):
    """A (batch, timesteps) bool or integer array; a step is kept where it is non-zero."""
    dtype = getattr(mask, "dtype", None)
    if dtype is None or (np.dtype(dtype).kind not in "iub"):
        got = np.dtype(dtype) if dtype is not None else type(mask).__name__
        raise TypeError(f"{op}: mask must be a bool or integer array (True/non-zero keeps a step), got {got}")
    if not np.dtype(dtype).isnative:
        raise TypeError(f"{op}: mask must be in native byte order, got {np.dtype(dtype).str}")
    if tuple(mask.shape) != (batch, steps):
        raise ValueError(f"{op}: mask must have shape (batch, timesteps) = {(batch, steps)}, got "
                         f"{tuple(mask.shape)}")


def _layer(be, op, cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
           activation, recurrent_activation, go_backwards, zero_output_for_mask, outputs_in_input_order):
    """The arguments rnn and rnn_backward share, checked, as a namespace: the arrays
    (xin: x after the input dropout; h0/c0 zeros when None; keep: the mask as uint8),
    the flags, the activation codes and the sizes (batch, steps, features, units, gates)."""
    cell = rnn_cell(op, cell)
    x, kernel, recurrent_kernel, bias, h0, c0, mask, dmask, rmask = be._prepare(
        op, ("bias", "h0", "c0", "mask", "dropout_mask", "recurrent_dropout_mask"), x=x, kernel=kernel,
        recurrent_kernel=recurrent_kernel, bias=bias, h0=h0, c0=c0, mask=mask, dropout_mask=dropout_mask,
        recurrent_dropout_mask=recurrent_dropout_mask)
    b_count, t_count, features, h, g = rnn_shapes(op, cell, x, kernel, recurrent_kernel, bias)
    dtype = np.dtype(x.dtype)
    if c0 is not None and cell != "lstm":
        raise ValueError(f"{op}: c0 is an LSTM's second state; a {cell} cell has only h0")
    for name, arr, width in (("h0", h0, h), ("c0", c0, h), ("dropout_mask", dmask, features),
                             ("recurrent_dropout_mask", rmask, h)):
        if arr is not None:
            check_rnn_state(op, name, arr, dtype, b_count, width)
    keep = None
    if mask is not None:
        check_rnn_mask(op, mask, b_count, t_count)
        keep = be.empty((b_count, t_count), np.uint8)
        be.recurrent.keep_steps(mask, keep)
    # Zero states from the step's workspace (be.zeros would allocate every step).
    if h0 is None:
        h0 = be.empty((b_count, h), dtype)
        be.zero(h0)
    if c0 is None and cell == "lstm":
        c0 = be.empty((b_count, h), dtype)
        be.zero(c0)
    xin = x
    if dmask is not None:
        # Keras's input dropout: one mask per sample, the same at every step.
        xin = be.empty(tuple(x.shape), dtype)
        be.recurrent.scale_features(x, dmask, xin)
    return types.SimpleNamespace(
        cell=cell, code=CELLS[cell], x=x, xin=xin, kernel=kernel, u=recurrent_kernel, bias=bias, h0=h0, c0=c0,
        keep=keep, dmask=dmask, rmask=rmask, dtype=dtype, dims=(b_count, t_count, features, h, g),
        act=rnn_activation(op, "activation", activation),
        ract=rnn_activation(op, "recurrent_activation", recurrent_activation),
        reverse=shapes.flag(op, "go_backwards", go_backwards),
        zero_output=shapes.flag(op, "zero_output_for_mask", zero_output_for_mask),
        in_order=shapes.flag(op, "outputs_in_input_order", outputs_in_input_order))


def rnn(be, x, kernel, recurrent_kernel, bias=None, *, cell, h0=None, c0=None, mask=None,
        activation="tanh", recurrent_activation="sigmoid", go_backwards=False, return_sequences=True,
        zero_output_for_mask=False, dropout_mask=None, recurrent_dropout_mask=None,
        outputs_in_input_order=False):
    """A recurrent layer over x (batch, timesteps, features) -> (y, h, c, workspace).

    cell "simple", "lstm" or "gru" with Keras's weights: kernel (features, G * units),
    recurrent_kernel (units, G * units), bias (G * units,), a GRU's (2, 3 * units)
    (reset_after=True: input and recurrent biases), or None; G = 1, 4 (gates i, f, c, o)
    or 3 (z, r, h). y is (batch, timesteps, units) with return_sequences, else the last
    output (batch, units); h (and c, for an LSTM; else None) the final states; workspace
    what rnn_backward needs. h0/c0: initial states (zeros when None). mask (batch,
    timesteps), bool or integer: a step is skipped where it is False/0, carrying the
    state through; its output is the previous output (0 before the first) or 0 with
    zero_output_for_mask. go_backwards runs from the last step and returns the outputs
    in that order (Keras's rule), or in input order with outputs_in_input_order (what
    Bidirectional's backward half needs: no flip afterwards). dropout_mask (batch, features) and
    recurrent_dropout_mask (batch, units) scale the inputs and the state fed to the
    recurrent kernel, the same mask at every step."""
    op = "rnn"
    return_sequences = shapes.flag(op, "return_sequences", return_sequences)
    L = _layer(be, op, cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
               activation, recurrent_activation, go_backwards, zero_output_for_mask, outputs_in_input_order)
    b_count, t_count, features, h, g = L.dims
    in_bias, rec_bias = L.bias, None
    if L.bias is not None and L.cell == "gru":
        in_bias, rec_bias = L.bias[0], L.bias[1]
    # The input projection of every step at once: one GEMM.
    xproj = be.empty((b_count, t_count, g * h), L.dtype)
    be.gemm.matmul(be.reshape(L.xin, (b_count * t_count, features)), L.kernel, False, False, in_bias,
                   be.reshape(xproj, (b_count * t_count, g * h)))
    y = be.empty((b_count, t_count, h), L.dtype) if return_sequences else None
    last = be.empty((b_count, h), L.dtype)
    h_out = be.empty((b_count, h), L.dtype)
    c_out = be.empty((b_count, h), L.dtype) if L.cell == "lstm" else None
    ws = be.empty((b_count, t_count, WORKSPACE[L.cell] * h), L.dtype)
    be.recurrent.rnn_forward(L.code, xproj, L.u, rec_bias, L.h0, L.c0, L.keep, L.rmask, L.reverse, L.zero_output,
                             L.act, L.ract, y, last, h_out, c_out, ws, L.in_order)
    return (y if return_sequences else last), h_out, c_out, ws


def rnn_backward(be, x, kernel, recurrent_kernel, bias, workspace, dy, *, cell, h0=None, c0=None,
                 mask=None, dh=None, dc=None, activation="tanh", recurrent_activation="sigmoid",
                 go_backwards=False, zero_output_for_mask=False, dropout_mask=None,
                 recurrent_dropout_mask=None, outputs_in_input_order=False, compute_dx=True):
    """-> (dx, dkernel, drecurrent_kernel, dbias, dh0, dc0) for y, h, c, workspace =
    rnn(x, ...) with the same arguments. dy: the gradient of y ((batch, timesteps, units),
    or (batch, units) when rnn ran without return_sequences); dh, dc: of the final states
    (None: zero). dbias is None without a bias, dc0 None but for an LSTM, dx None with
    compute_dx=False. dkernel and drecurrent_kernel are one GEMM each over every step,
    summed in a fixed order."""
    op = "rnn_backward"
    compute_dx = shapes.flag(op, "compute_dx", compute_dx)
    L = _layer(be, op, cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
               activation, recurrent_activation, go_backwards, zero_output_for_mask, outputs_in_input_order)
    b_count, t_count, features, h, g = L.dims
    dtype = L.dtype
    workspace, dy, dh, dc = be._prepare(op, ("dh", "dc"), workspace=workspace, dy=dy, dh=dh, dc=dc)
    shapes.check_float(op, "workspace", workspace)
    shapes.check_float(op, "dy", dy)
    shapes.check_same_dtype(op, [("x", L.x), ("workspace", workspace), ("dy", dy)])
    shapes.check_shape(op, "workspace", workspace, (b_count, t_count, WORKSPACE[L.cell] * h))
    if dy.ndim == 2:
        shapes.check_shape(op, "dy", dy, (b_count, h))
        dy = be.reshape(dy, (b_count, 1, h))
    else:
        shapes.check_shape(op, "dy", dy, (b_count, t_count, h))
    if dc is not None and L.cell != "lstm":
        raise ValueError(f"{op}: dc is the gradient of an LSTM's cell state; a {L.cell} cell has none")
    for name, arr in (("dh", dh), ("dc", dc)):
        if arr is not None:
            check_rnn_state(op, name, arr, dtype, b_count, h)
    if dh is None:
        dh = be.empty((b_count, h), dtype)
        be.zero(dh)
    if dc is None and L.cell == "lstm":
        dc = be.empty((b_count, h), dtype)
        be.zero(dc)
    gh = g * h
    dzx = be.empty((b_count, t_count, gh), dtype)
    dzr = be.empty((b_count, t_count, gh), dtype) if L.cell == "gru" else dzx
    hprev = be.empty((b_count, t_count, h), dtype)
    dh0 = be.empty((b_count, h), dtype)
    dc0 = be.empty((b_count, h), dtype) if L.cell == "lstm" else None
    be.recurrent.rnn_backward(L.code, L.u, L.h0, L.c0, L.keep, L.rmask, L.reverse, L.zero_output, L.act, L.ract,
                              workspace, dy, dh, dc, dzx, dzr, hprev, dh0, dc0, L.in_order)
    rows = b_count * t_count
    dzx2, dzr2 = be.reshape(dzx, (rows, gh)), be.reshape(dzr, (rows, gh))
    # dzx, dzr and hprev are indexed by input step (not processing order), so the
    # products below pair them with x as it is, go_backwards or not.
    dkernel = be.empty((features, gh), dtype)
    be.gemm.matmul(be.reshape(L.xin, (rows, features)), dzx2, True, False, None, dkernel)
    drec = be.empty((h, gh), dtype)
    be.gemm.matmul(be.reshape(hprev, (rows, h)), dzr2, True, False, None, drec)
    dbias = None
    if L.bias is not None:
        dbias = be.empty(tuple(L.bias.shape), dtype)
        if L.cell == "gru":
            be.reduce.column_sum(dzx2, dbias[0])
            be.reduce.column_sum(dzr2, dbias[1])
        else:
            be.reduce.column_sum(dzx2, dbias)
    dx = None
    if compute_dx:
        dx = be.empty((b_count, t_count, features), dtype)
        be.gemm.matmul(dzx2, L.kernel, False, True, None, be.reshape(dx, (rows, features)))
        if L.dmask is not None:
            scaled = be.empty(tuple(dx.shape), dtype)
            be.recurrent.scale_features(dx, L.dmask, scaled)
            dx = scaled
    return dx, dkernel, drec, dbias, dh0, dc0


# --------------------------------------------------------------------------- warm-ups

def _arrays(be, dt, cell):
    g = shapes.RNN_GATES[cell]
    x = be.zeros((2, 3, 4), dt)
    return x, be.zeros((4, g * 5), dt), be.zeros((5, g * 5), dt), be.zeros(shapes.rnn_bias_shape(cell, 5), dt)


def _masks(be, dt):
    """A step mask and the two dropout masks (each path of the layer's arguments)."""
    return {"mask": be.asarray(np.array([[1, 1, 0], [1, 0, 1]], np.uint8)), "dropout_mask": be.zeros((2, 4), dt),
            "recurrent_dropout_mask": be.zeros((2, 5), dt)}


def _warm_rnn(be, dt):
    for cell in rules.CELLS:
        be.rnn(*_arrays(be, dt, cell), cell=cell)
        be.rnn(*_arrays(be, dt, cell), cell=cell, **_masks(be, dt))


def _warm_rnn_backward(be, dt):
    for cell in rules.CELLS:
        x, kernel, rec, bias = _arrays(be, dt, cell)
        for masks in ({}, _masks(be, dt)):
            y, _, _, ws = be.rnn(x, kernel, rec, bias, cell=cell, **masks)
            be.rnn_backward(x, kernel, rec, bias, ws, y, cell=cell, **masks)


# --------------------------------------------------------------------------- costs (Op.cost)
# FLOPs per unit and step of a cell's update besides the two products: simple: xproj +
# the recurrent product, the activation; lstm: the four gates' adds, three sigmoids (4
# each), two tanh, c = f c + i g (3), h = o tanh(c); gru: the three gates' adds, two
# sigmoids, r (U_h h + b_h) (2), tanh, h = z h' + (1 - z) h~ (4).
_CELL_FLOPS = {"simple": 2, "lstm": 22, "gru": 19}


def _cost_rnn(x, kernel, recurrent_kernel, bias=None, *, cell, return_sequences=True, **state):
    # The input projection (one GEMM over every step, the bias added), the recurrent
    # product and the cell's update at every step; xproj written and read, the workspace
    # (kernels/rules.py's WORKSPACE columns per unit) written.
    b, t, f = x.shape
    h = recurrent_kernel.shape[0]
    gh = kernel.shape[1]
    rows = b * t
    flops = (2 * rows * f * gh + (rows * gh if bias is not None else 0) + 2 * rows * h * gh
             + rows * h * _CELL_FLOPS[cell])
    item = cost.itemsize(x)
    outputs = (rows * h if return_sequences else b * h) + (3 if cell == "lstm" else 2) * b * h
    written = (outputs + 2 * rows * gh + rows * WORKSPACE[cell] * h) * item
    return flops, cost.nbytes(x, kernel, recurrent_kernel, bias) + written


def _cost_rnn_backward(x, kernel, recurrent_kernel, bias, workspace, dy, *, cell, compute_dx=True, **state):
    # Through time: dh's recurrent product and the cell's gradient (twice its update);
    # then dkernel = x^T dz, drecurrent_kernel = h_prev^T dz, the bias's column sums and
    # dx = dz kernel^T when asked. dz (a GRU: two of them) and h_prev written and read.
    b, t, f = x.shape
    h = recurrent_kernel.shape[0]
    gh = kernel.shape[1]
    rows = b * t
    products = 2 if compute_dx else 1
    flops = (2 * rows * h * gh + 2 * rows * h * _CELL_FLOPS[cell] + products * 2 * rows * f * gh
             + 2 * rows * h * gh + (rows * gh if bias is not None else 0))
    item = cost.itemsize(x)
    dz = (2 if cell == "gru" else 1) * rows * gh
    written = (2 * dz + 2 * rows * h + cost.size(kernel) + cost.size(recurrent_kernel) + cost.size(bias)
               + (rows * f if compute_dx else 0)) * item
    read = cost.nbytes(x, recurrent_kernel, workspace, dy) + (cost.nbytes(kernel) if compute_dx else 0)
    return flops, read + written


FAMILY = Family("rnn", module="rnn", attr="recurrent", hot=True, ops=(
    *op_pair(rnn, rnn_backward, (_warm_rnn, _warm_rnn_backward), (_cost_rnn, _cost_rnn_backward)),
))
