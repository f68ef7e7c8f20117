"""What the CPU kernels are compiled for and run on: the CPU model, the LLVM CPU name and
features Numba compiles with (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES honoured), the vector
unit they imply, the FMA units where known, and the cache sizes the OS reports.

kernels/cpu/tuning.py derives the GEMM's defaults from this and keys stored tuning by it.
Everything here is cheap (no compiling): it runs when the first matmul needs its choice.
"""
import os
import platform
from dataclasses import dataclass

# LLVM x86 CPU names by the widest vector ISA they imply, for a target named without
# features (NUMBA_CPU_FEATURES=""): LLVM then compiles for the name's own features,
# which llvmlite cannot list.
_AVX512_CPUS = {"skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
                "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
                "diamondrapids", "znver4", "znver5", "x86-64-v4", "knl", "knm"}
_AVX2_CPUS = {"haswell", "broadwell", "skylake", "core-avx2", "alderlake", "raptorlake", "meteorlake", "arrowlake",
              "arrowlake-s", "lunarlake", "gracemont", "znver1", "znver2", "znver3", "bdver4", "x86-64-v3"}
_AVX_CPUS = {"sandybridge", "ivybridge", "corei7-avx", "core-avx-i", "bdver1", "bdver2", "bdver3", "btver2"}

# Full-width FMA instructions a core starts per cycle, where known (vendor optimisation
# manuals): Zen 4 runs a 512-bit FMA as two 256-bit halves, Intel's client AVX-512 cores
# have one 512-bit FMA port, Zen 1 splits a 256-bit FMA in two. Every other x86 core with
# FMA since Haswell issues two. Unknown CPUs count as two: asking for too many
# accumulators costs less than too few.
_ONE_FMA_UNIT = {"znver4", "znver1", "icelake-client", "tigerlake", "rocketlake", "cannonlake"}
FMA_LATENCY = 4   # cycles, every x86 core since Skylake and Zen (Haswell: 5)


@dataclass(frozen=True)
class Machine:
    model: str           # /proc/cpuinfo's model name
    cpu_name: str        # the LLVM CPU name Numba compiles for
    features: frozenset  # the features Numba compiles with
    isa: str             # avx512, avx2, avx, sse2, neon or generic
    lanes: int           # float32 lanes per vector register
    registers: int       # vector registers
    fma_units: int       # full-width FMA issue per cycle (2 when not known)
    fma_known: bool
    l1d: int             # bytes per core; 0 where the OS does not say
    l2: int
    l3: int

    def describe(self):
        fma = f"{self.fma_units} FMA/cycle" + ("" if self.fma_known else " (assumed)")
        caches = ", ".join(f"{n} {_kib(v)}" for n, v in (("L1d", self.l1d), ("L2", self.l2), ("L3", self.l3)) if v)
        return (f"{self.model}; numba target {self.cpu_name}, {self.isa} ({self.lanes} float32 lanes x "
                f"{self.registers} registers, {fma}); {caches or 'cache sizes unknown'}")


def _kib(n):
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 and n % (1024 * 1024) == 0 else f"{n // 1024} KiB"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_features(text):
    """'+avx2,-avx512f,+fma' -> {'avx2', 'fma'} (the ones switched on)."""
    return frozenset(f[1:] for f in text.split(",") if f.startswith("+"))


def implied_features(cpu_name):
    """The vector features an x86 LLVM CPU name implies (for a target given by name alone)."""
    if cpu_name in _AVX512_CPUS:
        return frozenset({"avx512f", "avx2", "fma", "avx", "sse2"})
    if cpu_name in _AVX2_CPUS:
        return frozenset({"avx2", "fma", "avx", "sse2"})
    if cpu_name in _AVX_CPUS:
        return frozenset({"avx", "sse2"})
    return frozenset({"sse2"}) if platform.machine() in ("x86_64", "AMD64") else frozenset()


def numba_target():
    """(LLVM CPU name, enabled features) that Numba compiles for in this process: its own
    rule (numba.core.codegen): NUMBA_CPU_NAME or the host's name; NUMBA_CPU_FEATURES, or
    the host's features (with NUMBA_ENABLE_AVX applied) when that is unset."""
    import llvmlite.binding as ll
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    name = config.CPU_NAME or ll.get_host_cpu_name()
    if config.CPU_FEATURES is not None:
        features = parse_features(config.CPU_FEATURES)
        if not features:
            features = implied_features(name)
    else:
        features = parse_features(get_host_cpu_features())
    return name, features


def vector_unit(features, arch=None):
    """(isa, float32 lanes, vector registers) of the widest vector ISA in `features`."""
    arch = arch or platform.machine()
    if "avx512f" in features:
        return "avx512", 16, 32
    if "avx2" in features and "fma" in features:
        return "avx2", 8, 16
    if "avx" in features:
        return "avx", 8, 16
    if arch in ("aarch64", "arm64"):
        return "neon", 4, 32
    if arch in ("x86_64", "AMD64"):
        return "sse2", 4, 16
    return "generic", 4, 16


def fma_units(cpu_name, isa):
    """(units, known): full-width FMA issue per cycle for this LLVM CPU name."""
    known = cpu_name in _AVX512_CPUS | _AVX2_CPUS
    if cpu_name in _ONE_FMA_UNIT and isa in ("avx512", "avx2"):
        # A core that splits the vector in two runs one full-width FMA per cycle; the
        # same core compiled for AVX2 (NUMBA_CPU_FEATURES) runs 256-bit FMAs at full rate
        # except on Zen 1.
        return (1 if isa == "avx512" or cpu_name == "znver1" else 2), True
    return 2, known


def cache_sizes(root="/sys/devices/system/cpu/cpu0/cache"):
    """(L1d, L2, L3) in bytes, from sysfs (else os.sysconf); 0 for a level not reported."""
    sizes = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(root, entry, "level")) as f:
                level = int(f.read())
            with open(os.path.join(root, entry, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, entry, "size")) as f:
                size = _parse_size(f.read().strip())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and level in (1, 2, 3):
            sizes[level] = size
    for level, name in ((1, "SC_LEVEL1_DCACHE_SIZE"), (2, "SC_LEVEL2_CACHE_SIZE"), (3, "SC_LEVEL3_CACHE_SIZE")):
        if not sizes.get(level):
            try:
                sizes[level] = max(0, int(os.sysconf(name)))
            except (ValueError, OSError):
                sizes[level] = 0
    return sizes[1], sizes[2], sizes[3]


def _parse_size(text):
    units = {"K": 1024, "M": 1024 * 1024, "G": 1024 ** 3}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def describe(model=None, target=None, caches=None):
    """The Machine this process compiles for (arguments: stand-ins for tests)."""
    name, features = target or numba_target()
    isa, lanes, registers = vector_unit(features)
    units, known = fma_units(name, isa)
    l1d, l2, l3 = caches or cache_sizes()
    return Machine(model or cpu_model(), name, frozenset(features), isa, lanes, registers, units, known, l1d, l2, l3)
