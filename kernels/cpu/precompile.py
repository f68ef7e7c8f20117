"""Compile the first training step's kernels in two processes, and share Numba's cache safely.

A first-ever training step spends ~20 CPU seconds compiling kernels, one at a time: Numba
compiles under one lock per process, so the machine's second core sits idle. On the first
cache miss this module starts a helper process (`python -m numbanet.kernels.cpu.compile_worker`)
that compiles, through the same on-disk cache (cache=True), the kernels the parent will
need later in the step (the backward passes, the Dense GEMM, the loss, Adam) while the
parent compiles the forward pass. When the parent reaches a kernel the helper has written,
it loads it from the cache instead of compiling it.

Numba's cache alone is not safe for this: its per-function index is read, updated and
written back with no lock, so two processes saving signatures of one function can drop
each other's entry or, in the wrong interleaving, leave an index entry naming another
signature's data file. So every kernel of the cpu backend (`install`, called as each
kernel module is imported: kernels/cpu/__init__.py) gets:

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

The helper starts only when the machine has an idle core (`_a_core_is_idle`);
NUMBANET_BACKGROUND_COMPILE=1 starts it regardless, =0 never (the cache lock stays on: it
only makes concurrent processes, such as MPI ranks sharing one cache, safe).
"""
import atexit
import os
import subprocess
import sys
import threading
import time

from numbanet.kernels import numba_internals, ops

try:
    import fcntl
except ImportError:   # not POSIX: no lock, so no helper either (install does nothing)
    fcntl = None

ENV = "NUMBANET_BACKGROUND_COMPILE"
_IDLE_EXIT_S = 20.0
# A lock held longer than this by someone while our helper runs: the helper is taken to
# be stuck and killed (its locks then free): far above any one kernel's compile.
_STUCK_S = 180.0


def background_mode():
    """NUMBANET_BACKGROUND_COMPILE: "0" never, "1" always, unset ("auto"): when a core is
    idle as the helper would start."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    return "on" if value in ("1", "on", "true", "yes") else "auto"


def _a_core_is_idle():
    """The 1-minute load average below the core count: other jobs leave a core's worth of
    time that a helper compiling beside this process can use. On a busy machine it would
    only take CPU from the parent's share, and it adds its own start-up and cache loads.
    Measure: python -m numbanet.bench.startup with NUMBANET_BACKGROUND_COMPILE=1 and =0,
    each at a few loads."""
    try:
        return os.getloadavg()[0] < (os.cpu_count() or 1)
    except OSError:
        return False


# --------------------------------------------------------------------------- cache lock
_held = {}   # lock path -> [fd, depth]: flock is per open file, so re-entry is counted here


def locked_cache_file():
    """Numba's index/data cache file class with each function's index read, updated and
    written under _function_lock and the data written before the index entry that names
    it (kernels/numba_internals.py), or None without Numba's internals."""
    return numba_internals.locked_cache_file_class(_function_lock)


class _function_lock:
    """Exclusive flock on `<index path>.lock`, re-entrant within this process."""

    def __init__(self, index_path):
        self.path = index_path + ".lock"

    def __enter__(self):
        numba_internals.compiler_lock().acquire()
        try:
            entry = _held.get(self.path)
            if entry is not None:
                entry[1] += 1
                return self
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                fd = None   # no lock file here: Numba's unlocked behaviour, as before
            if fd is not None:
                try:
                    locked = _wait_for_flock(fd)
                except BaseException:
                    os.close(fd)
                    raise
                if not locked:
                    os.close(fd)
                    fd = None
            _held[self.path] = [fd, 1]
            return self
        except BaseException:
            numba_internals.compiler_lock().release()
            raise

    def __exit__(self, *exc):
        try:
            entry = _held[self.path]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.path]
                if entry[0] is not None:
                    fcntl.flock(entry[0], fcntl.LOCK_UN)
                    os.close(entry[0])
        finally:
            numba_internals.compiler_lock().release()


def _wait_for_flock(fd):
    """Take the lock on fd, waiting as long as another process holds it. -> False where
    the file system has no flock (then there is no lock, as in Numba itself)."""
    start = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() - start > _STUCK_S and _helper.kill():
                start = time.monotonic()
            time.sleep(0.005)
        except OSError:
            return False


def install(modules):
    """Put every cached kernel (Numba CPU dispatcher) defined in `modules` under the lock,
    and have its cache misses start the helper. Idempotent. Nothing without flock or
    without Numba's internals (kernels/numba_internals.py): Numba's own unlocked cache."""
    if fcntl is None or not numba_internals.available():
        return
    sources = _sources_stamp()
    for module in modules:
        for obj in list(vars(module).values()):
            if numba_internals.is_cpu_dispatcher(obj) and not getattr(obj, "_numbanet_locked", False):
                numba_internals.lock_cache(obj, _function_lock, _helper.note_miss, sources)
                obj._numbanet_locked = True


def _sources_stamp():
    """(name, mtime, size) of every source file a cpu kernel can compile in: kernels/rules.py
    and kernels/cpu/*.py. A kernel inlines rules and calls kernels of other modules, and
    its cached code holds theirs; an edit to any of them makes every cached kernel stale."""
    cpu = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(os.path.dirname(cpu), "rules.py")]
    paths += sorted(os.path.join(cpu, f) for f in os.listdir(cpu) if f.endswith(".py"))
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamp.append((os.path.basename(path), st.st_mtime, st.st_size))
    return tuple(stamp)


# --------------------------------------------------------------------------- what to compile
# Items are ops (kernels/ops/): the helper runs each one's declared warm-up.
# Sent on the first miss of a dtype: what nearly every model's training step runs, the
# ones that share no kernel with a forward pass first (the parent compiles that).
COMMON = ("adam_step", "relu_backward", "softmax_cross_entropy_stats", "softmax_cross_entropy", "accuracy", "sum",
          "matmul", "dense_backward")
_DTYPES = ("float32", "float64")


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
        self.owner = os.getpid()
        self.sent = set()
        self.lock = threading.Lock()
        self.registered = False

    def _forget_if_forked(self):
        # A fork of the parent inherits this object but not the helper: it must neither
        # write to nor kill the parent's helper.
        if os.getpid() != self.owner:
            self.proc, self.owner, self.sent = None, os.getpid(), set()

    def note_miss(self, sig):
        """A kernel missed the cache: send COMMON and the backward of the op running (the
        one whose forward is compiling now), for the signature's dtype."""
        if background_mode() == "off":
            return
        self._forget_if_forked()
        dtype = _sig_dtype(sig)
        if dtype is None:
            return
        op = ops.running_op()
        hinted = (op.backward,) if op is not None and op.backward else ()
        items = [(n, dtype) for n in (*COMMON, *hinted) if (n, dtype) not in self.sent]
        if items:
            self.request(items)

    def request(self, items):
        with self.lock:
            self.sent.update(items)
            lines = "".join(f"{name} {dtype}\n" for name, dtype in items).encode()
            for _ in range(2):
                if self.proc is None or self.proc.poll() is not None:
                    if background_mode() == "auto" and not _a_core_is_idle():
                        return
                    self._start()
                try:
                    self.proc.stdin.write(lines)
                    self.proc.stdin.flush()
                    return
                except OSError:
                    self._reap()   # it exited (idle) between poll and write: start anew

    def _start(self):
        self._reap()
        # The parent's sys.path, so that the helper imports the same numbanet.
        path = os.pathsep.join(p for p in sys.path if p)
        env = dict(os.environ, **{ENV: "0", "NUMBA_NUM_THREADS": "1", "PYTHONPATH": path})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "numbanet.kernels.cpu.compile_worker", str(os.getpid())],
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
            self._forget_if_forked()
            running = self.proc is not None and self.proc.poll() is None
            self._reap()
            return running

    def wait(self, timeout=None):
        """Close the request stream and wait for the helper to finish what it was sent
        (benchmarks and tests: its CPU time is then counted in RUSAGE_CHILDREN)."""
        with self.lock:
            self._forget_if_forked()
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
