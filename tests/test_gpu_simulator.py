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
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A hang detector: the run takes about 6 minutes on 2 idle cores, longer beside the rest of the suite.
TIMEOUT_S = 3600
_started = {}   # {"dir": where the run start_early began in this process writes}


def _start(directory):
    """Start the simulator run, writing its report, launch records, output and, when it
    ends, its exit status (file `rc`) to directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBANET_TEST_BACKENDS="gpu",
               NUMBANET_RECORD_LAUNCHES=str(directory / "signatures.json"))
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_TESTRUNUID", None)
    # Two xdist workers: the simulator is single-threaded Python, so on a 2-core machine
    # two of them halve the wall time of the longest test in the suite.
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "tests/gpu", "tests/nn", "tests/adversarial", "-q",
           "-p", "no:cacheprovider", "-n", str(SIMULATOR_WORKERS), f"--junitxml={directory / 'simulator.xml'}"]
    log = open(directory / "output.txt", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

    def note_the_end():
        code = proc.wait()
        log.close()
        (directory / "rc.tmp").write_text(str(code))
        os.replace(directory / "rc.tmp", directory / "rc")
    threading.Thread(target=note_the_end, daemon=True).start()
    return proc


def shared_directory(testrunuid):
    """Where the simulator run of one xdist session writes: the controller starts it and
    whichever worker runs the test below reads it."""
    return Path(tempfile.gettempdir()) / f"numbanet-simulator-{testrunuid}"


def start_early(config, directory=None):
    """Start the run when collection ends (tests/conftest.py calls this when the test below
    is selected, from the xdist controller when there is one), so that it overlaps the rest
    of the suite instead of following it."""
    directory = Path(directory or tempfile.mkdtemp(prefix="numbanet-simulator-"))
    proc = _start(directory)
    _started["dir"] = directory

    def cleanup():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
    config.add_cleanup(cleanup)


# Defined only outside the simulator: a pytest run that already has NUMBA_ENABLE_CUDASIM
# set (the subprocess below, or a user running the suite that way) collects no test here
# instead of starting itself again.
if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
    def test_gpu_backend_under_cuda_simulator(tmp_path):
        uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        directory = shared_directory(uid) if uid else _started.get("dir")
        proc = None
        if directory is None or not directory.exists():   # run alone, or the early start was not made
            directory = tmp_path
            proc = _start(directory)
        deadline = time.monotonic() + TIMEOUT_S
        while not (directory / "rc").exists():
            if time.monotonic() > deadline:
                if proc is not None:
                    proc.kill()
                pytest.fail(f"the simulator run did not end in {TIMEOUT_S} s")
            time.sleep(1)
        returncode = int((directory / "rc").read_text())
        output = (directory / "output.txt").read_text()
        assert returncode == 0, f"simulator run failed (exit {returncode}):\n{output[-20000:]}"
        # The test count comes from the JUnit report: -q twice (here and in addopts) hides
        # pytest's "N passed" line.
        suite = ET.parse(directory / "simulator.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        ran = int(suite.get("tests")) - int(suite.get("skipped", 0))
        assert ran > 0, f"the simulator run ran no tests:\n{output[-5000:]}"
        check_signatures(unite_recordings(directory / "signatures.json"))


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
