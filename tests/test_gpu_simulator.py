"""Runs the kernel tests on the gpu backend under Numba's CUDA simulator, in a subprocess.

The simulator has to be chosen before numba.cuda is first imported, so it cannot be
switched on inside this pytest process (which may already have imported numba.cuda).
The subprocess runs tests/kernels (every op against its NumPy reference), tests/gpu
(every gpu op against the cpu op, determinism, tile edges, residency), the tests of
tests/nn marked `simulator` (the training API on the gpu: see tests/nn/conftest.py) and
tests/adversarial (bad indices, non-finite numbers, aliasing, hostile files) with the gpu
backend.
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Defined only outside the simulator: a pytest run that already has NUMBA_ENABLE_CUDASIM
# set (the subprocess below, or a user running the suite that way) collects no test here
# instead of starting itself again.
if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
    def test_gpu_backend_under_cuda_simulator(tmp_path):
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBANET_TEST_BACKENDS="gpu")
        report = tmp_path / "simulator.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/kernels", "tests/gpu", "tests/nn", "tests/adversarial", "-q",
               "-p", "no:cacheprovider",
               f"--junitxml={report}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"simulator run failed (exit {proc.returncode}):\n{output[-20000:]}"
        # The test count comes from the JUnit report: -q twice (here and in addopts) hides
        # pytest's "N passed" line.
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        ran = int(suite.get("tests")) - int(suite.get("skipped", 0))
        assert ran > 0, f"the simulator run ran no tests:\n{output[-5000:]}"
