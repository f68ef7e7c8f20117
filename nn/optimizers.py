"""SGD and Adam (Keras's defaults), updating parameters with the backend's fused kernels.

State (Adam's m and v, SGD's velocity) lives on the backend next to the parameters,
keyed by the parameter's position, and the step counter `iterations` is saved with the
model so that training resumes bit-identically.
"""


class Optimizer:
    slot_names = ()

    def __init__(self, learning_rate):
        if not float(learning_rate) > 0.0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be > 0, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.slots = {}

    # The update is elementwise and the same for every weight: over a model's packed
    # weights (nn/packed.py) it is one kernel launch for all of them.
    packable = True

    def apply(self, be, params, packed=None):
        """params: list of (key, param, grad); one in-place step for each, or one step over
        the flat arrays of `packed` (a PackedParams holding exactly these params)."""
        self.iterations += 1
        if packed is not None and self.packable:
            self._step(be, packed.params, packed.grads, self._packed_slots(be, packed))
            return
        for key, p, g in params:
            if key not in self.slots:
                self.slots[key] = {s: be.zeros(p.shape, p.dtype) for s in self.needed_slots()}
            self._step(be, p, g, self.slots[key])

    def _packed_slots(self, be, packed):
        """{slot name: flat array} laid out as `packed`; self.slots[key] are views of
        them, so saving and the per-array path see the same state. State made before
        (other layout, loaded from a file) is copied in once."""
        names = self.needed_slots()
        flat = getattr(self, "_flat", None)
        if flat is None or flat[0] is not packed:
            arrays = {s: be.zeros((packed.size,), packed.dtype) for s in names}
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
        self.slots = slots  # copied into the packed slots at the next packed step


class SGD(Optimizer):
    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _packed_slots(self, be, packed):
        """{slot name: flat array} laid out as `packed`; self.slots[key] are views of
        them, so saving and the per-array path see the same state. State made before
        (other layout, loaded from a file) is copied in once."""
        names = self.needed_slots()
        flat = getattr(self, "_flat", None)
        if flat is None or flat[0] is not packed:
            arrays = {s: be.zeros((packed.size,), packed.dtype) for s in names}
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
        return self.slot_names if self.momentum > 0.0 else ()

    def _step(self, be, p, g, slots):
        be.sgd_step(p, g, slots.get("velocity"), lr=self.learning_rate, momentum=self.momentum,
                    nesterov=self.nesterov)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        for name, v in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {v!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"Adam: epsilon must be > 0, got {epsilon!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _step(self, be, p, g, slots):
        be.adam_step(p, g, slots["m"], slots["v"], lr=self.learning_rate, beta1=self.beta_1, beta2=self.beta_2,
                     eps=self.epsilon, step=self.iterations)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


_CLASSES = {"SGD": SGD, "Adam": Adam}


def get(obj):
    """'sgd' | 'adam' | an Optimizer instance -> a fresh or the same instance."""
    if isinstance(obj, Optimizer):
        return obj
    if isinstance(obj, str) and obj.lower() in ("sgd", "adam"):
        return SGD() if obj.lower() == "sgd" else Adam()
    raise ValueError(f"optimizer must be 'sgd', 'adam' or an nn.optimizers instance, got {obj!r}")


def from_config(class_name, config, iterations=0):
    if class_name not in _CLASSES:
        raise ValueError(f"unknown optimizer class {class_name!r}")
    opt = _CLASSES[class_name](**config)
    opt.iterations = int(iterations)
    return opt
