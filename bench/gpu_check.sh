#!/usr/bin/env bash
# The whole real-device check of the gpu backend in one command (< 5 minutes on an H200;
# the timeouts below add up to 8 minutes, the longest one command may take on a lent machine):
#   1. the kernel test suite on cpu and the real gpu (tests/kernels, tests/gpu; the static
#      compile test runs in CI, not here),
#   2. float32 GEMM 4096^3: our tiled kernel vs cuBLAS through CuPy (TF32 off),
#   3. the kernel benchmarks, gpu against cpu and the references (numbanet bench --quick),
#   4. one training step of the article's CNN at batch 128, gpu vs cpu, and a full
#      60,000-sample epoch on the gpu (synthetic digits-shaped data: no download),
#   5. the launches of one step and numba's launch cost from Python on this machine,
#   6. the static table (numbanet info --gpu-kernels), when ptxas is installed here.
# Outputs go under ${OUT:-out}/ (tests.log, gemm.txt, bench.txt, bench.json, train.txt,
# launches.txt, static.txt, summary.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out}"
mkdir -p "$OUT"
unset NUMBA_ENABLE_CUDASIM

# Installing on a GPU machine: pip install -e '.[test,cu12]' (or cu13, to match the
# driver; see the README). Here, use the project's venv when there is one, else the
# system python; when numbanet is not installed in it (a lent machine reaches no package
# registry), run the checkout through a folder of links laid out as the installed
# package: numbanet/{__init__,cli}.py beside numbanet/kernels -> kernels/, and so on.
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if ! $PY -c "import numbanet.kernels" 2>/dev/null; then
    shim=$(mktemp -d)/numbanet
    mkdir -p "$shim"
    cp numbanet/*.py "$shim/"
    for part in kernels nn bench; do ln -s "$PWD/$part" "$shim/$part"; done
    export PYTHONPATH="$(dirname "$shim")${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! $PY -c "import numba.cuda, numpy, pytest, hypothesis, numbanet.kernels"; then
    echo "numba-cuda, numpy, pytest or hypothesis is missing: pip install -e '.[test,cu12]'" | tee "$OUT/summary.txt"
    exit 1
fi
$PY -c "from numbanet import kernels; print('gpu status:', kernels.gpu_status())" | tee "$OUT/summary.txt"

echo "== kernel tests on cpu and gpu" | tee -a "$OUT/summary.txt"
start=$(date +%s)
NUMBANET_TEST_BACKENDS=cpu,gpu timeout 140 $PY -m pytest tests/kernels tests/gpu -q -p no:cacheprovider -x \
    --ignore=tests/kernels/test_gpu_static.py \
    > "$OUT/tests.log" 2>&1
tests_rc=$?
echo "tests exit $tests_rc in $(( $(date +%s) - start ))s: $(tail -1 "$OUT/tests.log")" | tee -a "$OUT/summary.txt"

echo "== GEMM float32 4096^3" | tee -a "$OUT/summary.txt"
CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0 timeout 60 $PY - <<'PY' 2>&1 | tee "$OUT/gemm.txt" | tee -a "$OUT/summary.txt"
import time
import numpy as np
from numba import cuda
from numbanet import kernels

be = kernels.get_backend("gpu")
n = 4096
rng = np.random.default_rng(0)
a = be.asarray(rng.standard_normal((n, n), dtype=np.float32))
b = be.asarray(rng.standard_normal((n, n), dtype=np.float32))
c = be.empty((n, n), np.float32)

def best(fn, reps=5):
    fn(); cuda.synchronize()
    times = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); cuda.synchronize(); times.append(time.perf_counter() - t)
    return min(times)

ours = best(lambda: be.matmul(a, b, out=c))
flops = 2 * n ** 3
print(f"numbanet gemm: {ours * 1e3:.2f} ms, {flops / ours / 1e12:.2f} TFLOP/s")
try:
    import cupy as cp
    ca, cb = cp.asarray(a), cp.asarray(b)
    cref = cp.matmul(ca, cb)
    err = float(cp.abs(cp.asarray(c) - cref).max() / cp.abs(cref).max())
    t = best(lambda: cp.matmul(ca, cb))
    print(f"cuBLAS (CuPy, TF32 off): {t * 1e3:.2f} ms, {flops / t / 1e12:.2f} TFLOP/s; "
          f"ours = {100 * t / ours:.0f}% of cuBLAS (goal >= 50%); max rel diff {err:.2e}")
except ImportError:
    print("CuPy not importable: no cuBLAS comparison")
PY

echo "== numbanet bench --quick (gpu, cpu, references)" | tee -a "$OUT/summary.txt"
timeout 90 $PY -m numbanet.cli bench --quick --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
echo "bench exit $?" | tee -a "$OUT/summary.txt"
grep -E "^\| .*\| (gpu|cupy) " "$OUT/bench.txt" | tee -a "$OUT/summary.txt"

echo "== article CNN, batch 128" | tee -a "$OUT/summary.txt"
timeout 100 $PY - <<'PY' 2>&1 | tee "$OUT/train.txt" | tee -a "$OUT/summary.txt"
import time
import numpy as np
from numbanet import kernels
from numbanet.nn.mnist_cnn import build_model

rng = np.random.default_rng(0)
x = rng.random((60000, 28, 28, 1), dtype=np.float32)
y = rng.integers(0, 10, 60000)

def model_on(backend):
    return build_model().to(backend)

step = {}
for backend, reps in (("gpu", 20), ("cpu", 3)):
    m = model_on(backend)
    xb, yb = x[:128], y[:128]
    m.train_on_batch(xb, yb)                       # compile
    kernels.get_backend(backend).synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        m.train_on_batch(xb, yb)
    kernels.get_backend(backend).synchronize()
    step[backend] = (time.perf_counter() - t) / reps
    print(f"{backend}: {step[backend] * 1e3:.1f} ms per training step (batch 128)")
print(f"gpu speed-up per step: {step['cpu'] / step['gpu']:.1f}x (goal >= 10x)")
m = model_on("gpu")
m.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)   # compile the fit path
t = time.perf_counter()
m.fit(x, y, batch_size=128, epochs=1, verbose=0)
kernels.get_backend("gpu").synchronize()
print(f"gpu epoch of 60,000 samples: {time.perf_counter() - t:.2f} s (goal < 2 s)")
PY
echo "== launches per article-CNN step, and numba's launch cost from Python here" | tee -a "$OUT/summary.txt"
timeout 30 $PY - <<'PY' 2>&1 | tee "$OUT/launches.txt" | tee -a "$OUT/summary.txt"
import time
import numpy as np
from numba import cuda
from numbanet.bench import gpu_launches

print(gpu_launches.report(gpu_launches.count_fit_steps(batch=128, steps=3)))

@cuda.jit
def one(a):
    pass

@cuda.jit
def ten(a, b, c, d, e, f, g, h, i, j):
    pass

x = cuda.device_array(4, np.float32)
for kernel, args in ((one, (x,)), (ten, (x,) * 10)):
    kernel[1, 32](*args)
    cuda.synchronize()
    t = time.perf_counter()
    for _ in range(2000):
        kernel[1, 32](*args)
    per = (time.perf_counter() - t) / 2000
    cuda.synchronize()
    print(f"launch of an empty kernel with {len(args):>2} array arguments: {per * 1e6:.1f} us from Python")
PY

echo "== static table (numbanet info --gpu-kernels, sm_90)" | tee -a "$OUT/summary.txt"
timeout 50 $PY -m numbanet.cli info --gpu-kernels > "$OUT/static.txt" 2>&1
echo "static table exit $? (in $OUT/static.txt)" | tee -a "$OUT/summary.txt"
echo "summary in $OUT/summary.txt"
exit $tests_rc
