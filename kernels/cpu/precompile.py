"""Compile the first training step's kernels in two processes, and share Numba's cache safely.

A first-ever training step spends ~20 CPU seconds compiling kernels, one at a time: Numba
compiles under one lock per process, so the machine's second core sits idle. On the first
cache miss this module starts a helper process (`python -m numbanet.kernels.cpu.precompile`)
that compiles, through the same on-disk cache (cache=True), the kernels the parent will
need later in the step (the backward passes, the Dense GEMM, the loss, Adam) while the
parent compiles the forward pass. When the parent reaches a kernel the helper has written,
it loads it from the cache instead of compiling it.

Numba's cache alone is not safe for this: its per-function index is read, updated and
written back with no lock, so two processes saving signatures of one function can drop
each other's entry or, in the wrong interleaving, leave an index entry naming another
signature's data file. So every kernel of the cpu backend (`install`) gets:

- a lock file per function beside its index (`<index>.lock`, flock), held while that
  function is loaded from the cache or compiled and saved: a process that needs a function
  another process is compiling waits for it and then loads it, so nothing is compiled
  twice and no index update is lost. Locks nest only caller -> callee, and the call graph
  has no cycles, so two processes cannot deadlock; a lock dies with its process;
- saves that write the data file before the index entry that names it: a process killed
  between the two leaves an unreferenced file, never an entry without its data.

What a call returns does not depend on this: a kernel is the same compiled code whichever
process compiled it (the cache already serves one process's compile to the next run).
The helper runs with NUMBANET_BACKGROUND_COMPILE=0 and one Numba thread, is killed when
the parent exits (atexit) or dies (PR_SET_PDEATHSIG), exits by itself after 20 idle
seconds, and is only started on a cache miss: a cached start never starts it.

NUMBANET_BACKGROUND_COMPILE=0 turns the helper off (the cache lock stays on: it only makes
concurrent processes, such as MPI ranks sharing one cache, safe).
"""
import atexit
import fcntl
import itertools
import os
import select
import subprocess
import sys
import threading
import time

import numpy as np
from numba.core.caching import IndexDataCacheFile
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher

ENV = "NUMBANET_BACKGROUND_COMPILE"
_IDLE_EXIT_S = 20.0
# A lock held longer than this by someone while our helper runs: the helper is taken to
# be stuck and killed (its locks then free). No kernel here compiles for more than ~10 s.
_STUCK_S = 180.0


def background_enabled():
    return os.environ.get(ENV, "1").strip() not in ("0", "")


# --------------------------------------------------------------------------- cache lock
_held = {}   # lock path -> [fd, depth]: flock is per open file, so re-entry is counted here


class _LockedIndexDataCacheFile(IndexDataCacheFile):
    """Numba's index/data cache file with the index read-modify-write under the function's
    lock, and the data written before the index entry that names it."""

    def save(self, key, data):
        with _function_lock(self._index_path):
            overloads = self._load_index()
            data_name = overloads.get(key)
            if data_name is None:
                existing = set(overloads.values())
                data_name = next(n for n in map(self._data_name, itertools.count(1)) if n not in existing)
            self._save_data(data_name, data)
            overloads[key] = data_name
            self._save_index(overloads)

    def load(self, key):
        with _function_lock(self._index_path):
            return super().load(key)


class _function_lock:
    """Exclusive flock on `<index path>.lock`, re-entrant within this process."""

    def __init__(self, index_path):
        self.path = index_path + ".lock"

    def __enter__(self):
        global_compiler_lock.acquire()
        try:
            entry = _held.get(self.path)
            if entry is not None:
                entry[1] += 1
                return self
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _wait_for_flock(fd)
            except BaseException:
                os.close(fd)
                raise
            _held[self.path] = [fd, 1]
            return self
        except BaseException:
            global_compiler_lock.release()
            raise

    def __exit__(self, *exc):
        try:
            entry = _held[self.path]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.path]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
        finally:
            global_compiler_lock.release()


def _wait_for_flock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    start = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() - start > _STUCK_S and _helper.kill():
                start = time.monotonic()
            time.sleep(0.005)


def install(modules):
    """Put every cached kernel (Numba CPU dispatcher) defined in `modules` under the lock,
    and have its cache misses start the helper. Idempotent."""
    for module in modules:
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher) and not getattr(obj, "_numbanet_locked", False):
                _lock_dispatcher(obj)


def _lock_dispatcher(dispatcher):
    cache = dispatcher._cache
    cache_file = getattr(cache, "_cache_file", None)
    if type(cache_file) is not IndexDataCacheFile:
        return   # not cached (cache=False): nothing on disk to share
    cache_file.__class__ = _LockedIndexDataCacheFile
    index_path = cache_file._index_path
    compile_ = dispatcher.compile
    load_overload = cache.load_overload

    def compile_locked(sig):
        # Held across the cache lookup, the compile and the save, so that a process
        # needing this function while another compiles it waits and then loads it.
        with _function_lock(index_path):
            return compile_(sig)

    def load_overload_noting_misses(sig, target_context):
        cres = load_overload(sig, target_context)
        if cres is None:
            _helper.note_miss(dispatcher.py_func.__name__, sig)
        return cres

    dispatcher.compile = compile_locked
    cache.load_overload = load_overload_noting_misses
    dispatcher._numbanet_locked = True


# --------------------------------------------------------------------------- what to compile
# Warm-up items: backend ops on tiny arrays. Calling the op (not compiling a signature
# written here) gives exactly the argument types the layers' calls give, whatever the
# kernels' signatures become. The helper takes the lowest rank first. The parent needs
# the forward pass first (a CNN: conv2d_forward, whose compile also makes the GEMM
# micro-kernel and the direct-conv tile, which the GEMM and conv2d_backward call), so
# the helper starts with what shares nothing with it (Adam, the loss, the ReLU
# gradient), then the Dense GEMM and the backward passes, which need those shared
# kernels: by then the parent has compiled them and they load from the cache.
def _warm_dense(be, dt):
    x, w, b = be.zeros((3, 5), dt), be.zeros((5, 4), dt), be.zeros((4,), dt)
    for act in ("relu", "linear"):
        be.matmul(x, w, bias=b, activation=act)
    be.dense_backward(x, w, be.zeros((3, 4), dt), compute_dx=True)


def _warm_loss(be, dt):
    z = be.zeros((4, 10), dt)
    labels = be.asarray(np.array([1, 0, 3, 9], dtype=np.int32))
    _, _, stats = be.softmax_cross_entropy_stats(z, labels, _labels_checked=True)
    be.softmax_cross_entropy(z, labels, _labels_checked=True)
    be.accuracy(z, labels, _labels_checked=True)
    be.sum(be.zeros((4,), dt))


def _warm_relu_backward(be, dt):
    y = be.zeros((3, 4), dt)
    be.relu_backward(y, y)


def _warm_adam(be, dt):
    from numbanet.kernels.cpu import optim
    for size in (8, optim._PARALLEL_MIN):   # both the serial and the threaded path
        p = be.zeros((size,), dt)
        be.adam_step(p, be.zeros((size,), dt), be.zeros((size,), dt), be.zeros((size,), dt), lr=1e-3, step=1)


def _warm_conv_backward(be, dt):
    x, w = be.zeros((2, 6, 6, 3), dt), be.zeros((3, 3, 3, 4), dt)
    y = be.zeros((2, 4, 4, 4), dt)
    be.conv2d_backward(x, w, y, compute_dx=True)


def _warm_max_pool_backward(be, dt):
    # Zero indices (valid ones) rather than max_pool2d's: the forward is the parent's.
    be.max_pool2d_backward(be.zeros((2, 2, 2, 3), dt), be.zeros((2, 2, 2, 3), np.int32), (2, 4, 4, 3))


WARMUPS = {
    # name: (rank, function)
    "adam": (1, _warm_adam),
    "relu_backward": (2, _warm_relu_backward),
    "loss": (3, _warm_loss),
    "dense": (4, _warm_dense),
    "conv2d_backward": (5, _warm_conv_backward),
    "max_pool2d_backward": (6, _warm_max_pool_backward),
}
# Sent on the first miss of a dtype: what nearly every model's training step runs.
COMMON = ("dense", "loss", "relu_backward", "adam")
# Sent on a miss of a forward kernel: its backward.
HINTS = {
    "_conv2d_forward": ("conv2d_backward",),
    "max_pool2d_forward": ("max_pool2d_backward",),
}
_DTYPES = {"float32": np.float32, "float64": np.float64}


def _sig_dtype(sig):
    for t in (sig.args if hasattr(sig, "args") else sig):
        name = str(getattr(t, "dtype", ""))
        if name in _DTYPES:
            return name
    return None


# --------------------------------------------------------------------------- the helper
class _Helper:
    """The parent's side: the helper process and the requests sent to it."""

    def __init__(self):
        self.proc = None
        self.sent = set()
        self.lock = threading.Lock()
        self.registered = False

    def note_miss(self, kernel, sig):
        if not background_enabled():
            return
        dtype = _sig_dtype(sig)
        if dtype is None:
            return
        items = [(n, dtype) for n in (*COMMON, *HINTS.get(kernel, ())) if (n, dtype) not in self.sent]
        if items:
            self.request(items)

    def request(self, items):
        with self.lock:
            self.sent.update(items)
            lines = "".join(f"{name} {dtype}\n" for name, dtype in items).encode()
            for _ in range(2):
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                try:
                    self.proc.stdin.write(lines)
                    self.proc.stdin.flush()
                    return
                except OSError:
                    self._reap()   # it exited (idle) between poll and write: start anew

    def _start(self):
        self._reap()
        env = dict(os.environ, **{ENV: "0", "NUMBA_NUM_THREADS": "1"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "numbanet.kernels.cpu.precompile", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, close_fds=True)
        if not self.registered:
            atexit.register(self.kill)
            self.registered = True

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def kill(self):
        """Stop the helper now (at exit: what it has saved stays valid). -> whether one ran."""
        with self.lock:
            running = self.proc is not None and self.proc.poll() is None
            self._reap()
            return running

    def wait(self, timeout=None):
        """Close the request stream and wait for the helper to finish what it was sent
        (benchmarks and tests: its CPU time is then counted in RUSAGE_CHILDREN)."""
        with self.lock:
            if self.proc is None:
                return
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.proc = None


_helper = _Helper()
wait = _helper.wait


def _die_with_parent(parent_pid):
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def _serve(parent_pid):
    """The helper's side: read `name dtype` lines from stdin, run the warm-ups lowest rank
    first, exit at end of input, when the parent is gone, or after _IDLE_EXIT_S idle."""
    _die_with_parent(parent_pid)
    from numbanet import kernels
    be = kernels.get_backend("cpu")
    pending, done, buffer = set(), set(), b""
    fd = sys.stdin.fileno()
    eof = False
    while os.getppid() == parent_pid:
        if not eof:
            ready, _, _ = select.select([fd], [], [], 0 if pending else _IDLE_EXIT_S)
            if ready:
                chunk = os.read(fd, 4096)
                eof = not chunk
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    item = tuple(line.decode().split())
                    if len(item) == 2 and item[0] in WARMUPS and item[1] in _DTYPES and item not in done:
                        pending.add(item)
            elif not pending:
                return   # idle
        if pending:
            item = min(pending, key=lambda p: (WARMUPS[p[0]][0], p[1]))
            pending.discard(item)
            done.add(item)
            try:
                WARMUPS[item[0]][1](be, _DTYPES[item[1]])
            except Exception:   # noqa: BLE001 - the parent compiles what this did not
                pass
        elif eof:
            return

if __name__ == "__main__":
    _serve(int(sys.argv[1]))
