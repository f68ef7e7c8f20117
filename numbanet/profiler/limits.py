"""What the machine can do: the roofs a kernel's rate is held against.

Per backend a dict:
  peak_gflops       the compute roof: the GEMM's best measured rate (cpu: the tuned
                    matmul on a 1024^3 product, or `numbanet tune`'s best blocking rate
                    when higher; gpu: a 4096^3 matmul)
  isa_gflops        the theoretical figure: cores x GHz x FMA units x float32 lanes x 2
                    (gpu: SMs x FP32 lanes per SM x GHz x 2); None where a factor is unknown
  bandwidth_gbs     a STREAM-style triad on every thread (bench/bandwidth.py; gpu: a
                    triad kernel timed with CUDA events)
  machine, threads  what the figures are valid for

Measured once per machine and cached beside the GEMM tuning (kernels/cpu/tuning.py's
directory, NUMBANET_TUNING_DIR honoured), written atomically; `refresh=True` measures
again. The simulator's gpu has no limits (None): nothing it times means anything.
"""
import hashlib
import json
import os
import re
import time

FORMAT = "numbanet-limits/1"
GEMM_SIZE = 1024   # cpu: big enough for the parallel driver at full rate, ~0.1 s on 2 cores


def attainable(limits, intensity):
    """GFLOP/s the roofline allows at `intensity` FLOP/byte (None: a pure copy, whose roof
    is the bandwidth in GB/s)."""
    if limits is None or not limits.get("bandwidth_gbs"):
        return None
    if intensity is None:
        return limits["bandwidth_gbs"]
    peak = limits.get("peak_gflops")
    roof = intensity * limits["bandwidth_gbs"]
    return min(peak, roof) if peak else roof


def describe(limits):
    isa = limits.get("isa_gflops")
    return (f"roofs: GEMM {limits['peak_gflops']:.1f} GFLOP/s"
            + (f" (ISA {isa:.1f})" if isa else "") + f", triad {limits['bandwidth_gbs']:.1f} GB/s")


# --------------------------------------------------------------------------- cache
def _cache_path(key, directory=None):
    from numbanet.kernels.cpu import tuning
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", str(key.get("name", "machine"))).strip("-")
    return os.path.join(directory or tuning.tuning_dir(), f"limits-{slug}-{digest}.json")


def cached(key, measure, refresh, directory=None):
    path = _cache_path(key, directory)
    if not refresh:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("format") == FORMAT and doc.get("key") == key:
                return doc["limits"]
        except (OSError, ValueError, AttributeError, KeyError):
            pass   # none yet, or unreadable: measured again and replaced
    limits = measure()
    from numbanet.nn.utils import atomic_write
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {"format": FORMAT, "key": key, "limits": limits}
    atomic_write(path, lambda f: f.write((json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()), ".json")
    return limits


# --------------------------------------------------------------------------- cpu
def physical_cores(cpuinfo="/proc/cpuinfo"):
    """Distinct (physical id, core id) pairs; os.cpu_count() where the file does not say."""
    cores, physical = set(), "0"
    try:
        with open(cpuinfo) as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "physical id":
                    physical = value.strip()
                elif name == "core id":
                    cores.add((physical, value.strip()))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def cpu_ghz(cpuinfo="/proc/cpuinfo", max_freq="/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"):
    """The highest clock the OS reports (cpufreq's maximum, else /proc/cpuinfo's "cpu MHz"), or None."""
    try:
        with open(max_freq) as f:
            return int(f.read()) / 1e6
    except (OSError, ValueError):
        pass
    mhz = []
    try:
        with open(cpuinfo) as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except (OSError, ValueError, IndexError):
        pass
    return max(mhz) / 1e3 if mhz else None


def isa_gflops(machine, cores, ghz):
    """cores x GHz x FMA units x float32 lanes x 2 (an FMA is two FLOPs)."""
    return None if ghz is None else cores * ghz * machine.fma_units * machine.lanes * 2


def _tuned_best(machine):
    """The best GFLOP/s `numbanet tune` measured on this machine (its blocking search), or None."""
    from numbanet.kernels.cpu import tuning
    try:
        with open(tuning.path_for(machine), encoding="utf-8") as f:
            doc = json.load(f)
        tuning.parse(doc, machine)
        rates = doc.get("measured", {}).get("blocking_gflops", {})
        return max(float(v) for v in rates.values()) if rates else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _gemm_gflops(be, n, repeats=5):
    import numpy as np
    a = np.ones((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    be.matmul(a, a, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        be.matmul(a, a, out=out)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e9   # the best of the repeats: a roof, not a typical rate


def cpu_limits(refresh=False, directory=None):
    import numba

    from numbanet import kernels
    from numbanet.bench import bandwidth
    from numbanet.kernels.cpu import tuning
    machine = tuning.current_machine()
    threads = numba.get_num_threads()
    key = dict(tuning.machine_key(machine), name=f"cpu-{machine.cpu_name}", threads=threads)

    def measure():
        be = kernels.get_backend("cpu")
        cores, ghz = physical_cores(), cpu_ghz()
        measured = _gemm_gflops(be, GEMM_SIZE)
        tuned = _tuned_best(machine)
        return {"backend": "cpu", "machine": machine.model, "threads": threads, "cores": cores, "ghz": ghz,
                "load_average": os.getloadavg()[0],
                "peak_gflops": max(measured, tuned or 0.0), "gemm_gflops_measured": measured,
                "gemm_gflops_tuned": tuned, "isa_gflops": isa_gflops(machine, cores, ghz),
                "bandwidth_gbs": bandwidth.triad_gbs()}

    return cached(key, measure, refresh, directory)
