"""The pytest-benchmark suite: every case of an op x every implementation available here.

`pytest bench --benchmark-enable --benchmark-group-by=group` times the full case list;
with `--benchmark-disable` (the default addopts, so plain `pytest` and CI) each test runs
once on the toy cases as a smoke test and checks its output against NumPy's.
NUMBANET_BENCH_CASES=tiny|quick|full overrides the case list.
"""
import importlib.util
import math
import os
import time

import numpy as np
import pytest

from numbanet.bench import cases as C
from numbanet.bench import implementations

# As in bench/runner.py: Numba's, PyTorch's and OpenBLAS's threads share the cores in one
# process, and OpenMP workers spin-waiting after a region starve the next implementation.
# Set at collection, before any OpenMP runtime has started; an explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# PyTorch's OpenMP runtime must load before Numba's threads start (see the function).
implementations.references.load_torch_first()


def available_impls():
    """Our available backends, NumPy, and the references importable here (never skipped)."""
    from numbanet import kernels
    impls = list(kernels.available_backends()) + ["numpy"]
    if importlib.util.find_spec("torch") is not None:
        impls.append("torch")
    if importlib.util.find_spec("cupy") is not None and "gpu" in impls:
        impls.append("cupy")
    return impls


def _case_set(config):
    chosen = os.environ.get("NUMBANET_BENCH_CASES")
    if chosen is None:
        chosen = "tiny" if config.getoption("benchmark_disable", False) else "full"
    if chosen not in ("tiny", "quick", "full"):
        raise pytest.UsageError(f"NUMBANET_BENCH_CASES must be tiny, quick or full, got {chosen!r}")
    return chosen


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    op = metafunc.module.OP
    chosen = _case_set(metafunc.config)
    # The busy-machine cases need `numbanet bench`'s spinning processes around their
    # repeats; pytest-benchmark times each case alone, where they are the plain case again.
    case_list = [c for c in C.cases_for([op], quick=chosen == "quick", tiny=chosen == "tiny") if not c.busy_cores]
    impls = available_impls()
    pairs = [(c, i) for c in case_list for i in impls if i in C.OURS or i in C.references_for(c)]
    metafunc.parametrize("case,impl", pairs, ids=[f"{c.id.replace(' ', '_')}-{i}" for c, i in pairs])


def _close(ours, ref, case):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{case.id}: shape {ours.shape} != reference {ref.shape}"
    # float32 sums of up to K terms: error grows with the magnitudes summed
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * scale, err_msg=case.id)


def check_against_numpy(case, impl):
    """One call of `impl` on fresh inputs against NumPy on the same inputs."""
    p = implementations.prepare(case, impl)
    p.run()
    p.sync()
    got = p.result()
    if case.kind in ("train_step", "charlm_train_step"):
        # each implementation initializes its own weights: an untrained C-class net's loss is near
        # ln C (the charlm's Keras-default Glorot output layer spreads its logits more: wider bound)
        classes, bound = (10, 1.0) if case.kind == "train_step" else (case.params[-1], 2.0)
        loss = float(np.ravel(got)[0])  # train_on_batch returns [loss, *metrics]
        assert math.isfinite(loss) and abs(loss - math.log(classes)) < bound, (impl, loss)
        return
    if impl == "torch" and case.kind in ("adam", "sgd"):
        # torch.optim keeps its own state, starting from zero; its first step in closed form:
        # Adam p -= lr * g / (|g| + eps); SGD with momentum (buffer starts as g) p -= lr * g
        inp = C.make_inputs(case)
        p0, g = inp["param"].astype(np.float64), inp["grad"].astype(np.float64)
        if case.kind == "adam":
            want = p0 - C.ADAM["lr"] * g / (np.abs(g) + C.ADAM["eps"])
        else:
            want = p0 - C.SGD["lr"] * g
        _close(got, want, case)
        return
    r = implementations.prepare(case, "numpy")
    r.run()
    want = r.result()
    if isinstance(want, tuple):
        for g, w in zip(got, want):
            _close(g, w, case)
    else:
        _close(got, want, case)


@pytest.fixture
def bench_case(benchmark, case, impl):
    """Times `impl` on `case`: first call (compile) timed apart, then the pedantic rounds."""
    def go(rounds=5):
        check_against_numpy(case, impl)
        p = implementations.prepare(case, impl)
        t0 = time.perf_counter()
        p.run()
        p.sync()
        first = time.perf_counter() - t0
        p.run()  # warm-up: caches, page faults, GPU clocks
        p.sync()

        def target():
            p.run()
            p.sync()  # GPU launches are asynchronous: time to completion
        benchmark.group = case.op
        benchmark.extra_info.update(op=case.op, case=case.label, impl=impl, device=implementations.device_of(impl),
                                    unit=case.unit, work=case.work, first_call_s=first)
        benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=0)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            median = stats.stats.median
            benchmark.extra_info[case.unit] = case.work / median / 1e9
    return go
