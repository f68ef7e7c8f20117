"""SGD, Adam, AdamW, RMSprop and Adagrad (Keras 3's defaults), updating parameters with the
backend's fused kernels.

Every optimizer takes Keras's learning_rate (a number or a schedule from
nn.optimizers.schedules), weight_decay (decoupled: p -= lr * weight_decay * p before
the update; AdamW's default 0.004), clipnorm (each gradient scaled to a norm of at most
clipnorm) and global_clipnorm (all gradients scaled together). One step is, as in
Keras: clip, decay, update. Clipping runs on the backend (be.clip_by_norm /
clip_by_global_norm): on the gpu the norm and the scale never visit the host.

State (Adam's m and v, SGD's velocity, RMSprop's velocity, momentum and average gradient,
Adagrad's accumulator) lives on the backend next to the parameters, keyed by the
parameter's position (trainable weights only: BatchNormalization's moving statistics
have none), and the step counter `iterations` is saved with the
model so that training resumes bit-identically.
"""
import math
import re

import numpy as np

from numbanet.nn import schedules


def _optional_positive(owner, name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be None or a finite number > 0, got {value!r}")
    return float(value)


class Optimizer:
    slot_names = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, global_clipnorm=None):
        owner = type(self).__name__
        if isinstance(learning_rate, schedules.LearningRateSchedule):
            self.learning_rate = learning_rate
        else:
            if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) \
                    or not float(learning_rate) > 0.0 or not math.isfinite(learning_rate):
                raise ValueError(f"{owner}: learning_rate must be > 0 or a schedule from nn.optimizers.schedules, "
                                 f"got {learning_rate!r}")
            self.learning_rate = float(learning_rate)
        if weight_decay is not None:
            if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
                    or not math.isfinite(weight_decay) or weight_decay < 0:
                raise ValueError(f"{owner}: weight_decay must be None or a number >= 0, got {weight_decay!r}")
            weight_decay = float(weight_decay)
        self.weight_decay = weight_decay
        self.clipnorm = _optional_positive(owner, "clipnorm", clipnorm)
        self.global_clipnorm = _optional_positive(owner, "global_clipnorm", global_clipnorm)
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError(f"{owner}: pass clipnorm or global_clipnorm, not both")
        self.iterations = 0
        self.slots = {}
        self._no_decay = ()

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Leave out of weight decay every parameter whose name ("kernel", "bias", "gamma",
        "embeddings", ...) a regex in var_names matches, as Keras does
        (exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])). var_list,
        Keras's list of variable objects, has no counterpart here."""
        if var_list is not None:
            raise ValueError(f"{type(self).__name__}.exclude_from_weight_decay: numbanet names parameters by name; "
                             f"pass var_names=[...] (regexes matched against 'kernel', 'bias', ...)")
        names = tuple(var_names or ())
        for n in names:
            if not isinstance(n, str):
                raise ValueError(f"exclude_from_weight_decay: var_names must be strings, got {n!r}")
            re.compile(n)
        self._no_decay = names

    def current_learning_rate(self):
        """The rate the next step uses (a schedule is called with the number of steps taken)."""
        if isinstance(self.learning_rate, schedules.LearningRateSchedule):
            return float(self.learning_rate(self.iterations))
        return self.learning_rate

    def _decay_for(self, path):
        name = path.rsplit("/", 1)[-1]   # Keras matches the variable's name, not its path
        if not self.weight_decay or any(re.search(n, name) for n in self._no_decay):
            return 0.0
        return self.weight_decay

    def apply(self, be, params, packed=None):
        """params: list of (key, param, grad, path); clips the grads in place, then one
        in-place step for each parameter. With `packed` (an nn/packed.py PackedParams
        holding exactly these params and grads), one step over its flat arrays instead:
        one kernel launch for every weight, when the step is the same for all of them (no
        per-tensor clipnorm, one weight decay)."""
        lr = self.current_learning_rate()
        self.iterations += 1
        if packed is not None and self.clipnorm is None:
            decays = {self._decay_for(path) for _, _, _, path in params}
            if len(decays) == 1:
                if self.global_clipnorm is not None:
                    be.clip_by_global_norm([packed.grads], self.global_clipnorm)
                self._step(be, packed.params, packed.grads, self._packed_slots(be, packed), lr, decays.pop())
                return
        grads = [g for _, _, g, _ in params]
        if self.global_clipnorm is not None and grads:
            be.clip_by_global_norm(grads, self.global_clipnorm)
        elif self.clipnorm is not None:
            for g in grads:
                be.clip_by_norm(g, self.clipnorm)
        for key, p, g, path in params:
            if key not in self.slots:
                self.slots[key] = {s: self._new_slot(be, s, tuple(p.shape), p.dtype) for s in self.needed_slots()}
            self._step(be, p, g, self.slots[key], lr, self._decay_for(path))

    def _packed_slots(self, be, packed):
        """{slot name: flat array} laid out as `packed`; self.slots[key] are views of
        them, so saving and the per-array path see the same state. State made before
        (another layout, loaded from a file) is copied in once."""
        names = self.needed_slots()
        flat = getattr(self, "_flat", None)
        if flat is None or flat[0] is not packed:
            arrays = {s: self._new_slot(be, s, (packed.size,), packed.dtype) for s in names}
            flat = (packed, arrays, {s: packed.slot_views(a) for s, a in arrays.items()})
            self._flat = flat
        views = flat[2]
        for key, _, _, _, _, _ in packed.layout:
            state = self.slots.get(key, {})
            for s in names:
                if key in self.slots and state.get(s) is not views[s][key]:
                    be.assign(views[s][key], state[s])
            self.slots[key] = {s: views[s][key] for s in names}
        return flat[1]

    def needed_slots(self):
        return self.slot_names

    def slot_initial_value(self, slot):
        """The value a new slot starts at (Keras's: zeros, Adagrad's accumulator aside)."""
        return 0.0

    def _new_slot(self, be, slot, shape, dtype):
        value = self.slot_initial_value(slot)
        if value == 0.0:
            return be.zeros(shape, dtype)
        return be.asarray(np.full(shape, value, dtype=np.dtype(dtype)))

    def move_to(self, old, new):
        self.slots = {k: {s: new.asarray(old.to_numpy(a)) for s, a in d.items()} for k, d in self.slots.items()}
        self._flat = None

    def get_state(self, be):
        """{"key/slot": host array} for saving."""
        return {f"{k}/{s}": be.to_numpy(a) for k, d in self.slots.items() for s, a in d.items()}

    def set_state(self, be, state):
        slots = {}
        for name, arr in state.items():
            key, slot = name.rsplit("/", 1)
            slots.setdefault(key, {})[slot] = be.asarray(arr)
        self.slots = slots

    def get_config(self):
        lr = self.learning_rate
        cfg = {"learning_rate": schedules.serialize(lr) if isinstance(lr, schedules.LearningRateSchedule) else lr}
        for name in ("weight_decay", "clipnorm", "global_clipnorm"):
            if getattr(self, name) is not None:
                cfg[name] = getattr(self, name)
        return cfg


class SGD(Optimizer):
    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def needed_slots(self):
        return self.slot_names if self.momentum > 0.0 else ()

    def _step(self, be, p, g, slots, lr, weight_decay):
        be.sgd_step(p, g, slots.get("velocity"), lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=weight_decay)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(momentum=self.momentum, nesterov=self.nesterov)
        return cfg


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        owner = type(self).__name__
        for name, v in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1), got {v!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"{owner}: epsilon must be > 0, got {epsilon!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _step(self, be, p, g, slots, lr, weight_decay):
        be.adam_step(p, g, slots["m"], slots["v"], lr=lr, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                     step=self.iterations, weight_decay=weight_decay)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return cfg


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras's AdamW: weight_decay=0.004 by default)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 clipnorm=None, global_clipnorm=None):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number >= 0 (use Adam for none), got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, global_clipnorm)


def _number(owner, name, value, lo, hi, hi_open=True):
    """A float in [lo, hi) (or [lo, hi] with hi_open=False), else a ValueError naming it."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ValueError(f"{owner}: {name} must be a number in [{lo}, {hi}{')' if hi_open else ']'}, got {value!r}")
    return float(value)


class RMSprop(Optimizer):
    """Keras 3's RMSprop: velocity = rho v + (1 - rho) g^2, p -= lr g / sqrt(v + epsilon);
    centered subtracts the squared running mean of g inside the root; momentum > 0 keeps a
    momentum buffer m = momentum m + increment and p -= m."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        self.rho = _number("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = _number("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _number("RMSprop", "epsilon", epsilon, 0.0, math.inf)
        if self.epsilon <= 0.0:
            raise ValueError(f"RMSprop: epsilon must be > 0, got {epsilon!r}")
        if not isinstance(centered, bool):
            raise ValueError(f"RMSprop: centered must be True or False, got {centered!r}")
        self.centered = centered

    def needed_slots(self):
        # Keras's order of the optimizer's variables: velocities, momentums, average gradients.
        return ("velocity",) + (("momentum",) if self.momentum > 0.0 else ()) \
            + (("average_gradient",) if self.centered else ())

    def _step(self, be, p, g, slots, lr, weight_decay):
        be.rmsprop_step(p, g, slots["velocity"], slots.get("average_gradient"), slots.get("momentum"), lr=lr,
                        rho=self.rho, momentum=self.momentum, eps=self.epsilon, weight_decay=weight_decay)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered)
        return cfg


class Adagrad(Optimizer):
    """Keras 3's Adagrad: accumulator (from initial_accumulator_value) += g^2,
    p -= lr g / sqrt(accumulator + epsilon)."""
    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, global_clipnorm=None):
        super().__init__(learning_rate, weight_decay, clipnorm, global_clipnorm)
        self.initial_accumulator_value = _number("Adagrad", "initial_accumulator_value", initial_accumulator_value,
                                                 0.0, math.inf)
        self.epsilon = _number("Adagrad", "epsilon", epsilon, 0.0, math.inf)
        if self.epsilon <= 0.0:
            raise ValueError(f"Adagrad: epsilon must be > 0, got {epsilon!r}")

    def slot_initial_value(self, slot):
        return self.initial_accumulator_value

    def _step(self, be, p, g, slots, lr, weight_decay):
        be.adagrad_step(p, g, slots["accumulator"], lr=lr, eps=self.epsilon, weight_decay=weight_decay)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(initial_accumulator_value=self.initial_accumulator_value, epsilon=self.epsilon)
        return cfg


_CLASSES = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad}
_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(obj):
    """'sgd' | 'adam' | 'adamw' | 'rmsprop' | 'adagrad' | an Optimizer instance -> a fresh
    or the same instance."""
    if isinstance(obj, Optimizer):
        return obj
    if isinstance(obj, str) and obj.lower() in _BY_NAME:
        return _BY_NAME[obj.lower()]()
    raise ValueError(f"optimizer must be 'sgd', 'adam', 'adamw', 'rmsprop', 'adagrad' or an nn.optimizers instance, "
                     f"got {obj!r}")


def from_config(class_name, config, iterations=0):
    if class_name not in _CLASSES:
        raise ValueError(f"unknown optimizer class {class_name!r}")
    config = dict(config)
    if isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = schedules.deserialize(config["learning_rate"])
    opt = _CLASSES[class_name](**config)
    opt.iterations = int(iterations)
    return opt
