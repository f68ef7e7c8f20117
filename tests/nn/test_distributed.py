"""nn/distributed.py: data-parallel training over MPI.

The multi-process tests start `mpiexec -n 2` (the MPICH wheel of the test extra puts it in
the environment) on tests/nn/distributed_worker.py, each run bounded by a timeout; the
one-process references run here. Equivalence: 2 processes with 64 rows each end with the
weights of one process with batches of 128 after the same steps from the same seed. The
only difference is the order of float32 additions: each process sums its 64 rows' gradient
contributions, scaled by its share, then the Allreduce adds the two, where one process
sums all 128 rows in one pass. Those orders differ by a few float32 roundings per gradient
(relative ~1e-7). Measured after 6 steps: the CNN's weights differ from the
one-process run's by at most 3.0e-8, the functional model's by 6.0e-8; RTOL/ATOL below
allow ~30x that. A wrong scaling fails by far: averaging the two processes' gradients
with equal weights instead of their shares of the rows (the last batch splits 23 + 22)
moved the CNN's weights by up to 1.8e-4 and the functional model's by 5.3e-4.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import distributed_worker as worker
from numbanet.nn import distributed
from numbanet.nn.utils import set_random_seed

RTOL, ATOL = 1e-5, 1e-6
TIMEOUT = 240    # seconds for one mpiexec run (two processes starting, loading cached kernels)
WORKER = os.path.abspath(worker.__file__)


def _mpiexec():
    path = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert path, "mpiexec not found: install the test extra (pip install -e '.[test]' brings the mpich wheel)"
    return path


def _run_job(out, scenario, timeout=TIMEOUT):
    env = dict(os.environ, NUMBANET_BACKEND="cpu", NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(WORKER), env.get("PYTHONPATH")]))
    return subprocess.run([_mpiexec(), "-n", "2", sys.executable, WORKER, str(out), scenario],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    r = _run_job(out, "train")
    assert r.returncode == 0, f"mpiexec -n 2 worker train failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return out, r


def _load(out, what, rank):
    with np.load(os.path.join(out, f"{what}_rank{rank}.npz")) as f:
        return {k: f[k] for k in f.files}


def _weights(d):
    return [d[f"w{i}"] for i in range(sum(k.startswith("w") for k in d))]


def _single_process_cnn():
    from numbanet import kernels
    set_random_seed(0)
    x, y = worker.cnn_data()
    model = worker.build_cnn()
    model.to(kernels.get_backend("cpu"))
    history = model.fit(x, y, batch_size=worker.GLOBAL_BATCH, epochs=worker.EPOCHS, verbose=0)
    return model, history, x, y


def assert_same_weights(got, want, what):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        err = np.max(np.abs(g - w) - RTOL * np.abs(w))
        assert np.allclose(g, w, rtol=RTOL, atol=ATOL), \
            f"{what}: weight array {i} {w.shape} differs by up to {err:.3g} beyond rtol {RTOL} (atol {ATOL})"


def test_two_processes_of_64_match_one_of_128_on_the_article_cnn(job):
    out, _ = job
    model, history, _, _ = _single_process_cnn()
    steps = worker.EPOCHS * -(-worker.N_ROWS // worker.GLOBAL_BATCH)
    for rank in (0, 1):
        got = _load(out, "cnn", rank)
        assert int(got["iterations"]) == steps == model.optimizer.iterations
        assert_same_weights(_weights(got), model.get_weights(), f"CNN, process {rank} vs one process")
        # The logged loss and accuracy are the global batch's: the one-process figures.
        np.testing.assert_allclose(got["loss"], history.history["loss"], rtol=1e-5)
        np.testing.assert_allclose(got["accuracy"], history.history["accuracy"], rtol=0, atol=1e-12)
    # Identical updates from identical (broadcast) weights: the processes agree exactly.
    for a, b in zip(_weights(_load(out, "cnn", 0)), _weights(_load(out, "cnn", 1))):
        np.testing.assert_array_equal(a, b)


def test_two_processes_match_one_on_a_two_output_functional_model(job):
    out, _ = job
    set_random_seed(1)
    x, ys = worker.functional_data()
    model = worker.build_functional()
    history = model.fit(x, ys, batch_size=worker.GLOBAL_BATCH, epochs=worker.EPOCHS, verbose=0)
    for rank in (0, 1):
        got = _load(out, "functional", rank)
        assert_same_weights(_weights(got), model.get_weights(), f"functional model, process {rank}")
        for key in ("loss", "classes_loss", "values_loss"):
            np.testing.assert_allclose(got[key], history.history[key], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(got["classes_accuracy"], history.history["classes_accuracy"], atol=1e-12)


def test_moving_statistics_are_averaged_over_the_processes(job):
    """Each process's BatchNormalization updates its moving statistics from its own 5 rows
    (momentum 0.5, from zeros and ones); after the step both hold the average of the two
    updates, bit for bit the same, while gamma and beta took the global gradient step."""
    out, _ = job
    x, _ = worker.batch_norm_data()
    halves = (x[:worker.BN_ROWS // 2].astype(np.float64), x[worker.BN_ROWS // 2:].astype(np.float64))
    want_mean = np.mean([0.5 * 0.0 + 0.5 * h.mean(0) for h in halves], axis=0)
    want_var = np.mean([0.5 * 1.0 + 0.5 * h.var(0) for h in halves], axis=0)
    got = [_weights(_load(out, "batchnorm", rank)) for rank in (0, 1)]
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)
    gamma, beta, moving_mean, moving_var = got[0][:4]
    np.testing.assert_allclose(moving_mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moving_var, want_var, rtol=1e-5)
    assert not np.allclose(gamma, 1.0) and not np.allclose(beta, 0.0)


def test_a_resumed_fit_starts_from_process_0s_weights_and_optimizer_state(job):
    out, _ = job
    model, _, x, y = _single_process_cnn()
    model.fit(x, y, batch_size=worker.GLOBAL_BATCH, epochs=1, verbose=0)
    for rank in (0, 1):
        got = _load(out, "resumed", rank)
        assert int(got["iterations"]) == model.optimizer.iterations, "process 1's step count was not replaced"
        assert_same_weights(_weights(got), model.get_weights(), f"resumed fit, process {rank}")


def test_evaluate_and_predict_shard_rows_and_give_every_process_the_whole_result(job):
    out, _ = job
    model, _, x, y = _single_process_cnn()
    model.fit(x, y, batch_size=worker.GLOBAL_BATCH, epochs=1, verbose=0)
    ref = _load(out, "resumed", 0)
    model.set_weights(_weights(ref))   # the distributed run's weights, so only evaluate/predict differ
    want = model.evaluate(x[:101], y[:101], batch_size=32, verbose=0)
    probs = model.predict(x[:101], batch_size=32)
    for rank in (0, 1):
        got = _load(out, "evaluate", rank)
        np.testing.assert_allclose(got["result"], want, rtol=1e-6)
        assert got["probs"].shape == (101, 10)
        np.testing.assert_allclose(got["probs"], probs, rtol=1e-5, atol=1e-7)


def test_only_process_0_prints_progress_and_writes_models(job):
    out, r = job
    epoch_lines = [line for line in r.stdout.splitlines() if line.startswith("Epoch ") and " steps - " in line]
    assert len(epoch_lines) == worker.EPOCHS, f"expected {worker.EPOCHS} epoch lines (process 0's), got:\n{r.stdout}"
    files = sorted(os.listdir(out))
    assert "saved_rank0.npz" in files and "saved_rank1.npz" not in files, files
    assert [f for f in files if f.startswith("ckpt_")] == [f"ckpt_rank0_{e}.npz" for e in range(1, worker.EPOCHS + 1)]
    assert not [f for f in files if ".tmp" in f], files


def test_an_exception_in_one_process_aborts_the_job_with_its_message(tmp_path):
    # Process 0 waits in the step's Allreduce for process 1, which raised: without the
    # abort the job would hang until the timeout.
    r = _run_job(tmp_path, "fail", timeout=TIMEOUT)
    assert r.returncode != 0
    assert "numbanet: process 1 of 2 failed; aborting the job" in r.stderr, r.stderr[-3000:]
    assert "RuntimeError: process one gives up at step 2" in r.stderr, r.stderr[-3000:]
    assert not [f for f in os.listdir(tmp_path) if f.startswith("finished")]


def test_without_a_launcher_nothing_changes_and_mpi4py_is_not_imported():
    code = ("import sys\n"
            "from numbanet.nn import distributed\n"
            "from numbanet.nn.models import Sequential\n"
            "assert distributed.init() == 1 and distributed.rank() == 0 and distributed.size() == 1\n"
            "assert distributed.active() is None and distributed.is_chief()\n"
            "import numbanet.nn.train, numbanet.cli\n"
            "print(sorted(m for m in sys.modules if m.startswith('mpi4py')))\n")
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCHER_SIZE_VARIABLES}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]", f"mpi4py was imported: {r.stdout}"
    # One process under a launcher: the same.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(env, PMI_SIZE="1", PMI_RANK="0"))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr[-3000:]


def test_several_processes_without_mpi4py_is_an_error_that_says_what_to_install(monkeypatch):
    monkeypatch.setattr(distributed, "_initialized", False)
    monkeypatch.setattr(distributed, "_comm", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)   # import mpi4py raises ImportError
    with pytest.raises(RuntimeError, match=r"one of 2 .*pip install 'numbanet\[mpi\]'"):
        distributed.init()
    assert distributed.active() is None


@pytest.mark.parametrize("rows,size", [(128, 2), (45, 2), (1, 2), (7, 3), (0, 2)])
def test_share_splits_a_batch_like_array_split(rows, size):
    lo = 10
    got = [distributed.share(lo, lo + rows, r, size) for r in range(size)]
    want = np.array_split(np.arange(lo, lo + rows), size)
    assert [list(range(a, b)) for a, b in got] == [list(w) for w in want]


def test_rank_and_size_before_init_say_to_call_init(monkeypatch):
    monkeypatch.setattr(distributed, "_initialized", False)
    with pytest.raises(RuntimeError, match=r"call distributed.init\(\) first"):
        distributed.rank()


def test_each_process_draws_different_dropout_seeds_from_one_shared_generator(monkeypatch):
    from numbanet.nn import utils
    draws = []
    for stream in (0, 1, 0):
        set_random_seed(3)
        monkeypatch.setattr(utils, "_seed_stream", stream)
        draws.append([utils.draw_seed() for _ in range(3)])
    set_random_seed(3)
    plain = [int(utils.get_rng().integers(0, 2 ** 63 - 1)) for _ in range(3)]
    assert draws[0] == draws[2] == plain   # process 0 draws what a single process draws
    assert all(a != b for a, b in zip(draws[0], draws[1]))
    assert all(0 <= s < 2 ** 63 - 1 for s in draws[1])


@pytest.mark.parametrize("kinds,want", [("mpi,system", False), ("mpi,system,cuda:device", True),
                                        ("mpi,cuda", True), ("mpi,cuda:host", False), (None, False)])
def test_cuda_awareness_is_read_from_mpi_memory_alloc_kinds(monkeypatch, kinds, want):
    monkeypatch.delenv("NUMBANET_MPI_CUDA_AWARE", raising=False)

    class Info:
        def Get(self, key):
            assert key == "mpi_memory_alloc_kinds"
            return kinds

        def Free(self):
            pass

    class Comm:
        def Get_info(self):
            return Info()

    assert distributed.cuda_aware(Comm()) is want
    monkeypatch.setenv("NUMBANET_MPI_CUDA_AWARE", "0" if want else "1")
    assert distributed.cuda_aware(Comm()) is (not want)
