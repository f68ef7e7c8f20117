"""Data-parallel training over MPI (mpi4py), as Horovod and ChainerMN do it.

    from numbanet.nn import distributed
    distributed.init()                    # under `mpiexec -n N`: joins the job
    model.fit(x, y, batch_size=128)       # the global batch: 128 / N rows per process
    if distributed.rank() == 0:
        print(model.evaluate(x_test, y_test, verbose=0))

`init()` is the switch, as Keras's `keras.distribution.set_distribution(DataParallel())`
is: afterwards fit, evaluate and predict run data-parallel over the job's processes,
with the arguments of a one-process run. `mpiexec -n N numbanet train` calls it itself.
Started without a launcher, or with one process, init() changes nothing and does not
import mpi4py; neither does importing this module.

What fit does with N processes (synchronous data parallelism):

- batch_size is the global batch (Keras's rule under a distribution, not Horovod's
  per-worker one): every step's rows are split across the processes, the first
  `rows % N` taking one more, so the last, partial batch is the same rows as in one
  process. A process left without rows (a batch smaller than N) computes nothing and
  contributes zeros.
- Each process scales its gradients by its share of the step's rows (rows_i / rows; the
  loss is a mean over the rows, so sum_i rows_i / rows * mean_i is the mean over the
  global batch, and a regularization penalty, in every process's gradient, counts once).
  All gradients of the step, packed into one contiguous buffer with the step's loss and
  metric counts behind them, are summed by ONE Allreduce (Horovod's tensor fusion).
  Every process then applies the same update, so the weights stay identical. A
  non-finite loss anywhere is non-finite in the sum, so every process skips that update.
- Non-trainable weights (BatchNormalization's moving statistics) have no gradient and are
  left out of the gradient sum. Each process updates them from its own rows' batch
  statistics; the same Allreduce then averages them (their sum / the number of
  processes) and every process takes the average, as tf.distribute's MirroredStrategy
  does (moving-statistic variables aggregate with MEAN across replicas), so they stay
  equal everywhere.
- At the start of fit, process 0's weights, optimizer state and step count, and the
  state of its random generator, are broadcast: every process then draws the same
  shuffle each epoch (the one a single process would draw) and takes its slice of each
  batch. Dropout seeds come from that shared generator with the rank mixed in
  (utils.draw_seed), so the processes drop different units.
- The logged loss and metrics are those of the global batch; callbacks see the same
  logs everywhere (EarlyStopping stops every process at the same epoch). Only process 0
  prints progress, and model.save (ModelCheckpoint, `numbanet train`) writes on process
  0 only (through the one atomic write, nn/utils.atomic_write).
- evaluate and predict shard their rows across the processes; evaluate sums the loss
  and metric counts with one Allreduce and predict gathers the outputs with Allgatherv,
  so every process gets the whole result. Like fit, they are collective: call them on
  every process (a call on process 0 only would wait for the others forever).

On the gpu backend the packed buffer is made on the device, copied to the host once,
reduced and copied back once per step; when the MPI library reports CUDA support
(MPI 4.1's "mpi_memory_alloc_kinds" info key lists cuda, or NUMBANET_MPI_CUDA_AWARE=1)
the device buffer goes to Allreduce itself.

An exception that ends a process (sys.excepthook) prints its traceback with the
process's rank and aborts the whole job (MPI_Abort), so no other process waits in a
collective forever.
"""
import json
import os
import sys
import traceback

import numpy as np

from numbanet.nn import utils

# Variables MPI launchers set in every process they start: MPICH's and Intel MPI's
# Hydra (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH (MV2_COMM_WORLD_SIZE).
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

_comm = None          # the Communicator while this process trains with others
_initialized = False


def launched_size():
    """The number of processes the MPI launcher started (1 without a launcher), read from
    its environment variables: no MPI library is loaded to find out."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def init(comm=None):
    """Join the MPI job this process was started in; returns size().

    With one process (no launcher, `mpiexec -n 1`), nothing happens and mpi4py is not
    imported. With several, mpi4py is imported (MPI starts), the job's processes train
    together from now on, and an exception that ends this process aborts the job.
    comm: an mpi4py intracommunicator to use instead of MPI.COMM_WORLD (then mpi4py is
    imported whatever the launcher says). Calling init again does nothing."""
    global _comm, _initialized
    if _initialized:
        return size()
    if comm is None:
        expected = launched_size()
        if expected > 1:
            try:
                from mpi4py import MPI
            except ImportError:
                raise RuntimeError(f"numbanet.nn.distributed: this process is one of {expected} that an MPI "
                                   f"launcher started, but mpi4py is not installed; install it with "
                                   f"pip install 'numbanet[mpi]' (or run one process)") from None
            comm = MPI.COMM_WORLD
    if comm is not None and comm.Get_size() > 1:
        _comm = Communicator(comm)
        utils.set_seed_stream(_comm.rank)
        _install_abort_hook(_comm)
        _share_cores(_comm)
    _initialized = True
    return size()


def _require_init(what):
    if not _initialized:
        raise RuntimeError(f"numbanet.nn.distributed.{what}: call distributed.init() first")


def rank():
    """This process's rank in the job (0 in a one-process run)."""
    _require_init("rank")
    return _comm.rank if _comm is not None else 0


def size():
    """The number of processes training together (1 in a one-process run)."""
    _require_init("size")
    return _comm.size if _comm is not None else 1


def is_chief():
    """True on the process that prints and saves: rank 0, or the only process (also
    before init)."""
    return _comm is None or _comm.rank == 0


def active():
    """The Communicator fit, evaluate and predict use, or None (one process)."""
    return _comm


def abort(code=1):
    """End every process of the job with exit status `code` (nothing with one process)."""
    if _comm is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        _comm.comm.Abort(int(code))


def _share_cores(comm):
    """Give each process on this machine its share of Numba's threads (unless the user set
    NUMBA_NUM_THREADS): N processes each running one thread per core would oversubscribe
    the cores N times over."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    import numba
    node = comm.comm.Split_type(comm.MPI.COMM_TYPE_SHARED)
    local = node.Get_size()
    node.Free()
    numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS // local))


def _install_abort_hook(comm):
    previous = sys.excepthook

    def abort_on_exception(kind, value, tb):
        # The other processes may be waiting for this one in a collective: they would wait
        # forever. Say which process failed and why, then end the job (MPI_Abort), as
        # `python -m mpi4py` and Horovod do.
        try:
            sys.stdout.flush()
            print(f"numbanet: process {comm.rank} of {comm.size} failed; aborting the job", file=sys.stderr)
            traceback.print_exception(kind, value, tb, file=sys.stderr)
            sys.stderr.flush()
        finally:
            comm.comm.Abort(1)
            previous(kind, value, tb)   # reached only where Abort returns (a test's stand-in communicator)

    sys.excepthook = abort_on_exception


def share(lo, hi, rank, size):
    """Rows [lo, hi) split in `size` consecutive slices, the first (hi - lo) % size one row
    longer -> (start, stop) of rank's slice (empty when there are fewer rows than ranks)."""
    base, extra = divmod(hi - lo, size)
    start = lo + rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def cuda_aware(comm):
    """True when the MPI library takes device memory in collectives: NUMBANET_MPI_CUDA_AWARE
    (1 or 0) when set, else MPI 4.1's "mpi_memory_alloc_kinds" info of the communicator
    (a list such as "mpi,system,cuda:device")."""
    forced = os.environ.get("NUMBANET_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        info = comm.Get_info()
        kinds = info.Get("mpi_memory_alloc_kinds") or ""
        info.Free()
    except Exception:   # an MPI before 4.1, or one without info on communicators
        return False
    for kind in kinds.split(","):
        name, *restrictors = kind.strip().split(":")
        if name == "cuda" and (not restrictors or "device" in restrictors):
            return True
    return False


class Communicator:
    """The operations numbanet needs, on an mpi4py intracommunicator, with buffers only
    (mpi4py's upper-case methods): nothing is pickled."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.cuda_aware = cuda_aware(comm)
        self.allreduce_calls = 0   # per process; tests count one per training step

    def allreduce(self, buf):
        """Sum buf over the processes, in place (a NumPy array, or device memory when the
        library is CUDA-aware)."""
        self.allreduce_calls += 1
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def bcast(self, buf, root=0):
        self.comm.Bcast(buf, root=root)
        return buf

    def bcast_json(self, obj=None, root=0):
        """Process root's JSON-able obj, on every process (a length, then UTF-8 bytes)."""
        data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8) if self.rank == root else None
        length = np.array([0 if data is None else data.size], np.int64)
        self.bcast(length, root)
        if data is None:
            data = np.empty(int(length[0]), np.uint8)
        self.bcast(data, root)
        return json.loads(data.tobytes().decode("utf-8"))

    def allgather_rows(self, local, total_rows):
        """Concatenate every process's rows (process order) -> an array of total_rows rows
        on every process. local: (rows_i, ...) C-contiguous host rows, rows_i from share()."""
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        out = np.empty((total_rows,) + tuple(local.shape[1:]), local.dtype)
        counts = [(b - a) * row for a, b in (share(0, total_rows, r, self.size) for r in range(self.size))]
        self.comm.Allgatherv(np.ascontiguousarray(local), [out, counts])
        return out

    def sum_counts(self, sums, hits):
        """evaluate's loss sums and [hits, count] pairs summed over the processes (one
        Allreduce, in float64)."""
        buf = np.array(list(sums) + [v for pair in hits for v in pair], np.float64)
        self.allreduce(buf)
        k = len(sums)
        return [float(v) for v in buf[:k]], [[float(buf[k + 2 * j]), float(buf[k + 2 * j + 1])]
                                             for j in range(len(hits))]


class FitSync:
    """What fit does differently with several processes: the start-of-training broadcast,
    each step's rows and the step's one Allreduce (see the module's docstring)."""

    def __init__(self, comm, model):
        self.comm = comm
        self.model = model
        self.be = model.be
        self.dtype = model.dtype
        self.layout = []    # the trainable weights' gradients
        self.states = []    # the non-trainable weights, behind the gradients
        offset = 0
        trainable = {key for key, _, _ in model._trainable_params()}
        for key, layer, k in model._params():
            if key in trainable:
                p = layer.params[k]
                self.layout.append((layer, k, offset, int(p.size), tuple(p.shape)))
                offset += int(p.size)
        self.n_grads = offset
        for key, layer, k in model._params():
            if key not in trainable:
                p = layer.params[k]
                self.states.append((layer, k, offset, int(p.size), tuple(p.shape)))
                offset += int(p.size)
        self.n_sync = offset
        self.n_per_output = len(model.outputs) if len(model.outputs) > 1 else 0
        self.n_metrics = sum(len(kinds) for kinds in model._compile_loss.metric_kinds)
        self.n_tail = 1 + self.n_per_output + 2 * self.n_metrics
        # The logs travel behind the gradients: in the backend buffer itself on the cpu
        # (it is host memory) and with a CUDA-aware MPI, else in the host staging buffer.
        self.tail_on_backend = self.be.name == "cpu" or comm.cuda_aware
        self.host = None if self.tail_on_backend else self.be.host_empty((self.n_sync + self.n_tail,), self.dtype)
        self.rows = self.global_rows = 0

    @property
    def chief(self):
        return self.comm.rank == 0

    # ------------------------------------------------------------------ start of fit
    def begin(self):
        """Process 0's weights, optimizer state, step count and random generator state to
        every process (one JSON header, then one buffer of every array)."""
        model, comm = self.model, self.comm
        opt = model.optimizer
        weights = model.get_weights()
        state = opt.get_state(model.be) if comm.rank == 0 else {}
        names = sorted(state)
        header = None
        if comm.rank == 0:
            header = {"weights": [list(w.shape) for w in weights], "dtype": self.dtype.name,
                      "iterations": opt.iterations, "state": [[k, list(state[k].shape)] for k in names],
                      "rng": utils.get_rng().bit_generator.state}
        header = comm.bcast_json(header)
        mine = [list(w.shape) for w in weights]
        if header["weights"] != mine or header["dtype"] != self.dtype.name:
            raise ValueError(f"fit: process {comm.rank} has a model with weights {mine} ({self.dtype.name}) but "
                             f"process 0 has {header['weights']} ({header['dtype']}); every process must build "
                             f"the same model")
        sizes = [int(np.prod(s, dtype=np.int64)) for s in header["weights"]]
        sizes += [int(np.prod(s, dtype=np.int64)) for _, s in header["state"]]
        flat = np.empty(sum(sizes), self.dtype)
        if comm.rank == 0:
            parts = weights + [state[k] for k in names]
            if parts:
                np.concatenate([np.asarray(a, self.dtype).ravel() for a in parts], out=flat)
        comm.bcast(flat)
        if comm.rank != 0:
            arrays, offset = [], 0
            for n, shape in zip(sizes, header["weights"] + [s for _, s in header["state"]]):
                arrays.append(flat[offset:offset + n].reshape(shape))
                offset += n
            model.set_weights(arrays[:len(weights)])
            opt.set_state(model.be, {k: np.ascontiguousarray(a)
                                     for (k, _), a in zip(header["state"], arrays[len(weights):])})
            opt.iterations = int(header["iterations"])
            utils.get_rng().bit_generator.state = header["rng"]

    # ------------------------------------------------------------------ each step
    def share(self, lo, hi):
        """This process's rows of the global batch [lo, hi)."""
        start, stop = share(lo, hi, self.comm.rank, self.comm.size)
        self.rows, self.global_rows = stop - start, hi - lo
        return start, stop

    def _tail(self, loss, per_output, stats):
        w = self.rows / self.global_rows
        tail = np.zeros(self.n_tail, self.dtype)
        if self.rows:
            tail[0] = loss * w
            for j, v in enumerate(per_output):
                tail[1 + j] = v * w
            base = 1 + self.n_per_output
            for j, (hits, count) in enumerate(stats):
                tail[base + 2 * j], tail[base + 2 * j + 1] = hits, count
        return tail

    def _untail(self, tail):
        base = 1 + self.n_per_output
        per_output = [float(v) for v in tail[1:base]]
        stats = [(int(round(float(tail[base + 2 * j]))), int(round(float(tail[base + 2 * j + 1]))))
                 for j in range(self.n_metrics)]
        return float(tail[0]), per_output, stats

    def reduce(self, loss, per_output, stats, have_grads):
        """The step's one Allreduce: every process's gradients times its share of the rows,
        and its logs, summed -> the global batch's (loss, per-output losses, metric counts);
        each layer's grads then hold the global batch's gradients, and every non-trainable
        weight the processes' average. have_grads: backward ran (False: no rows here, or a
        non-finite loss, whose step every process skips)."""
        be, n, ng = self.be, self.n_sync, self.n_grads
        tail = self._tail(loss, per_output, stats)
        extra = self.n_tail if self.tail_on_backend else 0
        states = [be.reshape(layer.params[k], (size,)) for layer, k, _, size, _ in self.states]
        if have_grads:
            parts = [be.reshape(layer.grads[k], (size,)) for layer, k, _, size, _ in self.layout]
            flat = be.concatenate(parts + states + ([be.asarray(tail)] if extra else []), axis=0)
            # Global mean = the sum over processes of (rows_i / rows) * process i's mean.
            grads = flat[:ng]
            be.scale(grads, self.rows / self.global_rows, out=grads)
        else:
            flat = be.zeros((n + extra,), self.dtype)
            for (_, _, offset, size, _), s in zip(self.states, states):
                be.assign(flat[offset:offset + size], s)
            if extra:
                be.copy_from_host(flat[n:], tail)
        if states:
            # The average over processes (MirroredStrategy's MEAN): each adds 1/size of its own.
            kept = flat[ng:n]
            be.scale(kept, 1.0 / self.comm.size, out=kept)
        grads = flat[:n]
        if self.host is None:
            be.synchronize()   # the kernels that wrote flat have finished before MPI reads it
            self.comm.allreduce(flat)
            tail = be.to_numpy(flat[n:])
        else:
            be.to_numpy(grads, out=self.host[:n])
            self.host[n:] = tail
            self.comm.allreduce(self.host)
            be.copy_from_host(grads, self.host[:n])
            tail = self.host[n:]
        for layer, k, offset, size, shape in self.layout:
            reduced = be.reshape(grads[offset:offset + size], shape)
            if have_grads:
                # Into the arrays backward wrote, not in their place: the optimizer may step
                # over a flat buffer they are views of (x * 1.0 is an exact copy).
                be.scale(reduced, 1.0, out=layer.grads[k])
            else:
                layer.grads[k] = reduced
        for layer, k, offset, size, shape in self.states:
            be.assign(layer.params[k], be.reshape(grads[offset:offset + size], shape))
        return self._untail(tail)
