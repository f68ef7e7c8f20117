"""kernels/rules.py compiled for the gpu: each rule as a device function inlined into the
kernel that calls it (kernels/gpu/launch.py's inlined)."""
from numbanet.kernels import rules
from numbanet.kernels.gpu.launch import inlined

# Every rule of kernels/rules.py under its own name here.
globals().update(rules.compile_rules(inlined))
