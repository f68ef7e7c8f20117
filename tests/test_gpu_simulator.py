"""Runs the kernel tests on the gpu backend under Numba's CUDA simulator, in a subprocess.

The simulator has to be chosen before numba.cuda is first imported, so it cannot be
switched on inside this pytest process (which may already have imported numba.cuda).
The subprocess runs tests/kernels (every op against its NumPy reference), tests/gpu
(every gpu op against the cpu op, determinism, tile edges, residency, launches), the tests
of tests/nn marked `simulator` (the training API on the gpu: see tests/nn/conftest.py) and
tests/adversarial (bad indices, non-finite numbers, aliasing, hostile files) with the gpu
backend.

The same run records every kernel launch by kernel and argument types
(tests/signature_recorder.py). kernels/gpu/signatures.json, which the static compile
(kernels/gpu_static.py) reads, must hold exactly that set: a kernel whose launches changed
fails here until the file is rewritten with

    NUMBANET_UPDATE_SIGNATURES=1 python -m pytest tests/test_gpu_simulator.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A hang detector: the run takes about 28 minutes on 2 idle cores, longer beside the rest of the suite.
TIMEOUT_S = 3600
_started = {}   # the run start_early began: {"proc", "dir", "log"}


def _start(directory):
    """Popen of the simulator run, writing its report, launch records and output to directory."""
    directory = Path(directory)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBANET_TEST_BACKENDS="gpu",
               NUMBANET_RECORD_LAUNCHES=str(directory / "signatures.json"))
    # Two xdist workers: the simulator is single-threaded Python, so on a 2-core machine
    # two of them halve the wall time of the longest test in the suite.
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "tests/gpu", "tests/nn", "tests/adversarial", "-q",
           "-p", "no:cacheprovider", "-n", str(SIMULATOR_WORKERS), f"--junitxml={directory / 'simulator.xml'}"]
    log = open(directory / "output.txt", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    return {"proc": proc, "dir": directory, "log": log, "started": time.monotonic()}


def start_early(config):
    """Start the run when collection ends (tests/conftest.py calls this when the test below
    is selected), so that it overlaps the rest of the suite instead of following it: the
    rest is mostly one busy core (compiles, small kernels), the simulator run two."""
    run = _start(tempfile.mkdtemp(prefix="numbanet-simulator-"))
    _started.update(run)

    def cleanup():
        if run["proc"].poll() is None:
            run["proc"].kill()
            run["proc"].wait()
        run["log"].close()
        shutil.rmtree(run["dir"], ignore_errors=True)
    config.add_cleanup(cleanup)


# Defined only outside the simulator: a pytest run that already has NUMBA_ENABLE_CUDASIM
# set (the subprocess below, or a user running the suite that way) collects no test here
# instead of starting itself again.
if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
    def test_gpu_backend_under_cuda_simulator(tmp_path):
        run = dict(_started) if _started else _start(tmp_path)
        _started.clear()
        try:
            returncode = run["proc"].wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - run["started"])))
        except subprocess.TimeoutExpired:
            run["proc"].kill()
            run["proc"].wait()
            returncode = f"killed after {TIMEOUT_S} s"
        run["log"].close()
        output = (run["dir"] / "output.txt").read_text()
        assert returncode == 0, f"simulator run failed (exit {returncode}):\n{output[-20000:]}"
        # The test count comes from the JUnit report: -q twice (here and in addopts) hides
        # pytest's "N passed" line.
        suite = ET.parse(run["dir"] / "simulator.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        ran = int(suite.get("tests")) - int(suite.get("skipped", 0))
        assert ran > 0, f"the simulator run ran no tests:\n{output[-5000:]}"
        check_signatures(unite_recordings(run["dir"] / "signatures.json"))


SIMULATOR_WORKERS = 2


def unite_recordings(recorded):
    """The workers' launch records (<recorded>.gw0, .gw1, ...) as one file: each kernel and
    argument types once, with the largest block any worker launched it with."""
    from numbanet.kernels import gpu_static
    parts = sorted(recorded.parent.glob(recorded.name + ".gw*"))
    assert len(parts) == SIMULATOR_WORKERS, f"expected one launch recording per worker, found {parts}"
    united = {}
    for part in parts:
        for rec in gpu_static.load_signatures(str(part)):
            key = _key(rec)
            if key not in united or rec["threads"] > united[key]["threads"]:   # gpu_static.merge_launch's rule
                united[key] = rec
    gpu_static.dump_signatures(list(united.values()), str(recorded))
    return recorded


def _key(rec):
    return json.dumps([rec["kernel"], rec["args"], rec["signature"]])


def check_signatures(recorded):
    from numbanet.kernels import gpu_static
    got = gpu_static.load_signatures(str(recorded))
    unnamed = sorted(r["site"] for r in got if r["kernel"] is None)
    assert not unnamed, ("kernels launched under the simulator that the static compile cannot find again by "
                         f"name (build them through kernels/gpu/launch.kernel_family): {unnamed}")
    if os.environ.get("NUMBANET_UPDATE_SIGNATURES") == "1":
        gpu_static.dump_signatures(got)
    committed = {_key(r): r for r in gpu_static.load_signatures()}
    launched = {_key(r): r for r in got}
    new = sorted(set(launched) - set(committed))
    gone = sorted(set(committed) - set(launched))
    assert not new and not gone, (
        f"{gpu_static.SIGNATURES} is out of date: the simulator run launched {len(new)} (kernel, argument types) "
        f"pairs it does not list and it lists {len(gone)} that no test launched; rewrite it with "
        "NUMBANET_UPDATE_SIGNATURES=1 python -m pytest tests/test_gpu_simulator.py\n"
        "new:\n  " + "\n  ".join(new[:20]) + "\ngone:\n  " + "\n  ".join(gone[:20]))
    threads = gpu_static.block_threads
    blocks = {k: (threads(launched[k]), threads(committed[k])) for k in launched
              if threads(launched[k]) != threads(committed[k])}
    assert not blocks, f"{gpu_static.SIGNATURES}: block sizes changed (launched, listed): {blocks}"
