"""kernels/cpu/apart.py: a kernel calling another through its address, compiled apart.

Checked: results and return values as a linked call gives them, inside a parallel loop; the
callee's code is not in the caller's module (and is, as a control, when linked); an
exception in the callee reaches Python with its message; a call whose argument types
differ from the look-up's fails to compile and names both; a caller loaded from Numba's
cache in a fresh process finds its callee; a callee that cannot be found again by its name is
refused; the address is looked up once, and a failed look-up raises and is tried again;
without Numba's internals, a plain linked call."""
import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numba import prange

from numbanet.kernels.cpu.apart import address_apart, call_apart


@numba.njit
def _square_rows(x, out, lo, hi):
    for i in range(lo, hi):
        s = 0.0
        for j in range(x.shape[1]):
            s += x[i, j] * x[i, j]
        out[i] = s
    return hi - lo


@numba.njit(parallel=True)
def _apart_driver(x, out, nchunks):
    n = x.shape[0]
    rows = address_apart(_square_rows, x, out, 0, 0)
    done = 0
    for t in prange(nchunks):
        c = np.int64(t)
        done += call_apart(rows, _square_rows, x, out, c * n // nchunks, (c + 1) * n // nchunks)
    return done


@numba.njit(parallel=True)
def _linked_driver(x, out, nchunks):
    n = x.shape[0]
    done = 0
    for t in prange(nchunks):
        c = np.int64(t)
        done += _square_rows(x, out, c * n // nchunks, (c + 1) * n // nchunks)
    return done


def _callee_name():
    (cres,) = _square_rows.overloads.values()
    return cres.fndesc.llvm_func_name


def test_the_results_are_a_linked_calls():
    x = np.random.default_rng(0).standard_normal((37, 5))
    out = np.full(37, np.nan)
    assert _apart_driver(x, out, 3) == 37
    np.testing.assert_allclose(out, (x * x).sum(axis=1), rtol=1e-12)


def test_the_callee_is_not_compiled_into_the_caller():
    x = np.ones((4, 2))
    _apart_driver(x, np.empty(4), 2)
    _linked_driver(x, np.empty(4), 2)
    name = _callee_name()
    (apart,) = _apart_driver.overloads.values()
    (linked,) = _linked_driver.overloads.values()
    assert name in linked.library.get_llvm_str()
    assert name not in apart.library.get_llvm_str()


@numba.njit
def _refuses(x):
    if x < 0:
        raise ValueError("negative input to the callee")
    return 2 * x


@numba.njit
def _calls_refuses(x):
    fn = address_apart(_refuses, x)
    return call_apart(fn, _refuses, x)


def test_an_exception_in_the_callee_reaches_python():
    assert _calls_refuses(4) == 8
    with pytest.raises(ValueError, match="negative input to the callee"):
        _calls_refuses(-1)


@numba.njit
def _mismatched(x):
    fn = address_apart(_refuses, x)
    return call_apart(fn, _refuses, 1.5)


def test_a_call_with_other_types_than_the_look_up_does_not_compile():
    with pytest.raises(numba.core.errors.TypingError, match=r"call_apart: the address is .*int64.*the call is .*float64"):
        _mismatched(3)


_MODULE = """
import numba, numpy as np
from numbanet.kernels.cpu.apart import address_apart, call_apart

@numba.njit(cache=True)
def callee(x, k):
    return x.sum() * k

@numba.njit(cache=True)
def caller(x):
    fn = address_apart(callee, x, 0)
    return call_apart(fn, callee, x, 3)
"""

_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import cached_apart
got = cached_apart.caller(np.arange(5.0))
stats = cached_apart.caller.stats
print(json.dumps({"got": got, "hits": sum(stats.cache_hits.values()), "callee_compiled": len(cached_apart.callee.overloads)}))
"""


def test_a_caller_loaded_from_the_cache_finds_its_callee(tmp_path):
    (tmp_path / "cached_apart.py").write_text(textwrap.dedent(_MODULE))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBANET_BACKGROUND_COMPILE="0")

    def run():
        proc = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1])

    first, second = run(), run()
    assert first == {"got": 30.0, "hits": 0, "callee_compiled": 1}
    # Loaded, not compiled: the callee is found (loaded from the cache too) when the caller runs.
    assert second == {"got": 30.0, "hits": 1, "callee_compiled": 1}


_PLAIN = """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
from numbanet.kernels import numba_internals
numba_internals.TESTED_NUMBA = ((0, 0), (0, 1))   # what the installed Numba is not
warnings.simplefilter("ignore")
import numpy as np
import cached_apart
from numbanet.kernels.cpu import apart
got = cached_apart.caller(np.arange(5.0))
(cres,) = cached_apart.caller.overloads.values()
name = next(iter(cached_apart.callee.overloads.values())).fndesc.llvm_func_name
print(json.dumps({"got": got, "intrinsic": hasattr(apart, "ApartType"), "linked": name in cres.library.get_llvm_str()}))
"""


def test_without_the_internals_the_call_is_a_plain_linked_call(tmp_path):
    (tmp_path / "cached_apart.py").write_text(textwrap.dedent(_MODULE.replace("cache=True", "cache=False")))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBANET_BACKGROUND_COMPILE="0")
    proc = subprocess.run([sys.executable, "-c", _PLAIN, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {"got": 30.0, "intrinsic": False, "linked": True}


def test_a_callee_defined_inside_a_function_is_refused_with_the_reason():
    @numba.njit
    def local(x):
        return x + 1

    @numba.njit
    def caller(x):
        fn = address_apart(local, x)
        return call_apart(fn, local, x)

    with pytest.raises(numba.core.errors.TypingError, match=r"<locals>.local is not found by that name; a function "
                                                             r"called apart must be a module's, under its own name"):
        caller(1)


@numba.njit
def _halve(x):
    return x / 2


@numba.njit
def _calls_halve(x):
    fn = address_apart(_halve, x)
    return call_apart(fn, _halve, x)


class _CountingDict(dict):
    def __init__(self, *args):
        super().__init__(*args)
        self.gets = 0

    def get(self, key, default=None):
        self.gets += 1
        return super().get(key, default)


def test_the_address_is_looked_up_once_and_a_failed_look_up_raises_and_is_not_kept(monkeypatch):
    from numbanet.kernels.cpu import apart
    _calls_halve.compile((numba.float64,))   # compiled, not yet run: the memo is empty

    def broken(dispatcher, argtypes):
        raise RuntimeError("the worker cannot be compiled here")
    counting = _CountingDict(apart._addresses)
    counting.pop((_halve.py_func.__module__, "_halve", (numba.float64,)), None)
    monkeypatch.setattr(apart, "_addresses", counting)
    monkeypatch.setattr(apart, "_compiled", broken)
    with pytest.raises(RuntimeError, match="the worker cannot be compiled here"):
        _calls_halve(3.0)
    monkeypatch.undo()
    monkeypatch.setattr(apart, "_addresses", counting)
    before = counting.gets
    assert [_calls_halve(v) for v in (3.0, 5.0, 9.0)] == [1.5, 2.5, 4.5]
    assert counting.gets - before == 1
