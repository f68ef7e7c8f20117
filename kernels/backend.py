"""The public op API, shared by every backend.

`Backend` validates inputs (with `kernels.shapes`), allocates outputs on the backend's
memory and hands plain arrays and ints to the backend's compute modules:

    self.gemm        kernels/<backend>/gemm.py        matmul, dense_backward
    self.conv        kernels/<backend>/conv.py        conv2d_forward, conv2d_backward
    self.pool        kernels/<backend>/pool.py        max/avg_pool2d_forward/backward
    self.optim       kernels/<backend>/optim.py       adam_step, sgd_step
    self.activation  kernels/<backend>/activation.py  relu/sigmoid/tanh/softmax _forward/_backward
    self.loss        kernels/<backend>/loss.py        softmax_cross_entropy(_stats), crossentropy, mse, accuracy
    self.elementwise kernels/<backend>/elementwise.py bias_add, dropout, l1_l2 (+ _into), take_rows, scale
    self.reduce      kernels/<backend>/reduce.py      column_sum, sum, sum_into, argmax

The rules every backend applies the same way live in small modules the ops call:
kernels/shapes.py (shapes, dtypes, scalars, padding modes, the host range rule
first_out_of_range and its error), kernels/<backend>/order.py (the NaN rule of max and
argmax: beats, row_argmax) and kernels/gpu/checks.py (the range rule on the device:
first_out_of_range, and in_range for kernels that index with data).

A subclass supplies memory management (`asarray`, `to_numpy` (into a given host array
with out=), `copy_from_host`, `host_empty`, `_allocate`, `zeros`, `_zero`, `_assign`,
`synchronize`, `_check_native`, `_contiguous`) and sets those module attributes. The
compute functions receive already-validated, C-contiguous arrays and write into the
outputs they are given; they return nothing unless documented (`sum`, `accuracy`,
`l1_l2_penalty` return Python numbers).

Memory safety is checked here, before any kernel runs: shapes, dtypes (native byte order
only), index and label ranges (`_check_range`: one rule, `shapes.first_out_of_range` on
the host, a device scan on the gpu), and arrays written in place (`_check_written`: not
read-only, sharing no memory with another argument). Kernels that index memory with
data (max_pool2d_backward, take_rows) still skip an out-of-range entry rather than touch
memory outside their arrays, for the callers that skip the check because they built the
indices themselves (`_indices_checked`, `_labels_checked`).

Non-finite numbers follow NumPy's and PyTorch's rules on both backends: a NaN or inf
changes only the outputs that depend on it (no zero is made by multiplying an input
element by 0), relu(NaN) is NaN, and a row's argmax (argmax, accuracy, max pooling's
window) is its first NaN if it has one, else its first maximum.
"""
import contextlib

import numpy as np

from numbanet.kernels import shapes


class Workspace:
    """The arrays one training step allocates, kept for the next step of the same shape.

    Inside `with be.workspace(ws):` the n-th be.empty() call of a step gets the n-th array
    of the previous step back when its shape and dtype match (a step of one batch shape
    makes the same calls in the same order every time), so steps after the first
    allocate no memory: on the gpu, no cudaMalloc and no allocation per step. An array
    taken from a workspace is overwritten by the next step that uses it: only arrays the
    step itself consumes (activations, their gradients, temporaries) belong there, never
    weights or optimizer state (be.zeros, asarray and copy always allocate)."""

    def __init__(self):
        self.arrays = []
        self.position = 0
        self.allocated = 0  # arrays allocated (not reused) since the workspace was made

    def take(self, shape, dtype, allocate):
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        if self.position < len(self.arrays):
            arr = self.arrays[self.position]
            if tuple(arr.shape) == shape and np.dtype(arr.dtype) == dtype:
                self.position += 1
                return arr
        arr = allocate(shape, dtype)
        self.allocated += 1
        if self.position < len(self.arrays):
            self.arrays[self.position] = arr
        else:
            self.arrays.append(arr)
        self.position += 1
        return arr


class Backend:
    name = "base"
    _workspace = None

    # ------------------------------------------------------------------ memory
    def empty(self, shape, dtype="float32"):
        """An uninitialized array (from the active workspace, if any: see Workspace)."""
        if self._workspace is not None:
            return self._workspace.take(shape, dtype, self._allocate)
        return self._allocate(shape, dtype)

    @contextlib.contextmanager
    def workspace(self, ws):
        """Serve be.empty() from the Workspace ws, from its first array on."""
        prev, self._workspace = self._workspace, ws
        ws.position = 0
        try:
            yield ws
        finally:
            self._workspace = prev

    def zero(self, arr):
        """arr[...] = 0 in place (a C-contiguous, writable array of this backend)."""
        self._check_written("zero", "arr", arr, ())
        self._zero(arr)

    def assign(self, dst, src):
        """dst[...] = src: same shape and dtype, both on this backend, dst C-contiguous."""
        op = "assign"
        src = self._prepare(op, src=src)
        self._check_written(op, "dst", dst, [("src", src)])
        shapes.check_same_dtype(op, [("dst", dst), ("src", src)])
        shapes.check_same_shape(op, [("dst", dst), ("src", src)])
        self._assign(dst, src)


    # ------------------------------------------------------------------ helpers
    def _prepare(self, op, optional=(), **named):
        """Native-array and contiguity checks for every array argument; None passes only
        for the names in `optional`."""
        out = []
        for name, arr in named.items():
            if arr is None:
                if name not in optional:
                    raise TypeError(f"{op}: {name} must be an array, got None")
                out.append(None)
                continue
            self._check_native(op, name, arr)
            out.append(self._contiguous(arr))
        return out if len(out) > 1 else out[0]

    def _first_out_of_range(self, idx, n):
        """(position, value) of the first entry of the flat int array idx outside [0, n), or
        None: the host rule on a host view (the gpu backend scans on the device instead)."""
        return shapes.first_out_of_range(self.to_numpy(idx), n)

    def _check_range(self, op, name, idx, n, of):
        """Every entry of the int array idx in [0, n), else a ValueError naming the first bad
        one. On the gpu a device scan, a download and a sync: Sequential skips it (the
        _labels_checked and _indices_checked arguments) for labels it checked on the host
        (_check_y), for the row indices fit drew from range(len(x)) itself and for the
        indices a MaxPooling2D layer's own max_pool2d produced."""
        bad = self._first_out_of_range(self._flat(idx), n)
        if bad is not None:
            raise shapes.out_of_range_error(op, name, bad[0], bad[1], n, of)

    def _writable(self, arr):
        return True

    def _overlaps(self, a, b):
        """True when the backend arrays a and b may share memory."""
        raise NotImplementedError

    def _check_written(self, op, name, arr, others):
        """arr is written in place: it must be native, C-contiguous, writable and share no
        memory with any of `others` ((name, array) pairs; None entries pass). An aliased
        output would read values the kernel has already overwritten."""
        self._check_native(op, name, arr)
        if not self._is_c_contiguous(arr):
            raise ValueError(f"{op}: {name} must be C-contiguous (it is written in place)")
        if not self._writable(arr):
            raise ValueError(f"{op}: {name} is read-only but is written in place; pass a writable array")
        for other_name, other in others:
            if other is not None and self._overlaps(arr, other):
                raise ValueError(f"{op}: {name} shares memory with {other_name}; the op writes {name} "
                                 f"while it reads {other_name}, so pass separate arrays")

    def _check_into(self, op, into):
        """A float64 (1,) backend array that a reduction adds its result to."""
        self._check_written(op, "into", into, ())
        if np.dtype(into.dtype) != np.float64 or tuple(into.shape) != (1,):
            raise ValueError(f"{op}: into must be a float64 array of shape (1,), got "
                             f"{np.dtype(into.dtype)} {tuple(into.shape)}")

    def _check_host_copy(self, op, arr, host):
        """to_numpy(arr, out=host) / copy_from_host(arr, host): host is a C-contiguous,
        writable NumPy array of arr's shape and dtype; arr is this backend's."""
        self._check_native(op, "array", arr)
        if not isinstance(host, np.ndarray):
            raise TypeError(f"{op}: the host array must be a numpy.ndarray, got {type(host).__name__}")
        if not host.flags.c_contiguous or not self._is_c_contiguous(arr):
            raise ValueError(f"{op}: both arrays must be C-contiguous")
        if tuple(host.shape) != tuple(arr.shape) or np.dtype(host.dtype) != np.dtype(arr.dtype):
            raise ValueError(f"{op}: the host array is {np.dtype(host.dtype)} {tuple(host.shape)} but the backend "
                             f"array is {np.dtype(arr.dtype)} {tuple(arr.shape)}; they must match")
        if op == "to_numpy" and not host.flags.writeable:
            raise ValueError(f"{op}: out is read-only")

    def _flat(self, arr):
        return self.reshape(arr, (arr.size,))

    def reshape(self, arr, shape):
        """A view with a new shape (C-contiguous arrays only; the size must match)."""
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != arr.size:
            raise ValueError(f"reshape: cannot reshape {tuple(arr.shape)} ({arr.size} elements) to {shape}")
        return arr.reshape(shape)

    # ------------------------------------------------------------------ GEMM
    def matmul(self, a, b, *, trans_a=False, trans_b=False, bias=None, activation=None, out=None):
        """c = act(op(a) @ op(b) (+ bias over rows)); op transposes when asked; activation
        None, "linear", "relu", "sigmoid" or "tanh", applied as the product is written."""
        activation = shapes.check_activation("matmul", activation)
        trans_a, trans_b = shapes.flag("matmul", "trans_a", trans_a), shapes.flag("matmul", "trans_b", trans_b)
        a, b, bias = self._prepare("matmul", ("bias",), a=a, b=b, bias=bias)
        if out is not None:
            # After _prepare: a non-contiguous view of out has become a copy by now.
            self._check_written("matmul", "out", out, [("a", a), ("b", b), ("bias", bias)])
        m, n, _ = shapes.matmul_shapes(a, b, trans_a, trans_b, bias, out)
        if out is None:
            out = self.empty((m, n), a.dtype)
        self.gemm.matmul(a, b, trans_a, trans_b, bias, out, activation)
        return out

    def _grads_buffer(self, op, grads, size, dtype, inputs):
        """The buffer dw and db are written to: `grads` when given (1-D, C-contiguous, dw's
        size + db's size elements of the weights' dtype: a model's packed gradients; written
        in place, so not overlapping the inputs), else a new one."""
        if grads is None:
            return self.empty((size,), dtype)
        self._check_written(op, "grads", grads, inputs)
        if grads.ndim != 1 or grads.shape[0] != size:
            raise ValueError(f"{op}: grads must be a C-contiguous 1-D array of {size} elements (dw, then db), "
                             f"got shape {tuple(grads.shape)}")
        if np.dtype(grads.dtype) != np.dtype(dtype):
            raise TypeError(f"{op}: grads is {np.dtype(grads.dtype)} but w is {np.dtype(dtype)}")
        return grads

    def dense_backward(self, x, w, dy, *, compute_dx=True, grads=None):
        """Gradients of y = x @ w + b: -> (dx, dw, db); dx is None when compute_dx=False.
        dw and db are views of one buffer, (in + 1) x out, `grads` when given: the gpu
        computes both with one GEMM (db as the product's extra row, x^T augmented by a
        row of ones)."""
        op = "dense_backward"
        x, w, dy = self._prepare(op, x=x, w=w, dy=dy)
        for name, arr in (("x", x), ("w", w), ("dy", dy)):
            shapes.check_float(op, name, arr)
            shapes.check_ndim(op, name, arr, 2)
        shapes.check_same_dtype(op, [("x", x), ("w", w), ("dy", dy)])
        n, units = x.shape[0], w.shape[1]
        if x.shape[1] != w.shape[0]:
            raise ValueError(f"{op}: x has {x.shape[1]} features but w expects {w.shape[0]} "
                             f"(x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)})")
        shapes.check_shape(op, "dy", dy, (n, units))
        dwdb = self._grads_buffer(op, grads, (w.shape[0] + 1) * units, w.dtype, [("x", x), ("w", w), ("dy", dy)])
        dw = self.reshape(dwdb[:w.size], w.shape)
        db = dwdb[w.size:]
        dx = self.empty(x.shape, x.dtype) if compute_dx else None
        self.gemm.dense_backward(x, w, dy, dx, self.reshape(dwdb, (w.shape[0] + 1, units)))
        return dx, dw, db

    # ------------------------------------------------------------------ convolution
    def conv2d(self, x, w, bias=None, *, strides=(1, 1), padding="valid", activation=None):
        """NHWC x, (KH, KW, C_in, C_out) w -> NHWC y = act(conv + bias per output channel);
        activation as in matmul."""
        op = "conv2d"
        activation = shapes.check_activation(op, activation)
        x, w, bias = self._prepare(op, ("bias",), x=x, w=w, bias=bias)
        (sh, sw), (oh, ow, pt, pl, _, _) = shapes.conv2d_shapes(op, x, w, strides, padding)
        if bias is not None:
            shapes.check_float(op, "bias", bias)
            shapes.check_same_dtype(op, [("x", x), ("bias", bias)])
            shapes.check_shape(op, "bias", bias, (w.shape[3],))
        y = self.empty((x.shape[0], oh, ow, w.shape[3]), x.dtype)
        self.conv.conv2d_forward(x, w, bias, y, sh, sw, pt, pl, activation)
        return y

    def conv2d_backward(self, x, w, dy, *, strides=(1, 1), padding="valid", compute_dx=True, grads=None,
                        activation=None, y=None):
        """-> (dx, dw, db); dx is None when compute_dx=False (a first layer needs no dx).
        dw and db are views of one buffer (dw, then db): `grads` when given, as in
        dense_backward.

        With activation ("relu", "sigmoid" or "tanh", as conv2d applied it) and y, the
        conv2d output it produced, dy is the gradient of that activated y and the op
        back-propagates through the activation first (dz = dy * act'(y), relu's zeroed
        only where y <= 0), as relu_backward etc. would, without the separate pass: the cpu
        forms dz image by image where dy is read."""
        op = "conv2d_backward"
        activation = shapes.check_activation(op, activation)
        x, w, dy, y = self._prepare(op, ("y",), x=x, w=w, dy=dy, y=y)
        (sh, sw), (oh, ow, pt, pl, _, _) = shapes.conv2d_shapes(op, x, w, strides, padding)
        shapes.check_float(op, "dy", dy)
        shapes.check_same_dtype(op, [("x", x), ("dy", dy)])
        shapes.check_shape(op, "dy", dy, (x.shape[0], oh, ow, w.shape[3]))
        shapes.check_activation_output(op, activation, y, dy)
        dx = self.empty(x.shape, x.dtype) if shapes.flag(op, "compute_dx", compute_dx) else None
        # dw and db as views of one (KH*KW*C_in + 1) x C_out buffer, as in dense_backward:
        # the gpu's dw GEMM writes db as its extra row.
        co = w.shape[3]
        dwdb = self._grads_buffer(op, grads, w.size + co, w.dtype, [("x", x), ("w", w), ("dy", dy), ("y", y)])
        dw = self.reshape(dwdb[:w.size], w.shape)
        db = dwdb[w.size:]
        self.conv.conv2d_backward(x, w, dy, dx, self.reshape(dwdb, (w.size // co + 1, co)), sh, sw, pt, pl,
                                  y, activation)
        return dx, dw, db

    # ------------------------------------------------------------------ pooling
    def _pool_input(self, op, x):
        x = self._prepare(op, x=x)
        shapes.check_float(op, "x", x)
        shapes.check_ndim(op, "x", x, 4, "NHWC")
        shapes.check_nonempty(op, "x", x)
        return x

    def max_pool2d(self, x, *, pool_size=(2, 2), strides=None, padding="valid"):
        """-> (y, indices); indices (int32, y's shape) hold h * W + w of each max in x."""
        op = "max_pool2d"
        x = self._pool_input(op, x)
        (ph, pw), (sh, sw), (oh, ow, pt, pl, _, _) = shapes.pool_shapes(op, x.shape, pool_size, strides, padding)
        y = self.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
        indices = self.empty(y.shape, np.int32)
        self.pool.max_pool2d_forward(x, y, indices, ph, pw, sh, sw, pt, pl)
        return y, indices

    def max_pool2d_backward(self, dy, indices, x_shape, *, _indices_checked=False):
        """dx (x_shape) with dy added at the cells indices name (h * W + w within each image
        and channel). Every index is checked against H * W before anything is written."""
        op = "max_pool2d_backward"
        dy, indices = self._prepare(op, dy=dy, indices=indices)
        x_shape = shapes.check_x_shape(op, x_shape)
        shapes.check_float(op, "dy", dy)
        shapes.check_ndim(op, "dy", dy, 4, "NHWC")
        shapes.check_nonempty(op, "dy", dy)
        shapes.check_int(op, "indices", indices)
        if np.dtype(indices.dtype) != np.int32:
            raise TypeError(f"{op}: indices must be the int32 array max_pool2d returned, got {indices.dtype}")
        shapes.check_shape(op, "indices", indices, dy.shape)
        n, h, w, c = x_shape
        if dy.shape[0] != n or dy.shape[3] != c or dy.shape[1] > h or dy.shape[2] > w:
            # A pooling output is never taller or wider than its input ("same" keeps the size).
            raise ValueError(f"{op}: dy.shape={tuple(dy.shape)} cannot be a max_pool2d output of an x of "
                             f"shape x_shape={x_shape} (batch and channels must match, height and width "
                             f"must not exceed x's)")
        if not _indices_checked:
            self._check_range(op, "indices", indices, h * w, f"x_shape={x_shape} ({h}x{w} = {h * w} cells "
                                                              f"per image)")
        dx = self.empty(x_shape, dy.dtype)
        self.pool.max_pool2d_backward(dy, indices, dx)
        return dx

    def avg_pool2d(self, x, *, pool_size=(2, 2), strides=None, padding="valid"):
        """Average over the window's cells inside x ("same" padding cells are not counted)."""
        op = "avg_pool2d"
        x = self._pool_input(op, x)
        (ph, pw), (sh, sw), (oh, ow, pt, pl, _, _) = shapes.pool_shapes(op, x.shape, pool_size, strides, padding)
        y = self.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
        self.pool.avg_pool2d_forward(x, y, ph, pw, sh, sw, pt, pl)
        return y

    def avg_pool2d_backward(self, dy, x_shape, *, pool_size=(2, 2), strides=None, padding="valid"):
        op = "avg_pool2d_backward"
        dy = self._prepare(op, dy=dy)
        x_shape = shapes.check_x_shape(op, x_shape)
        shapes.check_float(op, "dy", dy)
        shapes.check_ndim(op, "dy", dy, 4, "NHWC")
        (ph, pw), (sh, sw), (oh, ow, pt, pl, _, _) = shapes.pool_shapes(op, x_shape, pool_size, strides, padding)
        shapes.check_shape(op, "dy", dy, (x_shape[0], oh, ow, x_shape[3]))
        dx = self.empty(x_shape, dy.dtype)
        self.pool.avg_pool2d_backward(dy, dx, ph, pw, sh, sw, pt, pl)
        return dx

    # ------------------------------------------------------------------ optimizers
    def _optim_arrays(self, op, param, named, written):
        """param and the (name, array) pairs in named, flattened; param and the names in
        `written` (the optimizer's slots) are updated in place, so they are checked as
        outputs that share memory with no other argument."""
        everything = [("param", param)] + [(name, arr) for name, arr in named]
        self._check_written(op, "param", param, everything[1:])
        shapes.check_float(op, "param", param)
        flats = [self._flat(param)]
        for name, arr in named:
            if arr is None:
                if name != "velocity":  # only SGD without momentum has no state
                    raise TypeError(f"{op}: {name} must be an array, got None")
                flats.append(None)
                continue
            if name in written:
                self._check_written(op, name, arr, [e for e in everything if e[0] != name])
            else:
                self._check_native(op, name, arr)
                if not self._is_c_contiguous(arr):
                    raise ValueError(f"{op}: {name} must be C-contiguous")
            shapes.check_float(op, name, arr)
            shapes.check_same_dtype(op, [("param", param), (name, arr)])
            shapes.check_same_shape(op, [("param", param), (name, arr)])
            flats.append(self._flat(arr))
        return flats

    def adam_step(self, param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-7, step, weight_decay=0.0):
        """One fused, in-place Adam step (Keras's form); decoupled weight decay when non-zero."""
        op = "adam_step"
        step = shapes.int_scalar(op, "step", step)
        if step < 1:
            raise ValueError(f"{op}: step counts from 1, got {step}")
        lr, eps, weight_decay = (shapes.float_scalar(op, k, v) for k, v in
                                 (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)))
        for name, val in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= shapes.float_scalar(op, name, val) < 1.0:
                raise ValueError(f"{op}: {name} must be in [0, 1), got {val}")
        p, g, m_, v_ = self._optim_arrays(op, param, [("grad", grad), ("m", m), ("v", v)], ("m", "v"))
        self.optim.adam_step(p, g, m_, v_, lr, float(beta1), float(beta2), eps, step, weight_decay)

    def sgd_step(self, param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        """One fused, in-place SGD step (Keras's form: v = momentum * v - lr * g)."""
        op = "sgd_step"
        lr, momentum, weight_decay = (shapes.float_scalar(op, k, v) for k, v in
                                      (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)))
        nesterov = shapes.flag(op, "nesterov", nesterov)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"{op}: momentum must be in [0, 1), got {momentum}")
        if momentum > 0.0 and velocity is None:
            raise ValueError(f"{op}: momentum={momentum} needs a velocity array, got None")
        p, g, vel = self._optim_arrays(op, param, [("grad", grad), ("velocity", velocity)], ("velocity",))
        self.optim.sgd_step(p, g, vel, lr, momentum, nesterov, weight_decay)

    def _clip_arrays(self, op, grads, clipnorm):
        if shapes.float_scalar(op, "clipnorm", clipnorm) <= 0.0:
            raise ValueError(f"{op}: clipnorm must be > 0, got {clipnorm!r}")
        flats = []
        names = [f"grads[{i}]" if len(grads) > 1 else "grad" for i in range(len(grads))]
        for i, (name, g) in enumerate(zip(names, grads)):
            # Scaled in place: an array listed twice (or two overlapping ones) would be scaled twice.
            self._check_written(op, name, g, [(n, h) for j, (n, h) in enumerate(zip(names, grads)) if j != i])
            shapes.check_float(op, name, g)
            flats.append(self._flat(g))
        return flats

    def _clip(self, flats, clipnorm):
        # From the step's workspace (be.zeros would allocate every step), zeroed in place.
        sq = self.empty((1,), np.float64)
        self.zero(sq)
        for g in flats:
            self.optim.sq_norm_accumulate(g, sq)
        scale = self.empty((1,), np.float64)
        self.optim.clip_scale(sq, float(clipnorm), scale)
        for g in flats:
            self.optim.scale_by(g, scale)

    def clip_by_norm(self, grad, clipnorm):
        """In place: grad *= clipnorm / max(||grad||, clipnorm) (Keras's clipnorm, per array).
        The norm and the scale stay on the backend: no host round trip on the gpu."""
        self._clip(self._clip_arrays("clip_by_norm", [grad], clipnorm), clipnorm)

    def clip_by_global_norm(self, grads, clipnorm):
        """In place: every array in grads *= clipnorm / max(global norm, clipnorm) (Keras's
        global_clipnorm), the global norm taken over all of them together."""
        op = "clip_by_global_norm"
        if not isinstance(grads, (list, tuple)) or not grads:
            raise ValueError(f"{op}: expected a non-empty list of gradient arrays, got {grads!r}")
        self._clip(self._clip_arrays(op, list(grads), clipnorm), clipnorm)

    # ------------------------------------------------------------------ activations
    def _unary(self, op, x):
        x = self._prepare(op, x=x)
        shapes.check_float(op, "x", x)
        shapes.check_nonempty(op, "x", x)
        return x

    def _unary_backward(self, op, y, dy):
        y, dy = self._prepare(op, y=y, dy=dy)
        shapes.check_float(op, "y", y)
        shapes.check_float(op, "dy", dy)
        shapes.check_same_dtype(op, [("y", y), ("dy", dy)])
        shapes.check_same_shape(op, [("y", y), ("dy", dy)])
        return y, dy

    def _elementwise_forward(self, op, fn, x):
        x = self._unary(op, x)
        y = self.empty(x.shape, x.dtype)
        fn(self._flat(x), self._flat(y))
        return y

    def _elementwise_backward(self, op, fn, y, dy):
        y, dy = self._unary_backward(op, y, dy)
        dx = self.empty(y.shape, y.dtype)
        fn(self._flat(y), self._flat(dy), self._flat(dx))
        return dx

    def relu(self, x):
        return self._elementwise_forward("relu", self.activation.relu_forward, x)

    def relu_backward(self, y, dy):
        """dx from the forward output y (y > 0 exactly where x > 0)."""
        return self._elementwise_backward("relu_backward", self.activation.relu_backward, y, dy)

    def sigmoid(self, x):
        return self._elementwise_forward("sigmoid", self.activation.sigmoid_forward, x)

    def sigmoid_backward(self, y, dy):
        return self._elementwise_backward("sigmoid_backward", self.activation.sigmoid_backward, y, dy)

    def tanh(self, x):
        return self._elementwise_forward("tanh", self.activation.tanh_forward, x)

    def tanh_backward(self, y, dy):
        return self._elementwise_backward("tanh_backward", self.activation.tanh_backward, y, dy)

    def _elementwise_backward_x(self, op, fn, x, dy, *extra):
        """dx of an activation whose derivative needs the forward's input x."""
        x, dy = self._prepare(op, x=x, dy=dy)
        shapes.check_float(op, "x", x)
        shapes.check_float(op, "dy", dy)
        shapes.check_same_dtype(op, [("x", x), ("dy", dy)])
        shapes.check_same_shape(op, [("x", x), ("dy", dy)])
        dx = self.empty(x.shape, x.dtype)
        fn(self._flat(x), self._flat(dy), self._flat(dx), *extra)
        return dx

    def gelu(self, x, *, approximate=False):
        """x * Phi(x) (Keras's default), or its tanh approximation when approximate=True."""
        approximate = shapes.flag("gelu", "approximate", approximate)
        x = self._unary("gelu", x)
        y = self.empty(x.shape, x.dtype)
        self.activation.gelu_forward(self._flat(x), self._flat(y), approximate)
        return y

    def gelu_backward(self, x, dy, *, approximate=False):
        """dx from the forward's input x (GELU's derivative is not a function of its output)."""
        return self._elementwise_backward_x("gelu_backward", self.activation.gelu_backward, x, dy,
                                            shapes.flag("gelu_backward", "approximate", approximate))

    def silu(self, x):
        """x * sigmoid(x) (Keras's silu, alias swish)."""
        return self._elementwise_forward("silu", self.activation.silu_forward, x)

    def silu_backward(self, x, dy):
        return self._elementwise_backward_x("silu_backward", self.activation.silu_backward, x, dy)

    def leaky_relu(self, x, *, negative_slope=0.2):
        """x where x >= 0, negative_slope * x elsewhere (Keras 3's default slope 0.2)."""
        op = "leaky_relu"
        slope = shapes.float_scalar(op, "negative_slope", negative_slope)
        x = self._unary(op, x)
        y = self.empty(x.shape, x.dtype)
        self.activation.leaky_relu_forward(self._flat(x), self._flat(y), slope)
        return y

    def leaky_relu_backward(self, x, dy, *, negative_slope=0.2):
        """dx from the forward's input x; at x == 0 the slope is negative_slope, as in PyTorch."""
        op = "leaky_relu_backward"
        return self._elementwise_backward_x(op, self.activation.leaky_relu_backward, x, dy,
                                            shapes.float_scalar(op, "negative_slope", negative_slope))

    def softmax(self, x, *, causal=False):
        """Softmax over the last axis of x (rank >= 2). causal=True treats x as (..., Tq, Tk)
        scores and keeps (i, j) only where j <= i (Keras 3's top-left aligned causal mask);
        masked probabilities are exactly 0."""
        op = "softmax"
        causal = shapes.flag(op, "causal", causal)
        x = self._unary(op, x)
        shapes.check_min_ndim(op, "x", x, 2, "(..., C)" if not causal else "(..., Tq, Tk)")
        shape = tuple(x.shape)
        y = self.empty(shape, x.dtype)
        causal_rows = shape[-2] if causal else 0
        self.activation.softmax_forward(self._rows(x), self._rows(y), int(causal_rows))
        return y

    def softmax_backward(self, y, dy):
        """dx from the forward output y (masked entries of a causal softmax have y = 0, so dx = 0)."""
        op = "softmax_backward"
        y, dy = self._unary_backward(op, y, dy)
        shapes.check_min_ndim(op, "y", y, 2, "(..., C)")
        shapes.check_nonempty(op, "y", y)
        dx = self.empty(tuple(y.shape), y.dtype)
        self.activation.softmax_backward(self._rows(y), self._rows(dy), self._rows(dx))
        return dx

    # ------------------------------------------------------------------ losses
    def _loss_inputs(self, op, pred, labels, labels_checked):
        pred, labels = self._prepare(op, pred=pred, labels=labels)
        shapes.check_float(op, "logits", pred)
        shapes.check_ndim(op, "logits", pred, 2, "(N, C)")
        shapes.check_nonempty(op, "logits", pred)
        onehot = shapes.check_labels(op, pred, labels)
        if not onehot and not labels_checked:
            c = pred.shape[1]
            self._check_range(op, "labels", labels, c, f"{c} classes")
        return pred, labels, onehot

    def softmax_cross_entropy(self, logits, labels, *, _labels_checked=False):
        """Fused softmax + cross-entropy: -> (losses (N,), dlogits = (softmax - onehot) / N).

        labels are integer class ids (N,) or one-hot rows (N, C). Stable for huge logits
        (the row max is subtracted before exp).
        """
        op = "softmax_cross_entropy"
        logits, labels, onehot = self._loss_inputs(op, logits, labels, _labels_checked)
        losses = self.empty((logits.shape[0],), logits.dtype)
        dlogits = self.empty(logits.shape, logits.dtype)
        self.loss.softmax_cross_entropy(logits, labels, onehot, losses, dlogits)
        return losses, dlogits

    def softmax_cross_entropy_stats(self, logits, labels, *, _labels_checked=False):
        """softmax_cross_entropy and the batch's statistics in one pass: -> (losses, dlogits,
        stats), stats a float64 (2,) backend array holding the mean loss and the number of
        rows whose logits' argmax (the rule of be.argmax) is the label. On the gpu one
        kernel writes all of it; a training step adds its penalties to stats[0:1] (their
        `into=`) and reads the 16 bytes back once."""
        op = "softmax_cross_entropy"
        logits, labels, onehot = self._loss_inputs(op, logits, labels, _labels_checked)
        losses = self.empty((logits.shape[0],), logits.dtype)
        dlogits = self.empty(logits.shape, logits.dtype)
        stats = self.empty((2,), np.float64)
        self.loss.softmax_cross_entropy_stats(logits, labels, onehot, losses, dlogits, stats)
        return losses, dlogits, stats

    def crossentropy(self, probs, labels, *, eps=1e-7, _labels_checked=False):
        """Cross-entropy of probabilities (Keras clips them to [eps, 1 - eps]).

        -> (losses (N,), dprobs); dprobs is the mean-loss gradient, zero where clipped.
        """
        op = "crossentropy"
        eps = shapes.float_scalar(op, "eps", eps)
        if not 0.0 < eps < 0.5:
            raise ValueError(f"{op}: eps must be in (0, 0.5), got {eps}")
        probs, labels, onehot = self._loss_inputs(op, probs, labels, _labels_checked)
        losses = self.empty((probs.shape[0],), probs.dtype)
        dprobs = self.empty(probs.shape, probs.dtype)
        self.loss.crossentropy(probs, labels, onehot, eps, losses, dprobs)
        return losses, dprobs

    def mse(self, pred, target):
        """Mean squared error per sample: -> (losses (N,), dpred of the mean over samples)."""
        op = "mse"
        pred, target = self._prepare(op, pred=pred, target=target)
        shapes.check_float(op, "pred", pred)
        shapes.check_float(op, "target", target)
        shapes.check_same_dtype(op, [("pred", pred), ("target", target)])
        shapes.check_same_shape(op, [("pred", pred), ("target", target)])
        if pred.ndim < 1:
            raise ValueError(f"{op}: pred must have a batch axis, got a 0-D array")
        shapes.check_nonempty(op, "pred", pred)
        n = pred.shape[0]
        p2 = self.reshape(pred, (n, pred.size // n))
        t2 = self.reshape(target, (n, pred.size // n))
        losses = self.empty((n,), pred.dtype)
        dpred = self.empty(p2.shape, pred.dtype)
        self.loss.mse(p2, t2, losses, dpred)
        return losses, self.reshape(dpred, pred.shape)

    def _binary_inputs(self, op, pred, target):
        pred, target = self._prepare(op, pred=pred, target=target)
        shapes.check_float(op, "pred", pred)
        shapes.check_float(op, "target", target)
        shapes.check_same_dtype(op, [("pred", pred), ("target", target)])
        shapes.check_same_shape(op, [("pred", pred), ("target", target)])
        shapes.check_nonempty(op, "pred", pred)
        if pred.ndim < 1:
            raise ValueError(f"{op}: pred needs a batch axis, got a 0-D array")
        return pred, target

    def binary_crossentropy(self, pred, target, *, from_logits=False, eps=1e-7):
        """Binary cross-entropy of probabilities (clipped to [eps, 1 - eps], as Keras) or of
        logits (the stable max(z, 0) - z t + log(1 + exp(-|z|))), averaged over every axis but
        the first: -> (losses (N,), dpred of the mean over all elements)."""
        op = "binary_crossentropy"
        pred, target = self._binary_inputs(op, pred, target)
        eps = shapes.float_scalar(op, "eps", eps)
        if not 0.0 <= eps < 0.5:
            raise ValueError(f"{op}: eps must be in [0, 0.5), got {eps}")
        n = pred.shape[0]
        p2 = self.reshape(pred, (n, pred.size // n))
        losses = self.empty((n,), pred.dtype)
        dpred = self.empty(p2.shape, pred.dtype)
        self.loss.binary_crossentropy(p2, self.reshape(target, p2.shape), shapes.flag(op, "from_logits", from_logits),
                                      eps, losses, dpred)
        return losses, self.reshape(dpred, pred.shape)

    def binary_accuracy(self, pred, target, *, threshold=0.5):
        """Number of elements where (pred > threshold) equals the 0/1 target (an int on the host)."""
        op = "binary_accuracy"
        pred, target = self._binary_inputs(op, pred, target)
        threshold = shapes.float_scalar(op, "threshold", threshold)
        return int(self.loss.binary_accuracy(self._flat(pred), self._flat(target), threshold))

    def accuracy(self, scores, labels, *, _labels_checked=False):
        """Number of rows whose argmax equals the label (an int on the host)."""
        op = "accuracy"
        scores, labels, onehot = self._loss_inputs(op, scores, labels, _labels_checked)
        return int(self.loss.accuracy(scores, labels, onehot))

    # ------------------------------------------------------------------ elementwise
    def bias_add(self, x, b):
        """y = x + b over the last axis (b has x.shape[-1] entries)."""
        op = "bias_add"
        x, b = self._prepare(op, x=x, b=b)
        shapes.check_float(op, "x", x)
        shapes.check_float(op, "b", b)
        shapes.check_same_dtype(op, [("x", x), ("b", b)])
        if x.ndim < 1:
            raise ValueError(f"{op}: x must have a last (channel) axis, got a 0-D array")
        shapes.check_nonempty(op, "x", x)
        shapes.check_shape(op, "b", b, (x.shape[x.ndim - 1],))
        y = self.empty(x.shape, x.dtype)
        c = x.shape[x.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
        self.elementwise.bias_add(self.reshape(x, (x.size // c, c)), b, self.reshape(y, (x.size // c, c)))
        return y

    def dropout(self, x, rate, seed):
        """-> (y, mask): mask is 0 or 1 / (1 - rate), drawn from a counter-based hash of
        (seed, element index), so both backends draw the same mask for the same seed."""
        op = "dropout"
        x = self._unary(op, x)
        rate = shapes.float_scalar(op, "rate", rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{op}: rate must be in [0, 1), got {rate}")
        seed = shapes.int_scalar(op, "seed", seed, 0, 2 ** 63)
        y = self.empty(x.shape, x.dtype)
        mask = self.empty(x.shape, x.dtype)
        self.elementwise.dropout_forward(self._flat(x), self._flat(y), self._flat(mask), rate, seed)
        return y, mask

    def dropout_backward(self, dy, mask):
        op = "dropout_backward"
        dy, mask = self._prepare(op, dy=dy, mask=mask)
        shapes.check_float(op, "dy", dy)
        shapes.check_float(op, "mask", mask)
        shapes.check_same_dtype(op, [("dy", dy), ("mask", mask)])
        shapes.check_same_shape(op, [("dy", dy), ("mask", mask)])
        dx = self.empty(dy.shape, dy.dtype)
        self.elementwise.multiply(self._flat(dy), self._flat(mask), self._flat(dx))
        return dx

    def l1_l2_grad(self, w, dw, *, l1=0.0, l2=0.0):
        """In place: dw += l1 * sign(w) + 2 * l2 * w (the gradient of Keras's l1_l2 penalty)."""
        op = "l1_l2_grad"
        l1, l2 = shapes.float_scalar(op, "l1", l1), shapes.float_scalar(op, "l2", l2)
        self._check_native(op, "w", w)
        if not self._is_c_contiguous(w):
            raise ValueError(f"{op}: w must be C-contiguous")
        self._check_written(op, "dw", dw, [("w", w)])
        shapes.check_float(op, "w", w)
        shapes.check_float(op, "dw", dw)
        shapes.check_same_dtype(op, [("w", w), ("dw", dw)])
        shapes.check_same_shape(op, [("w", w), ("dw", dw)])
        self.elementwise.l1_l2_grad(self._flat(w), self._flat(dw), l1, l2)

    def l1_l2_penalty(self, w, *, l1=0.0, l2=0.0, into=None):
        """l1 * sum|w| + l2 * sum(w^2), a Python float; or, with `into` (a float64 array of
        shape (1,) on this backend), added to into[0] on the backend and into returned: a
        training step sums its penalties there and reads one number back, not one per array."""
        op = "l1_l2_penalty"
        l1, l2 = shapes.float_scalar(op, "l1", l1), shapes.float_scalar(op, "l2", l2)
        w = self._prepare(op, w=w)
        shapes.check_float(op, "w", w)
        if into is None:
            return float(self.elementwise.l1_l2_penalty(self._flat(w), l1, l2))
        self._check_into(op, into)
        self.elementwise.l1_l2_penalty_into(self._flat(w), l1, l2, into)
        return into

    def scale(self, x, alpha, *, out=None):
        """y = alpha * x; out may be x (in place: data-parallel training scales its packed
        gradients so, nn/distributed.py)."""
        op = "scale"
        x = self._unary(op, x)
        if out is None:
            out = self.empty(x.shape, x.dtype)
        else:
            # Elementwise: out may BE x, but not overlap it any other way.
            self._check_written(op, "out", out, [] if out is x else [("x", x)])
            shapes.check_same_dtype(op, [("out", out), ("x", x)])
            shapes.check_same_shape(op, [("out", out), ("x", x)])
        self.elementwise.scale(self._flat(x), shapes.float_scalar(op, "alpha", alpha), self._flat(out))
        return out

    def add(self, a, b, *, out=None):
        """a + b of one shape and dtype (nothing is broadcast); out may be a or b, for
        in-place accumulation (a layer's gradients summed over the branches of a fan-out)."""
        op = "add"
        a, b = self._prepare(op, a=a, b=b)
        shapes.check_float(op, "a", a)
        shapes.check_float(op, "b", b)
        shapes.check_same_dtype(op, [("a", a), ("b", b)])
        shapes.check_same_shape(op, [("a", a), ("b", b)])
        shapes.check_nonempty(op, "a", a)
        if out is None:
            out = self.empty(a.shape, a.dtype)
        else:
            # out may BE a or b (each element is read before it is written), but not overlap
            # them any other way (a shifted view would read values already written).
            self._check_written(op, "out", out, [(n, arr) for n, arr in (("a", a), ("b", b)) if arr is not out])
            shapes.check_same_dtype(op, [("out", out), ("a", a)])
            shapes.check_same_shape(op, [("out", out), ("a", a)])
        self.elementwise.add(self._flat(a), self._flat(b), self._flat(out))
        return out

    @staticmethod
    def _axis(op, axis, ndim):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
            raise ValueError(f"{op}: axis must be an int in [{-ndim}, {ndim}), got {axis!r}")
        return int(axis) % ndim

    def concatenate(self, arrays, axis=-1):
        """Join arrays along `axis`; every other dimension must agree."""
        op = "concatenate"
        if not isinstance(arrays, (list, tuple)) or not arrays:
            raise ValueError(f"{op}: expected a non-empty list of arrays, got {arrays!r}")
        arrays = [self._prepare(op, **{f"arrays[{i}]": a}) for i, a in enumerate(arrays)]
        for i, a in enumerate(arrays):
            shapes.check_float(op, f"arrays[{i}]", a)
            shapes.check_nonempty(op, f"arrays[{i}]", a)
        shapes.check_same_dtype(op, [(f"arrays[{i}]", a) for i, a in enumerate(arrays)])
        first = arrays[0]
        axis = self._axis(op, axis, first.ndim)
        for i, a in enumerate(arrays[1:], 1):
            if a.ndim != first.ndim or any(a.shape[d] != first.shape[d] for d in range(a.ndim) if d != axis):
                raise ValueError(f"{op}: arrays[{i}].shape={tuple(a.shape)} does not match "
                                 f"arrays[0].shape={tuple(first.shape)} outside axis {axis}")
        out_shape = list(first.shape)
        out_shape[axis] = sum(a.shape[axis] for a in arrays)
        out = self.empty(tuple(out_shape), first.dtype)
        outer = int(np.prod(first.shape[:axis], dtype=np.int64))
        out2 = self.reshape(out, (outer, out.size // outer))
        offset = 0
        for a in arrays:
            width = a.size // outer
            self.elementwise.copy_into_columns(self.reshape(a, (outer, width)), out2, offset)
            offset += width
        return out

    def split(self, x, sizes, axis=-1):
        """The inverse of concatenate: pieces of x along `axis` with the given sizes (summing to x.shape[axis])."""
        op = "split"
        x = self._unary(op, x)
        axis = self._axis(op, axis, x.ndim)
        try:
            sizes = [int(s) for s in sizes]
        except TypeError:
            raise ValueError(f"{op}: sizes must be a list of ints, got {sizes!r}") from None
        if not sizes or min(sizes) < 1 or sum(sizes) != x.shape[axis]:
            raise ValueError(f"{op}: sizes {sizes} must be positive and sum to x.shape[{axis}]={x.shape[axis]} "
                             f"(x.shape={tuple(x.shape)})")
        outer = int(np.prod(x.shape[:axis], dtype=np.int64))
        x2 = self.reshape(x, (outer, x.size // outer))
        inner = x.size // outer // x.shape[axis]
        pieces, offset = [], 0
        for size in sizes:
            shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
            piece = self.empty(shape, x.dtype)
            self.elementwise.copy_from_columns(x2, self.reshape(piece, (outer, size * inner)), offset)
            pieces.append(piece)
            offset += size * inner
        return pieces

    def transpose(self, x, axes):
        """A C-contiguous copy of x with its axes permuted (NumPy's x.transpose(axes)); rank <= 6."""
        op = "transpose"
        x = self._unary(op, x)
        try:
            axes = tuple(int(a) for a in axes)
        except TypeError:
            raise ValueError(f"{op}: axes must be a permutation of range({x.ndim}), got {axes!r}") from None
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"{op}: axes must be a permutation of range({x.ndim}), got {axes} "
                             f"(x.shape={tuple(x.shape)})")
        if x.ndim > 6:
            raise ValueError(f"{op}: x has {x.ndim} dimensions; at most 6 are supported")
        element_strides = [int(np.prod(x.shape[d + 1:], dtype=np.int64)) for d in range(x.ndim)]
        out_shape = tuple(x.shape[a] for a in axes)
        pad = 6 - x.ndim
        shape6 = (1,) * pad + out_shape
        strides6 = (0,) * pad + tuple(element_strides[a] for a in axes)
        y = self.empty(out_shape, x.dtype)
        self.elementwise.transpose(self._flat(x), self._flat(y), shape6, strides6)
        return y

    def take_rows(self, x, indices, *, _indices_checked=False):
        """y[i] = x[indices[i]] along axis 0 (batches drawn from a device-resident dataset)."""
        op = "take_rows"
        x, indices = self._prepare(op, x=x, indices=indices)
        shapes.check_float_or_int(op, "x", x)  # float rows or int32 class labels (fit's y)
        shapes.check_int(op, "indices", indices)
        shapes.check_ndim(op, "indices", indices, 1)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{op}: x must have at least one row, got shape {tuple(x.shape)}")
        if not _indices_checked:
            self._check_range(op, "indices", indices, x.shape[0], f"x with {x.shape[0]} rows")
        rest = x.size // x.shape[0]
        y = self.empty((indices.shape[0],) + tuple(x.shape[1:]), x.dtype)
        self.elementwise.take_rows(self.reshape(x, (x.shape[0], rest)), indices,
                                   self.reshape(y, (indices.shape[0], rest)))
        return y

    # ------------------------------------------------------------------ reductions
    def column_sum(self, x):
        """Sum over every axis but the last (a bias gradient): (..., C) -> (C,)."""
        op = "column_sum"
        x = self._unary(op, x)
        if x.ndim < 1:
            raise ValueError(f"{op}: x must have a last (column) axis, got a 0-D array")
        c = x.shape[x.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
        out = self.empty((c,), x.dtype)
        self.reduce.column_sum(self.reshape(x, (x.size // c, c)), out)
        return out

    def sum(self, x, *, into=None, scale=1.0):
        """Sum of every element, a Python float; or, with `into` (a float64 array of shape
        (1,) on this backend), scale * sum added to into[0] on the backend and into returned
        (no host round trip: see l1_l2_penalty)."""
        op = "sum"
        x = self._unary(op, x)
        if into is None:
            return float(self.reduce.sum(self._flat(x)))
        self._check_into(op, into)
        self.reduce.sum_into(self._flat(x), shapes.float_scalar(op, "scale", scale), into)
        return into

    def argmax(self, x):
        """Row-wise argmax of a 2-D (N, C) array -> int32 (N,)."""
        op = "argmax"
        x = self._unary(op, x)
        shapes.check_ndim(op, "x", x, 2, "(N, C)")
        out = self.empty((x.shape[0],), np.int32)
        self.reduce.argmax(x, out)
        return out

    # ------------------------------------------------------------------ transformer ops (issue 12)
    # Compute modules: self.gemm.batched_matmul; self.activation.softmax_* (any rank, causal);
    # self.attn = kernels/<backend>/attention.py, self.layernorm = .../layernorm.py,
    # self.embed = .../embedding.py (not self.attention / self.embedding: those are the ops).
    def _rows(self, arr):
        """(rows, C) view of a C-contiguous (..., C) array."""
        c = tuple(arr.shape)[arr.ndim - 1]
        return self.reshape(arr, (arr.size // c, c))

    def batched_matmul(self, a, b, *, trans_a=False, trans_b=False, out=None):
        """c[..., :, :] = op(a[...]) @ op(b[...]) over identical leading dimensions (rank >= 3;
        nothing is broadcast); op transposes the last two axes when asked."""
        op = "batched_matmul"
        trans_a, trans_b = shapes.flag(op, "trans_a", trans_a), shapes.flag(op, "trans_b", trans_b)
        a, b = self._prepare(op, a=a, b=b)
        if out is not None:
            self._check_written(op, "out", out, [("a", a), ("b", b)])
        lead, m, n, _ = shapes.batched_matmul_shapes(a, b, trans_a, trans_b, out)
        z = int(np.prod(lead))
        if out is None:
            out = self.empty(lead + (m, n), a.dtype)
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        self.gemm.batched_matmul(self.reshape(a, (z,) + a_shape[-2:]), self.reshape(b, (z,) + b_shape[-2:]),
                                 trans_a, trans_b, self.reshape(out, (z, m, n)))
        return out

    def attention(self, q, k, v, *, causal=False, scale=None):
        """Fused scaled-dot-product attention: -> (out, lse).

        q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv) -> out (B, Tq, H, Dv), the layout
        a layer's projections produce, without transposes. lse (B, H, Tq) is the log-sum-exp
        of each query row's scaled, masked scores; attention_backward recomputes the
        probabilities from it. scale defaults to 1 / sqrt(D); causal keeps key j for query i
        only where j <= i (Keras's top-left aligned mask)."""
        op = "attention"
        causal = shapes.flag(op, "causal", causal)
        q, k, v = self._prepare(op, q=q, k=k, v=v)
        bsz, tq, _, h, _, dv, scale = shapes.attention_shapes(op, q, k, v, scale)
        out = self.empty((bsz, tq, h, dv), q.dtype)
        lse = self.empty((bsz, h, tq), q.dtype)
        self.attn.attention_forward(q, k, v, out, lse, causal, scale)
        return out, lse

    def attention_backward(self, q, k, v, out, dout, lse, *, causal=False, scale=None):
        """-> (dq, dk, dv) of sum(dout * out) for out, lse = attention(q, k, v, causal, scale)."""
        op = "attention_backward"
        causal = shapes.flag(op, "causal", causal)
        q, k, v, out, dout, lse = self._prepare(op, q=q, k=k, v=v, out=out, dout=dout, lse=lse)
        bsz, tq, _, h, _, dv, scale = shapes.attention_shapes(op, q, k, v, scale)
        for name, arr in (("out", out), ("dout", dout), ("lse", lse)):
            shapes.check_float(op, name, arr)
        shapes.check_same_dtype(op, [("q", q), ("out", out), ("dout", dout), ("lse", lse)])
        shapes.check_shape(op, "out", out, (bsz, tq, h, dv))
        shapes.check_shape(op, "dout", dout, (bsz, tq, h, dv))
        shapes.check_shape(op, "lse", lse, (bsz, h, tq))
        dq = self.empty(tuple(q.shape), q.dtype)
        dk = self.empty(tuple(k.shape), q.dtype)
        dv_ = self.empty(tuple(v.shape), q.dtype)
        self.attn.attention_backward(q, k, v, out, dout, lse, dq, dk, dv_, causal, scale)
        return dq, dk, dv_

    def _norm_params(self, op, x, named):
        c = tuple(x.shape)[x.ndim - 1]
        for name, arr in named:
            if arr is not None:
                shapes.check_float(op, name, arr)
                shapes.check_same_dtype(op, [("x", x), (name, arr)])
                shapes.check_shape(op, name, arr, (c,))

    def layer_norm(self, x, gamma, beta, *, epsilon=1e-3):
        """Normalization over the last axis (Keras's LayerNormalization): -> (y, mean, rstd).

        y = (x - mean) * rstd * gamma + beta with mean and variance over the last axis
        (variance with 1/C), rstd = 1 / sqrt(variance + epsilon); gamma/beta (C,) or None
        (Keras's scale=False / center=False); mean and rstd have shape x.shape[:-1]."""
        op = "layer_norm"
        x, gamma, beta = self._prepare(op, ("gamma", "beta"), x=x, gamma=gamma, beta=beta)
        shapes.check_float(op, "x", x)
        shapes.check_min_ndim(op, "x", x, 2, "(..., C)")
        shapes.check_nonempty(op, "x", x)
        self._norm_params(op, x, [("gamma", gamma), ("beta", beta)])
        epsilon = shapes.float_scalar(op, "epsilon", epsilon)
        if epsilon < 0:
            raise ValueError(f"{op}: epsilon must be >= 0, got {epsilon}")
        shape = tuple(x.shape)
        y = self.empty(shape, x.dtype)
        mean = self.empty(shape[:-1], x.dtype)
        rstd = self.empty(shape[:-1], x.dtype)
        self.layernorm.layer_norm_forward(self._rows(x), gamma, beta, epsilon, self._rows(y),
                                          self._flat(mean), self._flat(rstd))
        return y, mean, rstd

    def layer_norm_backward(self, x, gamma, dy, mean, rstd, *, center=True):
        """-> (dx, dgamma, dbeta); dgamma is None when gamma is None, dbeta is None when
        center=False (a LayerNormalization without beta). dgamma and dbeta are summed over
        rows in a fixed order: the same bits on every run and thread count."""
        op = "layer_norm_backward"
        center = shapes.flag(op, "center", center)
        x, gamma, dy, mean, rstd = self._prepare(op, ("gamma",), x=x, gamma=gamma, dy=dy, mean=mean, rstd=rstd)
        for name, arr in (("x", x), ("dy", dy), ("mean", mean), ("rstd", rstd)):
            shapes.check_float(op, name, arr)
        shapes.check_min_ndim(op, "x", x, 2, "(..., C)")
        shapes.check_nonempty(op, "x", x)
        shapes.check_same_dtype(op, [("x", x), ("dy", dy), ("mean", mean), ("rstd", rstd)])
        shapes.check_shape(op, "dy", dy, tuple(x.shape))
        shapes.check_shape(op, "mean", mean, tuple(x.shape)[:-1])
        shapes.check_shape(op, "rstd", rstd, tuple(x.shape)[:-1])
        self._norm_params(op, x, [("gamma", gamma)])
        c = tuple(x.shape)[x.ndim - 1]
        dx = self.empty(tuple(x.shape), x.dtype)
        dgamma = self.empty((c,), x.dtype) if gamma is not None else None
        dbeta = self.empty((c,), x.dtype) if center else None
        self.layernorm.layer_norm_backward(self._rows(x), gamma, self._rows(dy), self._flat(mean),
                                           self._flat(rstd), self._rows(dx), dgamma, dbeta)
        return dx, dgamma, dbeta

    def embedding(self, table, ids, *, _ids_checked=False):
        """out[..., :] = table[ids[...]]: table (V, D), integer ids of any shape -> ids.shape + (D,).

        _ids_checked: the caller has range-checked the ids itself (the gpu's check costs a
        download and a sync); an out-of-range id then reads as a row of zeros."""
        op = "embedding"
        table, ids = self._prepare(op, table=table, ids=ids)
        shapes.check_float(op, "table", table)
        shapes.check_ndim(op, "table", table, 2, "(input_dim, output_dim)")
        shapes.check_nonempty(op, "table", table)
        shapes.check_ids(op, "ids", ids)
        v, d = (int(s) for s in table.shape)
        flat = self._flat(ids)
        if not _ids_checked:
            self._check_range(op, "ids", flat, v, f"an embedding table of {v} rows")
        out = self.empty(tuple(ids.shape) + (d,), table.dtype)
        self.embed.embedding_forward(table, flat, self.reshape(out, (ids.size, d)))
        return out

    def embedding_backward(self, ids, dout, input_dim, *, _ids_checked=False):
        """dtable (input_dim, D): row v is the sum of dout[i] over the positions i with ids[i] == v,
        added in increasing i (a deterministic scatter-add: no float atomics anywhere).
        _ids_checked as for embedding; an out-of-range id's gradient is then dropped."""
        op = "embedding_backward"
        ids, dout = self._prepare(op, ids=ids, dout=dout)
        shapes.check_ids(op, "ids", ids)
        shapes.check_float(op, "dout", dout)
        input_dim = shapes.int_scalar(op, "input_dim", input_dim)
        if input_dim < 1:
            raise ValueError(f"{op}: input_dim must be at least 1, got {input_dim}")
        if dout.ndim != ids.ndim + 1 or tuple(dout.shape)[:-1] != tuple(ids.shape):
            raise ValueError(f"{op}: dout must have shape ids.shape + (output_dim,) = {tuple(ids.shape)} + (D,), "
                             f"got {tuple(dout.shape)}")
        shapes.check_nonempty(op, "dout", dout)
        flat = self._flat(ids)
        if not _ids_checked:
            self._check_range(op, "ids", flat, input_dim, f"input_dim={input_dim} rows")
        d = tuple(dout.shape)[dout.ndim - 1]
        dtable = self.empty((input_dim, d), dout.dtype)
        self.embed.embedding_backward(flat, self.reshape(dout, (ids.size, d)), dtable)
        return dtable

    # ------------------------------------------------------------------ recurrent ops (issue 13)
    # Compute module: self.recurrent = kernels/<backend>/rnn.py (rnn_forward, rnn_backward, keep_steps,
    # scale_features); the GEMMs over all steps go through self.gemm.matmul.
    def _rnn_inputs(self, op, cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask,
                    recurrent_dropout_mask, activation, recurrent_activation):
        cell = shapes.rnn_cell(op, cell)
        x, kernel, recurrent_kernel, bias, h0, c0, mask, dmask, rmask = self._prepare(
            op, ("bias", "h0", "c0", "mask", "dropout_mask", "recurrent_dropout_mask"), x=x, kernel=kernel,
            recurrent_kernel=recurrent_kernel, bias=bias, h0=h0, c0=c0, mask=mask, dropout_mask=dropout_mask,
            recurrent_dropout_mask=recurrent_dropout_mask)
        b_count, t_count, features, h, g = shapes.rnn_shapes(op, cell, x, kernel, recurrent_kernel, bias)
        dtype = np.dtype(x.dtype)
        if c0 is not None and cell != "lstm":
            raise ValueError(f"{op}: c0 is an LSTM's second state; a {cell} cell has only h0")
        for name, arr, width in (("h0", h0, h), ("c0", c0, h), ("dropout_mask", dmask, features),
                                 ("recurrent_dropout_mask", rmask, h)):
            if arr is not None:
                shapes.check_rnn_state(op, name, arr, dtype, b_count, width)
        keep = None
        if mask is not None:
            shapes.check_rnn_mask(op, mask, b_count, t_count)
            keep = self.empty((b_count, t_count), np.uint8)
            self.recurrent.keep_steps(mask, keep)
        # Zero states from the step's workspace (be.zeros would allocate every step).
        if h0 is None:
            h0 = self.empty((b_count, h), dtype)
            self.zero(h0)
        if c0 is None and cell == "lstm":
            c0 = self.empty((b_count, h), dtype)
            self.zero(c0)
        codes = (shapes.rnn_activation(op, "activation", activation),
                 shapes.rnn_activation(op, "recurrent_activation", recurrent_activation))
        xin = x
        if dmask is not None:
            # Keras's input dropout: one mask per sample, the same at every step.
            xin = self.empty(tuple(x.shape), dtype)
            self.recurrent.scale_features(x, dmask, xin)
        return (cell, x, xin, kernel, recurrent_kernel, bias, h0, c0, keep, dmask, rmask, codes,
                (b_count, t_count, features, h, g))

    def rnn(self, x, kernel, recurrent_kernel, bias=None, *, cell, h0=None, c0=None, mask=None,
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
        reverse = shapes.flag(op, "go_backwards", go_backwards)
        return_sequences = shapes.flag(op, "return_sequences", return_sequences)
        zero_output = shapes.flag(op, "zero_output_for_mask", zero_output_for_mask)
        in_order = shapes.flag(op, "outputs_in_input_order", outputs_in_input_order)
        (cell, x, xin, kernel, u, bias, h0, c0, keep, _, rmask, (act, ract),
         (b_count, t_count, features, h, g)) = self._rnn_inputs(
            op, cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
            activation, recurrent_activation)
        dtype = np.dtype(x.dtype)
        in_bias, rec_bias = bias, None
        if bias is not None and cell == "gru":
            in_bias, rec_bias = bias[0], bias[1]
        # The input projection of every step at once: one GEMM.
        xproj = self.empty((b_count, t_count, g * h), dtype)
        self.gemm.matmul(self.reshape(xin, (b_count * t_count, features)), kernel, False, False, in_bias,
                         self.reshape(xproj, (b_count * t_count, g * h)))
        y = self.empty((b_count, t_count, h), dtype) if return_sequences else None
        last = self.empty((b_count, h), dtype)
        h_out = self.empty((b_count, h), dtype)
        c_out = self.empty((b_count, h), dtype) if cell == "lstm" else None
        ws = self.empty((b_count, t_count, shapes.RNN_WORKSPACE[cell] * h), dtype)
        self.recurrent.rnn_forward(shapes.RNN_CELLS[cell], xproj, u, rec_bias, h0, c0, keep, rmask, reverse,
                                   zero_output, act, ract, y, last, h_out, c_out, ws, in_order)
        return (y if return_sequences else last), h_out, c_out, ws

    def rnn_backward(self, x, kernel, recurrent_kernel, bias, workspace, dy, *, cell, h0=None, c0=None,
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
        reverse = shapes.flag(op, "go_backwards", go_backwards)
        zero_output = shapes.flag(op, "zero_output_for_mask", zero_output_for_mask)
        compute_dx = shapes.flag(op, "compute_dx", compute_dx)
        in_order = shapes.flag(op, "outputs_in_input_order", outputs_in_input_order)
        (cell, x, xin, kernel, u, bias, h0, c0, keep, dmask, rmask, (act, ract),
         (b_count, t_count, features, h, g)) = self._rnn_inputs(
            op, cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
            activation, recurrent_activation)
        dtype = np.dtype(x.dtype)
        workspace, dy, dh, dc = self._prepare(op, ("dh", "dc"), workspace=workspace, dy=dy, dh=dh, dc=dc)
        shapes.check_float(op, "workspace", workspace)
        shapes.check_float(op, "dy", dy)
        shapes.check_same_dtype(op, [("x", x), ("workspace", workspace), ("dy", dy)])
        shapes.check_shape(op, "workspace", workspace, (b_count, t_count, shapes.RNN_WORKSPACE[cell] * h))
        if dy.ndim == 2:
            shapes.check_shape(op, "dy", dy, (b_count, h))
            dy = self.reshape(dy, (b_count, 1, h))
        else:
            shapes.check_shape(op, "dy", dy, (b_count, t_count, h))
        if dc is not None and cell != "lstm":
            raise ValueError(f"{op}: dc is the gradient of an LSTM's cell state; a {cell} cell has none")
        for name, arr in (("dh", dh), ("dc", dc)):
            if arr is not None:
                shapes.check_rnn_state(op, name, arr, dtype, b_count, h)
        if dh is None:
            dh = self.empty((b_count, h), dtype)
            self.zero(dh)
        if dc is None and cell == "lstm":
            dc = self.empty((b_count, h), dtype)
            self.zero(dc)
        gh = g * h
        dzx = self.empty((b_count, t_count, gh), dtype)
        dzr = self.empty((b_count, t_count, gh), dtype) if cell == "gru" else dzx
        hprev = self.empty((b_count, t_count, h), dtype)
        dh0 = self.empty((b_count, h), dtype)
        dc0 = self.empty((b_count, h), dtype) if cell == "lstm" else None
        self.recurrent.rnn_backward(shapes.RNN_CELLS[cell], u, h0, c0, keep, rmask, reverse, zero_output, act, ract,
                                    workspace, dy, dh, dc, dzx, dzr, hprev, dh0, dc0, in_order)
        rows = b_count * t_count
        dzx2, dzr2 = self.reshape(dzx, (rows, gh)), self.reshape(dzr, (rows, gh))
        # dzx, dzr and hprev are indexed by input step (not processing order), so the
        # products below pair them with x as it is, go_backwards or not.
        dkernel = self.empty((features, gh), dtype)
        self.gemm.matmul(self.reshape(xin, (rows, features)), dzx2, True, False, None, dkernel)
        drec = self.empty((h, gh), dtype)
        self.gemm.matmul(self.reshape(hprev, (rows, h)), dzr2, True, False, None, drec)
        dbias = None
        if bias is not None:
            dbias = self.empty(tuple(bias.shape), dtype)
            if cell == "gru":
                self.reduce.column_sum(dzx2, dbias[0])
                self.reduce.column_sum(dzr2, dbias[1])
            else:
                self.reduce.column_sum(dzx2, dbias)
        dx = None
        if compute_dx:
            dx = self.empty((b_count, t_count, features), dtype)
            self.gemm.matmul(dzx2, kernel, False, True, None, self.reshape(dx, (rows, features)))
            if dmask is not None:
                scaled = self.empty(tuple(dx.shape), dtype)
                self.recurrent.scale_features(dx, dmask, scaled)
                dx = scaled
        return dx, dkernel, drec, dbias, dh0, dc0
