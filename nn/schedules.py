"""Learning-rate schedules (keras.optimizers.schedules), reachable as nn.optimizers.schedules.

A schedule is passed as an optimizer's learning_rate and called with the optimizer's
step count before each update (0 for the first step, as in Keras). It returns a host
float: the rate is a kernel argument, so a schedule costs no transfer on the gpu.
"""
import math


class LearningRateSchedule:
    def __call__(self, step):
        raise TypeError(f"{type(self).__name__} must define __call__")

    def get_config(self):
        raise TypeError(f"{type(self).__name__} must define get_config")


def _number(owner, name, value, low=None, strict=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{owner}: {name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


class CosineDecay(LearningRateSchedule):
    """Keras's CosineDecay: with warmup_target, a linear warm-up from initial_learning_rate
    to warmup_target over warmup_steps, then a cosine decay from warmup_target (without
    one: from initial_learning_rate) over decay_steps, to alpha times its start; constant
    after that."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        owner = "CosineDecay"
        self.initial_learning_rate = _number(owner, "initial_learning_rate", initial_learning_rate, 0.0)
        if isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps < 1:
            raise ValueError(f"{owner}: decay_steps must be a positive int, got {decay_steps!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"{owner}: warmup_steps must be an int >= 0, got {warmup_steps!r}")
        self.decay_steps = decay_steps
        self.alpha = _number(owner, "alpha", alpha, 0.0)
        self.warmup_target = None if warmup_target is None else _number(owner, "warmup_target", warmup_target, 0.0,
                                                                        strict=True)
        self.warmup_steps = warmup_steps
        self.name = name

    def _decay(self, step, start):
        fraction = step / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return (self.warmup_target - self.initial_learning_rate) * fraction + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


_CLASSES = {"CosineDecay": CosineDecay}


def serialize(schedule):
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ValueError(f"unknown learning-rate schedule {config!r}; known: {', '.join(_CLASSES)}")
    return _CLASSES[config["class_name"]](**config["config"])
