"""A thread block of numba-cuda's CUDA simulator that runs its threads as greenlets.

The simulator runs each CUDA thread of a block as an operating-system thread, and its
BlockManager.run finds the threads blocked in syncthreads by polling them in a loop that
never sleeps: it holds the GIL most of the time, so every simulated thread that wants to
run waits for the interpreter's switch interval (5 ms), and each block starts and joins
a thread per CUDA thread. That is most of the simulator's time.

Here a block's threads are greenlets in the launching thread: each runs until it reaches
a barrier or returns, and switches back; once every thread still running is at the
barrier, the next round resumes them all. That is the simulator's own rule (threads that
returned do not hold a barrier), in a fixed order, with no preemption. The first
exception in a block is raised from the launch, with the simulator's "tid=[...]
ctaid=[...]" prefix; the block's other threads stop there.

The simulator's cuda module finds the running thread's indices through
threading.current_thread(); install() points its `threading` at a stand-in whose
current_thread() is the running greenlet's thread. tests/conftest.py installs it in the
simulator run only.
"""
import threading
import types

import numpy as np


def install():
    """Replace the simulator's BlockManager; -> False (and nothing changed) where greenlet
    is missing or this numba-cuda's simulator is not built the way this module expects."""
    from numba.cuda.simulator import kernel, kernelapi
    if kernel.BlockManager.__name__ == "GreenletBlockManager":
        return True   # a second conftest import: in place already
    manager = greenlet_block_manager(kernel)
    if manager is None or getattr(kernelapi, "threading", None) is not threading:
        return False
    kernel.BlockManager = manager
    kernelapi.threading = _threading_of_greenlets()
    return True


def _threading_of_greenlets():
    """The threading module, but current_thread() is the simulated thread of the running
    greenlet (the real thread outside a block)."""
    from greenlet import getcurrent

    def current_thread():
        return getattr(getcurrent(), "sim_thread", None) or threading.current_thread()
    stand_in = types.SimpleNamespace(**{k: getattr(threading, k) for k in dir(threading) if not k.startswith("__")})
    stand_in.current_thread = current_thread
    return stand_in


def greenlet_block_manager(kernel):
    """The BlockManager below, built on the simulator's module `kernel`; None where greenlet
    or the parts of that module it extends are missing."""
    try:
        from greenlet import greenlet
    except ImportError:
        return None
    if not all(hasattr(kernel, name) for name in ("BlockManager", "BlockThread", "Dim3")):
        return None

    class SimThread:
        """What the simulator's cuda module reads of the running thread: its indices and
        its barriers (as kernel.BlockThread has them)."""

        def __init__(self, manager, block_index, thread_index):
            self._manager = manager
            self.blockIdx = kernel.Dim3(*block_index)
            self.threadIdx = kernel.Dim3(*thread_index)
            dim = kernel.Dim3(*manager._block_dim)
            self.thread_id = self.threadIdx.x + dim.x * (self.threadIdx.y + dim.y * self.threadIdx.z)
            self.exception = None

        def syncthreads(self):
            if self._manager.error is not None:
                raise RuntimeError("abort flag set on syncthreads call")
            self._manager.parent.switch()

        syncthreads_count = kernel.BlockThread.syncthreads_count
        syncthreads_and = kernel.BlockThread.syncthreads_and
        syncthreads_or = kernel.BlockThread.syncthreads_or

    class GreenletBlockManager(kernel.BlockManager):
        def run(self, grid_point, *args):
            if self._debug:   # the simulator's debug tracer wants its own threads
                return super().run(grid_point, *args)
            self.parent = greenlet.getcurrent()
            self.error = None
            live = []
            for point in np.ndindex(*self._block_dim):
                t = SimThread(self, grid_point, point)
                g = greenlet(self._thread_body(t, args), parent=self.parent)
                g.sim_thread = t
                live.append(g)
            while live:
                for g in live:
                    g.switch()
                    if self.error is not None:
                        raise self.error
                live = [g for g in live if not g.dead]

        def _thread_body(self, t, args):
            def body():
                try:
                    self._f(*args)
                except Exception as e:   # noqa: BLE001 - raised from the launch by run()
                    where = "tid=%s ctaid=%s" % (list(t.threadIdx), list(t.blockIdx))
                    self.error = type(e)(f"{where}: {e}" if str(e) else where).with_traceback(e.__traceback__)
            return body

    return GreenletBlockManager
