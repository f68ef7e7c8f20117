"""The gpu kernels as a real GPU would get them, measured without one.

The simulator tests run every gpu kernel as Python; they say nothing of whether a kernel
compiles for real hardware, how many registers it takes or whether it spills. This module
answers that on any machine with the CUDA compiler wheels (`pip install -e '.[test]'`
brings numba-cuda[cu12]: NVVM, libdevice and ptxas):

  1. kernels/gpu/signatures.json lists every kernel the simulator tests launched, with the
     argument types of each launch and its block size (written by the recorder in
     tests/signature_recorder.py; tests/test_gpu_simulator.py fails when it is out of date).
  2. Each kernel is rebuilt by name (launch.kernel_id), compiled to PTX by NVVM with
     numba.cuda.compile_ptx at those argument types, and assembled by ptxas for sm_80 and
     sm_90, whose -v report gives registers, shared memory, stack and spills.
  3. occupancy() turns registers, shared memory and block size into resident warps per
     SM on an H200 (sm_90).

`numbanet info --gpu-kernels` prints the table; tests/kernels/test_gpu_static.py fails on
any compile error, on any spill in a hot kernel (GEMM, convolution, attention, the
recurrence steps) and on a kernel that no simulator test launched.
"""
import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile

GPU_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu")
SIGNATURES = os.path.join(GPU_DIR, "signatures.json")
PACKAGE = "numbanet.kernels.gpu"
ARCHS = ((8, 0), (9, 0))

def hot_modules():
    """The compute modules of the families declared hot (kernels/ops/): their kernels carry
    the FLOPs (or, for rnn, run once per time step), so a spill costs local-memory traffic
    in an inner loop and the static test allows none."""
    from numbanet.kernels import ops
    return tuple(f.module for f in ops.FAMILIES if f.hot)


# H200 (sm_90, Hopper), per SM; the allocation rules of CUDA's occupancy calculator.
H200 = {
    "sms": 132,
    "regs_per_sm": 65536,
    "sub_partitions": 4,          # the register file is split among 4 warp schedulers
    "reg_alloc_unit": 256,        # registers are allocated per warp in units of 256
    "max_regs_per_thread": 255,
    "smem_per_sm": 228 * 1024,
    "smem_per_block": 227 * 1024,
    "smem_reserved_per_block": 1024,  # the runtime keeps 1 KB of every block's shared memory
    "smem_alloc_unit": 128,
    "max_threads_per_sm": 2048,
    "max_warps_per_sm": 64,
    "max_blocks_per_sm": 32,
}
THREADS_1D = 256  # kernels/gpu/launch.py: every 1-D launch has this block at any real size


# ----------------------------------------------------------------------------- kernel sites

def _is_kernel_decorator(node):
    """@cuda.jit or @cuda.jit(...) without device=True."""
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if not (isinstance(target, ast.Attribute) and target.attr == "jit"
            and isinstance(target.value, ast.Name) and target.value.id == "cuda"):
        return False
    if call:
        for kw in call.keywords:
            if kw.arg == "device" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                return False
    return True


def kernel_sites(gpu_dir=GPU_DIR, package=PACKAGE):
    """{"module:qualname": "file:line"} of every @cuda.jit kernel defined in kernels/gpu/,
    found in the source, so a new kernel is listed the moment it is written."""
    sites = {}
    for fname in sorted(os.listdir(gpu_dir)):
        if not fname.endswith(".py"):
            continue
        path = os.path.join(gpu_dir, fname)
        module = package if fname == "__init__.py" else f"{package}.{fname[:-3]}"
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())

        def visit(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    qual = prefix + child.name
                    if any(_is_kernel_decorator(d) for d in child.decorator_list):
                        sites[f"{module}:{qual}"] = f"{os.path.relpath(path, os.path.dirname(gpu_dir))}:{child.lineno}"
                    visit(child, qual + ".<locals>.")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")
                else:
                    visit(child, prefix)
        visit(tree, "")
    return sites


# ----------------------------------------------------------------------------- signatures

def encode_type(t):
    """A numba type as plain JSON: "float32", ["array", "float32", 2, "C"], ["tuple", [...]]."""
    from numba import types
    if isinstance(t, types.Array):
        return ["array", str(t.dtype), t.ndim, t.layout]
    if isinstance(t, types.BaseTuple):
        return ["tuple", [encode_type(x) for x in t.types]]
    if isinstance(t, types.Boolean):
        return "boolean"
    if isinstance(t, (types.Integer, types.Float)):
        return str(t)
    raise TypeError(f"gpu_static: cannot record a kernel argument of type {t}")


_SCALARS = {"boolean", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float32", "float64"}


def decode_type(e):
    from numba import types
    if isinstance(e, str):
        if e == "bool":   # how numba names a bool array's dtype (a bool mask: kernels/gpu/rnn.py)
            return types.boolean
        if e not in _SCALARS:
            raise ValueError(f"gpu_static: unknown scalar type {e!r} in {SIGNATURES}")
        return getattr(types, e)
    kind = e[0]
    if kind == "array":
        _, dtype, ndim, layout = e
        return types.Array(decode_type(dtype), int(ndim), layout)
    if kind == "tuple":
        return types.BaseTuple.from_types([decode_type(x) for x in e[1]])
    raise ValueError(f"gpu_static: unknown type entry {e!r} in {SIGNATURES}")


def argument_type(value):
    """The numba type a real launch gives this argument (numba.typeof for scalars and
    tuples; a device array, real or simulated, by dtype, rank and contiguity)."""
    import numba
    import numpy as np
    from numba import types
    if hasattr(value, "copy_to_host") and hasattr(value, "dtype"):
        flags = getattr(value, "flags", None)
        if flags is None:
            ary = getattr(value, "_ary", None)
            flags = ary.flags if ary is not None else {"C_CONTIGUOUS": True, "F_CONTIGUOUS": False}
        layout = "C" if flags["C_CONTIGUOUS"] else ("F" if flags["F_CONTIGUOUS"] else "A")
        return types.Array(numba.from_dtype(np.dtype(value.dtype)), value.ndim, layout)
    return numba.typeof(value)


def signature_text(sig):
    """(float32[:, ::1], int64, ...) in numba's own array notation."""
    def one(e):
        if isinstance(e, str):
            return e
        if e[0] == "array":
            _, dtype, ndim, layout = e
            dims = [":"] * ndim
            if layout == "C":
                dims[-1] = "::1"
            elif layout == "F":
                dims[0] = "::1"
            return f"{dtype}[{', '.join(dims)}]"
        return "(" + ", ".join(one(x) for x in e[1]) + ")"
    return "(" + ", ".join(one(e) for e in sig) + ")"


def load_signatures(path=SIGNATURES):
    """-> list of launch records {kernel, args, site, threads, signature}."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)["launches"]


def dump_signatures(records, path=SIGNATURES):
    """Write the records sorted, one per line (diffs stay readable), atomically."""
    records = sorted(records, key=lambda r: json.dumps([r["kernel"], r["args"], r["signature"]]))
    lines = ",\n".join("    " + json.dumps(r, sort_keys=True) for r in records)
    text = ('{\n  "about": "every gpu kernel launch the simulator tests make, by kernel and argument types; '
            'written by tests/signature_recorder.py, read by kernels/gpu_static.py",\n'
            f'  "launches": [\n{lines}\n  ]\n}}\n')
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def merge_launch(records, kernel, site, block, args_types, fixed_block=None):
    """Add one launch to {key: record}: the same kernel and signature keep the largest block.
    fixed_block: the block the kernel is always launched with (launch.fixed_block), if any."""
    name, fam_args = kernel
    sig = [encode_type(t) for t in args_types]
    threads = int(block[0]) * int(block[1]) * int(block[2])
    key = json.dumps([name, list(fam_args), sig])
    rec = records.get(key)
    if rec is None:
        records[key] = {"kernel": name, "args": _plain(fam_args), "site": site, "signature": sig,
                        "block": [int(b) for b in block], "threads": threads}
        if fixed_block is not None:
            records[key]["fixed_block"] = int(fixed_block)
    elif threads > rec["threads"]:
        rec["threads"], rec["block"] = threads, [int(b) for b in block]


def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def resolve(record):
    """The kernel object a record names (imports its module; builds a family member)."""
    module, _, attr = record["kernel"].partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if record["args"] or hasattr(obj, "cache"):
        obj = obj(*_tuples(record["args"]))
    return obj


def block_threads(record):
    """Threads per block on full-size data: a 2-D/3-D block (the tile kernels), a fixed
    1-D block (launch.fixed_block, noted in the record) and a single thread as launched;
    any other 1-D block is THREADS_1D (launch.grid_1d/rows_1d give whole warps, at most
    THREADS_1D, and shrink the block only for arrays smaller than one block, which is all
    the simulator tests use)."""
    bx, by, bz = record["block"]
    if by == 1 and bz == 1 and bx > 1 and "fixed_block" not in record:
        return max(bx, THREADS_1D)
    return record["threads"]


def is_hot(record):
    module = record["kernel"].partition(":")[0].rsplit(".", 1)[-1]
    site_module = record["site"].partition(":")[0].rsplit(".", 1)[-1]
    hot = hot_modules()
    return module in hot or site_module in hot


# ----------------------------------------------------------------------------- compile

def find_ptxas():
    """ptxas from the nvidia-cuda-nvcc wheel, else CUDA_HOME/CUDA_PATH, else PATH; None if absent."""
    try:
        from cuda import pathfinder
        path = pathfinder.find_nvidia_binary_utility("ptxas")
        if path:
            return path
    except Exception:  # an older cuda-pathfinder, or none: look for the wheel's layout
        pass
    try:
        import nvidia.cuda_nvcc as nvcc
        for base in nvcc.__path__:
            path = os.path.join(base, "bin", "ptxas")
            if os.path.isfile(path):
                return path
    except ImportError:
        pass
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            path = os.path.join(os.environ[env], "bin", "ptxas")
            if os.path.isfile(path):
                return path
    return shutil.which("ptxas")


def toolkit_problem():
    """None when NVVM, libdevice and ptxas are all found, else what is missing."""
    from numbanet import kernels
    missing = kernels.cuda_toolkit_problem()
    if missing:
        return missing
    if find_ptxas() is None:
        return "ptxas was not found (pip install 'numba-cuda[cu12]' brings it in nvidia-cuda-nvcc-cu12)"
    return None


def compile_ptx(kernel, signature, ccs=ARCHS):
    """{cc: PTX} of a kernel (a numba CUDA dispatcher) for one signature, with the kernel's
    own fastmath / launch_bounds options (kernels/numba_internals.py: cuda_compile_ptx)."""
    from numbanet.kernels import numba_internals
    opts = getattr(kernel, "targetoptions", {}) or {}
    return numba_internals.cuda_compile_ptx(kernel.py_func, signature, tuple(ccs), bool(opts.get("fastmath")),
                                            opts.get("launch_bounds"))


_USED = re.compile(r"Used (\d+) registers[^\n]*")
_SMEM = re.compile(r"(\d+) bytes smem")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(text):
    """registers, smem, stack and spill bytes from `ptxas -v` (the entry function; spills
    and stack summed over every function in the report, so a callee's count too)."""
    used = _USED.search(text)
    if used is None:
        raise ValueError(f"ptxas -v printed no register count:\n{text}")
    stack = spill_st = spill_ld = 0
    for m in _SPILL.finditer(text):
        stack += int(m.group(1))
        spill_st += int(m.group(2))
        spill_ld += int(m.group(3))
    smem = _SMEM.search(used.group(0))
    return {"registers": int(used.group(1)), "smem": int(smem.group(1)) if smem else 0, "stack": stack,
            "spill_stores": spill_st, "spill_loads": spill_ld}


def assemble(ptx, cc, ptxas=None, max_registers=None):
    """Run ptxas -v on PTX for sm_<cc>; -> parse_ptxas's dict. Raises RuntimeError with
    ptxas's message when it rejects the PTX."""
    ptxas = ptxas or find_ptxas()
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [ptxas, f"-arch={arch}", "-v", src, "-o", os.path.join(tmp, "kernel.cubin")]
        if max_registers:
            cmd.insert(1, f"--maxrregcount={int(max_registers)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas {arch} failed:\n{proc.stderr}{proc.stdout}")
    return parse_ptxas(proc.stderr + proc.stdout)


def measure(record, ccs=ARCHS, ptxas=None):
    """Compile one recorded launch -> {cc: parse_ptxas's dict plus "ptx"}."""
    kernel = resolve(record)
    sig = [decode_type(e) for e in record["signature"]]
    opts = getattr(kernel, "targetoptions", {}) or {}
    out = {}
    for cc, ptx in compile_ptx(kernel, sig, ccs).items():
        out[cc] = assemble(ptx, cc, ptxas, opts.get("max_registers"))
        out[cc]["ptx"] = ptx
    return out


def _measure_one(job):
    record, ccs = job
    try:
        reports = measure(record, ccs)
    except Exception as exc:  # returned with the compiler's message; the caller reports it
        return None, f"{type(exc).__name__}: {exc}"
    for report in reports.values():
        ptx = report.pop("ptx")
        report["vector_loads"] = ptx.count("ld.shared.v4") + ptx.count("ld.shared.v2.f64")
    return reports, None


def measure_all(records=None, ccs=ARCHS, workers=None):
    """[(record, {cc: report} or None, error or None)] for every record, compiled in worker
    processes (NVVM and ptxas are single-threaded, and numba holds a compile lock). spawn,
    not fork: the caller may have started Numba's worker threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    records = load_signatures() if records is None else records
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_measure_one, [(r, tuple(ccs)) for r in records], chunksize=4))
    return [(rec, reports, error) for rec, (reports, error) in zip(records, results)]


# ----------------------------------------------------------------------------- occupancy

def occupancy(registers, smem, threads, gpu=H200):
    """-> (blocks per SM, warps per SM, fraction of max warps, limiter) for one kernel."""
    warps = -(-int(threads) // 32)
    limits = {"threads": gpu["max_warps_per_sm"] // warps, "blocks": gpu["max_blocks_per_sm"]}
    regs = max(int(registers), 1)
    if regs > gpu["max_regs_per_thread"]:
        limits["registers"] = 0
    else:
        unit = gpu["reg_alloc_unit"]
        per_warp = -(-regs * 32 // unit) * unit
        per_partition = gpu["regs_per_sm"] // gpu["sub_partitions"]
        limits["registers"] = (per_partition // per_warp) * gpu["sub_partitions"] // warps
    if smem > gpu["smem_per_block"]:
        limits["shared memory"] = 0
    else:
        unit = gpu["smem_alloc_unit"]
        per_block = -(-(int(smem) + gpu["smem_reserved_per_block"]) // unit) * unit
        limits["shared memory"] = gpu["smem_per_sm"] // per_block
    order = ("threads", "blocks", "registers", "shared memory")  # on a tie, the hardware maximum first
    limiter = min(order, key=lambda k: (limits[k], order.index(k)))
    blocks = limits[limiter]
    resident = blocks * warps
    return blocks, resident, resident / gpu["max_warps_per_sm"], limiter


def table(records=None, cc=(9, 0), workers=None):
    """One row per recorded (kernel, signature): name, signature, threads, registers, smem,
    spills, blocks/SM, occupancy, limiter (or the compile error)."""
    rows = []
    for rec, reports, error in measure_all(records, (cc,), workers):
        name = rec["kernel"].partition(":")[2]
        module = rec["kernel"].partition(":")[0].rsplit(".", 1)[-1]
        if rec["args"]:
            name += "(" + ", ".join(repr(_tuples(a)) for a in rec["args"]) + ")"
        row = {"kernel": f"{module}.{name}", "signature": signature_text(rec["signature"]),
               "threads": block_threads(rec), "hot": is_hot(rec), "error": error}
        if reports:
            r = reports[cc]
            blocks, warps, occ, limiter = occupancy(r["registers"], r["smem"], row["threads"])
            row.update(registers=r["registers"], smem=r["smem"], stack=r["stack"],
                       spill=r["spill_stores"] + r["spill_loads"], blocks=blocks, warps=warps,
                       occupancy=occ, limiter=limiter)
        rows.append(row)
    return rows


def format_table(rows, cc=(9, 0)):
    head = (f"gpu kernels compiled for sm_{cc[0]}{cc[1]} (NVVM + ptxas -v), theoretical occupancy on an H200 "
            f"({H200['sms']} SMs; per SM 64K registers, 228 KB shared memory, 2048 threads, 32 blocks)")
    cols = ("kernel", "threads", "regs", "smem B", "stack B", "spill B", "blocks/SM", "occupancy", "limited by",
            "argument types")
    body = []
    for r in rows:
        name = ("* " if r["hot"] else "  ") + r["kernel"]
        if r.get("error"):
            body.append((name, str(r["threads"]), "-", "-", "-", "-", "-", "-", "COMPILE ERROR: "
                         + r["error"].splitlines()[0][:80], r["signature"]))
            continue
        body.append((name, str(r["threads"]), str(r["registers"]), str(r["smem"]), str(r["stack"]),
                     str(r["spill"]), str(r["blocks"]), f"{100 * r['occupancy']:.0f}%", r["limiter"],
                     r["signature"]))
    widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(cols)]
    left = (0, 8, 9)
    fmt = lambda cells: "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [head, "", fmt(cols), fmt(["-" * w for w in widths])]
    out += [fmt(b) for b in body]
    out += ["", "* hot kernel (GEMM, convolution, attention, the recurrence steps): no spill and no stack frame "
                "allowed (tests/kernels/test_gpu_static.py); grid-stride 1-D kernels shown at their full-size block of "
                f"{THREADS_1D} threads, the others at their own"]
    return "\n".join(out)
