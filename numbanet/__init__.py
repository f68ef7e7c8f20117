"""numbanet: hand-written Numba kernels (CPU and CUDA) for training neural networks.

The library is three packages: `numbanet.kernels` (the backends and their kernels),
`numbanet.nn` (the Keras-style training API) and `numbanet.bench` (the benchmarks).
This package holds only what sits above all three: the version and the `numbanet`
command line (`numbanet.cli`), so that `nn` never needs to import `bench`.
"""
__version__ = "0.2.0"

# numbanet.kernels, .nn and .bench live in sibling folders of this one in a checkout
# (kernels/, nn/, bench/), mapped here by the installer. extend_path also finds them in
# another `numbanet` folder on sys.path, so a run from the checkout's root (where this
# folder shadows the installed package) still imports the installed parts, and
# bench/gpu_check.sh can run an uninstalled checkout through a folder of links.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)


def __getattr__(name):
    # numbanet.profile, imported on first use: `import numbanet` stays cheap.
    if name == "profile":
        from numbanet.profiler import profile
        return profile
    raise AttributeError(f"module 'numbanet' has no attribute {name!r}")
