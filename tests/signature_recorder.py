"""Records every numbanet gpu kernel launch of the simulator test run, by kernel name and
argument types, for the static compile of kernels/gpu_static.py (tests/conftest.py turns
it on when NUMBANET_RECORD_LAUNCHES names the file to write; tests/test_gpu_simulator.py
does). The launch hook is bench/gpu_launches.py's, which also counts a training step's
launches."""
from numbanet.bench import gpu_launches


def site(kernel):
    return f"{kernel.fn.__module__}:{kernel.fn.__qualname__}"


class SignatureRecorder:
    """{key: record} of numbanet kernel launches for gpu_static.dump_signatures."""

    def __init__(self):
        self.records = {}
        self.unnamed = {}  # site -> count: kernels built outside launch.kernel_family

    def __call__(self, kernel, args, block):
        if not kernel.fn.__module__.startswith(gpu_launches.PACKAGE):
            return False
        from numbanet.kernels import gpu_static
        from numbanet.kernels.gpu import launch
        ident = launch.kernel_id(kernel)
        if ident is None:
            self.unnamed[site(kernel)] = self.unnamed.get(site(kernel), 0) + 1
            return False
        types = [gpu_static.argument_type(a) for a in args]
        gpu_static.merge_launch(self.records, ident, site(kernel), block, types,
                                getattr(kernel, "numbanet_block", None))
        return False

    def install(self):
        """Listen for the rest of the process (the whole pytest session)."""
        gpu_launches._install()
        gpu_launches._listeners.append(self)
