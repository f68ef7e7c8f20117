"""A profile as a Chrome trace-event JSON file (Perfetto, chrome://tracing).

Complete events ("ph": "X", microseconds from the profile's start): one track (tid) per
host thread that called an op, one per CUDA stream for the device times of gpu calls;
on the host track of the thread that ran them, the steps, and within them the passes
(forward, backward, optimizer) and the layers, as slices enclosing the kernels'. Each
kernel's slice carries its argument shapes, FLOPs and bytes as args. Events are sorted
by start time, an enclosing slice before the slices it holds.
"""
import json
import os

from numbanet.nn.utils import atomic_write

PID = 1
STREAM_TID = 1_000_000   # the device track's id, apart from any thread's


def _slice(name, cat, tid, start, end, origin, args=None):
    event = {"name": name, "cat": cat, "ph": "X", "pid": PID, "tid": tid, "ts": (start - origin) / 1e3,
             "dur": max(end - start, 0) / 1e3}
    if args:
        event["args"] = args
    return event


def _pass_spans(scopes):
    """Each (step, pass)'s span: from its first layer's start to its last layer's end."""
    spans = {}
    for layer, phase, step, start, end in scopes:
        if step is None or phase == "step":
            continue
        lo, hi = spans.get((step, phase), (start, end))
        spans[(step, phase)] = (min(lo, start), max(hi, end))
    return spans


def events(recorder, steps, origin):
    """The trace's events, sorted."""
    threads = sorted({c.thread for c in recorder.calls})
    tids = {t: i + 1 for i, t in enumerate(threads)}
    main = tids.get(threads[0], 1) if threads else 1
    out = []
    for step in steps:
        out.append(_slice(f"step {step.index}", "step", main, step.start, step.end, origin,
                          {"backend": step.backend}))
    for (step, phase), (start, end) in _pass_spans(recorder.scopes).items():
        out.append(_slice(phase, "pass", main, start, end, origin, {"step": step}))
    for layer, phase, step, start, end in recorder.scopes:
        if phase != "step" and not layer.startswith("("):
            out.append(_slice(layer, "layer", main, start, end, origin, {"pass": phase, "step": step}))
    device = False
    for c in recorder.calls:
        args = dict(c.shapes, layer=c.layer, phase=c.phase, backend=c.backend, flops=c.flops, bytes=c.bytes)
        out.append(_slice(c.name, c.kind, tids[c.thread], c.start, c.end, origin, args))
        if c.device_start is not None and c.device_total is not None:
            device = True
            out.append(_slice(c.name, f"{c.kind} (device)", STREAM_TID, c.device_start,
                              c.device_start + c.device_total, origin, args))
    # Earliest first; at one start time the longer (enclosing) slice first.
    out.sort(key=lambda e: (e["ts"], -e["dur"]))
    names = [{"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": f"host thread {i}"}}
             for i, tid in enumerate(tids.values())]
    if device:
        names.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": STREAM_TID,
                      "args": {"name": "CUDA stream 0 (default)"}})
    names.append({"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": "numbanet"}})
    return names + out


def save(path, recorder, steps, origin):
    doc = {"traceEvents": events(recorder, steps, origin), "displayTimeUnit": "ms"}
    path = os.fspath(path)
    atomic_write(path, lambda f: f.write(json.dumps(doc).encode()), ".json")
    return path
