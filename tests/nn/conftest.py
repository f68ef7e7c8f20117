"""nn tests: the library RNG reseeded and float32 restored around every test, and the
models built on the backend under test.

Sequential builds on the process default backend. Here that default is the first of
NUMBANET_TEST_BACKENDS: the cpu in the main pytest process, the gpu in the simulator
process that tests/test_gpu_simulator.py starts, so the whole training API (layers,
losses, optimizers, saving, callbacks) runs on both. Under the simulator (Python per GPU
thread) the tests shrink their data through the `small` fixture, and the modules that
test no backend op (datasets, the command line, the progress bar) or need the real MNIST
sample to train are left to the cpu process.
"""
import pytest

from conftest import BACKENDS, simulated

if simulated() and BACKENDS[0] == "gpu":
    collect_ignore = ["test_article.py", "test_train.py", "test_mnist.py", "test_idx.py", "test_progress.py"]


@pytest.fixture(autouse=True)
def _seed_dtype_and_backend():
    from numbanet import kernels
    from numbanet.nn import utils
    utils.set_random_seed(1234)
    utils.set_floatx("float32")
    before = kernels._default
    kernels.set_backend(BACKENDS[0])
    yield
    kernels._default = before
    utils.set_floatx("float32")


@pytest.fixture
def nnbe():
    """The backend the test's models are built on: the process default that the autouse
    fixture above sets (the gpu in the simulator's process)."""
    from numbanet import kernels
    return kernels.get_backend()


@pytest.fixture
def nn_small():
    """True where the training data must stay tiny (the gpu backend on the simulator)."""
    return BACKENDS[0] == "gpu" and simulated()


def pytest_collection_modifyitems(config, items):
    """In the simulator's gpu process, keep only the nn tests marked `simulator`: sized for
    Python per GPU thread (a training step takes seconds there). The rest of tests/nn runs
    in the cpu process; the others' marks say which run on both."""
    if not (simulated() and BACKENDS[0] == "gpu"):
        return
    here = str(config.rootpath / "tests" / "nn")
    keep, drop = [], []
    for item in items:
        in_nn = str(item.path).startswith(here)
        (drop if in_nn and item.get_closest_marker("simulator") is None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
