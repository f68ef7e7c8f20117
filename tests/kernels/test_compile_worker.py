"""kernels/cpu/compile_worker.py: the helper's warm-ups and the names precompile.py sends."""
import importlib

import numpy as np

from numbanet import kernels
from numbanet.kernels.cpu import compile_worker, precompile


def _kernel(name):
    module, function = name.split(".")
    return getattr(importlib.import_module(f"numbanet.kernels.cpu.{module}"), function)


def test_hinted_kernels_exist():
    # HINTS names forward kernels by module and function name: a rename must show up here.
    for name in precompile.HINTS:
        assert precompile._kernel_name(_kernel(name)) == name
    assert {h for hs in precompile.HINTS.values() for h in hs} <= set(compile_worker.WARMUPS)
    assert set(precompile.COMMON) <= set(compile_worker.WARMUPS)


# The kernel each warm-up exists to compile (one per item; most compile more).
_WARMED = {"adam": "optim._adam_parallel", "relu_backward": "activation._relu_backward",
           "loss": "loss._softmax_ce_rows", "dense": "gemm._wide_parallel", "conv2d_backward": "conv._conv2d_backward",
           "max_pool2d_backward": "pool.max_pool2d_backward", "avg_pool2d_backward": "pool.avg_pool2d_backward",
           "sigmoid_backward": "activation._sigmoid_backward", "tanh_backward": "activation._tanh_backward",
           "softmax_backward": "activation.softmax_backward", "dropout_backward": "elementwise.multiply",
           "embedding_backward": "embedding._scatter_rows", "layer_norm_backward": "layernorm._backward",
           "attention_backward": "attention._backward"}


def test_every_warmup_compiles_its_kernel():
    # Each warm-up calls backend ops as the layers do; one that stopped reaching its
    # kernel (an op renamed or re-routed) must fail here, not go quiet in the helper,
    # which ignores its errors. The kernels load from this process's cache, or compile once.
    assert set(_WARMED) == set(compile_worker.WARMUPS)
    be = kernels.get_backend("cpu")
    for item, (_, warm) in compile_worker.WARMUPS.items():
        for dt in (np.float32, np.float64):
            warm(be, dt)
            kernel = _kernel(_WARMED[item])
            dtypes = {str(getattr(t, "dtype", "")) for sig in kernel.signatures for t in sig}
            assert np.dtype(dt).name in dtypes, (item, _WARMED[item], kernel.signatures)
