"""What `numbanet info` reports: versions, backends, CPU and threading."""
import importlib.metadata
import os
import platform

from numbanet.kernels.cpu.machine import cpu_model


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect():
    """-> dict of everything `numbanet info` prints."""
    import numba
    from numbanet import kernels

    gpu_ok, gpu_detail = kernels.gpu_status()
    # llvmlite's host probe is what Numba compiles for (numba's get_sysinfo wraps the same
    # calls but also probes locale and NumPy internals that now warn on import).
    import llvmlite.binding as llvm
    cpu_name = llvm.get_host_cpu_name()
    try:
        feature_map = llvm.get_host_cpu_features()
        features = " ".join(sorted(k for k, on in feature_map.items() if on))
    except RuntimeError:  # llvmlite cannot read the features on some hosts
        features = ""
    # Asking for the threading layer needs a parallel function to have run once.
    from numbanet.kernels.cpu.threads import threading_layer
    return {
        "versions": {d: _version(d) for d in ("numbanet", "numba", "llvmlite", "numpy", "numba-cuda")},
        "python": platform.python_version(),
        "backends": {"cpu": "available", "gpu": ("available: " if gpu_ok else "unavailable: ") + gpu_detail},
        "default_backend": os.environ.get("NUMBANET_BACKEND", "auto"),
        "cpu": {"model": cpu_model(), "llvm_cpu_name": cpu_name, "features": features,
                "logical_cpus": os.cpu_count()},
        "threading": {"layer": threading_layer(), "threads": numba.get_num_threads()},
        "malloc": _malloc_status(),
        "gemm": gemm_tuning(),
    }


def gemm_tuning():
    """The CPU GEMM's configuration in force and where it came from (kernels/cpu/tuning.py)."""
    from numbanet.kernels.cpu import tuning
    choice = tuning.current()
    m = tuning.current_machine()
    return {"isa": m.isa, "cpu_name": m.cpu_name, "machine": m.describe(), "source": choice.source,
            "file": choice.where or None, "choice": choice.as_dict(), "summary": choice.describe(),
            "origin": choice.origin(), "short_tile": tuning.short_tile().name}


def _malloc_status():
    # What creating the cpu backend does to malloc (kernels/cpu/memory.py), applied here
    # directly: creating the backend itself would compile its eager kernels (seconds).
    from numbanet.kernels.cpu.memory import keep_freed_memory
    return keep_freed_memory()


def format_info(info):
    lines = ["numbanet " + info["versions"]["numbanet"] + " on Python " + info["python"], "", "versions:"]
    lines += [f"  {k:<11} {v}" for k, v in info["versions"].items()]
    lines += ["", "backends:"] + [f"  {k:<11} {v}" for k, v in info["backends"].items()]
    lines += [f"  default     NUMBANET_BACKEND={info['default_backend']}", "", "cpu:"]
    c = info["cpu"]
    lines += [f"  model       {c['model']}", f"  llvm name   {c['llvm_cpu_name']}",
              f"  cpus        {c['logical_cpus']}", f"  features    {c['features']}"]
    t = info["threading"]
    lines += ["", "numba threading:", f"  layer       {t['layer']}", f"  threads     {t['threads']}"]
    g = info.get("gemm")
    if g:
        lines += ["", "cpu gemm:", f"  target      {g['machine']}", f"  choice      {g['summary']}",
                  f"  from        {g['origin']}"]
        if g["source"] != "tuned":
            lines += ["              (`numbanet tune` measures and stores this machine's own)"]
        if g.get("short_tile"):
            lines += [f"  conv/rnn    {g['short_tile']} (derived: at most 4 rows, the widest that fits)"]
    if info.get("malloc"):
        lines += ["", "memory:", f"  malloc      {info['malloc']}"]
    return "\n".join(lines)
