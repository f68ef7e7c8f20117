"""What model.compile resolves, Keras 3's way (keras/src/trainers/compile_utils.py): per
model output a loss, a loss weight and a list of metrics; whether the output layer's
activation fuses into its loss; the names of the logs; and, each step, the loss terms.

    compile_loss = CompileLoss(loss, metrics, loss_weights, model.output_names)
    compile_loss.fuse(graph)                  # which outputs hand their logits to the loss
    loss, per_output, douts, stats = compile_loss(be, outs, targets, add_penalties)
"""
import math

from numbanet.nn import losses as losses_mod
from numbanet.nn import metrics as metrics_mod
from numbanet.nn.graph import as_list


def check_names(loss, metrics):
    """Unknown loss and metric names fail at compile, even when the model learns its
    outputs later (a Sequential without an input shape resolves them when it is built)."""
    if loss is None:
        raise ValueError("compile: loss is required (e.g. loss='categorical_crossentropy')")
    for l in (loss.values() if isinstance(loss, dict) else as_list(loss)):
        losses_mod.get(l)
    for m in (metrics.values() if isinstance(metrics, dict) else (metrics or [])):
        for name in as_list(m) if m is not None else []:
            metrics_mod.get(name)


def _per_output(what, value, default, names):
    """A compile argument given once, as a list, or as a dict by output name -> one entry per output."""
    n = len(names)
    if value is None:
        return [default] * n
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"compile: {what} names {sorted(unknown)}, which are not outputs of the model "
                             f"(outputs: {names})")
        return [value.get(name, default) for name in names]
    if isinstance(value, (list, tuple)) and what != "metrics":
        if len(value) != n:
            raise ValueError(f"compile: {what} has {len(value)} entries but the model has {n} outputs")
        return list(value)
    return [value] * n


class CompileLoss:
    """The compiled losses and metrics of a model with the given outputs."""

    def __init__(self, loss, metrics, loss_weights, output_names):
        self.output_names = list(output_names)
        n = len(self.output_names)
        self.losses = [losses_mod.get(l) for l in _per_output("loss", loss, None, self.output_names)]
        weights = _per_output("loss_weights", loss_weights, 1.0, self.output_names)
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"compile: loss weights must be finite numbers >= 0, got {w!r}")
        self.loss_weights = [float(w) for w in weights]
        if isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, (list, tuple)) for m in metrics):
            if len(metrics) != n:
                raise ValueError(f"compile: metrics has {len(metrics)} lists but the model has {n} outputs")
            per = [list(m) for m in metrics]
        elif isinstance(metrics, dict):
            per = [as_list(m) if m is not None else []
                   for m in _per_output("metrics", metrics, None, self.output_names)]
        else:
            per = [list(metrics or [])] * n
        self.metric_names = [[metrics_mod.get(m) for m in ms] for ms in per]
        self.metric_kinds = [[metrics_mod.kind(m, loss) for m in ms]
                             for ms, loss in zip(self.metric_names, self.losses)]
        self.fused_outputs = [False] * n
        self.fused_nodes = frozenset()

    def fuse(self, graph):
        """softmax + cross-entropy (sigmoid + binary cross-entropy): an output layer hands
        its pre-activation to the fused loss kernel when nothing else reads its output."""
        fused, nodes = [], set()
        for t, loss in zip(graph.outputs, self.losses):
            node, layer = t.node, t.node.layer
            ok = (loss.fuses_with is not None and not loss.from_logits and len(node.outputs) == 1
                  and getattr(layer, "activation", None) == loss.fuses_with and graph.uses.get(id(t), 0) == 0
                  and graph.calls.get(id(layer), 0) == 1 and sum(o is t for o in graph.outputs) == 1)
            fused.append(ok)
            if ok:
                nodes.add(id(node))
        self.fused_outputs, self.fused_nodes = fused, frozenset(nodes)

    def log_names(self):
        """Keys of the logs: "loss", then per output "<name>_loss" (several outputs), then metrics."""
        if len(self.output_names) == 1:
            return ["loss"] + list(self.metric_names[0])
        names = ["loss"] + [f"{n}_loss" for n in self.output_names]
        for out, ms in zip(self.output_names, self.metric_names):
            names += [f"{out}_{m}" for m in ms]
        return names

    @property
    def n_losses(self):
        """Loss entries of the logs: the total, and each output's with several outputs."""
        return 1 + (len(self.output_names) if len(self.output_names) > 1 else 0)

    def __call__(self, be, outs, ybs, add_penalties=None):
        """-> (loss, [per-output mean losses], [d output], [(hits, count) per metric]).

        loss is the weighted data losses (plus, through add_penalties(into), every
        regularization penalty), summed on the backend and read back as one float: on the
        gpu one 8-byte download per step, not one per output and regularized array.
        Per-output means are read only for a model with several outputs (they are
        logged). The targets were range-checked on the host (trainers/data_adapter.py)."""
        if self._stats_fused():
            return self._fused_stats_terms(be, outs[0], ybs[0], add_penalties)
        # From the step's workspace (be.zeros would allocate every step), zeroed in place.
        total = be.empty((1,), "float64")
        be.zero(total)
        several = len(outs) > 1
        per_output, douts, stats = [], [], []
        for out, yb, loss, w, fused, kinds in zip(outs, ybs, self.losses, self.loss_weights, self.fused_outputs,
                                                  self.metric_kinds):
            compute = loss.compute_from_logits if fused else loss.compute
            losses, d = compute(be, out, yb, labels_checked=True)
            rows = losses.shape[0]
            be.sum(losses, into=total, scale=w / rows)
            if several:
                per_output.append(be.sum(losses) / rows)
            if w != 1.0:
                d = be.scale(d, w)
            douts.append(d)
            for kind in kinds:
                stats.append(metrics_mod.count(be, kind, out, yb, from_logits=fused))
        if add_penalties is not None:
            add_penalties(total)
        return float(be.to_numpy(total)[0]), per_output, douts, stats

    def _stats_fused(self):
        """One output trained with softmax + cross-entropy (fused), weight 1, and only
        categorical accuracy as metrics: be.softmax_cross_entropy_stats gives the loss,
        its gradient, the mean and the hits in one op."""
        return (len(self.losses) == 1 and self.fused_outputs[0] and self.losses[0].fuses_with == "softmax"
                and self.loss_weights[0] == 1.0 and all(k == "categorical" for k in self.metric_kinds[0]))

    def _fused_stats_terms(self, be, out, yb, add_penalties):
        """__call__ for _stats_fused models: one kernel on the gpu for the loss, gradient,
        mean loss and correct count; the penalties are added to the mean on the backend;
        one 16-byte read."""
        z2, t2 = self.losses[0]._rows(be, out, yb)
        _, d, stats = be.softmax_cross_entropy_stats(z2, t2, _labels_checked=True)
        if add_penalties is not None:
            add_penalties(stats[0:1])
        mean, hits = (float(v) for v in be.to_numpy(stats))
        return mean, [], [be.reshape(d, out.shape)], [(int(hits), z2.shape[0]) for _ in self.metric_kinds[0]]


class RunningLogs:
    """Sums over batches of the loss entries (each weighted by its batch's rows) and of
    each metric's (hits, count): the logs of the batches seen so far."""

    def __init__(self, compile_loss):
        self.names = compile_loss.log_names()
        self.n_losses = compile_loss.n_losses
        self.sums = [0.0] * self.n_losses
        self.hits = [[0, 0] for _ in range(len(self.names) - self.n_losses)]
        self.rows = 0

    def add(self, rows, loss, per_output, stats):
        self.rows += rows
        for j, v in enumerate([loss] + (per_output if self.n_losses > 1 else [])):
            self.sums[j] += v * rows
        for j, (h, c) in enumerate(stats):
            self.hits[j][0] += h
            self.hits[j][1] += c

    def means(self):
        """{log name: mean over the rows seen (losses), or hits / count (metrics)}."""
        return dict(zip(self.names, [s / self.rows for s in self.sums] + [h / c for h, c in self.hits]))
