"""kernels/cpu/memory.py: creating the cpu backend makes glibc keep freed memory.

Checked in fresh processes (malloc settings are process-wide and applied once): a 20 MB
block, which glibc's defaults serve with its own mmap() far above the heap, comes from
the heap (below the program break) once the backend exists, and does not when the user
turns the tuning off.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_PROBE = r"""
import ctypes, sys
from numbanet import kernels
from numbanet.kernels.cpu import memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = [ctypes.c_long]
before = memory.status()
kernels.get_backend("cpu")
block = libc.malloc(20 << 20)
brk = libc.sbrk(0)
print("heap" if block < brk else "mmap")
print(before)
print(memory.status())
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings are Linux-only")


def _probe(**env_overrides):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBANET_MALLOC_TUNING", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    env.update(env_overrides)
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


@glibc
def test_cpu_backend_keeps_large_blocks_in_the_heap():
    where, before, after = _probe()
    assert before.startswith("not applied yet")  # import kernels alone changes nothing
    assert where == "heap"
    assert after.startswith("glibc keeps freed memory")


@glibc
def test_opt_out_leaves_malloc_alone():
    where, _, after = _probe(NUMBANET_MALLOC_TUNING="0")
    assert where == "mmap"
    assert after == "left as is (NUMBANET_MALLOC_TUNING=0)"


@glibc
def test_users_own_malloc_settings_win():
    _, _, after = _probe(MALLOC_MMAP_THRESHOLD_="65536")
    assert after == "left as is (MALLOC_MMAP_THRESHOLD_ set by the user)"
