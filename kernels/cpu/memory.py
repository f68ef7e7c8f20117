"""Keep freed activation memory in the process, so each training step reuses it.

A training step allocates and frees the same large arrays every time (the first conv
layer's output alone is 11 MB at batch 128). glibc's malloc serves blocks that size with
fresh mmap()s, or trims its heap back to the OS on free, so every step pays page faults
on first touch of its activations. Measure: numbanet bench --ops train_step with
NUMBANET_MALLOC_TUNING=0 and without. The cost: the process keeps up to M_TRIM_THRESHOLD of freed memory instead of
returning it. NUMBANET_MALLOC_TUNING=0, or either MALLOC_*_ variable set by the user,
leaves malloc as it is.
"""
import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above 32 MiB on 64-bit (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_state = {"done": False, "status": "not applied yet (the cpu backend has not been created)"}


def keep_freed_memory():
    """Apply the settings once per process; -> a line saying what was done (for `numbanet info`)."""
    if _state["done"]:
        return _state["status"]
    _state["done"] = True
    _state["status"] = _apply()
    return _state["status"]


def status():
    return _state["status"]


def _apply():
    if os.environ.get("NUMBANET_MALLOC_TUNING", "1") == "0":
        return "left as is (NUMBANET_MALLOC_TUNING=0)"
    user = [k for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_") if k in os.environ]
    if user:
        return f"left as is ({', '.join(user)} set by the user)"
    if not sys.platform.startswith("linux"):
        return f"left as is (not glibc: {sys.platform})"
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "left as is (no glibc mallopt)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "left as is (glibc refused mallopt)"
    return (f"glibc keeps freed memory (mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
            f"{TRIM_THRESHOLD >> 20} MiB; NUMBANET_MALLOC_TUNING=0 turns this off)")
