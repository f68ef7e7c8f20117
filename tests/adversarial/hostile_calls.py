"""Run as a script in a child process (tests/adversarial/test_adversarial.py starts it),
so that a call that corrupts memory or segfaults fails a test instead of killing pytest.

    python tests/adversarial/hostile_calls.py BACKEND dangerous|fuzz

prints one line "START <case>" before each call (a crash is then attributed to the case
that was running) and one JSON line per finished call:
    {"case": ..., "outcome": "ok" | "error" | "wrong", "type": exception type, "message": ...}
"wrong" means the call returned but broke a promise the case checks (see `checked`).
"""
import json
import os
import sys
import warnings

import numpy as np

from numbanet import kernels

F32 = np.float32


def report(case, outcome, exc=None, message=""):
    print(json.dumps({"case": case, "outcome": outcome, "type": type(exc).__name__ if exc else None,
                      "message": str(exc) if exc else message}), flush=True)


def run(case, fn):
    print(f"START {case}", flush=True)
    try:
        problem = fn()
    except Exception as exc:  # the parent decides which errors are acceptable
        report(case, "error", exc)
        return
    report(case, "wrong" if problem else "ok", message=problem or "")


# --------------------------------------------------------------------------- dangerous calls

def pool_setup(be, n=2):
    x = np.random.default_rng(0).standard_normal((n, 4, 4, 2)).astype(F32)
    y, idx = be.max_pool2d(be.asarray(x))
    return x, be.to_numpy(y), be.to_numpy(idx)


def with_entry(idx, value, dtype=np.int32):
    bad = idx.astype(np.int64)
    bad.reshape(-1)[3] = value
    return bad.astype(dtype)


def pool_backward(be, value=None, x_shape=None, idx_dtype=np.int32, checked=True):
    x, y, idx = pool_setup(be)
    dy = np.ones_like(y)
    idx = idx if value is None else with_entry(idx, value, idx_dtype)
    kwargs = {} if checked else {"_indices_checked": True}
    dx = be.max_pool2d_backward(be.asarray(dy), be.asarray(idx), x.shape if x_shape is None else x_shape, **kwargs)
    if checked:
        return None
    # Unchecked (the private path a MaxPooling2D layer takes): the kernel must skip the bad
    # entry and write every good one, inside dx only.
    want = np.zeros(x.shape, F32)
    flat = idx.reshape(x.shape[0], -1, x.shape[3])
    for b in range(x.shape[0]):
        for k in range(flat.shape[1]):
            for ch in range(x.shape[3]):
                at = int(flat[b, k, ch])
                if 0 <= at < 16:
                    want[b, at // 4, at % 4, ch] += 1.0
    got = be.to_numpy(dx)
    return None if np.array_equal(got, want) else "dx differs from the reference that skips the bad entry"


def take_rows(be, indices, checked=True):
    x = np.arange(12, dtype=F32).reshape(4, 3)
    kwargs = {} if checked else {"_indices_checked": True}
    y = be.to_numpy(be.take_rows(be.asarray(x), be.asarray(indices), **kwargs))
    if checked:
        return None if np.array_equal(y, x[indices]) else "rows differ from x[indices]"
    ok = (indices >= 0) & (indices < 4)
    want = np.where(ok[:, None], x[np.where(ok, indices, 0)], 0.0)
    return None if np.array_equal(y, want) else "a bad row is not zero or a good row is wrong"


def loss_labels(be, op, labels):
    z = be.asarray(np.zeros((2, 3), F32))
    getattr(be, op)(z, be.asarray(labels))


DANGEROUS = {
    # max_pool2d_backward: every index must name a cell of its own image.
    "pool_index_huge": lambda be: pool_backward(be, 2 ** 30),
    "pool_index_minus_one": lambda be: pool_backward(be, -1),
    "pool_index_int32_min": lambda be: pool_backward(be, -2 ** 31),
    "pool_index_one_past_image": lambda be: pool_backward(be, 16),
    "pool_x_shape_smaller_than_indices": lambda be: pool_backward(be, x_shape=(2, 2, 2, 2)),
    "pool_x_shape_batch_lie": lambda be: pool_backward(be, x_shape=(1, 4, 4, 2)),
    "pool_x_shape_channel_lie": lambda be: pool_backward(be, x_shape=(2, 4, 4, 1)),
    "pool_x_shape_float": lambda be: pool_backward(be, x_shape=(2, 4.0, 4, 2)),
    "pool_x_shape_huge": lambda be: pool_backward(be, x_shape=(2, 2 ** 40, 2 ** 40, 2)),
    "pool_x_shape_negative": lambda be: pool_backward(be, x_shape=(2, -4, 4, 2)),
    "pool_indices_int64": lambda be: pool_backward(be, 0, idx_dtype=np.int64),
    "pool_unchecked_bad_index_is_skipped": lambda be: pool_backward(be, 2 ** 30, checked=False),
    "pool_unchecked_negative_index_is_skipped": lambda be: pool_backward(be, -1, checked=False),
    "pool_unchecked_next_image_index_is_skipped": lambda be: pool_backward(be, 16, checked=False),
    # take_rows: every index a row of x.
    "take_rows_past_end": lambda be: take_rows(be, np.array([0, 4], np.int32)),
    "take_rows_minus_one": lambda be: take_rows(be, np.array([-1, 0], np.int64)),
    "take_rows_uint64_huge": lambda be: take_rows(be, np.array([0, 2 ** 63], np.uint64)),
    "take_rows_int8_ok": lambda be: take_rows(be, np.array([3, 0, 3], np.int8)),
    "take_rows_unchecked_bad_row_is_zero": lambda be: take_rows(be, np.array([1, 2 ** 30, -5], np.int64),
                                                                checked=False),
    # labels: compared, never indexed, but still checked.
    "softmax_cross_entropy_label_past_end": lambda be: loss_labels(be, "softmax_cross_entropy", np.array([0, 3])),
    "crossentropy_label_negative": lambda be: loss_labels(be, "crossentropy", np.array([-1, 0])),
    "accuracy_label_huge": lambda be: loss_labels(be, "accuracy", np.array([0, 2 ** 40])),
    "accuracy_label_big_endian": lambda be: loss_labels(be, "accuracy", np.array([0, 1], ">i8")),
}

# The outcome each dangerous case must have: ok, or an error of this type naming this op.
EXPECTED = {name: ("ValueError", "max_pool2d_backward") for name in DANGEROUS if name.startswith("pool_")}
EXPECTED.update({"pool_indices_int64": ("TypeError", "max_pool2d_backward"),
                 "pool_unchecked_bad_index_is_skipped": None, "pool_unchecked_negative_index_is_skipped": None,
                 "pool_unchecked_next_image_index_is_skipped": None,
                 "take_rows_past_end": ("ValueError", "take_rows"), "take_rows_minus_one": ("ValueError", "take_rows"),
                 "take_rows_uint64_huge": ("ValueError", "take_rows"), "take_rows_int8_ok": None,
                 "take_rows_unchecked_bad_row_is_zero": None,
                 "softmax_cross_entropy_label_past_end": ("ValueError", "softmax_cross_entropy"),
                 "crossentropy_label_negative": ("ValueError", "crossentropy"),
                 "accuracy_label_huge": ("ValueError", "accuracy"),
                 "accuracy_label_big_endian": ("TypeError", "accuracy")})


# --------------------------------------------------------------------------- fuzzing

def rnd(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


# op -> (positional host arrays, keyword arguments): a valid call, tiny shapes.
def valid_calls():
    x4 = rnd((1, 4, 4, 2))
    return {
        "matmul": ([rnd((2, 3)), rnd((3, 2), 1)], {}),
        "conv2d": ([x4, rnd((3, 3, 2, 2), 1)], {"padding": "same"}),
        "conv2d_backward": ([x4, rnd((3, 3, 2, 2), 1), rnd((1, 2, 2, 2), 2)], {}),
        "max_pool2d": ([x4], {}),
        "avg_pool2d": ([x4], {"padding": "same"}),
        "avg_pool2d_backward": ([rnd((1, 2, 2, 2))], {"x_shape": (1, 4, 4, 2)}),
        "adam_step": ([rnd((5,)), rnd((5,), 1), rnd((5,), 2), np.abs(rnd((5,), 3))], {"lr": 0.1, "step": 1}),
        "sgd_step": ([rnd((5,)), rnd((5,), 1), rnd((5,), 2)], {"lr": 0.1, "momentum": 0.9}),
        # Not centered: a centered step takes sqrt(v - a^2 + eps), which made-up slots (and the
        # "huge" variant of a) make negative; the hardware gives NaN there, but the CUDA
        # simulator runs math.sqrt in Python, which raises. Every slot goes through the same
        # checks (kernels/ops/optim.py's _optim_arrays), fuzzed here on velocity.
        "rmsprop_step": ([rnd((5,)), rnd((5,), 1), np.abs(rnd((5,), 2))], {"lr": 0.1}),
        "adagrad_step": ([rnd((5,)), rnd((5,), 1), np.abs(rnd((5,), 2))], {"lr": 0.1}),
        "batch_norm_train": ([rnd((2, 3)), rnd((3,), 1), rnd((3,), 2), rnd((3,), 3), np.abs(rnd((3,), 4))], {}),
        "batch_norm_inference": ([rnd((2, 3)), rnd((3,), 1), rnd((3,), 2), rnd((3,), 3), np.abs(rnd((3,), 4))],
                                 {}),
        "batch_norm_backward": ([rnd((2, 3)), rnd((3,), 1), rnd((2, 3), 2), rnd((3,), 3), np.abs(rnd((3,), 4))],
                                {}),
        "relu": ([rnd((2, 3))], {}),
        "relu_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "sigmoid": ([rnd((2, 3))], {}),
        "tanh_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "softmax": ([rnd((2, 3))], {}),
        "softmax_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "softmax_cross_entropy": ([rnd((2, 3)), np.array([0, 2])], {}),
        "crossentropy": ([np.full((2, 3), 1 / 3, F32), np.array([0, 2])], {}),
        "mse": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "accuracy": ([rnd((2, 3)), np.array([0, 2])], {}),
        "bias_add": ([rnd((2, 3)), rnd((3,), 1)], {}),
        "dropout": ([rnd((2, 3))], {"rate": 0.5, "seed": 1}),
        "dropout_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "l1_l2_grad": ([rnd((2, 3)), rnd((2, 3), 1)], {"l1": 0.1, "l2": 0.1}),
        "l1_l2_penalty": ([rnd((2, 3))], {"l1": 0.1, "l2": 0.1}),
        "scale": ([rnd((2, 3))], {"alpha": 2.0}),
        "take_rows": ([rnd((3, 2)), np.array([2, 0])], {}),
        "column_sum": ([rnd((2, 3))], {}),
        "sum": ([rnd((2, 3))], {}),
        "argmax": ([rnd((2, 3))], {}),
        "gelu": ([rnd((2, 3))], {}),
        "gelu_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {"approximate": True}),
        "silu": ([rnd((2, 3))], {}),
        "silu_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "leaky_relu": ([rnd((2, 3))], {"negative_slope": 0.1}),
        "leaky_relu_backward": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "add": ([rnd((2, 3)), rnd((2, 3), 1)], {}),
        "split": ([rnd((2, 3))], {"sizes": [1, 2], "axis": 1}),
        "transpose": ([rnd((2, 3, 2))], {"axes": (2, 0, 1)}),
        "binary_crossentropy": ([np.full((2, 3), 0.3, F32), np.ones((2, 3), F32)], {}),
        "binary_accuracy": ([np.full((2, 3), 0.3, F32), np.ones((2, 3), F32)], {}),
        "clip_by_norm": ([rnd((2, 3))], {"clipnorm": 0.5}),
        "rnn": ([rnd((2, 3, 2)), rnd((2, 8), 1), rnd((2, 8), 2), rnd((8,), 3)], {"cell": "lstm"}),
        "rnn_backward": ([rnd((2, 3, 2)), rnd((2, 8), 1), rnd((2, 8), 2), rnd((8,), 3), rnd((2, 3, 12), 4),
                          rnd((2, 3, 2), 5)], {"cell": "lstm"}),
    }


def variants(a):
    """Arrays (and non-arrays) a user's bug can hand to an op in place of a."""
    ro = a.copy()
    ro.flags.writeable = False
    return {
        "float16": a.astype(np.float16), "int32": a.astype(np.int32), "bool": a.astype(bool),
        "complex64": a.astype(np.complex64), "big_endian": a.astype(a.dtype.newbyteorder(">")),
        "zero_d": np.asarray(a.reshape(-1)[0]), "empty": np.zeros((0,) + a.shape[1:], a.dtype),
        "extra_axis": a[..., None], "fortran": np.asfortranarray(a), "reversed": a[::-1],
        "read_only": ro, "all_nan": np.full(a.shape, np.nan, a.dtype), "huge": np.full(a.shape, 3e38, a.dtype)
        if a.dtype.kind == "f" else a, "list": a.tolist(), "none": None, "python_float": 1.5,
    }


BAD_SCALARS = {
    "matmul": {"trans_a": "yes"}, "conv2d": {"strides": (0, 1)}, "conv2d_backward": {"compute_dx": "no"},
    "max_pool2d": {"pool_size": (2.5, 2)}, "avg_pool2d": {"padding": [1]},
    "avg_pool2d_backward": {"x_shape": (1, "4", 4, 2)}, "adam_step": {"step": 2.5},
    "sgd_step": {"lr": float("nan")}, "crossentropy": {"eps": 0.0}, "dropout": {"seed": 2 ** 64},
    "l1_l2_grad": {"l1": "0.1"}, "l1_l2_penalty": {"l2": None}, "scale": {"alpha": float("inf")},
    "gelu": {"approximate": "yes"}, "leaky_relu": {"negative_slope": float("nan")}, "split": {"sizes": [1, 1]},
    "transpose": {"axes": (0, 0, 1)}, "binary_crossentropy": {"eps": 0.6}, "binary_accuracy": {"threshold": None},
    "clip_by_norm": {"clipnorm": -1.0}, "rnn": {"cell": "rnn"}, "rnn_backward": {"go_backwards": "yes"},
    "rmsprop_step": {"rho": 1.5}, "adagrad_step": {"eps": float("nan")}, "batch_norm_train": {"momentum": "0.9"},
    "batch_norm_inference": {"epsilon": -1.0}, "batch_norm_backward": {"center": "yes"},
}


def fuzz(be):
    for op, (arrays, kwargs) in valid_calls().items():
        run(f"{op}|valid", lambda: (getattr(be, op)(*[be.asarray(a) for a in arrays], **kwargs), None)[1])
        for slot, a in enumerate(arrays):
            for vname, v in variants(a).items():
                def call(slot=slot, v=v):
                    args = [be.asarray(b) for b in arrays]
                    if isinstance(v, np.ndarray):
                        try:
                            args[slot] = be.asarray(v)
                        except (TypeError, ValueError) as exc:
                            if "asarray" not in str(exc):
                                raise
                            return None  # refused on the way in, clearly
                    else:
                        args[slot] = v
                    getattr(be, op)(*args, **kwargs)
                    return None
                run(f"{op}|arg{slot}|{vname}", call)
        for name, value in BAD_SCALARS.get(op, {}).items():
            run(f"{op}|{name}={value!r}",
                lambda: (getattr(be, op)(*[be.asarray(a) for a in arrays], **dict(kwargs, **{name: value})), None)[1])


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # casts of NaN to int in the variants, the simulator's uint64 hash
    backend, mode = sys.argv[1], sys.argv[2]
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        # The simulator's blocks as greenlets, as in the pytest process (tests/sim_blocks.py).
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import sim_blocks
        sim_blocks.install()
    be = kernels.get_backend(backend)
    if mode == "dangerous":
        for case, fn in DANGEROUS.items():
            run(case, lambda: fn(be))
    else:
        fuzz(be)
    print("DONE", flush=True)
