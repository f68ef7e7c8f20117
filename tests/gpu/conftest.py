"""tests/gpu need a gpu backend: a real device, or the simulator in the subprocess that
tests/test_gpu_simulator.py starts. Without either, a plain `pytest` run does not collect
them (they are not skipped: tests/test_gpu_simulator.py runs them under the simulator)."""
from numbanet import kernels

if not kernels.gpu_status()[0]:
    collect_ignore_glob = ["test_*.py"]
