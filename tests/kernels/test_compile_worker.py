"""kernels/cpu/compile_worker.py: the helper runs the ops' declared warm-ups, and those
warm-ups reach every kernel of the cpu backend."""
import importlib
import inspect
import pkgutil

import numpy as np

from numbanet import kernels
from numbanet.kernels import numba_internals, ops
from numbanet.kernels.cpu import _pack_rows, precompile, tuning
from numbanet.kernels.cpu.tiles import TileType

# Kernels that no warm-up compiles on purpose: the thread-count probe runs once per
# process on int64 (kernels/cpu/threads.py), whatever the ops; the register tiles'
# reference loops (kernels/cpu/microkernel.py: the kernels compile the tiles' vector code
# into their own).
NOT_AN_OP = {"threads._touch", "microkernel.micro_reference", "microkernel.direct_reference"}
# float32 forms of an op whose float64 runs another kernel (the GELU's rational erf).
FLOAT32_BY_DESIGN = {"activation._gelu_erf_forward_f32", "activation._gelu_erf_backward_f32"}


def test_the_names_sent_are_ops_with_warm_ups():
    for name in precompile.COMMON:
        assert ops.get(name).warmup is not None, name
    for op in ops.all_ops():
        if op.backward is not None:
            assert ops.get(op.backward).warmup is not None, (op.name, op.backward)


def _cpu_kernels():
    """{"module.function": dispatcher} of every cached kernel in kernels/cpu/."""
    import numbanet.kernels.cpu as package
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("compile_worker", "__main__"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if numba_internals.is_cpu_dispatcher(obj) and obj.py_func.__module__ == module.__name__ \
                    and obj.targetoptions.get("inline", "never") == "never":
                found[f"{info.name}.{name}"] = obj
    return found


def _callees(dispatcher):
    """The dispatchers a kernel's code names (as a global, or as an attribute of a module
    it names): compiled into it, so a kernel loaded from the cache brings them along
    without their own entry."""
    names = dispatcher.py_func.__code__.co_names
    scope = dispatcher.py_func.__globals__
    # A kernel compiled for a Tile reaches that shape's row packer through the tile
    # argument's type (kernels/cpu/tiles.py), not by a name in its code (its micro-kernel
    # and convolution tile are code generated into the kernel itself).
    out = [_pack_rows.PACK_ROWS[t.mr] for sig in dispatcher.signatures for t in sig if isinstance(t, TileType)]
    for name in names:
        obj = scope.get(name)
        if numba_internals.is_cpu_dispatcher(obj):
            out.append(obj)
        elif inspect.ismodule(obj):
            out += [getattr(obj, n) for n in names if numba_internals.is_cpu_dispatcher(getattr(obj, n, None))]
    return out


def _float_dtypes(signatures):
    return frozenset(str(getattr(t, "dtype", "")) for sig in signatures for t in sig) & {"float32", "float64"}


def test_the_warm_ups_reach_every_cpu_kernel():
    """Every op's warm-up in float32 and float64 (what the helper and the start-up bench
    run) reaches every kernel of the cpu backend, in both dtypes where it computes in the
    data's: a kernel path that no warm-up reaches (a new op without one, a threshold moved
    past a warm-up's size) fails here. A kernel counts when it has been compiled or loaded
    itself, or when one that was names it, in that one's dtypes (the kernels load from the
    cache the helper and earlier tests wrote)."""
    be = kernels.get_backend("cpu")
    for op in ops.all_ops():
        for dt in (np.float32, np.float64):
            op.warmup(be, dt)
    everything = _cpu_kernels()
    # {id: float dtypes it was reached in}: its own signatures', then its callers' (a
    # kernel loaded from the cache brings its callees compiled in, without their entry).
    dtypes = {id(k): _float_dtypes(k.signatures) for k in everything.values() if k.signatures}
    frontier = [k for k in everything.values() if k.signatures]
    while frontier:
        caller = frontier.pop()
        for callee in _callees(caller):
            have = dtypes.get(id(callee))
            if have is None or not dtypes[id(caller)] <= have:
                dtypes[id(callee)] = (have or frozenset()) | dtypes[id(caller)]
                frontier.append(callee)
    reached = set(dtypes)
    tile = tuning.current().tile
    assert id(_pack_rows.PACK_ROWS[tile.mr]) in reached, f"the warm-ups miss the {tile.name} row packer in force"
    # The other candidates' packers compile only where a tuning picks their shape
    # (tests/kernels/test_gemm.py runs each one). The tile in force, attention's strip tile
    # (kernels/cpu/attention.py) and the short tile of convolution and the recurrence.
    in_force = {f"_pack_rows.pack_rows_{t.mr}" for t in (tile, tuning.strip_tile(16), tuning.short_tile())}
    other_tiles = {name for name in everything if name.startswith("_pack_rows.")} - in_force
    missed = sorted(name for name, k in everything.items()
                    if id(k) not in reached and name not in NOT_AN_OP and name not in other_tiles)
    assert not missed, f"kernels no warm-up reaches: {missed}"
    one_dtype = [name for name, k in everything.items()
                 if dtypes.get(id(k)) == {"float32"} and name not in FLOAT32_BY_DESIGN and name not in other_tiles
                 and name not in NOT_AN_OP]
    assert not one_dtype, f"kernels the warm-ups run in float32 only: {sorted(one_dtype)}"
