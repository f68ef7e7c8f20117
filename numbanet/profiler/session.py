"""`numbanet.profile()`: where a training step's time goes.

    with numbanet.profile() as p:
        model.fit(x, y, epochs=1)
    print(p.table())            # per kernel: calls, times, share, FLOPs, bytes, rates, % of roofline
    p.save_trace("trace.json")  # Chrome trace-event JSON (Perfetto, chrome://tracing)
    p.save_roofline("roofline.png")

While the block runs, every op of the profiled backends is timed (recorder.py) and
attributed to its layer and pass (hooks.py); after it, nothing of the profiler is left
in the backends or in nn. Steps are Trainer._train_batch calls (fit, train_on_batch).
"""
import contextlib
import time

from numbanet.profiler import hooks, recorder as recorder_mod, summary, trace

_now = time.perf_counter_ns


def _backends(names):
    from numbanet import kernels
    if names is None:
        made = [kernels.get_backend()]
        made += [be for be in kernels._instances.values() if be not in made]
        return made
    return [kernels.get_backend(n) for n in ([names] if isinstance(names, str) else names)]


class Profile:
    def __init__(self, backends=None):
        """backends: names ("cpu", "gpu") to profile; None: the default backend and every
        other one this process has made."""
        self._names = backends
        self.recorder = None
        self.steps = []
        self.origin = None
        self._open = False
        self._limits = {}

    def __enter__(self):
        if self._open or self.recorder is not None:
            raise RuntimeError("profile: a Profile is entered once; make a new one with numbanet.profile()")
        backends = _backends(self._names)
        timers = {}
        if any(be.name == "gpu" for be in backends):
            from numbanet.profiler.device import DeviceTimer
            timers["gpu"] = DeviceTimer()
        self._timers, self._backend_objects = timers, backends
        self.recorder = recorder_mod.Recorder()
        self._install()
        self._open = True
        self.origin = _now()
        return self

    def _install(self):
        self._installed = recorder_mod.install(self.recorder, self._backend_objects, self._timers)
        try:
            self._originals = hooks.install(self.recorder, self.steps)
        except BaseException:
            recorder_mod.uninstall(self._installed)
            raise

    def _uninstall(self):
        hooks.uninstall(self._originals)
        recorder_mod.uninstall(self._installed)

    def __exit__(self, *exc):
        self.end = _now()
        self._uninstall()
        self._open = False
        for timer in self._timers.values():
            timer.resolve(self.recorder.calls)
        return False

    @contextlib.contextmanager
    def paused(self):
        """Inside the profile's block: run unprofiled (nothing recorded, nothing wrapped),
        e.g. reference steps interleaved with profiled ones."""
        if not self._open:
            raise RuntimeError("profile: paused() is used inside the `with numbanet.profile()` block")
        self._uninstall()
        try:
            yield self
        finally:
            self._install()

    # ------------------------------------------------------------------ reading it
    def _closed(self, what):
        if self.recorder is None or self._open:
            raise RuntimeError(f"profile: {what} is read after the `with numbanet.profile()` block has ended")

    @property
    def calls(self):
        self._closed("calls")
        return self.recorder.calls

    def rows(self, by="layer"):
        """summary.Row per kernel (by="layer": per op, layer and pass; by="op": per op)."""
        self._closed("rows()")
        return summary.summarize(self.recorder.calls, self.steps, by)

    def limits(self, refresh=False):
        """{backend: limits dict or None} for the backends that ran (limits.py; measured once
        per machine, then read from the cache)."""
        self._closed("limits()")
        for backend in sorted({c.backend for c in self.recorder.calls}):
            if backend not in self._limits or refresh:
                if backend == "gpu":
                    from numbanet.profiler.limits_gpu import gpu_limits
                    self._limits[backend] = gpu_limits(refresh)
                else:
                    from numbanet.profiler.limits import cpu_limits
                    self._limits[backend] = cpu_limits(refresh)
        return self._limits

    def table(self, by="layer", top=None, roofline=True):
        """The table as text; roofline=False leaves the limits unmeasured (no % roof)."""
        return summary.table(self.rows(by), self.steps, self.limits() if roofline else None, top,
                             self.recorder.book_ns)

    def save_trace(self, path):
        self._closed("save_trace()")
        return trace.save(path, self.recorder, self.steps, self.origin)

    def save_roofline(self, path, title="numbanet roofline"):
        from numbanet.profiler import roofline
        return roofline.save(path, self.rows("op"), self.limits(), title)


def profile(backends=None):
    """A Profile to use as a context manager (see the module's docstring)."""
    return Profile(backends)
