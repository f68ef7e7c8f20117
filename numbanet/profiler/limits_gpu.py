"""The gpu's roofs (see limits.py): a triad kernel and a large matmul timed with CUDA
events, and the theoretical FP32 rate from the device's attributes."""
import numpy as np

from numbanet.profiler import limits as limits_mod

# FP32 lanes per SM by compute capability major.minor (CUDA C Programming Guide,
# "Arithmetic Instructions" throughput table); other devices: None (no ISA figure).
_FP32_PER_SM = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
                (9, 0): 128, (10, 0): 128, (12, 0): 128}
TRIAD_N = 1 << 26      # 256 MiB per array: far beyond any L2
GEMM_SIZE = 4096


def _triad_kernel():
    from numba import cuda

    @cuda.jit
    def triad(a, b, c, s):
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] = b[i] + s * c[i]
    return triad


def _timed_ms(fn, repeats):
    from numba import cuda
    times = []
    for _ in range(repeats):
        start, end = cuda.event(), cuda.event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return min(times)   # the best of the repeats: a roof, not a typical rate


def gpu_limits(refresh=False, directory=None):
    """The gpu's limits, or None on the simulator."""
    from numba import config, cuda

    from numbanet import kernels
    if config.ENABLE_CUDASIM:
        return None
    dev = cuda.get_current_device()
    cc = tuple(dev.compute_capability)
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    import numba
    key = {"name": f"gpu-{name}", "cc": list(cc), "numba": numba.__version__}

    def measure():
        be = kernels.get_backend("gpu")
        sms, ghz = dev.MULTIPROCESSOR_COUNT, dev.CLOCK_RATE / 1e6
        lanes = _FP32_PER_SM.get(cc)
        triad = _triad_kernel()
        a = cuda.device_array(TRIAD_N, np.float32)
        b = cuda.to_device(np.ones(TRIAD_N, np.float32))
        c = cuda.to_device(np.ones(TRIAD_N, np.float32))
        blocks = (TRIAD_N + 255) // 256
        triad[blocks, 256](a, b, c, np.float32(3.0))
        ms = _timed_ms(lambda: triad[blocks, 256](a, b, c, np.float32(3.0)), 10)
        x = cuda.to_device(np.ones((GEMM_SIZE, GEMM_SIZE), np.float32))
        out = cuda.device_array((GEMM_SIZE, GEMM_SIZE), np.float32)
        be.matmul(x, x, out=out)
        gemm_ms = _timed_ms(lambda: be.matmul(x, x, out=out), 5)
        return {"backend": "gpu", "machine": name, "sms": sms, "ghz": ghz,
                "peak_gflops": 2 * GEMM_SIZE ** 3 / gemm_ms / 1e6,
                "isa_gflops": sms * lanes * ghz * 2 if lanes else None,
                "bandwidth_gbs": 12 * TRIAD_N / ms / 1e6}

    return limits_mod.cached(key, measure, refresh, directory)
