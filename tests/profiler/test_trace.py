"""Profile.save_trace: Chrome trace-event JSON that Perfetto opens, checked against the
format's rules (complete events with non-negative durations, sorted, metadata naming the
tracks) and against the profile: every kernel call of every step is a slice inside that
step's slice, with its argument shapes."""
import json

import numpy as np

import numbanet
from numbanet.nn.mnist_cnn import build_model

REQUIRED = {"name", "ph", "pid", "tid", "ts", "dur"}


def profiled(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 12, 12, 1), dtype=np.float32), rng.integers(0, 3, 4)
    model = build_model(input_shape=(12, 12, 1), filters=(2, 3), units=4, classes=3)
    model.train_on_batch(x, y)
    with numbanet.profile() as p:
        for _ in range(2):
            model.train_on_batch(x, y)
    path = p.save_trace(tmp_path / "trace.json")
    with open(path) as f:
        return p, json.load(f)


def test_trace_is_valid_trace_event_json(tmp_path):
    p, doc = profiled(tmp_path)
    events = doc["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert slices and all(e["ph"] in ("X", "M") for e in events)
    for e in slices:
        assert REQUIRED <= set(e), e
        assert isinstance(e["ts"], (int, float)) and e["dur"] >= 0 and e["ts"] >= 0, e
    starts = [e["ts"] for e in slices]
    assert starts == sorted(starts), "slices are not sorted by start time"
    named = {e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {e["tid"] for e in slices} <= named, "a track without a thread_name"


def test_every_kernel_of_every_step_is_inside_its_step(tmp_path):
    p, doc = profiled(tmp_path)
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    steps = [e for e in slices if e["cat"] == "step"]
    assert [s["name"] for s in steps] == ["step 0", "step 1"]
    for index, step in enumerate(steps):
        lo, hi = step["ts"], step["ts"] + step["dur"]
        inside = [e for e in slices if e["cat"] == "kernel" and lo <= e["ts"] and e["ts"] + e["dur"] <= hi + 1e-3]
        expected = [c for c in p.calls if c.step == index and c.kind == "kernel"]
        assert len(inside) == len(expected) > 0
        assert sorted(e["name"] for e in inside) == sorted(c.name for c in expected)
        # The passes and the layers enclose them: forward, backward, optimizer, and each conv layer.
        passes = {e["name"] for e in slices if e["cat"] == "pass" and e["args"]["step"] == index}
        assert passes == {"forward", "backward", "optimizer"}
    conv = next(e for e in slices if e["name"] == "conv2d" and e["cat"] == "kernel")
    assert conv["args"]["arg0"] == "float32[4, 12, 12, 1]" and conv["args"]["flops"] > 0
    layer = next(e for e in slices if e["cat"] == "layer" and e["name"] == conv["args"]["layer"]
                 and e["ts"] <= conv["ts"] <= e["ts"] + e["dur"])
    assert layer["args"]["pass"] == "forward"
