"""A thread block of numba-cuda's CUDA simulator that waits instead of polling.

The simulator runs each CUDA thread of a block as a Python thread. Its BlockManager.run
finds the threads blocked in syncthreads by polling them in a loop that never sleeps, so
it holds the GIL most of the time: every simulated thread that wants to run waits for the
interpreter's switch interval (5 ms) to get it back. With 128-thread blocks and a barrier
every few statements, that wait is most of the simulator's time.

Here the barrier is a condition variable: a thread arriving at syncthreads counts itself
and sleeps; the last live thread to arrive (or a thread that exits while all others wait)
releases them. The manager only joins. What a kernel sees is the simulator's own rule:
every thread still running stops at a barrier until all of them are there, threads that
returned do not count, and the first exception in a block stops the others at their next
barrier and is raised from the launch.

install() swaps it into numba.cuda.simulator.kernel; tests/conftest.py calls it in the
simulator run only.
"""
import threading

import numpy as np


def install():
    """Replace the simulator's BlockManager; -> False (and nothing changed) where this
    numba-cuda's simulator is not built the way this module expects."""
    from numba.cuda.simulator import kernel
    manager = waiting_block_manager(kernel)
    if manager is None:
        return False
    kernel.BlockManager = manager
    return True


def waiting_block_manager(kernel):
    """The BlockManager below, built on the simulator's module `kernel`; None where that
    module lacks the parts it extends."""
    needed = ("BlockManager", "BlockThread")
    if not all(hasattr(kernel, name) for name in needed) or not hasattr(kernel.BlockThread, "syncthreads"):
        return None

    class WaitingBlockThread(kernel.BlockThread):
        def run(self):
            manager = self._manager
            try:
                super().run()   # stores an exception in self.exception instead of raising
            finally:
                with manager.cond:
                    manager.alive -= 1
                    if self.exception is not None and manager.first_error is None:
                        manager.first_error = self
                        manager.aborted = True
                    manager.release_if_all_wait()

        def syncthreads(self):
            manager = self._manager
            if manager.aborted:
                raise RuntimeError("abort flag set on syncthreads call")
            with manager.cond:
                generation = manager.generation
                manager.waiting += 1
                manager.release_if_all_wait()
                while manager.generation == generation and not manager.aborted:
                    manager.cond.wait()
            if manager.aborted:
                raise RuntimeError("abort flag set on syncthreads clear")

    class WaitingBlockManager(kernel.BlockManager):
        def release_if_all_wait(self):
            """Called with cond held: open the barrier once every live thread is at it,
            or wake everyone to abort."""
            if self.aborted or (self.waiting and self.waiting == self.alive):
                self.waiting = 0
                self.generation += 1
                self.cond.notify_all()

        def run(self, grid_point, *args):
            self.cond = threading.Condition()
            self.waiting = self.generation = 0
            self.aborted = False
            self.first_error = None
            points = list(np.ndindex(*self._block_dim))
            self.alive = len(points)

            def target():
                self._f(*args)

            threads = [WaitingBlockThread(target, self, grid_point, point, self._debug) for point in points]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if self.first_error is not None:
                exc, tb = self.first_error.exception
                raise exc.with_traceback(tb)

    return WaitingBlockManager
