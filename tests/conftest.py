"""Test configuration: which backends the kernel tests run on.

NUMBANET_TEST_BACKENDS (comma-separated, default "cpu") picks them. The gpu backend is
tested in its own pytest process with NUMBA_ENABLE_CUDASIM=1 set before numba.cuda is
imported (see .ci/run), since the simulator must be chosen at import time.
"""
import os

import pytest

BACKENDS = [b.strip() for b in os.environ.get("NUMBANET_TEST_BACKENDS", "cpu").split(",") if b.strip()]

# No background compile helper (kernels/cpu/precompile.py) in the test processes, whatever
# the machine's load: the tests of that helper switch it on in the processes they start.
os.environ.setdefault("NUMBANET_BACKGROUND_COMPILE", "0")
# The suite runs more processes than cores (xdist workers, the simulator run, children):
# OpenMP threads that spin after a parallel region would hold a core another process needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def simulated():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


# The static compile needs numba's real CUDA compiler, which the simulator replaces.
collect_ignore = ["kernels/test_gpu_static.py"] if simulated() else []

if simulated():
    # The simulator run records the argument types of every kernel launch, and
    # tests/test_gpu_simulator.py requires them to equal kernels/gpu/signatures.json:
    # hypothesis must draw the same examples (dtypes, label types) every run there.
    from hypothesis import settings as _hypothesis_settings
    _hypothesis_settings.register_profile("simulator", derandomize=True)
    _hypothesis_settings.load_profile("simulator")
    # The simulator's thread blocks, waiting at barriers instead of polling (tests/sim_blocks.py).
    import sim_blocks
    if not sim_blocks.install():
        import warnings
        warnings.warn("tests/sim_blocks.py: this numba-cuda's simulator is not the one it replaces a part of; "
                      "the simulator runs as shipped (slower)")
    # Its device calls and shared arrays without the per-call swaps and stack walks (tests/sim_calls.py).
    import sim_calls
    if not sim_calls.install():
        import warnings
        warnings.warn("tests/sim_calls.py: this numba-cuda's simulator is not the one it replaces parts of; "
                      "its device calls and shared arrays run as shipped (slower)")


@pytest.fixture(params=BACKENDS)
def be(request):
    from numbanet import kernels
    return kernels.get_backend(request.param)


@pytest.fixture
def small(be):
    """True where shapes must stay tiny: the CUDA simulator runs Python per thread."""
    return be.name == "gpu" and simulated()


# The signature recorder (tests/signature_recorder.py): on in the simulator run that
# tests/test_gpu_simulator.py starts, which names the file to write.
# Under pytest-xdist each worker writes its own file (<name>.<worker id>) and the test
# unites them; the controlling process runs no test and records nothing.
_RECORD_TO = os.environ.get("NUMBANET_RECORD_LAUNCHES")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_recorder = None


def pytest_configure(config):
    global _recorder, _RECORD_TO
    if _RECORD_TO and simulated():
        if _WORKER:
            _RECORD_TO = f"{_RECORD_TO}.{_WORKER}"
        elif getattr(config.option, "numprocesses", None):
            return
        import signature_recorder
        _recorder = signature_recorder.SignatureRecorder()
        _recorder.install()


def pytest_unconfigure(config):
    if _recorder is not None:
        from numbanet.kernels import gpu_static
        # A kernel built in a function outside launch.kernel_family cannot be found again
        # by the static compile: record its site, so that the test names it.
        for site, count in _recorder.unnamed.items():
            _recorder.records["unnamed:" + site] = {"kernel": None, "args": [], "site": site, "signature": [],
                                                    "block": [1, 1, 1], "threads": count}
        gpu_static.dump_signatures(list(_recorder.records.values()), _RECORD_TO)


# Tests of the cpu side alone (its GEMM tiles, tuning, background compile, Numba's
# internals, ...): the main run has them, and in the simulator run, whose job is the gpu
# backend, they only repeated minutes of compiling.
CPU_ONLY_MODULES = {"test_compile_worker.py", "test_precompile.py", "test_numba_internals.py", "test_tiles.py",
                    "test_tuning.py", "test_machine.py", "test_cost.py", "test_shapes.py"}


def _cpu_only(item):
    return "be" not in getattr(item, "fixturenames", ()) and (
        item.path.name in CPU_ONLY_MODULES or item.name.startswith("test_cpu_"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """In the simulator run, leave out the cpu-only tests. Elsewhere, start the simulator
    run (tests/test_gpu_simulator.py) as soon as it is known to be selected, to overlap the
    other tests. Not in an xdist worker: every worker collects every test, and the
    controller starts it (below)."""
    if simulated():
        skipped = [item for item in items if _cpu_only(item)]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [item for item in items if not _cpu_only(item)]
        return
    if _WORKER or config.option.collectonly:
        return
    for item in items:
        if item.name == "test_gpu_backend_under_cuda_simulator":
            item.module.start_early(config)
            return


_simulator_started = False


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under xdist (the suite's addopts), the controller starts the simulator run when the
    first worker's collection holds its test, into the directory the worker that runs the
    test reads (test_gpu_simulator.shared_directory)."""
    global _simulator_started
    if _simulator_started or simulated() or node.config.option.collectonly:
        return
    if any(i.endswith("test_gpu_simulator.py::test_gpu_backend_under_cuda_simulator") for i in ids):
        _simulator_started = True
        import test_gpu_simulator
        test_gpu_simulator.start_early(node.config, test_gpu_simulator.shared_directory(node.workerinput["testrunuid"]))
