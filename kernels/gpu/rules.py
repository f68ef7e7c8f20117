"""kernels/rules.py compiled for the gpu: each rule as a device function inlined into the
kernel that calls it (cuda.jit(device=True, inline="always"))."""
from numba import cuda

from numbanet.kernels import rules

# Every rule of kernels/rules.py under its own name here.
globals().update(rules.compile_rules(cuda.jit(device=True, inline="always")))
