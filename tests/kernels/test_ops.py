"""kernels/ops: the families' declarations and how the backends bind them."""
import inspect
import os

import pytest

from numbanet import kernels
from numbanet.kernels import ops
from numbanet.kernels.backend import Backend

KERNELS = os.path.dirname(os.path.abspath(kernels.__file__))


def test_every_op_is_a_method_of_every_backend():
    from numbanet.kernels.cpu import CpuBackend
    for op in ops.all_ops():
        assert getattr(Backend, op.name) is op.impl, op.name
        assert getattr(CpuBackend, op.name) is op.impl, op.name
        assert list(inspect.signature(op.impl).parameters)[0] == "be", op.name


def test_names_are_unique_and_apart_from_the_compute_modules():
    names = [op.name for op in ops.all_ops()]
    assert len(names) == len(set(names))
    attrs = [f.attr for f in ops.FAMILIES]
    assert len(attrs) == len(set(attrs))
    # be.<attr> is a compute module, be.<name> an op: one name cannot be both.
    assert not set(attrs) & set(names)


def test_every_family_has_a_compute_module_on_both_backends():
    for family in ops.FAMILIES:
        for backend in ("cpu", "gpu"):
            assert os.path.isfile(os.path.join(KERNELS, backend, family.module + ".py")), (family.name, backend)


def test_pairs_and_warm_ups():
    for op in ops.all_ops():
        assert callable(op.warmup), f"{op.name} declares no warm-up (the background compile and the start-up bench)"
        if op.backward is not None:
            assert ops.get(op.backward) is not op
    assert ops.get("conv2d").backward == "conv2d_backward"
    assert ops.family_of("conv2d_backward").module == "conv"


def test_op_pair_names_both_ops_after_their_functions():
    from numbanet.kernels.ops.declare import op_pair

    def scale(be, x):
        pass

    def scale_backward(be, dy):
        pass

    def warm(be, dt):
        pass

    def warm_backward(be, dt):
        pass

    forward, backward = op_pair(scale, scale_backward, (warm, warm_backward), (len, abs))
    assert (forward.name, forward.impl, forward.backward, forward.warmup, forward.cost) == (
        "scale", scale, "scale_backward", warm, len)
    assert (backward.name, backward.impl, backward.backward, backward.warmup, backward.cost) == (
        "scale_backward", scale_backward, None, warm_backward, abs)


def test_get_names_the_ops_there_are():
    with pytest.raises(KeyError, match="no op 'conv3d'; the ops are .*conv2d"):
        ops.get("conv3d")


def test_a_compute_module_loads_on_first_use_and_stays():
    from numbanet.kernels.cpu import CpuBackend
    be = CpuBackend()
    assert "pool" not in vars(be)
    module = be.pool
    assert module.__name__ == "numbanet.kernels.cpu.pool" and vars(be)["pool"] is module
    with pytest.raises(AttributeError, match="CpuBackend has no attribute 'pooling'"):
        be.pooling
