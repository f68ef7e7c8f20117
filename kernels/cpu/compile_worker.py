"""The background-compile helper process (started by kernels/cpu/precompile.py): reads
`op dtype` lines on stdin and runs each op's declared warm-up (kernels/ops/) in the order
they came, so that the kernels it compiles land in the shared on-disk cache for the
parent to load. Warm-ups call the backend's ops, so they compile exactly the argument
types the layers' calls give; a backward's warm-up calls its forward for its inputs, which
the parent (whose miss sent the request) has compiled by then or is compiling under the
cache lock, so the helper loads it.

    python -m numbanet.kernels.cpu.compile_worker PARENT_PID

It exits at the end of its input, after precompile._IDLE_EXIT_S seconds without work, or
when its parent is gone (Linux kills it then: PR_SET_PDEATHSIG). A warm-up that fails
is skipped: the parent compiles what the helper did not.
"""
import os
import select
import sys

import numpy as np

from numbanet import kernels
from numbanet.kernels import ops
from numbanet.kernels.cpu import precompile


_DTYPES = {"float32": np.float32, "float64": np.float64}


def _die_with_parent(parent_pid):
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def _serve(parent_pid):
    """The helper's side: read `op dtype` lines from stdin, run the warm-ups in the order
    they came, exit at end of input, when the parent is gone, or after
    precompile._IDLE_EXIT_S idle."""
    _die_with_parent(parent_pid)
    be = kernels.get_backend("cpu")
    names = {op.name for op in ops.all_ops() if op.warmup is not None}
    pending, done, buffer = [], set(), b""
    fd = sys.stdin.fileno()
    eof = False
    while os.getppid() == parent_pid:
        if not eof:
            ready, _, _ = select.select([fd], [], [], 0 if pending else precompile._IDLE_EXIT_S)
            if ready:
                chunk = os.read(fd, 4096)
                eof = not chunk
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    item = tuple(line.decode().split())
                    if len(item) == 2 and item[0] in names and item[1] in _DTYPES and item not in done:
                        done.add(item)
                        pending.append(item)
            elif not pending:
                return   # idle
        if pending:
            name, dtype = pending.pop(0)
            try:
                ops.get(name).warmup(be, _DTYPES[dtype])
            except Exception:   # noqa: BLE001 - the parent compiles what this did not
                pass
        elif eof:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
