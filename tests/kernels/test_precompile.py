"""kernels/cpu/precompile.py: the background compile and the locked Numba cache.

The cache lock is tested on the cache file alone (no compile) and on small kernels in
fresh processes; the background compile end to end in one fresh process with an empty
NUMBA_CACHE_DIR (the cold compile of the ops every training step runs), and the helper's
death with its parent in a process killed before it compiles much.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from helpers import assert_close
from numbanet import kernels
from numbanet.kernels.cpu import precompile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(cache_dir, **env):
    """This environment, less what would change the backend or switch the helper, with an
    empty cache of the test's own."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("NUMBANET_BACKEND", "NUMBA_ENABLE_CUDASIM", precompile.ENV)}
    full.update(NUMBA_CACHE_DIR=str(cache_dir), **env)
    return full


def _run(code, cache_dir, *args, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, env=_env(cache_dir, **env), cwd=REPO, timeout=900)


def _gone(pid, within=10.0):
    """True once `pid` no longer runs (or is only a zombie awaiting its reaper)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


_WRITER = """
import sys
from numbanet.kernels.cpu import precompile
f = precompile.locked_cache_file()(sys.argv[1], "f-1.py311", ("stamp", 1))
who = sys.argv[2]
for i in range(60):
    f.save((who, i), {"who": who, "i": i, "pad": bytes(2000)})
"""


def test_concurrent_saves_keep_every_entry(tmp_path):
    # Numba's own index update (read, add, write back) loses entries when two processes
    # save signatures of one function at once; under the lock every entry survives and
    # each names its own data.
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), who], cwd=REPO)
             for who in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    f = precompile.locked_cache_file()(str(tmp_path), "f-1.py311", ("stamp", 1))
    assert len(f._load_index()) == 180
    for who in ("a", "b", "c"):
        for i in range(60):
            assert f.load((who, i)) == {"who": who, "i": i, "pad": bytes(2000)}


def test_a_save_cut_short_leaves_no_index_entry(tmp_path, monkeypatch):
    # Data first, index second: a process stopped in between leaves the key unlisted
    # (compiled again next time), never listed with missing or another key's data.
    f = precompile.locked_cache_file()(str(tmp_path), "g-1.py311", ("stamp", 1))
    f.save("old", "old data")

    def killed(overloads):
        raise KeyboardInterrupt
    monkeypatch.setattr(f, "_save_index", killed)
    with pytest.raises(KeyboardInterrupt):
        f.save("new", "new data")
    monkeypatch.undo()
    assert f.load("new") is None
    assert f.load("old") == "old data"
    f.save("new", "new data")
    assert (f.load("new"), f.load("old")) == ("new data", "old data")


_FIRST_STEP = """
import json, sys
import numpy as np
from numbanet import kernels
from numbanet.kernels.cpu import gemm, optim, pool, precompile
be = kernels.get_backend("cpu")
d = np.load(sys.argv[1])
y, idx = be.max_pool2d(d["x"])   # the first cache miss starts the helper
helper = precompile._helper.proc.pid
precompile.wait()   # let it finish what it was sent: the ops below then load its kernels
dx = be.max_pool2d_backward(d["dy"], idx, d["x"].shape)
z = be.matmul(d["a"], d["bw"], bias=d["bb"], activation="relu")
p, m, v = d["p"].copy(), np.zeros_like(d["p"]), np.zeros_like(d["p"])
be.adam_step(p, d["g"], m, v, lr=1e-3, step=1)
np.savez(sys.argv[2], y=y, idx=idx, dx=dx, z=z, p=p, m=m, v=v)
hits = {k.py_func.__name__: sum(k.stats.cache_hits.values())
        for k in (pool.max_pool2d_backward, gemm._wide_rect, optim._adam_parallel)}
print(json.dumps({"helper": helper, "hits": hits}))
"""


def test_background_compile_first_step(tmp_path):
    # The first op is a pooling: its backward is not among the ops every step runs
    # (precompile.COMMON), so a hit on it shows the helper was sent the running op's
    # backward; the Dense GEMM (kernels typed by their register tile) and Adam are COMMON.
    r = np.random.default_rng(0)
    f32 = lambda *s: r.standard_normal(s).astype(np.float32)
    data = dict(x=f32(3, 8, 8, 2), dy=f32(3, 4, 4, 2), a=f32(6, 7), bw=f32(7, 4), bb=f32(4), p=f32(70000),
                g=f32(70000))
    np.savez(tmp_path / "in.npz", **data)
    proc = _run(_FIRST_STEP, tmp_path / "cache", tmp_path / "in.npz", tmp_path / "out.npz", **{precompile.ENV: "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert _gone(report["helper"]), "the background-compile helper outlived its parent"
    # The helper compiled these; the parent only loaded them from the cache.
    assert all(n >= 1 for n in report["hits"].values()), report["hits"]
    got = np.load(tmp_path / "out.npz")
    # Bit for bit what this process's kernels (compiled here or loaded from its own cache) give.
    be = kernels.get_backend("cpu")
    want = dict(zip(("y", "idx"), be.max_pool2d(data["x"])))
    want["dx"] = be.max_pool2d_backward(data["dy"], want["idx"], data["x"].shape)
    want["z"] = be.matmul(data["a"], data["bw"], bias=data["bb"], activation="relu")
    p, m, v = data["p"].copy(), np.zeros_like(data["p"]), np.zeros_like(data["p"])
    be.adam_step(p, data["g"], m, v, lr=1e-3, step=1)
    want.update(p=p, m=m, v=v)
    for k, w in want.items():
        np.testing.assert_array_equal(got[k], w, err_msg=k)
    # and against NumPy where that is one line
    assert_close(got["z"], np.maximum(data["a"] @ data["bw"] + data["bb"], 0), np.float32, k=7)


_KILLED = """
import sys, threading, time
from numbanet import kernels
from numbanet.kernels.cpu import precompile
import numpy as np

def report():
    while precompile._helper.proc is None:
        time.sleep(0.01)
    print(precompile._helper.proc.pid, flush=True)
threading.Thread(target=report, daemon=True).start()
be = kernels.get_backend("cpu")
x = np.zeros((2, 5, 5, 1), np.float32)
be.conv2d(x, np.zeros((3, 3, 1, 2), np.float32))
time.sleep(600)
"""


def test_helper_dies_with_a_killed_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", _KILLED], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env=_env(tmp_path / "cache", **{precompile.ENV: "1"}))
    try:
        helper = int(parent.stdout.readline())
        assert not _gone(helper, within=0.2)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert _gone(helper), "the helper outlived a killed parent"
    finally:
        parent.kill()
        parent.wait()


def test_switched_off_starts_no_helper(tmp_path):
    proc = _run("""
        import numpy as np
        from numbanet import kernels
        from numbanet.kernels.cpu import precompile
        be = kernels.get_backend("cpu")
        y = be.relu(np.ones(5, np.float32))   # a cache miss
        print(precompile._helper.proc is None, float(y.sum()))
        """, tmp_path / "cache", **{precompile.ENV: "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "5.0"]


def test_auto_starts_no_helper_on_a_busy_machine(monkeypatch):
    from numba.core import types
    monkeypatch.delenv(precompile.ENV, raising=False)
    monkeypatch.setattr(precompile.os, "getloadavg", lambda: (float(os.cpu_count()), 0.0, 0.0))
    helper = precompile._Helper()
    helper.note_miss((types.float32[:, :, :, ::1],))
    assert helper.proc is None
    monkeypatch.setattr(precompile.os, "getloadavg", lambda: (os.cpu_count() - 0.5, 0.0, 0.0))
    assert precompile._a_core_is_idle()


def test_a_miss_sends_the_common_ops_and_the_running_ops_backward(monkeypatch):
    from numba.core import types
    from numbanet.kernels import ops
    monkeypatch.setenv(precompile.ENV, "1")
    sent = []
    helper = precompile._Helper()
    monkeypatch.setattr(helper, "request", sent.extend)
    monkeypatch.setattr(ops, "running_op", lambda: ops.get("conv2d"))
    helper.note_miss((types.float64[:, :, :, ::1],))
    assert sent == [(name, "float64") for name in precompile.COMMON] + [("conv2d_backward", "float64")]
    helper.sent.update(sent)
    helper.note_miss((types.float64[:, ::1],))   # nothing new for this dtype: nothing sent
    assert len(sent) == len(precompile.COMMON) + 1


def test_the_running_op_is_the_outermost_op_on_the_stack(monkeypatch):
    """What a cache miss inside an op's kernel reads: the op the caller called, not one it
    calls in turn (conv2d's compute module here stands in for the kernel that misses)."""
    from types import SimpleNamespace
    from numbanet.kernels import ops
    be = kernels.get_backend("cpu")
    seen = []
    monkeypatch.setattr(be, "conv", SimpleNamespace(conv2d_forward=lambda *args: seen.append(ops.running_op())),
                        raising=False)
    be.conv2d(np.zeros((1, 4, 4, 2), np.float32), np.zeros((3, 3, 2, 2), np.float32))
    assert [op.name for op in seen] == ["conv2d"]
    assert ops.running_op() is None


_STAMPED = """
import json, sys
import numpy as np
from numbanet.kernels.cpu import precompile
precompile._sources_stamp = lambda: (("a kernel's dependency", float(sys.argv[1]), 1),)
from numbanet import kernels
from numbanet.kernels.cpu import activation
kernels.get_backend("cpu").relu(np.ones(5, np.float32))
stats = activation.apply_activation.stats
print(json.dumps([sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
"""


def test_an_edit_to_a_file_a_kernel_compiles_in_makes_its_cache_stale(tmp_path):
    """Numba checks only a kernel's own source file; the cache lock adds the files its
    code comes from (kernels/rules.py, the other kernel modules): a cached kernel whose
    rules changed is compiled again, not loaded with the old code."""
    def run(version):
        proc = _run(_STAMPED, tmp_path / "cache", version, **{precompile.ENV: "0"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])
    assert run(1.0) == [0, 1]   # compiled and saved
    assert run(1.0) == [1, 0]   # loaded
    assert run(2.0) == [0, 1]   # the dependency changed: compiled again


_DIRECT_OR_BACKEND = """
import json, sys
import numpy as np
from numbanet.kernels.cpu import reduce
x = np.arange(12, dtype=np.float32).reshape(3, 4)
if sys.argv[1] == "direct":
    reduce.argmax(x, np.empty(3, np.int32))
else:
    from numbanet import kernels
    kernels.get_backend("cpu").argmax(x)
stats = reduce.argmax.stats
print(json.dumps([sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
"""


def test_a_kernel_run_without_the_backend_shares_the_backends_cache(tmp_path):
    """A process that imports a kernel module and calls it (numbanet tune's workers do)
    saves under the backend's index stamp: each loads what the other compiled. Under two
    stamps each save dropped the other's entries, and every process compiled again."""
    def run(how):
        proc = _run(_DIRECT_OR_BACKEND, tmp_path / "cache", how, **{precompile.ENV: "0"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])
    assert run("direct") == [0, 1]    # compiled and saved
    assert run("backend") == [1, 0]
    assert run("direct") == [1, 0]


def test_no_lock_file_possible_means_no_lock_not_an_error(tmp_path):
    # A cache folder the lock file cannot be made in behaves as Numba does without it.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with precompile._function_lock(str(blocker / "sub" / "k-1.py311.nbi")):
        assert precompile._held[str(blocker / "sub" / "k-1.py311.nbi.lock")][0] is None
    assert not precompile._held
