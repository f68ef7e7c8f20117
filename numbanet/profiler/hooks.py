"""The nn side of a profile: which layer and pass each call runs in, and the steps.

While a profile is on, nn/graph.py's `profiler` is the Recorder (Graph.forward and
Graph.backward then wrap each layer's call with Recorder.layer: one check per layer
call, none when off), and three Trainer methods are replaced on the class by wrappers
that are taken away again at the end (nothing of them is left when off):

  _train_batch  a training step: its span, the recorder's bookkeeping inside it, its
                backend synchronized at its end (so that a gpu step's time holds its
                kernels); calls outside the layers are the loss's ("(loss)", forward)
  _backward     the graph's backward: outside the layers' own backward, the gradient
                sums of a fan-out and the regularizers' gradients ("(graph)")
  _update       the optimizer's step ("(optimizer)", optimizer)
"""
import time
from dataclasses import dataclass

_now = time.perf_counter_ns
WRAPPED = ("_train_batch", "_backward", "_update")


@dataclass
class Step:
    index: int
    backend: str
    start: int
    end: int
    book_ns: int   # the recorder's bookkeeping inside the step

    @property
    def net_ns(self):
        return self.end - self.start - self.book_ns


def install(recorder, steps):
    """Hook the recorder into nn; the steps it times are appended to `steps`."""
    from numbanet.nn import graph
    from numbanet.nn.trainers.trainer import Trainer

    if graph.profiler is not None:
        raise RuntimeError("profile: a profile is already on; profiles do not nest")
    originals = {name: Trainer.__dict__[name] for name in WRAPPED}
    train_batch = originals["_train_batch"]

    def _train_batch(self, *args, **kwargs):
        index = len(steps)
        where, book = recorder.where, recorder.book_ns
        recorder.step, recorder.where = index, ("(loss)", "forward")
        start = _now()
        try:
            result = train_batch(self, *args, **kwargs)
            self.be.synchronize()
        finally:
            end = _now()
            steps.append(Step(index, self.be.name, start, end, recorder.book_ns - book))
            recorder.scopes.append(("step", "step", index, start, end))
            recorder.step, recorder.where = None, where
        return result

    Trainer._train_batch = _train_batch
    Trainer._backward = recorder.layer("(graph)", "backward", originals["_backward"])
    Trainer._update = recorder.layer("(optimizer)", "optimizer", originals["_update"])
    graph.profiler = recorder
    return originals


def uninstall(originals):
    from numbanet.nn import graph
    from numbanet.nn.trainers.trainer import Trainer

    graph.profiler = None
    for name, fn in originals.items():
        setattr(Trainer, name, fn)
