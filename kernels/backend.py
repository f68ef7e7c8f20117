"""The public op API, shared by every backend: the facade the families' ops are bound to.

Every op (be.conv2d, be.adam_step, ...) is declared by its family in kernels/ops/ and
bound here as a method of `Backend`: it validates its arguments (its family's rules and
kernels/shapes.py's), allocates its outputs with `empty` and hands plain, C-contiguous
arrays and ints to the family's compute module, kernels/<backend>/<module>.py, which it
reaches as be.<attr> (Family.module and Family.attr: be.conv is kernels/cpu/conv.py on
the cpu backend). A compute module is imported on first use, so a model compiles and
loads only what it runs.

What stays here is what every family shares: memory (`empty` and the step Workspace,
`zero`, `assign`, `reshape`), the argument checks (`_prepare`: native arrays, contiguous;
`_check_written`: an array written in place; `_check_disjoint`: many such arrays;
`_check_range`; `_check_into`; `_unary`), views (`_flat`, `_rows`) and the packed
gradient buffer (`_grads_buffer`).

The rules every backend applies the same way live in small modules: kernels/rules.py
(the per-element rules and the activation encoding), kernels/shapes.py (dtypes, scalars,
padding modes, the host range rule first_out_of_range and its error),
kernels/<backend>/order.py (the NaN rule of max and argmax: beats, row_argmax) and
kernels/gpu/checks.py (the range rule on the device: first_out_of_range, and in_range for
kernels that index with data).

A subclass supplies memory management (`asarray`, `to_numpy` (into a given host array
with out=), `copy_from_host`, `host_empty`, `_allocate`, `zeros`, `_zero`, `_assign`,
`synchronize`, `_check_native`, `_contiguous`, `_overlaps`, `_extent`) and
`_load_module(name)`, which imports one of its compute modules. The compute functions
receive already-validated arrays and write into the outputs they are given; they return
nothing unless documented (`sum`, `accuracy`, `l1_l2_penalty` return Python numbers).

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
import math

import numpy as np

from numbanet.kernels import ops, shapes


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


def _shared_memory_error(op, name, other_name):
    return ValueError(f"{op}: {name} shares memory with {other_name}; the op writes {name} "
                      f"while it reads {other_name}, so pass separate arrays")


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

    def _check_written(self, op, name, arr, others):
        """arr is written in place: it must be native, C-contiguous, writable and share no
        memory with any of `others` ((name, array) pairs; None entries pass; each backend's
        _overlaps says whether two of its arrays may share memory). An aliased
        output would read values the kernel has already overwritten."""
        self._check_native(op, name, arr)
        if not self._is_c_contiguous(arr):
            raise ValueError(f"{op}: {name} must be C-contiguous (it is written in place)")
        if not self._writable(arr):
            raise ValueError(f"{op}: {name} is read-only but is written in place; pass a writable array")
        for other_name, other in others:
            if other is not None and self._overlaps(arr, other):
                raise _shared_memory_error(op, name, other_name)

    def _check_disjoint(self, op, named):
        """No two arrays of `named` ((name, array) pairs, each already through
        _check_written, so C-contiguous) share memory. Taken in the order of their first byte
        (each backend's _extent), an array overlaps an earlier one exactly when it starts
        before the furthest end seen so far: n log n where a check of every pair is n^2 (a
        character model's 38 gradients: 1406 overlap tests, half of its
        clip_by_global_norm's 1.7 ms). Empty arrays share nothing."""
        spans = sorted((*self._extent(arr), i) for i, (_, arr) in enumerate(named) if arr.size)
        reach, owner = None, None
        for start, end, i in spans:
            if reach is not None and start < reach:
                first, second = sorted((owner, i))
                raise _shared_memory_error(op, named[first][0], named[second][0])
            if reach is None or end > reach:
                reach, owner = end, i

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
        # math.prod, not np.prod: every op reshapes its arguments, and NumPy's reduction
        # over a short tuple costs microseconds a call (the character model's step makes 38
        # adam_step calls, each reshaping four arrays).
        if math.prod(shape) != arr.size:
            raise ValueError(f"reshape: cannot reshape {tuple(arr.shape)} ({arr.size} elements) to {shape}")
        return arr.reshape(shape)

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

    def _unary(self, op, x):
        """x: a native, non-empty float array (the one argument of an elementwise op)."""
        x = self._prepare(op, x=x)
        shapes.check_float(op, "x", x)
        shapes.check_nonempty(op, "x", x)
        return x

    def _rows(self, arr):
        """(rows, C) view of a C-contiguous (..., C) array."""
        c = tuple(arr.shape)[arr.ndim - 1]
        return self.reshape(arr, (arr.size // c, c))

    # ------------------------------------------------------------------ compute modules
    def __getattr__(self, name):
        # Only reached for an attribute the instance does not have yet: a family's compute
        # module (be.conv, be.attn, ...) on its first use, then kept on the instance.
        module = _MODULES.get(name)
        if module is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        loaded = self._load_module(module)
        setattr(self, name, loaded)
        return loaded


_MODULES = {family.attr: family.module for family in ops.FAMILIES}
for _op in ops.all_ops():
    setattr(Backend, _op.name, _op.impl)
