"""Timing every backend op while a profile is on, and nothing when it is off.

`install(recorder, backends)` puts a timing wrapper on each backend object for every op
declared in kernels/ops and for the memory and transfer methods (MEMORY, TRANSFERS), as
instance attributes that shadow the class's methods; `uninstall` deletes them, so that
off, a call is the plain method lookup it always was: no flag, no timer.

Each call becomes a `Call`: its op, kind ("kernel", "memory", "transfer"), backend, the
layer and pass it ran in (the recorder's `where`, set by the nn hooks: hooks.py), its
host start and end (perf_counter_ns), its argument shapes and its cost (Op.cost, None
where an op has none). An op that calls another op (be.zero inside rnn) nests: `self_ns`
is its own time less its children's. The recorder's own bookkeeping after each call
(the cost, the shapes) is timed too and kept out of the step's time (`book_ns`).

On the gpu each call also records a CUDA event before and after it on the default
stream; `finish()` synchronizes once and reads the device time between them. The
simulator's events carry no timing (elapsed_time is -1), and its calls are synchronous:
there the host time is the device time.
"""
import threading
import time

import numpy as np

from numbanet.kernels import ops

# Backend methods that are not ops but move memory: timed and listed as well.
MEMORY = ("zeros", "zero", "assign", "copy")
TRANSFERS = ("asarray", "to_numpy", "copy_from_host")

_now = time.perf_counter_ns


class Call:
    __slots__ = ("name", "kind", "backend", "layer", "phase", "step", "start", "end", "self_ns", "shapes", "flops",
                 "bytes", "depth", "thread", "children", "events", "device_start", "device_total", "device_ns")

    def duration(self):
        """Nanoseconds of its own (its children's less): the device's on the gpu, else the host's."""
        return self.device_ns if self.device_ns is not None else self.self_ns


def _shape_of(value):
    if isinstance(value, type):
        return value.__name__
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{np.dtype(value.dtype).name}{list(value.shape)}"
    if isinstance(value, (list, tuple)) and value and all(hasattr(v, "shape") for v in value):
        return "[" + ", ".join(_shape_of(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, tuple):
        return repr(value)
    return type(value).__name__


def describe_args(args, kwargs):
    """The call's arguments as short strings (shapes and dtypes of arrays), for the trace."""
    out = {f"arg{i}": _shape_of(a) for i, a in enumerate(args)}
    out.update((k, _shape_of(v)) for k, v in kwargs.items())
    return out


def _memory_cost(name, args, kwargs, result):
    """(flops, bytes) of a memory or transfer method: the bytes of the array it moves."""
    arr = result if name in ("zeros", "asarray", "copy") else args[0] if args else None
    if name == "to_numpy" and kwargs.get("out") is not None:
        arr = kwargs["out"]
    if arr is None or not hasattr(arr, "dtype") or (name in ("asarray", "to_numpy") and result is args[0]):
        return 0, 0   # nothing moved: the cpu's asarray and to_numpy hand a native array back as it is
    moved = int(arr.size) * np.dtype(arr.dtype).itemsize
    return 0, moved * (2 if name in ("assign", "copy") else 1)


def _price(cost, args, kwargs):
    """Op.cost on the call's arguments; None (shown "-") for an op without one, or whose
    formula fails on arguments the op accepted: the profile goes on, the row says it."""
    if cost is None:
        return None
    try:
        return cost(*args, **kwargs)
    except Exception:   # noqa: BLE001 (a formula's bug must not stop the training it profiles)
        return None


class Recorder:
    """The calls of one profile, and where (layer, pass) the nn hooks say they run."""

    def __init__(self):
        self.calls = []
        self.where = ("(outside a step)", "-")
        self.step = None           # index of the training step running, else None
        self.book_ns = 0           # the recorder's own time, over every call
        self.scopes = []           # (layer, phase, step, start, end): the layers' and passes' spans
        self._stack = threading.local()

    def _frames(self):
        frames = getattr(self._stack, "frames", None)
        if frames is None:
            frames = self._stack.frames = []
        return frames

    def wrap(self, be, name, kind, method, cost, device):
        """The timing wrapper of be.<name>: `method` is the bound method it stands for."""
        recorder = self

        def timed(*args, **kwargs):
            frames = recorder._frames()
            frame = [0, []]   # the children's span (their bookkeeping with it), the children
            frames.append(frame)
            begin = _now()
            events = device.start() if device is not None else None
            start = _now()
            try:
                result = method(*args, **kwargs)
            finally:
                end = _now()
                frames.pop()
                if events is not None:
                    device.stop(events)
            call = Call()
            call.name, call.kind, call.backend = name, kind, be.name
            call.layer, call.phase = recorder.where
            call.step, call.start, call.end = recorder.step, start, end
            call.self_ns = end - start - frame[0]
            call.children, call.events = frame[1], events
            call.device_start = call.device_total = call.device_ns = None
            call.depth, call.thread = len(frames), threading.get_ident()
            call.shapes = describe_args(args, kwargs)
            if kind == "kernel":
                priced = _price(cost, args, kwargs)
            else:
                priced = _memory_cost(name, args, kwargs, result)
            call.flops, call.bytes = priced if priced is not None else (None, None)
            recorder.calls.append(call)
            recorder.book_ns += _now() - end + start - begin   # the CUDA event before the call too
            if frames:
                frames[-1][0] += _now() - begin
                frames[-1][1].append(call)
            return result

        return timed

    def layer(self, layer, phase, fn):
        """fn run with its calls attributed to (layer, phase), its span kept for the trace."""
        recorder = self

        def run(*args, **kwargs):
            prev = recorder.where
            recorder.where = (layer, phase)
            start = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                recorder.scopes.append((layer, phase, recorder.step, start, _now()))
                recorder.where = prev

        return run


def install(recorder, backends, device_timers):
    """Put the timing wrappers on every backend in `backends`; -> what uninstall needs."""
    installed = []
    for be in backends:
        device = device_timers.get(be.name)
        names = [(op.name, "kernel", op.cost) for op in ops.all_ops()]
        names += [(n, "memory", None) for n in MEMORY] + [(n, "transfer", None) for n in TRANSFERS]
        for name, kind, cost in names:
            if name in vars(be):
                raise RuntimeError(f"profile: backend {be.name!r} already has {name} wrapped; profiles do not nest")
            method = getattr(be, name)
            setattr(be, name, recorder.wrap(be, name, kind, method, cost, device))
            installed.append((be, name))
    return installed


def uninstall(installed):
    for be, name in installed:
        vars(be).pop(name, None)
