"""bench/compile_times.py: each function's own compile CPU seconds, and the child run."""
import time

import numba
import numpy as np

from numbanet.bench import compile_times


def _inner_py(x):
    s = 0.0
    for v in x:
        s += v * v
    return s


def test_a_callee_compiled_inside_its_caller_is_counted_once_on_its_own_line():
    inner = numba.njit(_inner_py)

    @numba.njit
    def outer(x):
        return inner(x) + 1.0

    with compile_times.record() as own:
        start = time.process_time()
        assert outer(np.arange(4.0)) == 15.0
        whole = time.process_time() - start
    names = {n.rsplit(".", 1)[-1]: n for n in own}
    assert {"_inner_py", "outer"} <= set(names)
    assert own[names["_inner_py"]][1] == 1 and own[names["outer"]][1] == 1
    # Own times are what is left after the callees: each positive, and the callee is not
    # counted again inside its caller (the sum stays within the whole call's CPU time).
    assert all(v[0] > 0 for v in own.values())
    assert sum(v[0] for v in own.values()) <= whole + 0.01


def test_the_child_compiles_one_op_from_an_empty_cache_and_the_table_adds_up():
    own = compile_times.measure(["relu"], ["float32"])
    assert any(name.startswith("activation.") for name in own), own
    table = compile_times.format_table(own, top=3)
    lines = table.splitlines()
    assert lines[1].endswith("(all)")
    assert abs(float(lines[1].split()[0]) - round(sum(v[0] for v in own.values()), 1)) < 0.11
    assert len(lines) == 2 + min(3, len(own))
