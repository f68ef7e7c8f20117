"""Every gpu kernel compiled for real hardware, without a GPU (kernels/gpu_static.py).

Each (kernel, argument types) pair that the simulator tests launch (kernels/gpu/
signatures.json, kept exact by tests/test_gpu_simulator.py) is compiled to PTX by NVVM and
assembled by ptxas for sm_80 (A100) and sm_90 (H100/H200): any compile error fails, and
so does any spill or stack frame in a hot kernel (GEMM, convolution, attention, the
recurrence steps). A kernel written in kernels/gpu/ that no simulator test launches fails
here too, so a new kernel cannot escape the static compile.

The CUDA compiler wheels come with the test extra (`pip install -e '.[test]'` installs
numba-cuda[cu12]: NVVM, libdevice and ptxas); without them this module fails and says so.
"""
import collections
import textwrap

import pytest

from numbanet.kernels import gpu_static

RECORDS = gpu_static.load_signatures()


def test_the_site_scanner_finds_kernels_not_device_functions(tmp_path):
    (tmp_path / "mod.py").write_text(textwrap.dedent('''
        from numba import cuda

        @cuda.jit
        def plain(x):
            pass

        @cuda.jit(device=True, inline=True)
        def helper(x):
            return x

        @cuda.jit("void(float32[:])")
        def typed(x):
            pass

        def factory(k):
            @cuda.jit
            def kernel(x):
                pass
            return kernel
    '''))
    sites = gpu_static.kernel_sites(str(tmp_path), "pkg")
    assert set(sites) == {"pkg.mod:plain", "pkg.mod:typed", "pkg.mod:factory.<locals>.kernel"}
    assert sites["pkg.mod:plain"].endswith("mod.py:5")


def test_every_gpu_kernel_is_launched_by_a_simulator_test():
    """Every @cuda.jit kernel in kernels/gpu/ has recorded argument types: a kernel no test
    launches is neither tested nor compiled."""
    sites = gpu_static.kernel_sites()
    assert len(sites) >= 30, f"the scanner found only {len(sites)} kernels: {sorted(sites)}"
    recorded = {r["site"] for r in RECORDS}
    missing = {s: where for s, where in sites.items() if s not in recorded}
    assert not missing, ("gpu kernels that no simulator test launches (write a test under tests/kernels or "
                         "tests/gpu, then NUMBANET_UPDATE_SIGNATURES=1 python -m pytest tests/test_gpu_simulator.py): "
                         + ", ".join(f"{s} ({w})" for s, w in sorted(missing.items())))
    stale = sorted(recorded - set(sites))
    assert not stale, f"{gpu_static.SIGNATURES} names kernels that no longer exist: {stale}"


def test_every_float_kernel_is_launched_in_float32_and_float64():
    """A kernel taking float arrays is tested (and compiled) in both dtypes; a family
    member made for one dtype counts for its family."""
    dtypes = collections.defaultdict(set)
    for rec in RECORDS:
        for e in rec["signature"]:
            if isinstance(e, list) and e[0] == "array" and e[1] in ("float32", "float64"):
                dtypes[rec["site"]].add(e[1])
    one = {site: sorted(d) for site, d in dtypes.items() if len(d) == 1 and site not in FLOAT64_BY_DESIGN}
    assert not one, f"kernels launched in one float dtype only: {one}"


# Kernels whose float arrays are float64 whatever the data's dtype: the accumulators of
# the on-device loss and penalty sums (kernels/gpu/reduce.py) and the squared-norm and
# scale cells of gradient clipping (kernels/gpu/optim.py).
FLOAT64_BY_DESIGN = {"numbanet.kernels.gpu.reduce:_add_scaled", "numbanet.kernels.gpu.optim:_add_into",
                     "numbanet.kernels.gpu.optim:_clip_scale"}


def test_fixed_blocks_are_the_blocks_those_kernels_were_launched_with():
    """The table shows a fixed-block kernel (launch.fixed_block: attention's 128-thread
    tiles, the block-per-row kernels, the sort's tiles) at its own block size, every other
    1-D kernel at launch.grid_1d's full-size block."""
    fixed = [r for r in RECORDS if "fixed_block" in r]
    assert {r["site"].rpartition(":")[2] for r in fixed} >= {"_softmax_forward", "_softmax_backward", "_forward",
                                                              "_backward_rows", "_digit_hist", "_digit_scatter"}
    for rec in fixed:
        assert rec["block"] == [rec["fixed_block"], 1, 1], f"{_name(rec)}: launched with block {rec['block']}"
        assert gpu_static.block_threads(rec) == rec["fixed_block"]
    attention = [r for r in RECORDS if "attention" in r["site"]]
    assert attention and all(gpu_static.block_threads(r) == 128 for r in attention)
    small = next(r for r in RECORDS if "fixed_block" not in r and r["block"][1:] == [1, 1] and r["block"][0] > 1)
    assert gpu_static.block_threads(small) == max(small["block"][0], gpu_static.THREADS_1D)


def test_a_kernel_is_hot_where_its_family_is_declared_hot():
    from numbanet.kernels import ops
    for rec in RECORDS:
        module = rec["site"].partition(":")[0].rsplit(".", 1)[-1]
        family = next((f for f in ops.FAMILIES if f.module == module), None)
        if family is not None and module == rec["kernel"].partition(":")[0].rsplit(".", 1)[-1]:
            assert gpu_static.is_hot(rec) == family.hot, _name(rec)


def test_bool_arrays_round_trip():
    """A bool array (a mask) records its dtype as numba names it, "bool"."""
    from numba.core import types
    t = types.Array(types.boolean, 2, "C")
    assert gpu_static.encode_type(t) == ["array", "bool", 2, "C"]
    assert gpu_static.decode_type(gpu_static.encode_type(t)) == t


def test_recorded_types_round_trip():
    for rec in RECORDS[:20]:
        types = [gpu_static.decode_type(e) for e in rec["signature"]]
        assert [gpu_static.encode_type(t) for t in types] == rec["signature"]


@pytest.fixture(scope="module")
def toolkit():
    problem = gpu_static.toolkit_problem()
    assert problem is None, (f"the static compile needs the CUDA compiler wheels: {problem}; "
                             "pip install -e '.[test]' installs numba-cuda[cu12]")
    return gpu_static.find_ptxas()


@pytest.fixture(scope="module")
def compiled(toolkit):
    """{(record index, cc): (report, error)} for every record on sm_80 and sm_90."""
    out = {}
    for index, (_, reports, error) in enumerate(gpu_static.measure_all(RECORDS)):
        for cc in gpu_static.ARCHS:
            out[(index, cc)] = (reports[cc] if reports else None, error)
    return out


def _name(rec):
    return f"{rec['kernel']}{tuple(rec['args'])} {gpu_static.signature_text(rec['signature'])}"


def test_every_kernel_compiles_for_sm80_and_sm90(compiled):
    failed = [f"{_name(RECORDS[i])} on sm_{cc[0]}{cc[1]}:\n{err}" for (i, cc), (_, err) in compiled.items() if err]
    assert not failed, f"{len(failed)} of {len(compiled)} compiles failed:\n" + "\n\n".join(failed[:5])


def test_hot_kernels_do_not_spill(compiled):
    hot = [i for i, rec in enumerate(RECORDS) if gpu_static.is_hot(rec)]
    assert len(hot) >= 10, "the GEMM and convolution kernels are missing from the records"
    bad = []
    for i in hot:
        for cc in gpu_static.ARCHS:
            report, err = compiled[(i, cc)]
            if report and (report["spill_stores"] or report["spill_loads"] or report["stack"]):
                bad.append(f"{_name(RECORDS[i])} sm_{cc[0]}{cc[1]}: {report}")
    assert not bad, "hot kernels with spills or a local-memory stack frame:\n" + "\n".join(bad)


def test_gemm_fragments_are_128_bit_shared_loads(compiled):
    """The tile kernels read their register fragments with ld.shared.v4 (launch.load4):
    four scalar loads per fragment would double the shared-memory instructions."""
    tiles = [i for i, rec in enumerate(RECORDS) if "make_tiled_kernel" in rec["site"]]
    assert tiles
    scalar = [_name(RECORDS[i]) for i in tiles if compiled[(i, (9, 0))][0]["vector_loads"] == 0]
    assert not scalar, f"tile kernels without 128-bit shared loads: {scalar}"


def test_every_tile_kernel_keeps_two_blocks_per_sm(compiled):
    """A tile kernel (the 128 x 128 one holds 8 x 8 accumulators per lane, the convolution's
    loaders add index registers) must fit 128 registers: two 256-thread blocks, 16 warps,
    per H200 SM; at 129 it drops to one (gemm.tile_jit_options' launch bounds)."""
    big = [i for i, rec in enumerate(RECORDS) if "make_tiled_kernel" in rec["site"]]
    assert any("big" in RECORDS[i]["args"] and "conv" in RECORDS[i]["kernel"] for i in big), \
        "no simulator test launches the convolution in the big tile"
    for i in big:
        report, _ = compiled[(i, (9, 0))]
        blocks, warps, _, _ = gpu_static.occupancy(report["registers"], report["smem"], 256)
        assert blocks >= 2, f"{_name(RECORDS[i])}: {report['registers']} registers leave {blocks} block per SM"


# --------------------------------------------------------------------------- occupancy arithmetic

@pytest.mark.parametrize("regs,smem,threads,blocks,limiter", [
    (32, 0, 256, 8, "threads"),              # 2048 threads / 256
    (64, 0, 256, 4, "registers"),            # 64 * 32 = 2048 per warp: 8 warps per partition
    (128, 0, 256, 2, "registers"),
    (129, 0, 256, 1, "registers"),           # 136 * 32 = 4352 per warp: 3 per partition, 12 per SM
    (72, 8192, 256, 3, "registers"),         # 2304 per warp: 7 per partition, 28 per SM, 3 blocks
    (16, 48 * 1024, 128, 4, "shared memory"),  # (48 + 1) KB per block: 4 in 228 KB
    (16, 0, 32, 32, "blocks"),               # at most 32 blocks per SM
    (256, 0, 32, 0, "registers"),            # above 255 registers no block fits
])
def test_occupancy_rules(regs, smem, threads, blocks, limiter):
    got = gpu_static.occupancy(regs, smem, threads)
    assert (got[0], got[3]) == (blocks, limiter)
    assert got[1] == blocks * -(-threads // 32) and got[2] == got[1] / 64


def test_ptxas_report_parser():
    text = """ptxas info    : Compiling entry function '_Z1k' for 'sm_90'
ptxas info    : Function properties for _Z1k
    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 96 registers, used 1 barriers, 16 bytes cumulative stack size, 16896 bytes smem, 752 bytes cmem[0]
"""
    assert gpu_static.parse_ptxas(text) == {"registers": 96, "smem": 16896, "stack": 16, "spill_stores": 8,
                                            "spill_loads": 12}


def test_format_table_and_the_command_line(monkeypatch, capsys):
    """`numbanet info --gpu-kernels` prints gpu_static.table() for the asked architecture."""
    rows = [{"kernel": "gemm.matmul_kernel(False, False, 'float32', 'big', 'relu', False)", "signature": "(float32[:, ::1])",
             "threads": 256, "hot": True, "error": None, "registers": 114, "smem": 16896, "stack": 0, "spill": 0,
             "blocks": 2, "warps": 16, "occupancy": 0.25, "limiter": "registers"},
            {"kernel": "optim._adam", "signature": "(float32[::1])", "threads": 256, "hot": False,
             "error": "RuntimeError: ptxas sm_90 failed", "registers": None}]
    asked = []
    monkeypatch.setattr(gpu_static, "table", lambda cc: asked.append(cc) or rows)
    monkeypatch.setattr(gpu_static, "toolkit_problem", lambda: None)
    from numbanet.cli import main
    assert main(["info", "--gpu-kernels", "--arch", "80"]) == 0
    out = capsys.readouterr().out
    assert asked == [(8, 0)] and "compiled for sm_80" in out
    line = next(l for l in out.splitlines() if "matmul_kernel" in l)
    assert line.startswith("* gemm.") and line.split()[-10:-1] == ["256", "114", "16896", "0", "0", "2", "25%",
                                                                    "registers", "(float32[:,"]
    assert "COMPILE ERROR: RuntimeError: ptxas sm_90 failed" in out
