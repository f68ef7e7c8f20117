"""A .keras file's compile record (optimizer, loss, metrics, loss weights) and the
optimizer's variables, to and from numbanet's compile() and optimizer state.

OPTIMIZERS holds, per Keras optimizer class, the numbanet class, the Keras arguments that
map one to one, the Keras arguments numbanet supports only at one value, and how Keras
lays out its per-weight variables: `slots(optimizer)` -> groups of numbanet slot names;
Keras keeps [iterations, learning_rate (absent under a schedule)] and then, group by
group, each trainable weight's slots of the group in get_weights order (Adam interleaves
momentum and velocity per weight: one group ("m", "v")). An optimizer added to numbanet
adds its entry here.
"""
from numbanet.nn import losses as losses_mod
from numbanet.nn import metrics as metrics_mod
from numbanet.nn import optimizers as optimizers_mod
from numbanet.nn import schedules as schedules_mod
from numbanet.nn.keras_config import Unsupported

# Arguments every Keras optimizer has, at the values numbanet behaves as.
_COMMON_FIXED = {"clipvalue": None, "use_ema": False, "loss_scale_factor": None, "gradient_accumulation_steps": None}
# Arguments that matter only with use_ema (then refused above), or name the object.
_COMMON_IGNORED = ("name", "ema_momentum", "ema_overwrite_frequency")


class OptimizerEntry:
    def __init__(self, cls, args, fixed, slots, keras_name):
        self.cls, self.args, self.fixed, self.slots, self.keras_name = cls, args, fixed, slots, keras_name


OPTIMIZERS = {
    "Adam": OptimizerEntry(optimizers_mod.Adam, ("beta_1", "beta_2", "epsilon"), {"amsgrad": False},
                           lambda opt: [("m", "v")], "adam"),
    "AdamW": OptimizerEntry(optimizers_mod.AdamW, ("beta_1", "beta_2", "epsilon"), {"amsgrad": False},
                            lambda opt: [("m", "v")], "adamw"),
    "SGD": OptimizerEntry(optimizers_mod.SGD, ("momentum", "nesterov"), {},
                          lambda opt: [tuple(opt.needed_slots())] if opt.needed_slots() else [], "sgd"),
    # Keras builds velocities for every weight, then momentums (momentum > 0), then
    # average gradients (centered): a group each.
    "RMSprop": OptimizerEntry(optimizers_mod.RMSprop, ("rho", "momentum", "epsilon", "centered"), {},
                              lambda opt: [(s,) for s in opt.needed_slots()], "rmsprop"),
    "Adagrad": OptimizerEntry(optimizers_mod.Adagrad, ("initial_accumulator_value", "epsilon"), {},
                              lambda opt: [("accumulator",)], "adagrad"),
}
_COMMON_ARGS = ("learning_rate", "weight_decay", "clipnorm", "global_clipnorm")

_LOSSES = {"CategoricalCrossentropy": losses_mod.CategoricalCrossentropy,
           "SparseCategoricalCrossentropy": losses_mod.SparseCategoricalCrossentropy,
           "BinaryCrossentropy": losses_mod.BinaryCrossentropy, "MeanSquaredError": losses_mod.MeanSquaredError}
_LOSS_FIXED = {"label_smoothing": (0, 0.0), "axis": (-1,), "reduction": ("sum_over_batch_size", None),
               "ignore_class": (None,)}


def _entry_of(opt):
    for name, entry in OPTIMIZERS.items():
        if type(opt) is entry.cls:
            return name, entry
    raise Unsupported(f"optimizer {type(opt).__name__} has no Keras counterpart in a .keras file")


# ---------------------------------------------------------------------- reading
def _schedule(value):
    if isinstance(value, dict):
        cfg = value.get("config")
        try:
            return schedules_mod.deserialize({"class_name": value.get("class_name"), "config": cfg})
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"learning-rate schedule {value.get('class_name')!r}: {exc}") from None
    return value


def _lookup(kind, value, table, by_name):
    """A Keras object named by a string (-> (by_name(it), None, None)) or serialized as
    {"class_name", "config"} with the class in table (-> (None, class name, config))."""
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")   # a Keras function (a loss) serialized by its name
    if isinstance(value, str):
        try:
            return by_name(value), None, None
        except ValueError as exc:
            raise Unsupported(str(exc)) from None
    cls = value.get("class_name") if isinstance(value, dict) else None
    cfg = value.get("config") if isinstance(value, dict) else None
    if cls not in table or not isinstance(cfg, dict):
        raise Unsupported(f"{kind} {cls or value!r} has no numbanet counterpart (numbanet has {', '.join(table)})")
    return None, cls, cfg


def read_optimizer(value):
    named, cls, cfg = _lookup("optimizer", value, OPTIMIZERS, optimizers_mod.get)
    if named is not None:
        return named
    entry = OPTIMIZERS[cls]
    kwargs = {}
    for key, v in cfg.items():
        if key in _COMMON_ARGS or key in entry.args:
            kwargs[key] = _schedule(v) if key == "learning_rate" else v
        elif key in _COMMON_FIXED or key in entry.fixed:
            want = _COMMON_FIXED.get(key, entry.fixed.get(key))
            if v != want:
                raise Unsupported(f"optimizer {cls}: {key}={v!r} is not supported (numbanet: {want!r})")
        elif key not in _COMMON_IGNORED and v not in (None, False):
            raise Unsupported(f"optimizer {cls}: argument {key}={v!r} has no numbanet counterpart")
    try:
        return entry.cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"optimizer {cls}: {exc}") from None


def _read_loss(value):
    named, cls, cfg = _lookup("loss", value, _LOSSES, losses_mod.get)
    if named is not None:
        return named
    for key, allowed in _LOSS_FIXED.items():
        if key in cfg and cfg[key] not in allowed:
            raise Unsupported(f"loss {cls}: {key}={cfg[key]!r} is not supported")
    extra = set(cfg) - set(_LOSS_FIXED) - {"name", "dtype", "from_logits"}
    if extra:
        raise Unsupported(f"loss {cls}: arguments {sorted(extra)} have no numbanet counterpart")
    return _LOSSES[cls]() if cls == "MeanSquaredError" else _LOSSES[cls](from_logits=bool(cfg.get("from_logits")))


def _per_output(value, read):
    if isinstance(value, list):
        return [read(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: read(v) for k, v in value.items()}
    return read(value)


def _read_metric(value):
    if not isinstance(value, str):
        raise Unsupported(f"metric {value!r}: numbanet reads metrics named by a string (accuracy, ...)")
    try:
        return metrics_mod.get(value)
    except ValueError as exc:
        raise Unsupported(str(exc)) from None


def read_compile(config):
    """A Keras compile_config -> the keyword arguments of numbanet's compile()."""
    if not isinstance(config, dict):
        raise Unsupported(f"the compile record is not a JSON object: {config!r}")
    for key in ("weighted_metrics", "run_eagerly", "jit_compile"):
        if config.get(key) not in (None, False, "auto"):
            raise Unsupported(f"compile argument {key}={config[key]!r} has no numbanet counterpart")
    metrics = config.get("metrics")
    if metrics is not None:
        metrics = _per_output(metrics, lambda m: _per_output(m, _read_metric) if isinstance(m, list) else
                              _read_metric(m))
    return dict(optimizer=read_optimizer(config.get("optimizer", "rmsprop")), loss=_per_output(config.get("loss"),
                _read_loss), metrics=metrics, loss_weights=config.get("loss_weights"))


def variable_layout(model):
    """[(numbanet state name or "iterations" / "learning_rate", shape)] in Keras's order of
    the compiled model's optimizer variables."""
    opt = model.optimizer
    _, entry = _entry_of(opt)
    out = [("iterations", ())]
    if not isinstance(opt.learning_rate, schedules_mod.LearningRateSchedule):
        out.append(("learning_rate", ()))
    params = model._trainable_params()
    for group in entry.slots(opt):
        for key, layer, k in params:
            out += [(f"{key}/{slot}", tuple(layer.params[k].shape)) for slot in group]
    return out


# ---------------------------------------------------------------------- writing
def _write_schedule(lr):
    if isinstance(lr, schedules_mod.LearningRateSchedule):
        s = schedules_mod.serialize(lr)
        return {"module": "keras.optimizers.schedules", "class_name": s["class_name"], "config": s["config"],
                "registered_name": None}
    return lr


def write_optimizer(opt):
    cls, entry = _entry_of(opt)
    cfg = opt.get_config()
    out = {"name": entry.keras_name, "learning_rate": _write_schedule(opt.learning_rate),
           "weight_decay": cfg.get("weight_decay"), "clipnorm": cfg.get("clipnorm"),
           "global_clipnorm": cfg.get("global_clipnorm"), "ema_momentum": 0.99, "ema_overwrite_frequency": None}
    out.update(_COMMON_FIXED)
    out.update(entry.fixed)
    out.update({k: cfg[k] for k in entry.args})
    return {"module": "keras.optimizers", "class_name": cls, "config": out, "registered_name": None}


def _write_loss(loss):
    if not loss.from_logits:
        return loss.name
    return {"module": "keras.losses", "class_name": type(loss).__name__,
            "config": {"name": loss.name, "reduction": "sum_over_batch_size", "from_logits": True},
            "registered_name": None}


def write_compile(model):
    one = len(model.outputs) == 1
    losses = [_write_loss(l) for l in model._losses]
    metrics = [list(m) for m in model._metric_names]
    weights = list(model._loss_weights)
    return {"optimizer": write_optimizer(model.optimizer), "loss": losses[0] if one else losses,
            "loss_weights": None if one and weights == [1.0] else weights, "metrics": metrics[0] if one else metrics,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}
